"""Calling plain layers without nn.Module's per-call machinery.

A decoding step of a 12-layer prior makes about a hundred layer calls on tensors of a few rows; there, what
`nn.Module.__call__` does around `forward` (hook bookkeeping, Python frames) costs about as much as a small
matmul. These helpers compute exactly what the layer's forward computes. Any other module, such as DeepSpeed's
tensor-parallel replacements for nn.Linear (which all-reduce inside their forward), is called as usual.
"""
from __future__ import annotations

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
