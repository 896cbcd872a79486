"""Attention with every pattern the released priors use, over a static, position-indexed KV cache.

Patterns (bc = block_ctx, t = query position, k = key position):
  BLOCK            k in t's block, k <= t
  TRANSPOSE_BLOCK  k == t (mod bc), k <= t
  PREV_BLOCK       k in the block before t's (all of it); block 0 sees nothing and outputs zeros
  DENSE            k <= t
  PRIME            k <= t and k < prime_len (the lyric prefix of the merged top prior)
  CROSS            every encoder state (the separate lyric encoder of the 5b top prior)

The cache keeps only what a pattern can read again: BLOCK a ring of bc slots, PREV_BLOCK a ring of
2*bc, PRIME the first prime_len positions, DENSE and TRANSPOSE_BLOCK every position. A chunk of new
positions is attended against (what the cache holds before the chunk) + (the chunk's own keys), then
written, so one code path serves teacher forcing (no cache), chunked prefill and one-token decoding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jukebox_dist.model.calls import linear
from jukebox_dist.model.config import AttentionKind


@dataclass
class LayerCache:
    k: Tensor  # (B, slots, A)
    v: Tensor  # (B, slots, A)
    filled: bool = False  # cross-attention: encoder keys computed


def cache_slots(kind: AttentionKind, seq_len: int, block_ctx: int, prime_len: int, enc_len: int) -> int:
    return {
        AttentionKind.BLOCK: block_ctx,
        AttentionKind.PREV_BLOCK: 2 * block_ctx,
        AttentionKind.TRANSPOSE_BLOCK: seq_len,
        AttentionKind.DENSE: seq_len,
        AttentionKind.PRIME: min(prime_len, seq_len),
        AttentionKind.CROSS: enc_len,
    }[kind]


class Attention(nn.Module):
    """Separate q, k, v projections (nn.Linear, head-aligned) so tensor parallelism can split heads;
    the head count is inferred from the projection's output width, never stored."""

    def __init__(self, width: int, attn_width: int, head_dim: int, kind: AttentionKind,
                 block_ctx: int, prime_len: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(width, attn_width)
        self.k_proj = nn.Linear(width, attn_width)
        self.v_proj = nn.Linear(width, attn_width)
        self.c_proj = nn.Linear(attn_width, width)
        self.head_dim = head_dim
        self.kind = kind
        self.block_ctx = block_ctx
        self.prime_len = prime_len

    def forward(self, x: Tensor, pos: int, cache: LayerCache | None = None,
                encoder_states: Tensor | None = None) -> Tensor:
        # x: (B, C, W) for positions [pos, pos + C)
        if cache is not None and x.shape[1] == 1:
            return self.step(x[:, 0], pos, cache, encoder_states).unsqueeze(1)
        q = linear(self.q_proj, x)  # (B, C, A)
        if self.kind is AttentionKind.CROSS:
            k, v, mask = self._cross_kv(cache, encoder_states)
        else:
            k_new, v_new = linear(self.k_proj, x), linear(self.v_proj, x)
            k, v, mask = self._self_kv(k_new, v_new, pos, cache)
        if k is None:  # previous-block attention in block 0: the reference attends to zeros -> zeros
            out = torch.zeros_like(q)
        else:
            out = self._attend(q, k, v, mask)
            if self.kind is AttentionKind.PREV_BLOCK and pos < self.block_ctx:
                # Queries in block 0 have no previous block: their output is exactly zero.
                n0 = min(self.block_ctx - pos, x.shape[1])
                out[:, :n0] = 0
        return linear(self.c_proj, out)

    def step(self, x: Tensor, pos: int, cache: LayerCache, encoder_states: Tensor | None = None) -> Tensor:
        """One decoding position, x (B, W) -> (B, W): write its keys and values, attend to exactly the keys its
        pattern reads (views of the cache, no mask)."""
        q = linear(self.q_proj, x)
        if self.kind is AttentionKind.CROSS:
            k, v, _ = self._cross_kv(cache, encoder_states)
        else:
            self._write_slot(x, pos, cache)
            k, v = self._slot_keys(pos, cache)
        if k is None:  # previous-block attention in block 0: the reference attends to zeros -> zeros
            out = torch.zeros_like(q)
        else:
            b, a = q.shape
            h, d = a // self.head_dim, self.head_dim
            # The fewest view ops that make (B, H, 1, D) and (B, H, K, D): a step runs this in every layer.
            out = F.scaled_dot_product_attention(q.view(b, h, 1, d), k.view(b, -1, h, d).transpose(1, 2),
                                                 v.view(b, -1, h, d).transpose(1, 2)).view(b, a)
        return linear(self.c_proj, out)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
        b, c, a = q.shape
        h = a // self.head_dim
        qh = q.view(b, c, h, self.head_dim).transpose(1, 2)  # (B, H, C, D)
        kh = k.reshape(b, k.shape[1], h, self.head_dim).transpose(1, 2)  # (B, H, K, D)
        vh = v.reshape(b, v.shape[1], h, self.head_dim).transpose(1, 2)
        # In bf16/fp16 SDPA still accumulates the scores and the softmax in fp32, as the reference's softmax does;
        # upcasting q, k, v first would copy the whole cached K/V window to fp32 at every decoding step.
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
        return out.transpose(1, 2).reshape(b, c, a)

    def _cross_kv(self, cache: LayerCache | None, enc: Tensor | None) -> tuple[Tensor, Tensor, None]:
        if cache is not None and cache.filled:
            return cache.k, cache.v, None
        if enc is None:
            raise ValueError("cross-attention layer needs the lyric encoder states")
        k, v = linear(self.k_proj, enc), linear(self.v_proj, enc)
        if cache is not None:
            cache.k.copy_(k)
            cache.v.copy_(v)
            cache.filled = True
        return k, v, None

    def _self_kv(self, k_new: Tensor, v_new: Tensor, pos: int,
                 cache: LayerCache | None) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        if cache is None and pos != 0:
            raise ValueError("a chunk that does not start at position 0 needs a cache")
        c = k_new.shape[1]
        end = pos + c
        bc = self.block_ctx
        kind = self.kind
        if kind in (AttentionKind.DENSE, AttentionKind.TRANSPOSE_BLOCK, AttentionKind.PRIME):
            key_end = min(end, self.prime_len) if kind is AttentionKind.PRIME else end
            if cache is None:
                k, v = k_new[:, :key_end], v_new[:, :key_end]
            else:
                self._store(k_new, v_new, pos, cache)
                k, v = cache.k[:, :key_end], cache.v[:, :key_end]
            return k, v, _mask(kind, pos, end, 0, key_end, bc, k.device)
        # BLOCK and PREV_BLOCK: keys from the ring (positions before the chunk) then the chunk's own.
        first_block = pos - pos % bc
        key_start = first_block if kind is AttentionKind.BLOCK else max(0, first_block - bc)
        k, v = k_new, v_new
        if cache is not None:
            slots = cache.k.shape[1]
            if key_start < pos:
                old = torch.arange(key_start, pos, device=k_new.device) % slots
                k = torch.cat([cache.k[:, old], k_new], dim=1)
                v = torch.cat([cache.v[:, old], v_new], dim=1)
            self._store(k_new, v_new, pos, cache)  # after reading: the ring may overwrite what was read
        if kind is AttentionKind.PREV_BLOCK and end <= bc:
            return None, None, None
        return k, v, _mask(kind, pos, end, key_start, end, bc, k.device)

    def fill_cache(self, x: Tensor, pos: int, cache: LayerCache, encoder_states: Tensor | None = None) -> None:
        """Only what later positions read: the keys and values of positions [pos, pos + C), no output. A prefill
        needs nothing else from the last layer, whose outputs would only score the tokens it already has."""
        if self.kind is AttentionKind.CROSS:
            self._cross_kv(cache, encoder_states)
        else:
            self._store(linear(self.k_proj, x), linear(self.v_proj, x), pos, cache)

    def _store(self, k_new: Tensor, v_new: Tensor, pos: int, cache: LayerCache) -> None:
        """Write a chunk's keys and values into the slots its pattern keeps."""
        c, slots = k_new.shape[1], cache.k.shape[1]
        if self.kind in (AttentionKind.BLOCK, AttentionKind.PREV_BLOCK):
            keep = min(c, slots)  # a ring: only the last `slots` positions can be read again
            new = torch.arange(pos + c - keep, pos + c, device=k_new.device) % slots
            cache.k[:, new] = k_new[:, c - keep:]
            cache.v[:, new] = v_new[:, c - keep:]
        else:
            n = max(0, min(pos + c, slots) - pos)
            cache.k[:, pos:pos + n] = k_new[:, :n]
            cache.v[:, pos:pos + n] = v_new[:, :n]

    def _write_slot(self, x: Tensor, pos: int, cache: LayerCache) -> None:
        """One position's keys and values, computed straight into their cache slot when the projection is a
        plain nn.Linear (no temporary and no copy: this runs twice per layer and decoding step)."""
        slots = cache.k.shape[1]
        if self.kind not in (AttentionKind.BLOCK, AttentionKind.PREV_BLOCK) and pos >= slots:
            return  # PRIME keeps only the first prime_len positions
        for proj, store in ((self.k_proj, cache.k), (self.v_proj, cache.v)):
            if type(proj) is nn.Linear and proj.bias is not None:
                torch.addmm(proj.bias, x, proj.weight.t(), out=store[:, pos % slots])
            else:
                store[:, pos % slots] = linear(proj, x)

    def _slot_keys(self, pos: int, cache: LayerCache) -> tuple[Tensor | None, Tensor | None]:
        """Views of exactly the cached keys and values position `pos` reads (None: none, outputs are zero)."""
        bc, slots, kind = self.block_ctx, cache.k.shape[1], self.kind
        if kind is AttentionKind.BLOCK:  # slots 0..pos%bc hold this block so far
            return cache.k[:, :pos % bc + 1], cache.v[:, :pos % bc + 1]
        if kind is AttentionKind.PREV_BLOCK:
            block = pos // bc
            if block == 0:
                return None, None
            base = (block - 1) % 2 * bc  # the previous block's half of the 2*bc ring
            return cache.k[:, base:base + bc], cache.v[:, base:base + bc]
        if kind is AttentionKind.TRANSPOSE_BLOCK:
            return cache.k[:, pos % bc:pos + 1:bc], cache.v[:, pos % bc:pos + 1:bc]
        n = min(pos + 1, slots)  # DENSE: slots == seq_len; PRIME: capped at prime_len
        return cache.k[:, :n], cache.v[:, :n]


def _mask(kind: AttentionKind, q_start: int, q_end: int, k_start: int, k_end: int, bc: int,
          device: torch.device) -> Tensor:
    """Boolean (C, K) mask: True where query position t may attend to key position k."""
    t = torch.arange(q_start, q_end, device=device).unsqueeze(1)  # (C, 1)
    k = torch.arange(k_start, k_end, device=device).unsqueeze(0)  # (1, K)
    if kind is AttentionKind.BLOCK:
        return (k <= t) & (k // bc == t // bc)
    if kind is AttentionKind.TRANSPOSE_BLOCK:
        return (k <= t) & (k % bc == t % bc)
    if kind is AttentionKind.PREV_BLOCK:
        # Rows of block-0 queries would be empty (NaN in softmax): let them see everything and zero them later.
        return (k // bc == t // bc - 1) | (t < bc)
    return k <= t  # DENSE and PRIME (PRIME's keys are already cut at prime_len)
