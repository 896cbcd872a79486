"""The codes file: what `jukebox-dist sample` writes and what continue / upsample read back.

One `.npz` (numpy's zip of `.npy` arrays, never pickles) holding `top`, `middle`, `bottom` int16 arrays of shape
(n_samples, tokens) in prior order (empty (n, 0) for levels not sampled) and `meta`, a JSON string. The codes only
mean something to the VQ-VAE that made them, so `meta` carries that VQ-VAE's fingerprint and loading checks it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import zipfile
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch

from jukebox_dist.errors import InputError
from jukebox_dist.output.audio import atomic_write

__all__ = ["FORMAT", "FORMAT_VERSION", "LEVEL_NAMES", "check_codes_for", "load_codes", "save_codes",
           "vqvae_fingerprint"]

log = logging.getLogger(__name__)

FORMAT = "jukebox-dist-codes"
FORMAT_VERSION = 1
LEVEL_NAMES = ("top", "middle", "bottom")  # prior order, as everywhere in the public API
_CORE_META = ("format", "version", "sample_rate", "total_length", "hop_lengths", "nb_discrete_codes",
              "vqvae_fingerprint", "model")
# Fields of VQVAEConfig that do not change what a code means: hop_fraction only sets the priors' window hops
# (it lives in the VQ-VAE config for the reference's sake), so it must not make codes incompatible.
_NOT_MEANING = ("hop_fraction",)


def vqvae_fingerprint(model: Any) -> str:
    """16 hex digits of sha256 over the VQ-VAE config and its codebooks: equal exactly when two models give codes
    the same meaning (1b and 5b share theirs; a retrained or differently seeded codebook does not)."""
    config = {k: v for k, v in dataclasses.asdict(model.config.vqvae).items() if k not in _NOT_MEANING}
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for level, block in enumerate(model.vqvae.bottleneck.level_blocks):
        codebook = block.codebook.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"codebook{level}:{tuple(codebook.shape)}".encode())
        digest.update(codebook.numpy().tobytes())
    return digest.hexdigest()[:16]


def model_hops(model: Any) -> tuple[int, ...]:
    """Audio samples per token in prior order (128, 32, 8 for the released models)."""
    return tuple(model.config.raw_to_tokens(p) for p in range(len(model.priors)))


def save_codes(path: str | Path, codes: Sequence[torch.Tensor], *, model: Any, total_length: int,
               extra: Mapping[str, Any] | None = None) -> Path:
    """Write `codes` (prior order [top, middle, bottom], each (n, tokens), empty where not sampled) and their
    metadata to exactly `path`, which must end in `.npz`. `extra` (seeds, artist, genres, lyrics, sampling
    settings, ...) is stored in `meta` beside the core fields and must be JSON-serialisable."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError(f"{path}: a codes file must end in .npz")
    hops = model_hops(model)
    _check_list(codes, hops, str(path))
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(_CORE_META))
    if clash:
        raise InputError(f"{path}: extra metadata may not set {clash}: they are written from the model")
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "sample_rate": model.config.sampling_rate,
            "total_length": int(total_length), "hop_lengths": list(hops),
            "nb_discrete_codes": model.config.vqvae.nb_discrete_codes,
            "vqvae_fingerprint": vqvae_fingerprint(model), "model": model.config.name, **extra}
    try:
        meta_json = json.dumps(meta, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: metadata is not JSON-serialisable ({exc})") from None
    nb = model.config.vqvae.nb_discrete_codes
    assert nb <= np.iinfo(np.int16).max + 1, "int16 holds codes only for codebooks of up to 32768 entries"
    wide = {name: c.detach().to("cpu", torch.int64).numpy() for name, c in zip(LEVEL_NAMES, codes)}
    check_codes_for("continue", codes, total_length, hops, source=str(path))
    _check_values(wide, nb, str(path))  # before the int16 cast, which would wrap large values silently
    arrays = {name: a.astype(np.int16) for name, a in wide.items()}
    # Writing through a file object: np.savez would append ".npz" to a name, but not to an open file.
    atomic_write(path, lambda f: np.savez(f, meta=np.array(meta_json), **arrays))
    log.info("wrote %s: %d samples, tokens %s", path, len(codes[0]), [a.shape[1] for a in arrays.values()])
    return path


def load_codes(path: str | Path, model: Any) -> tuple[list[torch.Tensor], dict[str, Any]]:
    """Codes (prior order, int64 (n, tokens)) and meta from a file written by `save_codes`, checked against
    `model`: the same VQ-VAE, token counts that fit `meta["total_length"]`, values inside the codebook."""
    path = Path(path)
    src = str(path)
    if not path.is_file():
        what = "no such file" if not path.exists() else "not a file"
        raise InputError(f"{path}: {what}; expected a codes .npz written by `jukebox-dist sample`")
    # np.load reads any non-zip, non-.npy file as a pickle and would blame pickling; check the zip magic first.
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not an .npz file (not a zip archive); expected a codes file written by "
                         "`jukebox-dist sample`")
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("meta", *LEVEL_NAMES) if k not in npz.files]
            if missing:
                raise InputError(f"{path}: missing arrays {missing}; a codes file holds meta, "
                                 f"{', '.join(LEVEL_NAMES)} (it has {sorted(npz.files)})")
            for key in ("meta", *LEVEL_NAMES):
                arrays[key] = npz[key]
                if not isinstance(arrays[key], np.ndarray):  # NpzFile hands back raw bytes for a non-.npy member
                    raise InputError(f"{path}: corrupt .npz ({key} is not a numpy array)")
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(f"{path}: contains pickled Python objects, which are never loaded (they can run "
                             "code); expected plain integer arrays") from None
        raise InputError(f"{path}: corrupt .npz ({exc})") from None
    except Exception as exc:  # a damaged member can fail in zipfile, zlib or numpy's header parser, in many ways
        raise InputError(f"{path}: corrupt .npz ({type(exc).__name__}: {exc})") from None

    meta = _read_meta(arrays.pop("meta"), src)
    for name, a in arrays.items():
        if a.ndim != 2:
            raise InputError(f"{path}: {name} has shape {a.shape}; expected (n_samples, tokens)")
        if a.dtype.kind not in "iu":
            raise InputError(f"{path}: {name} has dtype {a.dtype}; expected integer codes (int16)")
    batches = {name: a.shape[0] for name, a in arrays.items()}
    if len(set(batches.values())) != 1:
        raise InputError(f"{path}: levels hold different numbers of samples {batches}; expected the same for all")
    if not next(iter(batches.values())):
        raise InputError(f"{path}: holds 0 samples")

    ours = vqvae_fingerprint(model)
    if meta["vqvae_fingerprint"] != ours:
        raise InputError(f"{path}: these codes were made with a different VQ-VAE (fingerprint "
                         f"{meta['vqvae_fingerprint']}), this model's is {ours}; load the model that made them "
                         f"(meta says {meta.get('model')!r})")
    hops = model_hops(model)
    if list(meta["hop_lengths"]) != list(hops) or meta["sample_rate"] != model.config.sampling_rate:
        raise InputError(f"{path}: codes for {meta['sample_rate']} Hz with hops {meta['hop_lengths']}; this model "
                         f"runs at {model.config.sampling_rate} Hz with hops {list(hops)}")
    codes = [torch.from_numpy(arrays[name].astype(np.int64)) for name in LEVEL_NAMES]
    check_codes_for("continue", codes, meta["total_length"], hops, source=src)
    _check_values(arrays, model.config.vqvae.nb_discrete_codes, src)
    log.info("read %s: %d samples, tokens %s", path, codes[0].shape[0], [c.shape[1] for c in codes])
    return codes, meta


def check_codes_for(mode: str | Enum, codes: Sequence[torch.Tensor], total_length: int, hops: Sequence[int], *,
                    source: str = "codes") -> None:
    """Token counts that a mode can use for a song of `total_length` samples. Any level may be empty or partial
    (a continue extends it), but never longer than `total_length // hop`; `upsample` keeps the top level as it
    is, so that one must be complete."""
    mode = str(getattr(mode, "value", mode))
    if len(codes) != len(hops):
        raise InputError(f"{source}: {len(codes)} levels of codes; expected {len(hops)} ({', '.join(LEVEL_NAMES)})")
    if isinstance(total_length, bool) or not isinstance(total_length, int) or total_length <= 0:
        raise InputError(f"{source}: total_length={total_length!r}; expected a positive number of audio samples")
    for name, c, hop in zip(LEVEL_NAMES, codes, hops):
        need = total_length // hop
        if c.shape[1] > need:
            raise InputError(f"{source}: the {name} level has {c.shape[1]} tokens, more than the {need} of a song "
                             f"of {total_length} samples (hop {hop})")
    if mode == "upsample" and codes[0].shape[1] != total_length // hops[0]:
        raise InputError(f"{source}: upsample needs complete top-level codes: it has {codes[0].shape[1]} tokens, "
                         f"expected {total_length // hops[0]} for {total_length} samples; continue it first")


def _check_list(codes: Sequence[torch.Tensor], hops: Sequence[int], source: str) -> None:
    if len(codes) != len(hops):
        raise InputError(f"{source}: {len(codes)} levels of codes; expected {len(hops)} ({', '.join(LEVEL_NAMES)})")
    for name, c in zip(LEVEL_NAMES, codes):
        if c.dim() != 2 or c.dtype.is_floating_point or c.dtype == torch.bool:
            raise InputError(f"{source}: {name} codes are {c.dtype} {tuple(c.shape)}; expected integer (n, tokens)")
    batches = {name: c.shape[0] for name, c in zip(LEVEL_NAMES, codes)}
    if len(set(batches.values())) != 1 or not codes[0].shape[0]:
        raise InputError(f"{source}: levels hold different numbers of samples {batches}; expected the same n >= 1")


def _check_values(arrays: Mapping[str, np.ndarray], nb_codes: int, source: str) -> None:
    for name, a in arrays.items():
        if a.size and (a.min() < 0 or a.max() >= nb_codes):
            raise InputError(f"{source}: {name} codes range over [{a.min()}, {a.max()}]; expected values in "
                             f"[0, {nb_codes}) for this VQ-VAE")


def _read_meta(raw: np.ndarray, source: str) -> dict[str, Any]:
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise InputError(f"{source}: meta is {raw.dtype} {raw.shape}; expected a JSON string")
    try:
        meta = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: meta is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{source}: meta does not describe a {FORMAT} file")
    if meta.get("version") != FORMAT_VERSION:
        raise InputError(f"{source}: codes format version {meta.get('version')!r}; this jukebox-dist reads "
                         f"version {FORMAT_VERSION}")
    missing = [k for k in _CORE_META if k not in meta]
    if missing:
        raise InputError(f"{source}: meta lacks {missing}")
    return meta


def _json_default(value: Any) -> Any:
    # Seeds and settings often arrive as numpy scalars, tensors or paths; store them as plain JSON.
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.tolist()
    if isinstance(value, (Path, Enum)):
        return str(getattr(value, "value", value))
    raise TypeError(f"{type(value).__name__} {value!r} is not JSON-serialisable")
