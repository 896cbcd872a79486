"""What a prior is conditioned on: artist/genre and timing (metadata), the level above (upsamplers),
and the lyrics through a separate encoder (5b-style top prior)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from jukebox_dist.model.config import PriorConfig
from jukebox_dist.model.transformer import ConditionalAutoregressive
from jukebox_dist.model.vqvae import DecoderConvBlock


class RangeEmbedding(nn.Module):
    """Embeds positions in [pos_min, pos_max) by binning them into `bins` buckets; with n_time > 1 the span
    [start, end) is interpolated over n_time steps. Arithmetic follows the reference in float32 so bins match."""

    def __init__(self, n_time: int, bins: int, pos_range: tuple[float, float], width: int, clamp: bool = False) -> None:
        super().__init__()
        self.n_time, self.bins = n_time, bins
        self.pos_min, self.pos_max = pos_range
        self.clamp = clamp
        self.emb = nn.Embedding(bins, width)

    def forward(self, start: Tensor, end: Tensor | None = None) -> Tensor:
        # start, end: (B, 1) float32
        if self.n_time != 1:
            if self.clamp:
                end = end.clamp(self.pos_min, self.pos_max)
            steps = torch.arange(0, self.n_time, dtype=torch.float, device=start.device).view(1, self.n_time) / self.n_time
            position = start + (end - start) * steps  # (B, n_time)
        else:
            position = start
        normalised = (position - self.pos_min) / (self.pos_max - self.pos_min)
        bins = (self.bins * normalised).floor().long()
        if bool((bins < 0).any() or (bins >= self.bins).any()):
            raise ValueError(f"position outside [{self.pos_min}, {self.pos_max})")
        return self.emb(bins)


class LabelConditioner(nn.Module):
    """Artist + genres -> the start embedding; for the top prior also the timing signal per position."""

    def __init__(self, cfg: PriorConfig, include_time_signal: bool) -> None:
        super().__init__()
        n_genres, n_artists = cfg.metadata_dims
        w = cfg.hidden_size
        self.max_nb_genres = cfg.max_nb_genres
        self.bow_genre_emb = nn.Embedding(n_genres, w)
        self.artist_emb = nn.Embedding(n_artists, w)
        self.include_time_signal = include_time_signal
        if include_time_signal:
            sr = cfg.sampling_rate
            self.total_length_emb = RangeEmbedding(1, cfg.timing_dims, (cfg.min_duration * sr, cfg.max_duration * sr), w)
            self.absolute_pos_emb = RangeEmbedding(cfg.n_ctx, cfg.timing_dims, (0.0, cfg.max_duration * sr), w)
            self.relative_pos_emb = RangeEmbedding(cfg.n_ctx, cfg.timing_dims, (0.0, 1.0), w, clamp=True)

    def forward(self, meta: Tensor) -> tuple[Tensor, Tensor | None]:
        """meta (B, 4 + max_nb_genres): [total_length, window start, window length, artist, genres (-1 = none)].
        Returns the start embedding (B, 1, W) and the timing signal (B, n_ctx, W) or None."""
        artist = meta[:, 3:4]
        genre = meta[:, 4:4 + self.max_nb_genres]
        used = (genre >= 0).float().unsqueeze(2)
        genre_emb = (self.bow_genre_emb(genre.clamp(0)) * used).sum(dim=1, keepdim=True)
        start_emb = genre_emb + self.artist_emb(artist)
        if not self.include_time_signal:
            return start_emb, None
        total = meta[:, 0:1].float()
        start = meta[:, 1:2].float()
        end = (meta[:, 1:2] + meta[:, 2:3]).float()
        timing = (self.total_length_emb(total) + self.absolute_pos_emb(start, end)
                  + self.relative_pos_emb(start / total, end / total))
        return start_emb, timing


class MusicTokenConditioner(nn.Module):
    """Upsampler conditioning: the level-above tokens, embedded and upsampled to this level's rate."""

    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.music_vocab_size, cfg.hidden_size)
        # Indexed by prior level like the reference (config validation checks this equals the true ratio).
        down, stride = cfg.res_downs_t[cfg.level], cfg.res_strides_t[cfg.level]
        self.upsampler = DecoderConvBlock(
            cfg.hidden_size, cfg.res_conv_width, cfg.res_conv_depth, down, stride,
            dilation_growth_rate=cfg.res_dilation_growth_rate, dilation_cycle=cfg.res_dilation_cycle,
            res_scale=bool(cfg.conv_res_scale), convolution_multiplier=cfg.res_convolution_multiplier,
            reverse_dilation=False)
        self.layer_norm = nn.LayerNorm(cfg.hidden_size)
        self.downsample = stride**down

    def forward(self, upper: Tensor) -> Tensor:
        x = self.embed_tokens(upper).permute(0, 2, 1)  # (B, W, L)
        x = self.upsampler(x).permute(0, 2, 1)  # (B, L * downsample, W)
        return self.layer_norm(x)


class LyricEncoder(ConditionalAutoregressive):
    """The separate lyric transformer of the 5b-style top prior; the decoder cross-attends to its states."""

    def __init__(self, enc_cfg: PriorConfig, decoder_width: int, n_lyric_tokens: int, lyric_vocab: int) -> None:
        super().__init__(enc_cfg, lyric_vocab, n_lyric_tokens, metadata_start=False, is_encoder=True)
        self.proj_in = nn.Linear(enc_cfg.hidden_size, decoder_width)
        self.final_layer_norm = nn.LayerNorm(decoder_width)
        self.lm_head = nn.Linear(decoder_width, lyric_vocab, bias=False)  # lyric loss only; unused for sampling

    def forward(self, lyrics: Tensor) -> Tensor:
        """lyrics (B, n_lyr) -> encoder states (B, n_lyr, decoder width)."""
        inputs = torch.cat([lyrics[:, :1], lyrics[:, :-1]], dim=1)  # position j is fed token j-1
        h = self.hidden(inputs, 0, None, None)
        return self.final_layer_norm(self.proj_in(h))
