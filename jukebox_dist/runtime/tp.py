"""Tensor parallelism for one prior (the 5b top prior): DeepSpeed AutoTP over a torch.distributed group.

Every rank of the group builds (or loads) the same prior, joins the group with `init_group`, and calls
`shard_prior`, which hands the prior to `deepspeed.init_inference` with an injection policy for our transformer
`Block`: per block, q_proj / k_proj / v_proj and mlp.c_fc become column-parallel (each rank keeps 1/N of the
heads, split on head boundaries), attn.c_proj and mlp.c_proj row-parallel followed by an all-reduce. Everything
else (embeddings, conditioners, layer norms, the output head) stays whole on every rank, so every rank computes
the same logits and, with the counter-based sampler, draws the same tokens without talking to the others.

The separate lyric encoder of the 5b top prior is made of the same `Block`s; it is split with the decoder when
N divides its heads too (4 heads in 5b: tp 2 or 4), and kept whole on every rank otherwise (tp 8).

On CPU (tests, laptops) DeepSpeed runs with DS_ACCELERATOR=cpu and gloo; its row-parallel all-reduce is a
shared-memory kernel that it JIT-compiles with g++ on first use (about a minute; cached in TORCH_EXTENSIONS_DIR)
and that only works with every rank on one machine: `init_group` checks that and sets LOCAL_SIZE for it.
"""
from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from jukebox_dist.errors import ConfigError
from jukebox_dist.model.config import PriorConfig
from jukebox_dist.model.layout import use_contiguous_weights
from jukebox_dist.model.prior import Prior
from jukebox_dist.model.transformer import Block

log = logging.getLogger(__name__)

# Linear layers (by their name inside a Block) whose output is a partial sum that needs an all-reduce.
ROW_PARALLEL = ("attn.c_proj", "mlp.c_proj")


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_group(rank: int, world_size: int, master_addr: str = "127.0.0.1", master_port: int = 29500,
               backend: str | None = None, *, local_rank: int | None = None, timeout_s: float = 600.0) -> None:
    """Join the tensor-parallel group as `rank` of `world_size` (rank 0 listens on master_addr:master_port).

    `backend`: "gloo" on CPU, "nccl" on GPU (the default picks by torch.cuda.is_available()). `local_rank`: the GPU
    index this rank uses; by default `rank` when this process sees enough GPUs, else 0 (a Ray actor that sees only
    its own GPU). Sets the environment variables DeepSpeed reads (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
    LOCAL_RANK, LOCAL_SIZE): its CPU shared-memory all-reduce names its segments after MASTER_ADDR/MASTER_PORT, so
    two groups on one machine stay apart."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a group of {world_size}")
    backend = backend or default_backend()
    if local_rank is None:
        gpus = torch.cuda.device_count() if backend == "nccl" else 0
        local_rank = rank if gpus == 0 or gpus >= world_size else 0
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR=master_addr,
                      MASTER_PORT=str(master_port), LOCAL_RANK=str(local_rank))
    if dist.is_initialized():
        if dist.get_world_size() != world_size or dist.get_rank() != rank:
            raise RuntimeError(f"torch.distributed is already initialised as rank {dist.get_rank()} of "
                               f"{dist.get_world_size()}, not {rank} of {world_size}")
    else:
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, init_method=f"tcp://{master_addr}:{master_port}", rank=rank,
                                world_size=world_size, timeout=timedelta(seconds=timeout_s))
    hosts: list[str | None] = [None] * world_size
    dist.all_gather_object(hosts, socket.gethostname())
    here = socket.gethostname()
    os.environ["LOCAL_SIZE"] = str(sum(h == here for h in hosts))
    if backend != "nccl" and len(set(hosts)) > 1:
        raise RuntimeError(f"CPU tensor parallelism needs every rank on one machine (DeepSpeed's shared-memory "
                           f"all-reduce); this group spans {sorted(set(hosts))}")
    log.info("rank %d of %d joined the tensor-parallel group (%s, %s:%d)", rank, world_size, backend, master_addr,
             master_port)


def check_divisible(config: PriorConfig, n: int, *, encoder: bool = True) -> None:
    """Raise ConfigError unless a tensor-parallel group of `n` can split this prior's heads evenly: the decoder's
    and (with `encoder`, for a separate lyric encoder) the encoder's."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"tensor_parallel={n!r} must be a positive integer")
    parts = [("prior", config)]
    if encoder and config.separate_lyric_encoder and config.encoder_config is not None:
        parts.append(("its lyric encoder", config.lyric_encoder()))
    for what, cfg in parts:
        if cfg.n_heads % n:
            good = [d for d in range(1, cfg.n_heads + 1) if cfg.n_heads % d == 0]
            raise ConfigError(f"tensor_parallel={n} does not divide the {cfg.n_heads} attention heads of {what} "
                              f"(level {config.level}): each rank must hold whole heads; use one of {good}")
        if cfg.mlp_width % n:
            raise ConfigError(f"tensor_parallel={n} does not divide the MLP width {cfg.mlp_width} of {what} "
                              f"(level {config.level})")


def encoder_splits(config: PriorConfig, n: int) -> bool:
    """Whether `shard_prior` splits the separate lyric encoder too (n divides its heads and MLP width)."""
    if not (config.separate_lyric_encoder and config.encoder_config is not None):
        return False
    enc = config.lyric_encoder()
    return enc.n_heads % n == 0 and enc.mlp_width % n == 0


def shard_prior(prior: Prior, world_size: int, *, dtype: torch.dtype | None = None,
                split_encoder: bool | None = None) -> Prior:
    """Make `prior` tensor-parallel over the current torch.distributed group of `world_size` ranks (call
    `init_group` first; every rank calls this with identical weights). Works in place and returns the prior, whose
    `logits`, `condition`, `run`, `new_cache` keep working (the KV cache holds this rank's heads only).

    `dtype`: the weights' dtype after sharding (default: as they are). `split_encoder`: None splits the lyric
    encoder where `world_size` divides its heads and keeps it whole otherwise; True requires the split; False
    keeps it whole."""
    check_divisible(prior.cfg, world_size, encoder=bool(split_encoder))
    if world_size == 1:
        return prior
    if not dist.is_initialized() or dist.get_world_size() != world_size:
        have = dist.get_world_size() if dist.is_initialized() else "no group"
        raise RuntimeError(f"shard_prior(world_size={world_size}) needs torch.distributed initialised with "
                           f"{world_size} ranks (init_group); found {have}")
    deepspeed = _import_deepspeed()
    use_contiguous_weights(prior)  # DeepSpeed slices weights by storage: undo the input-major CPU layout first
    split_enc = encoder_splits(prior.cfg, world_size) if split_encoder is None else split_encoder
    dtype = dtype or next(prior.parameters()).dtype
    # AutoTP reads the head count and width from `module.config` (num_attention_heads, hidden_size: both on
    # PriorConfig): lend the prior its cfg under that name while DeepSpeed injects. The encoder's blocks are split
    # by the same per-head rule, an even, head-aligned split whenever world_size divides the encoder's heads too.
    lent_config = getattr(prior, "config", None) is None
    if lent_config:
        prior.config = prior.cfg
    hidden = None
    if not split_enc and hasattr(prior, "encoder"):
        hidden = prior._modules.pop("encoder")  # kept whole: out of DeepSpeed's sight while it injects
    widths = [prior.cfg.mlp_width] + ([prior.cfg.lyric_encoder().mlp_width] if split_enc else [])
    tensor_parallel = {"tp_size": world_size, "tp_grain_size": mlp_grain(widths, world_size)}
    try:
        deepspeed.init_inference(prior, tensor_parallel=tensor_parallel, dtype=dtype,
                                 replace_with_kernel_inject=False, injection_policy={Block: ROW_PARALLEL})
    finally:
        if lent_config:
            del prior.config
        if hidden is not None:
            w = prior.prior.embed_tokens.weight  # where init_inference put the rest, in its dtype
            prior.encoder = hidden.to(device=w.device, dtype=w.dtype)
    _restore_linear_attributes(prior)
    _unlink_shm_segment()
    log.info("prior %d split over %d ranks (lyric encoder %s); rank %d holds %d of %d heads", prior.cfg.level,
             world_size, "split" if split_enc else "whole" if hasattr(prior, "encoder") else "absent",
             dist.get_rank(), prior.cfg.n_heads // world_size, prior.cfg.n_heads)
    return prior


def mlp_grain(widths: list[int], n: int) -> int:
    """DeepSpeed splits MLP layers in grains of `tp_grain_size` columns (64 by default) and gives a rank whole
    grains: 64 would leave 4800 (the 5b MLP) uneven over 2 ranks and a 64-wide MLP all on rank 0. Use the largest
    power of two up to 64 that splits every width evenly (5b: 32 for tp 2, 16 for tp 4, 8 for tp 8)."""
    grain = 64
    while grain > 1 and any(w % (grain * n) for w in widths):
        grain //= 2
    return grain


def _restore_linear_attributes(module: nn.Module) -> None:
    """DeepSpeed's LinearLayer / LinearAllreduce replace nn.Linear without its `in_features` / `out_features`;
    the model reads `k_proj.out_features` for the KV cache width. Give them the per-rank values."""
    for sub in module.modules():
        weight = getattr(sub, "weight", None)
        if isinstance(sub, nn.Linear) or not isinstance(weight, torch.Tensor) or weight.dim() != 2:
            continue
        if type(sub).__module__.startswith("deepspeed") and not hasattr(sub, "out_features"):
            sub.out_features, sub.in_features = weight.shape


def shm_segment(rank: int, master_addr: str, master_port: int | str) -> Path:
    """The /dev/shm file DeepSpeed's CPU all-reduce creates for `rank` of the group at master_addr:master_port."""
    return Path("/dev/shm") / f"deepspeed_allreduce_buffer_{os.getuid()}_{master_addr}_{master_port}_{rank}"


def _unlink_shm_segment() -> None:
    """DeepSpeed's CPU all-reduce maps a ~70 MB /dev/shm segment per rank and never removes it: every group
    would leave its segments in RAM. Once init_inference has returned on every rank, each rank has mapped every
    segment, so the names can go at once; the memory stays mapped and is freed when the ranks exit, even after a
    crash."""
    from deepspeed.accelerator import get_accelerator

    if get_accelerator().device_name() != "cpu":
        return
    dist.barrier()
    env = os.environ
    shm_segment(dist.get_rank(), env.get("MASTER_ADDR", ""), env.get("MASTER_PORT", "")).unlink(missing_ok=True)


def close_group() -> None:
    """Leave the tensor-parallel group (the end of a worker's life; a no-op outside a group)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def _import_deepspeed():
    """DeepSpeed picks its accelerator at import: without CUDA, say CPU (instead of a warning and a guess)."""
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        import deepspeed
    except ImportError as exc:
        raise ImportError(f"tensor parallelism needs DeepSpeed (pip install deepspeed): {exc}") from exc
    return deepspeed
