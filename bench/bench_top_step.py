#!/usr/bin/env python
"""Per-step decode time of a 5b-shaped top prior with random weights, against the memory-bandwidth bound.

One decode step of the top prior reads every transformer weight once (plus the keys and values its attention
patterns need), whatever the batch: at small batches its time is bounded below by

    bound = (weight bytes + KV-cache bytes read) / (the device's measured copy bandwidth)

where the copy bandwidth is what `dst.copy_(src)` achieves on a 1 GiB tensor (bytes read + bytes written per
second). The script builds the prior of a preset (default 5b_lyrics: width 4800, 79 layers, 8 heads, n_ctx 8192)
directly on the device in the chosen dtype, conditions a batch, and times decode steps at a position deep in the
window (by default 7/8 of n_ctx, where a steady-state window of the released top prior samples). It prints, per
batch: ms per step, tokens per second, achieved GB/s and the bound. Tensor parallelism (tp > 1) needs one process
per GPU and is not measured here (the lent machines have one GPU).

  python bench/bench_top_step.py --device cuda --dtype bfloat16 --out bench/results_top_step_gpu.json
  python bench/bench_top_step.py --device cpu --dtype float32 --width 256 --layers 4 --steps 4    # smoke run
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from jukebox_dist.model.attention import Attention  # noqa: E402
from jukebox_dist.model.config import AttentionKind, PriorConfig, load_preset  # noqa: E402
from jukebox_dist.model.prior import Prior  # noqa: E402
from jukebox_dist.sampling.sampler import SamplingParams, sample, token_uniform  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device, nbytes: int) -> float:
    """Bytes read + written per second by a large device-to-device copy (best of 5)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(6):
        sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    del src, dst
    return 2 * nbytes / best


def build_prior(cfg: PriorConfig, raw_to_tokens: int, device: torch.device, dtype: torch.dtype) -> Prior:
    """The prior with random weights (normal 0.02, layer norms 1), made directly on the device."""
    with torch.device("meta"):
        prior = Prior(cfg, raw_to_tokens)
    prior = prior.to_empty(device=device).to(dtype)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in prior.named_parameters():
            if "layer_norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=gen)
    return prior.eval()


def kv_bytes_read(prior: Prior, batch: int, pos: int, element: int) -> int:
    """Keys + values one decode step at transformer position `pos` reads from the cache, over all layers."""
    total = 0
    for module in prior.prior.transformer.modules():
        if not isinstance(module, Attention):
            continue
        bc, kind = module.block_ctx, module.kind
        keys = {AttentionKind.DENSE: pos + 1, AttentionKind.TRANSPOSE_BLOCK: pos // bc + 1,
                AttentionKind.BLOCK: pos % bc + 1, AttentionKind.PREV_BLOCK: bc if pos >= bc else 0,
                AttentionKind.PRIME: min(pos + 1, module.prime_len),
                AttentionKind.CROSS: prior.cfg.nb_relevant_lyric_tokens}[kind]
        total += 2 * batch * keys * module.k_proj.out_features * element
    return total


def time_steps(prior: Prior, batch: int, pos: int, steps: int, device: torch.device) -> float:
    """Seconds per decode step (transformer + head + sampler) at positions pos, pos+1, ..."""
    cfg = prior.cfg
    n_meta = 4 + cfg.max_nb_genres
    labels = torch.zeros(batch, n_meta + cfg.nb_relevant_lyric_tokens, dtype=torch.long)
    labels[:, 4 + 1:n_meta] = -1  # one genre per row
    total_length = int(cfg.n_ctx * prior.raw_to_tokens * 2)
    sr = cfg.sampling_rate
    total_length = max(total_length, int(cfg.min_duration * sr) + prior.raw_to_tokens)
    with torch.no_grad():
        wc = prior.condition(labels, total_length=total_length, start=0)
        cache = prior.new_cache(batch)
        seq = torch.zeros(batch, prior.prefix_len + cfg.n_ctx, dtype=torch.long, device=device)
        seeds = torch.arange(batch, device=device)
        params = SamplingParams(1.0)

        uniforms = token_uniform(seeds.view(-1, 1), 0, torch.arange(seq.shape[1], device=device))  # as generate does

        def step(j: int) -> None:
            logits = prior.music_logits(prior.step(seq, j, wc, cache))
            seq[:, j] = sample(logits, params, uniforms[:, j])

        for j in range(pos - 3, pos):  # warm-up (fills the cross-attention cache too)
            step(j)
        sync(device)
        t0 = time.perf_counter()
        for j in range(pos, pos + steps):
            step(j)
        sync(device)
        return (time.perf_counter() - t0) / steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="5b_lyrics")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--position", type=int, default=None, help="first timed position (default 7/8 of n_ctx)")
    ap.add_argument("--steps", type=int, default=32, help="timed decode steps per batch size")
    ap.add_argument("--width", type=int, default=None, help="override hidden_size (smoke runs)")
    ap.add_argument("--layers", type=int, default=None, help="override num_layers (smoke runs)")
    ap.add_argument("--copy-bytes", type=int, default=1 << 30, help="size of the bandwidth-measuring copy")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available in this torch; use --device cpu for a smoke run")
    config = load_preset(args.preset)
    cfg = config.priors[0]
    if args.width or args.layers:  # a smaller model for smoke runs: the lyric encoder shrinks with it
        width, layers = args.width or cfg.hidden_size, args.layers or cfg.num_layers
        enc = cfg.encoder_config
        if enc is not None:
            enc = replace(enc, hidden_size=min(enc.hidden_size, width), num_layers=min(enc.num_layers, layers))
        cfg = replace(cfg, hidden_size=width, num_layers=layers, encoder_config=enc)
    prior = build_prior(cfg, config.raw_to_tokens(0), device, dtype)
    element = torch.finfo(dtype).bits // 8
    step_weights = list(prior.prior.transformer.parameters()) + [prior.prior.fc_proj_out.weight]
    weight_bytes = sum(p.numel() for p in step_weights) * element
    bandwidth = copy_bandwidth(device, args.copy_bytes)
    pos = args.position if args.position is not None else cfg.n_ctx * 7 // 8
    if not 3 <= pos <= cfg.n_ctx - args.steps:
        raise SystemExit(f"--position {pos}: must leave room for 3 warm-up and {args.steps} timed steps in n_ctx "
                         f"{cfg.n_ctx}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.preset} top prior: width {cfg.hidden_size}, {cfg.num_layers} layers, {cfg.n_heads} heads, "
          f"{args.dtype} on {name}; weights read per step {weight_bytes / 1e9:.2f} GB; copy bandwidth "
          f"{bandwidth / 1e9:.0f} GB/s; timed positions {pos}..{pos + args.steps - 1}", flush=True)
    print(f"{'batch':>5} {'ms/step':>9} {'tok/s':>9} {'GB/s':>8} {'bound ms':>9} {'of bound':>9}")
    rows = []
    for batch in args.batches:
        try:
            t = time_steps(prior, batch, pos, args.steps, device)
        except torch.OutOfMemoryError:
            print(f"{batch:>5}  out of memory (KV cache): skipped", flush=True)
            rows.append({"batch": batch, "oom": True})
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        moved = weight_bytes + kv_bytes_read(prior, batch, pos, element)
        bound = moved / bandwidth
        rows.append({"batch": batch, "s_per_step": t, "tok_s": batch / t, "bytes_per_step": moved,
                     "achieved_GBps": moved / t / 1e9, "bound_s": bound, "fraction_of_bound": bound / t})
        print(f"{batch:>5} {t * 1e3:>9.2f} {batch / t:>9.1f} {moved / t / 1e9:>8.0f} {bound * 1e3:>9.2f} "
              f"{bound / t:>8.0%}", flush=True)
    if args.out:
        args.out.write_text(json.dumps({
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv[1:],
            "device": name, "dtype": args.dtype, "torch": torch.__version__, "preset": args.preset,
            "width": cfg.hidden_size, "layers": cfg.num_layers, "position": pos, "steps": args.steps,
            "weight_bytes": weight_bytes, "copy_bandwidth_Bps": bandwidth, "rows": rows}, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
