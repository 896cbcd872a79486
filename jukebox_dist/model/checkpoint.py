"""Weights in the Hugging Face layout: read them (safetensors, pytorch_model.bin, sharded with an index),
check them against the model, and map the reference's tensors onto ours.

The reference stores GPT-2-style Conv1D weights as (in, out) and fuses q, k, v into `c_attn` (cross-attention:
q in `c_attn`, k and v in `c_enc_kv`); we use nn.Linear (out, in) with separate q, k, v so that tensor
parallelism can split heads. Everything else has the same name and shape.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from jukebox_dist.errors import CheckpointError
from jukebox_dist.model.attention import Attention
from jukebox_dist.model.config import AttentionKind

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
INDEX_FILES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# Our nn.Linear layers that are Conv1D (in, out) in the reference checkpoint.
CONV1D_SUFFIXES = (".mlp.c_fc.weight", ".mlp.c_proj.weight", ".attn.c_proj.weight", ".encoder.proj_in.weight")
_LIST_LIMIT = 12


Keep = Callable[[str], bool]


def read_state_dict(folder: Path, keep: Keep | None = None) -> dict[str, Tensor]:
    """The tensors of the checkpoint in `folder` (those `keep` accepts), whichever HF layout it uses."""
    keep = keep or (lambda key: True)
    for name in INDEX_FILES:
        index = folder / name
        if index.is_file():
            return _read_sharded(index, keep)
    for name in WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            return _read_file(path, keep)
    raise CheckpointError(f"{folder}: no weights found; expected one of {', '.join(WEIGHT_FILES + INDEX_FILES)}")


def weights_fingerprint(folder: Path, *, samples: int = 16, chunk: int = 1 << 20) -> str:
    """A short id of the model in `folder`, for provenance: sha256 over config.json and, for each weights file,
    its name, size and `samples` evenly spaced chunks of its content (the first holds a safetensors header).
    Reading a few MiB instead of gigabytes keeps it instant; any retrain, re-save or re-shard changes it."""
    h = hashlib.sha256()
    try:
        h.update((folder / "config.json").read_bytes())
        files = sorted(p for p in folder.iterdir() if p.is_file() and (
            p.name in WEIGHT_FILES + INDEX_FILES or p.suffix in (".safetensors", ".bin")))
        for path in files:
            size = path.stat().st_size
            h.update(f"{path.name}:{size}".encode())
            with path.open("rb") as f:
                for i in range(samples):
                    f.seek(size * i // samples)
                    h.update(f.read(chunk))
    except OSError as exc:
        raise CheckpointError(f"{folder}: cannot read the model files to fingerprint them ({exc})") from None
    return h.hexdigest()[:16]


def _read_sharded(index: Path, keep: Keep) -> dict[str, Tensor]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict):
            raise TypeError("weight_map is not an object")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index}: not a valid checkpoint index (expected JSON with a 'weight_map' "
                              f"object of tensor name -> shard file): {exc}") from None
    state: dict[str, Tensor] = {}
    weight_map = {k: v for k, v in weight_map.items() if keep(k)}
    for shard in sorted(set(weight_map.values())):  # only the shards that hold wanted tensors
        path = index.parent / shard
        if Path(shard).is_absolute() or ".." in Path(shard).parts:
            raise CheckpointError(f"{index}: shard path {shard!r} must be a file name inside {index.parent}")
        if not path.is_file():
            raise CheckpointError(f"{path}: shard listed in {index.name} is missing")
        state.update(_read_file(path, keep))
    missing = sorted(set(weight_map) - set(state))
    if missing:
        raise CheckpointError(f"{index}: {len(missing)} tensors listed but not found in their shards: "
                              f"{_short(missing)}")
    return state


def _read_file(path: Path, keep: Keep) -> dict[str, Tensor]:
    try:
        if path.name.endswith(".safetensors"):
            from safetensors import safe_open
            with safe_open(str(path), framework="pt") as f:  # reads only the tensors asked for
                return {k: f.get_tensor(k) for k in f.keys() if keep(k)}
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        state = {k: v for k, v in state.items() if keep(k)} if isinstance(state, dict) else state
    except Exception as exc:  # safetensors, pickle and zip errors differ by version; the file is what matters
        raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {exc}); "
                              "the file is missing, truncated or not a checkpoint") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a flat mapping of tensor names to tensors")
    return state


def _attention_kinds(model: nn.Module) -> dict[str, AttentionKind]:
    return {name: m.kind for name, m in model.named_modules() if isinstance(m, Attention)}


def to_reference(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Our state dict -> the reference's keys and layouts (works on meta tensors, for shape checks)."""
    out = dict(state)
    for prefix, kind in _attention_kinds(model).items():
        p = prefix + "."
        q, k, v = (out.pop(f"{p}{n}_proj.weight") for n in "qkv")
        qb, kb, vb = (out.pop(f"{p}{n}_proj.bias") for n in "qkv")
        if kind is AttentionKind.CROSS:
            out[p + "c_attn.weight"], out[p + "c_attn.bias"] = q.t(), qb
            out[p + "c_enc_kv.weight"] = torch.cat([k.t(), v.t()], dim=1)
            out[p + "c_enc_kv.bias"] = torch.cat([kb, vb])
        else:
            out[p + "c_attn.weight"] = torch.cat([q.t(), k.t(), v.t()], dim=1)
            out[p + "c_attn.bias"] = torch.cat([qb, kb, vb])
    for key in out:
        if key.endswith(CONV1D_SUFFIXES):
            out[key] = out[key].t()
    return out


def from_reference(ref: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """The reference's tensors -> ours (inverse of `to_reference`)."""
    out = {k: (v.t() if k.endswith(CONV1D_SUFFIXES) else v) for k, v in ref.items()}
    for prefix, kind in _attention_kinds(model).items():
        p = prefix + "."
        if p + "c_attn.weight" not in out:  # a part that was not loaded (see load_reference's `parts`)
            continue
        if kind is AttentionKind.CROSS:
            q, qb = out.pop(p + "c_attn.weight").t(), out.pop(p + "c_attn.bias")
            k, v = out.pop(p + "c_enc_kv.weight").t().chunk(2, dim=0)
            kb, vb = out.pop(p + "c_enc_kv.bias").chunk(2)
        else:
            q, k, v = out.pop(p + "c_attn.weight").t().chunk(3, dim=0)
            qb, kb, vb = out.pop(p + "c_attn.bias").chunk(3)
        for n, w, b in (("q", q, qb), ("k", k, kb), ("v", v, vb)):
            out[f"{p}{n}_proj.weight"] = w.contiguous()
            out[f"{p}{n}_proj.bias"] = b.contiguous()
    return out


def tied_keys(model: nn.Module) -> set[str]:
    """Output heads that share the token embedding (priors with merged_decoder=false): a checkpoint may omit them."""
    tied = set()
    for name, m in model.named_modules():
        if getattr(m, "tie_output", False):
            tied.add(f"{name}.fc_proj_out.weight")
    return tied


def check_layout(ref: dict[str, Tensor], model: nn.Module, source: str, keep: Keep | None = None) -> None:
    """One error naming every missing, unexpected and mis-shaped tensor (among those `keep` accepts)."""
    expected = {k: tuple(v.shape) for k, v in to_reference(model.state_dict(), model).items()
                if keep is None or keep(k)}
    optional = tied_keys(model)
    missing = sorted(set(expected) - set(ref) - optional)
    unexpected = sorted(set(ref) - set(expected))
    misshaped = sorted(f"{k}: checkpoint {tuple(ref[k].shape)}, model {expected[k]}"
                       for k in set(ref) & set(expected) if tuple(ref[k].shape) != expected[k])
    if missing or unexpected or misshaped:
        parts = [f"{source}: the weights do not fit the model described by config.json"]
        for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
            if items:
                parts.append(f"  {len(items)} {label}: {_short(items)}")
        raise CheckpointError("\n".join(parts))


def load_reference(model: nn.Module, folder: Path, parts: Sequence[str] | None = None) -> None:
    """Read the HF-layout weights in `folder` into `model` (which may live on the meta device). With `parts`
    (module names such as "vqvae", "priors.1"), only those are read: an actor that hosts one prior does not
    read the other priors' gigabytes."""
    keep = None if parts is None else (lambda key: any(key.startswith(p + ".") for p in parts))
    ref = read_state_dict(folder, keep)
    check_layout(ref, model, str(folder), keep)
    tied = {k for k in tied_keys(model) if keep is None or keep(k)}
    for key in tied:
        ref.pop(key, None)
    ours = from_reference(ref, model)
    for key in tied:  # same tensor under both names; re-tied below
        ours[key] = ours[key.replace("fc_proj_out", "embed_tokens")]
    model.load_state_dict(ours, strict=parts is None, assign=True)
    tie_weights(model)
    log.info("loaded %d tensors from %s", len(ref), folder)


def tie_weights(model: nn.Module) -> None:
    for m in model.modules():
        if getattr(m, "tie_output", False):
            m.fc_proj_out.weight = m.embed_tokens.weight


def _short(items: list[str]) -> str:
    more = f" ... and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else ""
    return ", ".join(items[:_LIST_LIMIT]) + more
