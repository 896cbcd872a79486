"""Where linear weights live in memory, for speed: the values and shapes never change, only the strides.

nn.Linear keeps its weight as (out, in) and computes x @ weight.T. On CPU, MKL multiplies a batch of a few
rows (one decoding step of 16 songs) 1.5-1.9x faster when that transpose is contiguous in memory, i.e. when the
weight is stored input-major, and the results are bit-identical (bench/bench_sampling.py measures the effect;
tests/model/test_layout.py checks the identity). Checkpoints are saved contiguous whatever the layout.
"""
from __future__ import annotations

from torch import nn


def use_input_major_weights(module: nn.Module) -> int:
    """Store every CPU nn.Linear weight of `module` as the transpose of a contiguous (in, out) tensor. Weights
    tied to an embedding stay row-major (a lookup reads rows). Returns how many weights changed."""
    tied = {id(m.weight) for m in module.modules() if isinstance(m, nn.Embedding)}
    changed = 0
    for m in module.modules():
        w = m.weight if type(m) is nn.Linear else None
        if w is None or w.device.type != "cpu" or id(w) in tied or not w.is_contiguous() or w.dim() != 2:
            continue
        w.data = w.data.t().contiguous().t()
        changed += 1
    return changed


def use_contiguous_weights(module: nn.Module) -> None:
    """Undo `use_input_major_weights` (and any other strided parameter): for code that slices weights by their
    storage, such as DeepSpeed's tensor-parallel sharding."""
    for p in module.parameters():
        if not p.is_contiguous():
            p.data = p.data.contiguous()

