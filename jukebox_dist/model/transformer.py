"""The transformer stack and the conditional autoregressive model around it (the reference's
JukeboxLayerStack and JukeboxConditionalAutoregressive), with the same parameter names where the
checkpoint has them."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from jukebox_dist.model.attention import Attention, LayerCache, cache_slots
from jukebox_dist.model.calls import layer_norm, linear
from jukebox_dist.model.config import AttentionKind, PriorConfig


def quick_gelu_(x: Tensor) -> Tensor:
    """x * sigmoid(1.702 x), written over x: one temporary instead of three per layer."""
    return x.mul_(torch.sigmoid_(1.702 * x))


class MLP(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, hidden)
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return linear(self.c_proj, quick_gelu_(linear(self.c_fc, x)))  # c_fc's output is ours to overwrite


class Block(nn.Module):
    def __init__(self, cfg: PriorConfig, kind: AttentionKind) -> None:
        super().__init__()
        self.attn = Attention(cfg.hidden_size, cfg.attn_width, cfg.head_dim, kind, cfg.block_ctx, cfg.prime_len)
        self.layer_norm_0 = nn.LayerNorm(cfg.hidden_size)
        self.mlp = MLP(cfg.hidden_size, cfg.mlp_width)
        self.layer_norm_1 = nn.LayerNorm(cfg.hidden_size)
        self.res_scale = 1.0 / cfg.num_layers if cfg.attn_res_scale else 1.0

    def forward(self, x: Tensor, pos: int, cache: LayerCache | None, enc: Tensor | None) -> Tensor:
        # Our own submodules are called through .forward: no hooks are ever set on them (see model/calls.py).
        return self._add_mlp(x, self.attn.forward(layer_norm(self.layer_norm_0, x), pos, cache, enc))

    def step(self, x: Tensor, pos: int, cache: LayerCache, enc: Tensor | None) -> Tensor:
        """One decoding position, x (B, W) -> (B, W)."""
        return self._add_mlp(x, self.attn.step(layer_norm(self.layer_norm_0, x), pos, cache, enc))

    def _add_mlp(self, x: Tensor, a: Tensor) -> Tensor:
        """The residual sums around the MLP; `a` is the attention's fresh output, ours to overwrite."""
        if self.res_scale != 1.0:
            m = self.mlp.forward(layer_norm(self.layer_norm_1, x + a))
            return x + self.res_scale * (a + m)
        # The reference's x + a + m (x + a first), summed in place into the fresh outputs: the same values
        # (addition commutes exactly), two fewer activations allocated per layer.
        h = a.add_(x)
        return self.mlp.forward(layer_norm(self.layer_norm_1, h)).add_(h)

    def fill_cache(self, x: Tensor, pos: int, cache: LayerCache, enc: Tensor | None) -> None:
        self.attn.fill_cache(layer_norm(self.layer_norm_0, x), pos, cache, enc)


class Transformer(nn.Module):
    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        self.kinds = cfg.layer_kinds()
        self._attn_mods = nn.ModuleList(Block(cfg, kind) for kind in self.kinds)
        self.seq_len, self.block_ctx, self.prime_len = cfg.seq_len, cfg.block_ctx, cfg.prime_len

    def forward(self, x: Tensor, pos: int = 0, cache: list[LayerCache] | None = None,
                enc: Tensor | None = None) -> Tensor:
        for i, layer in enumerate(self._attn_mods):
            x = layer.forward(x, pos, None if cache is None else cache[i], enc)
        return x

    def step(self, x: Tensor, pos: int, cache: list[LayerCache], enc: Tensor | None = None) -> Tensor:
        """One decoding position on the cache, x (B, W) -> (B, W): `forward` with one position, in 2-D."""
        for i, layer in enumerate(self._attn_mods):
            x = layer.step(x, pos, cache[i], enc)
        return x

    def prefill(self, x: Tensor, pos: int, cache: list[LayerCache], enc: Tensor | None = None) -> None:
        """Fill every layer's cache for positions [pos, pos+C) without computing outputs: the last layer only
        needs its keys and values (its attention output and MLP, about 1/num_layers of the work, are skipped)."""
        *body, last = self._attn_mods
        for i, layer in enumerate(body):
            x = layer.forward(x, pos, cache[i], enc)
        last.fill_cache(x, pos, cache[-1], enc)

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
        x = self._input(inputs, pos, start_emb, cond)
        x = self.transformer(x, pos, cache, enc)
        if self.add_cond_after and cond is not None:
            x = x + cond
        return x

    def step(self, inputs: Tensor, pos: int, start_emb: Tensor | None, cond: Tensor | None,
             cache: list[LayerCache], enc: Tensor | None = None) -> Tensor:
        """`hidden` for one position on the cache (inputs (B, 1)), as (B, W)."""
        x = self.transformer.step(self._input(inputs, pos, start_emb, cond)[:, 0], pos, cache, enc)
        if self.add_cond_after and cond is not None:
            x = x + cond[:, 0]
        return x

    def prefill(self, inputs: Tensor, pos: int, start_emb: Tensor | None, cond: Tensor | None,
                cache: list[LayerCache], enc: Tensor | None = None) -> None:
        """Fill the cache for positions [pos, pos+C), as `hidden` would, without computing the outputs."""
        self.transformer.prefill(self._input(inputs, pos, start_emb, cond), pos, cache, enc)

    def _input(self, inputs: Tensor, pos: int, start_emb: Tensor | None, cond: Tensor | None) -> Tensor:
        x = self.embed(inputs, pos, start_emb)
        return x if cond is None else x + cond
