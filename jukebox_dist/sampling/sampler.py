"""Logits -> tokens: temperature (0 = greedy), top-k, top-p, and Gumbel-max noise from a counter-based hash.

The noise for token `position` of a sample at `level` depends only on (seed, level, position), never on the
batch, its order, its company or a retry: a sample is reproducible from its seed, and tensor-parallel ranks
draw the same tokens without talking to each other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from jukebox_dist.errors import InputError

MAX_TEMPERATURE = 2.0


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.0

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0 <= t <= MAX_TEMPERATURE:
            raise InputError(f"temperature {t!r} is out of range: expected a number in [0, {MAX_TEMPERATURE}] "
                             "(0 = greedy; the released defaults are 0.98 top, 0.99 upsamplers)")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 0:
            raise InputError(f"top_k {self.top_k!r} must be an integer >= 0 (0 = off)")
        if not isinstance(self.top_p, (int, float)) or not 0.0 <= self.top_p <= 1.0:
            raise InputError(f"top_p {self.top_p!r} must be in [0, 1] (0 = off)")


def filter_logits(logits: Tensor, top_k: int = 0, top_p: float = 0.0) -> Tensor:
    """Set to -inf what top-k / nucleus filtering removes (the reference's rules). Works in place on `logits`."""
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits.masked_fill_(logits < kth, -math.inf)
    if top_p > 0.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = torch.cumsum(torch.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()  # keep the token that crosses top_p
        remove[..., 0] = False
        logits.masked_fill_(torch.zeros_like(remove).scatter_(-1, order, remove), -math.inf)
    return logits


def sample(logits: Tensor, params: SamplingParams, seeds: Tensor, level: int, position: int | Tensor) -> Tensor:
    """logits (B, V) -> tokens (B,). `seeds` (B,) int64; `position` the token's index in its song at this level."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    x = filter_logits(logits.float() / params.temperature, params.top_k, params.top_p)
    u = uniform_noise(seeds, level, position, x.shape[-1])
    return (x - torch.log(-torch.log(u))).argmax(dim=-1)  # Gumbel-max: an exact draw from softmax(x)


# ---- counter-based noise: splitmix64 on int64 tensors (multiplication wraps; shifts made logical) -------------
def _i64(c: int) -> int:
    return c - (1 << 64) if c >= (1 << 63) else c


_GOLDEN, _M1, _M2 = _i64(0x9E3779B97F4A7C15), _i64(0xBF58476D1CE4E5B9), _i64(0x94D049BB133111EB)


def _shr(x: Tensor, s: int) -> Tensor:
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix(x: Tensor) -> Tensor:
    z = x + _GOLDEN
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def uniform_noise(seeds: Tensor, level: int, position: int | Tensor, vocab: int) -> Tensor:
    """(B, vocab) float32 uniforms in (0, 1), a pure function of (seed, level, position, vocab index)."""
    device = seeds.device
    key = _mix(seeds.to(torch.int64).view(-1, 1))
    key = _mix(key ^ int(level))
    pos = torch.as_tensor(position, dtype=torch.int64, device=device).view(-1, 1)
    key = _mix(key ^ pos)  # (B, 1)
    bits = _mix(key + torch.arange(vocab, dtype=torch.int64, device=device))  # (B, V)
    # 23 bits so that x + 0.5 is exact in float32 (24-bit mantissa): u is never 0 or 1, log(-log(u)) is finite
    return (_shr(bits, 41).float() + 0.5) * (1.0 / (1 << 23))
