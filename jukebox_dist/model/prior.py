"""One prior: the conditioning it needs for a window, and the transformer that scores music tokens.

Sequence layout per window: the merged (1b-style) top prior runs [lyric window ; music] through one
transformer, music ids shifted past the lyric vocabulary; every other prior runs the music tokens alone
(the 5b-style top prior cross-attends to a separate lyric encoder).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from jukebox_dist.model.attention import LayerCache
from jukebox_dist.model.calls import rowwise
from jukebox_dist.model.conditioners import LabelConditioner, LyricEncoder, MusicTokenConditioner
from jukebox_dist.model.config import PriorConfig
from jukebox_dist.model.transformer import ConditionalAutoregressive

Labels = Tensor | Sequence[Tensor]
PerRow = int | Sequence[int]  # one value for the whole batch, or one per row


@dataclass
class WindowConditioning:
    """Everything a window of one batch needs besides its music tokens."""

    start_emb: Tensor | None  # (B, 1, W) artist + genres
    cond: Tensor | None  # (B, positions, W) per-position conditioning (timing or level above)
    encoder_states: Tensor | None  # (B, n_lyr, W) separate lyric encoder
    prefix: Tensor  # (B, P) ids that precede the music in the sequence (merged lyric window); P may be 0


class Prior(nn.Module):
    def __init__(self, cfg: PriorConfig, raw_to_tokens: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.raw_to_tokens = raw_to_tokens  # audio samples per token at this level
        self.merged = cfg.is_encoder_decoder
        self.prefix_len = cfg.nb_relevant_lyric_tokens if self.merged else 0
        self.vocab_shift = cfg.lyric_vocab_size if self.merged else 0
        if cfg.is_upsampler:
            self.conditioner_blocks = MusicTokenConditioner(cfg)
        if cfg.metadata_conditioning:
            self.metadata_embedding = LabelConditioner(cfg, include_time_signal=not cfg.is_upsampler)
        untied = cfg.merged_decoder
        if self.merged:
            self.prior = ConditionalAutoregressive(
                cfg, cfg.lyric_vocab_size + cfg.music_vocab_size, cfg.seq_len, metadata_start=True,
                add_cond_after=not untied, tie_output=not untied)
        else:
            if cfg.separate_lyric_encoder:
                self.encoder = LyricEncoder(cfg.lyric_encoder(), cfg.hidden_size, cfg.nb_relevant_lyric_tokens,
                                            cfg.lyric_vocab_size)
            self.prior = ConditionalAutoregressive(
                cfg, cfg.music_vocab_size, cfg.n_ctx, metadata_start=cfg.metadata_conditioning,
                add_cond_after=not untied, tie_output=not untied)

    # ---- conditioning -------------------------------------------------------------------------------
    def metadata(self, labels: Labels, *, total_length: PerRow, start: PerRow = 0,
                 offset: int = 0) -> tuple[Tensor, Tensor | None]:
        """Per-row metadata (B, 4 + max_nb_genres) and lyric window (B, n_lyr) for a window starting at token
        `start` (plus `offset` tokens, as the reference's get_metadata) of a song of `total_length` samples.
        Each row uses its own lyrics (the reference uses row 0's for every row); `total_length` and `start`
        may be one number or one per row, so a batch can mix windows of different songs."""
        rows = label_rows(labels)
        n_head = 4 + self.cfg.max_nb_genres
        for i, row in enumerate(rows):
            if row.numel() < n_head:
                raise ValueError(f"labels row {i} has {row.numel()} entries; expected at least {n_head} "
                                 f"(3 placeholders, artist, {self.cfg.max_nb_genres} genre slots)")
        meta = torch.stack([row[:n_head] for row in rows]).clone()
        meta[:, 0] = torch.as_tensor(total_length, dtype=torch.long)
        meta[:, 1] = int(offset * self.raw_to_tokens) + torch.as_tensor(start, dtype=torch.long) * self.raw_to_tokens
        meta[:, 2] = self.cfg.n_ctx * self.raw_to_tokens
        if not self.cfg.has_lyrics:
            return meta, None
        lyrics = torch.stack([
            lyric_window(row[n_head:], self.cfg.nb_relevant_lyric_tokens, meta[i, 0], meta[i, 1], meta[i, 2])
            for i, row in enumerate(rows)])
        return meta, lyrics

    def condition(self, labels: Labels, *, total_length: PerRow, start: PerRow = 0, offset: int = 0,
                  upper: Tensor | None = None) -> WindowConditioning:
        meta, lyrics = self.metadata(labels, total_length=total_length, start=start, offset=offset)
        dtype = self.prior.embed_tokens.weight.dtype
        device = self.prior.embed_tokens.weight.device
        meta = meta.to(device)
        start_emb, timing = self.metadata_embedding(meta) if self.cfg.metadata_conditioning else (None, None)
        if self.cfg.is_upsampler:
            if upper is None:
                raise ValueError(f"prior {self.cfg.level} is an upsampler: pass `upper`, the level-above tokens")
            cond = self.upper_conditioning(upper.to(device))
        else:
            cond = timing
        batch = meta.shape[0]
        prefix = torch.zeros(batch, 0, dtype=torch.long, device=device)
        enc = None
        if self.merged:
            prefix = lyrics.to(device)
            if cond is not None:
                cond = torch.cat([torch.zeros(batch, self.prefix_len, cond.shape[-1], device=device), cond], dim=1)
        elif self.cfg.separate_lyric_encoder:
            enc = self.encoder(lyrics.to(device))
        cast = (lambda t: None if t is None else t.to(dtype))
        return WindowConditioning(cast(start_emb), cast(cond), cast(enc), prefix)

    def upper_conditioning(self, upper: Tensor) -> Tensor:
        """Level-above tokens of this window (B, U <= n_ctx / downsample) -> (B, n_ctx, W). A short window is
        zero-padded to the full window first, as the reference does (the conditioner's convolutions see it)."""
        need = self.cfg.n_ctx // self.conditioner_blocks.downsample
        if upper.shape[1] > need:
            raise ValueError(f"upper has {upper.shape[1]} tokens; a window of prior {self.cfg.level} takes at most {need}")
        if upper.shape[1] < need:
            upper = torch.cat([upper, upper.new_zeros(upper.shape[0], need - upper.shape[1])], dim=1)
        return rowwise(self.conditioner_blocks, upper.long())  # a row's conditioning must not depend on its batch

    # ---- scoring ------------------------------------------------------------------------------------
    def sequence(self, tokens: Tensor, wc: WindowConditioning) -> Tensor:
        """Transformer input ids for a window's music tokens (B, T): the prefix, then shifted music ids."""
        return torch.cat([wc.prefix, tokens.to(wc.prefix.device) + self.vocab_shift], dim=1)

    def run(self, seq: Tensor, pos: int, length: int, wc: WindowConditioning,
            cache: list[LayerCache] | None = None) -> Tensor:
        """Hidden states (B, length, W) for transformer positions [pos, pos+length); position j is fed seq[:, j-1]."""
        inputs, cond = self._window_inputs(seq, pos, length, wc)
        return self.prior.hidden(inputs, pos, wc.start_emb, cond, cache, wc.encoder_states)

    def step(self, seq: Tensor, pos: int, wc: WindowConditioning, cache: list[LayerCache]) -> Tensor:
        """Hidden state (B, W) of transformer position `pos` on the cache: one decoding step."""
        inputs, cond = self._window_inputs(seq, pos, 1, wc)
        return self.prior.step(inputs, pos, wc.start_emb, cond, cache, wc.encoder_states)

    def prefill(self, seq: Tensor, pos: int, length: int, wc: WindowConditioning, cache: list[LayerCache]) -> None:
        """Fill the cache for positions [pos, pos+length) as `run` would, without computing hidden states."""
        inputs, cond = self._window_inputs(seq, pos, length, wc)
        self.prior.prefill(inputs, pos, wc.start_emb, cond, cache, wc.encoder_states)

    def _window_inputs(self, seq: Tensor, pos: int, length: int, wc: WindowConditioning) -> tuple[Tensor, Tensor | None]:
        if pos == 0:
            inputs = torch.cat([seq[:, :1], seq[:, :length - 1]], dim=1)
        else:
            inputs = seq[:, pos - 1:pos + length - 1]
        return inputs, None if wc.cond is None else wc.cond[:, pos:pos + length]

    def music_logits(self, hidden: Tensor) -> Tensor:
        """Scores over music tokens only (the merged prior's head also covers lyric ids: they are dropped)."""
        head = self.prior.fc_proj_out
        row_major = head.weight.is_contiguous() if type(head) is nn.Linear and head.bias is None else False
        if row_major and hidden.device.type == "cpu":
            # A row-major head (tied to the embedding, so not made input-major): weight @ hidden^T is MKL's fast
            # case for a few rows (about 2.5x faster than hidden @ weight^T here) and gives the same values.
            flat = hidden.reshape(-1, hidden.shape[-1])
            logits = torch.mm(head.weight, flat.t()).t().reshape(*hidden.shape[:-1], -1)
        else:
            logits = head(hidden)
        return logits[..., self.vocab_shift:]

    def logits(self, tokens: Tensor, labels: Labels, *, total_length: int, start: int = 0, offset: int = 0,
               upper: Tensor | None = None) -> Tensor:
        """Teacher-forced next-token scores (B, T, music_bins) for a window of music tokens (B, T <= n_ctx):
        position i scores token i given the tokens before it."""
        if tokens.dim() != 2 or not 0 < tokens.shape[1] <= self.cfg.n_ctx:
            raise ValueError(f"tokens must be (batch, T) with 0 < T <= n_ctx={self.cfg.n_ctx}; got {tuple(tokens.shape)}")
        wc = self.condition(labels, total_length=total_length, start=start, offset=offset, upper=upper)
        seq = self.sequence(tokens, wc)
        hidden = self.run(seq, 0, seq.shape[1], wc)
        return self.music_logits(hidden[:, self.prefix_len:])

    def new_cache(self, batch: int, device: torch.device | None = None,
                  dtype: torch.dtype | None = None) -> list[LayerCache]:
        w = self.prior.embed_tokens.weight
        return self.prior.transformer.new_cache(batch, self.cfg.nb_relevant_lyric_tokens, device or w.device,
                                                dtype or w.dtype)


def label_rows(labels: Labels) -> list[Tensor]:
    """Labels as one 1-D LongTensor per batch row: a (B, L) tensor, or a list of rows of any lengths."""
    if isinstance(labels, Tensor):
        if labels.dim() == 1:
            return [labels.long()]
        return [row.long() for row in labels]
    rows = []
    for item in labels:
        rows.extend(label_rows(item))
    return rows


def lyric_window(full: Tensor, n: int, total: Tensor, offset: Tensor, duration: Tensor) -> Tensor:
    """The n lyric tokens around the window's midpoint, assuming lyrics spread evenly over the song; left-padded
    with 0 when the lyrics are shorter. Float32 arithmetic in the reference's order so midpoints agree."""
    length = full.numel()
    if length < n:
        return torch.cat([torch.zeros(n - length, dtype=torch.long, device=full.device), full.long()])
    midpoint = int(length * (offset + duration / 2.0) / total)
    midpoint = min(max(midpoint, n // 2), length - n // 2)
    return full[midpoint - n // 2:midpoint - n // 2 + n].long()
