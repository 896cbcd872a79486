"""The transformer stack and the conditional autoregressive model around it (the reference's
JukeboxLayerStack and JukeboxConditionalAutoregressive), with the same parameter names where the
checkpoint has them."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from jukebox_dist.model.attention import Attention, LayerCache, cache_slots
from jukebox_dist.model.config import AttentionKind, PriorConfig


def quick_gelu(x: Tensor) -> Tensor:
    return x * torch.sigmoid(1.702 * x)


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(quick_gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, cfg: PriorConfig, kind: AttentionKind) -> None:
        super().__init__()
        self.attn = Attention(cfg.hidden_size, cfg.attn_width, cfg.head_dim, kind, cfg.block_ctx, cfg.prime_len)
        self.layer_norm_0 = nn.LayerNorm(cfg.hidden_size)
        self.mlp = MLP(cfg.hidden_size, cfg.mlp_width)
        self.layer_norm_1 = nn.LayerNorm(cfg.hidden_size)
        self.res_scale = 1.0 / cfg.num_layers if cfg.attn_res_scale else 1.0

    def forward(self, x: Tensor, pos: int, cache: LayerCache | None, enc: Tensor | None) -> Tensor:
        a = self.attn(self.layer_norm_0(x), pos, cache, enc)
        h = x + a
        m = self.mlp(self.layer_norm_1(h))
        if self.res_scale == 1.0:
            return h + m  # the reference's x + a + m, which evaluates x + a first
        return x + self.res_scale * (a + m)


class Transformer(nn.Module):
    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        self.kinds = cfg.layer_kinds()
        self._attn_mods = nn.ModuleList(Block(cfg, kind) for kind in self.kinds)
        self.seq_len, self.block_ctx, self.prime_len = cfg.seq_len, cfg.block_ctx, cfg.prime_len

    def forward(self, x: Tensor, pos: int = 0, cache: list[LayerCache] | None = None,
                enc: Tensor | None = None) -> Tensor:
        for i, layer in enumerate(self._attn_mods):
            x = layer(x, pos, None if cache is None else cache[i], enc)
        return x

    def new_cache(self, batch: int, enc_len: int, device: torch.device, dtype: torch.dtype) -> list[LayerCache]:
        caches = []
        for layer in self._attn_mods:
            attn: Attention = layer.attn
            slots = cache_slots(attn.kind, self.seq_len, self.block_ctx, self.prime_len, enc_len)
            width = attn.k_proj.out_features  # per-rank width under tensor parallelism
            caches.append(LayerCache(torch.zeros(batch, slots, width, device=device, dtype=dtype),
                                     torch.zeros(batch, slots, width, device=device, dtype=dtype)))
        return caches


class PositionalEmbedding(nn.Module):
    def __init__(self, n_pos: int, width: int) -> None:
        super().__init__()
        self.pos_emb = nn.Parameter(torch.empty(n_pos, width))


class ConditionalAutoregressive(nn.Module):
    """Embeddings + transformer + output head over one sequence of positions.

    Position j is fed the token at j-1 (position 0 is fed the start embedding), plus its positional
    embedding, plus its conditioning; its output scores the token at j.
    """

    def __init__(self, cfg: PriorConfig, vocab: int, n_pos: int, *, metadata_start: bool, is_encoder: bool = False,
                 add_cond_after: bool = False, tie_output: bool = False) -> None:
        super().__init__()
        self.width = cfg.hidden_size
        self.embed_tokens = nn.Embedding(vocab, cfg.hidden_size)
        if not metadata_start:
            self.start_token = nn.Parameter(torch.empty(1, cfg.hidden_size))
        self.pos_emb = PositionalEmbedding(n_pos, cfg.hidden_size)
        self.transformer = Transformer(cfg)
        self.add_cond_after = add_cond_after
        self.tie_output = tie_output and not is_encoder
        if not is_encoder:
            self.fc_proj_out = nn.Linear(cfg.hidden_size, vocab, bias=False)
            if tie_output:
                self.fc_proj_out.weight = self.embed_tokens.weight

    def embed(self, inputs: Tensor, pos: int, start_emb: Tensor | None) -> Tensor:
        """inputs (B, C): the tokens fed at positions [pos, pos+C) (ignored at position 0)."""
        x = self.embed_tokens(inputs)  # (B, C, W)
        if pos == 0:
            start = start_emb if start_emb is not None else self.start_token.expand(x.shape[0], 1, -1)
            x = torch.cat([start.to(x.dtype), x[:, 1:]], dim=1)
        return x + self.pos_emb.pos_emb[pos:pos + inputs.shape[1]]

    def hidden(self, inputs: Tensor, pos: int, start_emb: Tensor | None, cond: Tensor | None,
               cache: list[LayerCache] | None = None, enc: Tensor | None = None) -> Tensor:
        """Final hidden states (B, C, W) for positions [pos, pos+C); `cond` covers the same positions."""
        x = self.embed(inputs, pos, start_emb)
        if cond is not None:
            x = x + cond
        x = self.transformer(x, pos, cache, enc)
        if self.add_cond_after and cond is not None:
            x = x + cond
        return x
