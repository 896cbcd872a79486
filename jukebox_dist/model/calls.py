"""Calling layers: plain ones without nn.Module's per-call machinery, batch-size-sensitive ones row by row.

A decoding step of a 12-layer prior makes about a hundred layer calls on tensors of a few rows; there, what
`nn.Module.__call__` does around `forward` (hook bookkeeping, Python frames) costs about as much as a small
matmul. These helpers compute exactly what the layer's forward computes. Any other module, such as DeepSpeed's
tensor-parallel replacements for nn.Linear (which all-reduce inside their forward), is called as usual.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def linear(m: nn.Module, x: Tensor) -> Tensor:
    if type(m) is nn.Linear:
        return F.linear(x, m.weight, m.bias)
    return m(x)


def layer_norm(m: nn.Module, x: Tensor) -> Tensor:
    if type(m) is nn.LayerNorm:
        return F.layer_norm(x, m.normalized_shape, m.weight, m.bias, m.eps)
    return m(x)


def rowwise(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """fn over a batch, one row at a time. oneDNN's convolutions give other last bits for other batch sizes, and a
    song's numbers must not depend on the songs it is batched with (the upper conditioner also got faster)."""
    return torch.cat([fn(row) for row in x.split(1)])
