"""Logits -> tokens: temperature (0 = greedy), top-k, top-p, and one counter-based uniform per token.

A token is drawn by inverting the CDF of softmax(logits / temperature) at a uniform that depends only on
(seed, level, position), never on the batch, its order, its company or a retry: a sample is reproducible from its
seed, and tensor-parallel ranks draw the same tokens without talking to each other. One uniform per token (rather
than Gumbel noise over the whole vocabulary) keeps the sampler's cost negligible next to the transformer step.
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


def sample(logits: Tensor, params: SamplingParams, uniforms: Tensor) -> Tensor:
    """logits (B, V) -> tokens (B,). `uniforms` (B,): each row's `token_uniform` for this token (unused when greedy;
    a window computes them for all its tokens at once, see generate.sample_window)."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    x = filter_logits(logits.float() / params.temperature, params.top_k, params.top_p)
    return inverse_cdf(x, uniforms)


def inverse_cdf(x: Tensor, u: Tensor) -> Tensor:
    """An exact draw from softmax(x) per row (B, V): the first index whose cumulative probability exceeds u (B,).
    In float64, so that even the smallest probabilities keep their share of (0, 1); filtered (-inf) entries have
    probability 0 and are never drawn."""
    cdf = torch.softmax(x.double(), dim=-1).cumsum_(dim=-1)
    idx = torch.searchsorted(cdf, (u.to(cdf.device) * cdf[:, -1]).unsqueeze(-1), right=True)
    return idx.squeeze(-1).clamp_(max=x.shape[-1] - 1)  # rounding at the very top of the CDF


# ---- counter-based uniforms: splitmix64 on int64 tensors (multiplication wraps; shifts made logical) ----------
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


def token_uniform(seeds: Tensor, level: int, position: int | Tensor) -> Tensor:
    """Float64 uniforms in (0, 1), a pure function of (seed, level, position), elementwise over `seeds` and
    `position` broadcast together ((B,) and an int -> (B,); (B, 1) and (B, n) -> (B, n)): 53 random bits + 1/2
    ulp, so u is never 0 or 1."""
    key = _mix(seeds.to(torch.int64))
    key = _mix(key ^ int(level))
    pos = torch.as_tensor(position, dtype=torch.int64, device=seeds.device)
    bits = _mix(_mix(key ^ pos))
    return (_shr(bits, 11).double() + 0.5) * (1.0 / (1 << 53))
