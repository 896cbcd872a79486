#!/usr/bin/env python
"""Per-token sampling throughput of jukebox-dist against the reference (transformers==4.40.2 JukeboxPrior).

Both models run the same random weights: the reference is built with `tests.model.reference.build_reference`,
saved with `save_reference`, and ours is loaded from that folder with `Jukebox.from_pretrained`.

What is timed, for each batch size and each implementation, is one window of one prior, the way the level
loop runs it:
  ours: wc = prior.condition(labels, total_length, start=0, upper=...)      (per-window conditioning)
        sample_window(prior, wc, known, n_new, SamplingParams(1.0), seeds, 0)  (prefill of `known`, then decode)
  ref:  metadata = prior.get_metadata(labels, 0, total_length, 0)
        prior.sample(B, music_tokens=known, music_tokens_conds=[upper], metadata=metadata, temp=1.0,
                     chunk_size=..., sample_tokens=len(known) + n_new)       (conditioning, prefill, decode)
Throughput is batch * n_new / seconds. Model building and loading are not timed; each implementation is warmed
up once per batch size (a short window) before it is timed. A second figure, decode-only, times the same window
with n_new=1 as well and reports batch * (n_new - 1) / (t_window - t_one_token): the decode steps alone.

  .venv/bin/python bench/bench_sampling.py --out bench/results.json          # ~10 min on a 2-core CPU
  .venv/bin/python bench/bench_sampling.py --quick                           # ~1 min smoke run
  .venv/bin/python bench/bench_sampling.py --device cuda --dtype bfloat16    # GPU: ours bf16, reference fp16
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")  # the reference draws a tqdm bar per token

import torch  # noqa: E402

from jukebox_dist.model import Jukebox, JukeboxTokenizer, tiny_config  # noqa: E402
from jukebox_dist.model.config import JukeboxConfig, PriorConfig  # noqa: E402
from jukebox_dist.sampling.generate import sample_window  # noqa: E402
from jukebox_dist.sampling.sampler import SamplingParams  # noqa: E402

LYRICS = "Down the old road where the river bends\nwe sing it again, and the night goes on\n" * 8
VOCAB = 2048  # the released codebook size: the output head and the sampler's noise are over 2048 codes


@dataclass(frozen=True)
class Setup:
    style: str  # "upsampler" (middle prior) or "top" (5b-style top prior with a lyric encoder)
    width: int
    layers: int
    n_ctx: int
    blocks: int
    known: int  # tokens the window already has (primed by prefill)
    new: int  # tokens sampled in the timed window
    chunk_size: int  # prefill chunk, the same for both implementations


def make_config(s: Setup) -> tuple[JukeboxConfig, int]:
    """A whole JukeboxConfig (so both models build) whose prior `p` has realistic proportions; returns (config, p)."""
    base = tiny_config("separate")
    vq = replace(base.vqvae, nb_discrete_codes=VOCAB)
    top, middle, bottom = (replace(p, music_vocab_size=VOCAB) for p in base.priors)
    if s.style == "upsampler":
        # The released upsamplers: one head, raw (block, transpose-block, previous-block) pattern, block_ctx 64,
        # attention width 0.25 * width; conditioned on the level above through the music-token conditioner.
        middle = replace(middle, hidden_size=s.width, num_layers=s.layers, n_heads=1, n_ctx=s.n_ctx, blocks=s.blocks)
        return JukeboxConfig(vqvae=vq, priors=(top, middle, bottom), max_duration=base.max_duration,
                             max_nb_genres=base.max_nb_genres, name="bench-upsampler"), 1
    if s.style == "top":
        # The 5b top prior's pattern (large_separated_enc_dec_w_lyrics): 18 raw layers then a cross-attention
        # layer to the separate lyric encoder; timing conditioning; 2 heads of 64.
        encoder = replace(top.encoder_config, hidden_size=128, num_layers=3, n_heads=2, blocks=4)
        top = replace(top, hidden_size=s.width, num_layers=s.layers, n_heads=2, n_ctx=s.n_ctx, blocks=s.blocks,
                      nb_relevant_lyric_tokens=128, encoder_config=encoder)
        return JukeboxConfig(vqvae=vq, priors=(top, middle, bottom), max_duration=60.0,
                             max_nb_genres=base.max_nb_genres, name="bench-top"), 0
    raise SystemExit(f"unknown style {s.style!r}")


HOP_FRACTION = {"upsampler": 0.5, "top": 0.125}  # the released models' hops: a window primes the rest


def window_geometry(style: str, n_ctx: int, known: int | None, new: int | None, quick: bool) -> tuple[int, int, int]:
    """(n_ctx, known, new). Default: a steady-state window of the level loop, which primes n_ctx*(1-hop) tokens
    and samples n_ctx*hop (upsampler 1024 + 1024, top 1792 + 256 for n_ctx 2048)."""
    if quick:
        n_ctx = min(n_ctx, 1024)
        known, new = known or n_ctx // 4, new or 32
    hop = int(HOP_FRACTION[style] * n_ctx)
    known = n_ctx - hop if known is None else known
    new = hop if new is None else new
    if known + new > n_ctx or new < 2 or known < 0:
        raise SystemExit(f"known {known} + new {new} must fit in n_ctx {n_ctx}, with new >= 2")
    return n_ctx, known, new


def check_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype, torch.dtype]:
    """(device, our dtype, reference dtype). The reference runs fp16 via .half() when ours is not float32."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {device}: CUDA is not available in this torch ({torch.__version__}); "
                             "run on a GPU machine or use --device cpu")
    elif device != "cpu":
        raise SystemExit(f"--device {device!r}: expected cpu or cuda[:n]")
    ours = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    if device == "cpu" and ours is not torch.float32:
        raise SystemExit(f"--dtype {dtype} is for GPU runs; on CPU both implementations run float32")
    return torch.device(device), ours, (torch.float32 if ours is torch.float32 else torch.float16)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Pair:
    """The reference prior and ours, on identical weights, plus the inputs of one window."""

    def __init__(self, s: Setup, device: torch.device, dtype: torch.dtype, ref_dtype: torch.dtype, seed: int = 0):
        from transformers.utils import logging as hf_logging

        from tests.model.reference import build_reference, save_reference

        hf_logging.disable_progress_bar()  # no per-token tqdm bar: its cost is not the model's
        hf_logging.set_verbosity_error()

        self.s, self.device = s, device
        config, self.p = make_config(s)
        ref = build_reference(config, seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            save_reference(ref, Path(tmp), safe=True)
            ours = Jukebox.from_pretrained(tmp, device=device, dtype=dtype)
        self.ref = ref.priors[self.p].to(device=device, dtype=ref_dtype).eval()
        self.ours = ours.priors[self.p]
        del ref, ours
        cfg = config.priors[self.p]
        self.raw_to_tokens = config.raw_to_tokens(self.p)
        self.total_length = s.n_ctx * self.raw_to_tokens * 2  # a song of two windows; the timed one is the first
        tok = JukeboxTokenizer.from_pretrained("tiny5b")
        self.label_row = tok("Alan Jackson", ["country"], LYRICS)["input_ids"][self.p]  # (1, L)
        gen = torch.Generator().manual_seed(seed + 7)
        self.known_all = torch.randint(0, VOCAB, (16, s.known), generator=gen)
        self.upper_all = None
        if cfg.is_upsampler:
            n_up = s.n_ctx // self.ours.conditioner_blocks.downsample
            self.upper_all = torch.randint(0, VOCAB, (16, n_up), generator=gen)

    def inputs(self, batch: int, known: int):
        labels = self.label_row.expand(batch, -1).contiguous()
        k = self.known_all[:batch, :known].to(self.device)
        up = None if self.upper_all is None else self.upper_all[:batch].to(self.device)
        return labels, k, up

    def check_same_model(self) -> int:
        """Greedy tokens of a short window must agree: both sides run the same weights and the same window.
        Returns how many tokens were compared."""
        from tests.model.reference import VANISHING_TEMPERATURE

        labels, k, up = self.inputs(2, min(self.s.known, self.s.chunk_size))
        n = 8
        with torch.no_grad():
            wc = self.ours.condition(labels, total_length=self.total_length, start=0, upper=up)
            ours = sample_window(self.ours, wc, k, n, SamplingParams(temperature=0.0), torch.arange(2), 0)
            meta = self.ref.get_metadata(labels.to(self.device), 0, self.total_length, 0)
            ref = self.ref.sample(2, music_tokens=k, music_tokens_conds=None if up is None else [up], metadata=meta,
                                  temp=VANISHING_TEMPERATURE, chunk_size=self.s.chunk_size,
                                  sample_tokens=k.shape[1] + n)[:, k.shape[1]:]
        if self.device.type == "cpu" and not torch.equal(ours.cpu(), ref.long().cpu()):
            raise SystemExit(f"ours and the reference disagree on greedy tokens:\n{ours}\n{ref}")
        return ours.numel()

    def run_ours(self, batch: int, known: int, new: int) -> float:
        labels, k, up = self.inputs(batch, known)
        seeds = torch.arange(batch, dtype=torch.int64)
        sync(self.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            wc = self.ours.condition(labels, total_length=self.total_length, start=0, upper=up)
            out = sample_window(self.ours, wc, k, new, SamplingParams(temperature=1.0), seeds, 0,
                                chunk_size=self.s.chunk_size)
        sync(self.device)
        dt_ = time.perf_counter() - t0
        assert out.shape == (batch, new)
        return dt_

    def run_ref(self, batch: int, known: int, new: int) -> float:
        labels, k, up = self.inputs(batch, known)
        labels = labels.to(self.device)
        sync(self.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            metadata = self.ref.get_metadata(labels, 0, self.total_length, 0)
            out = self.ref.sample(batch, music_tokens=k, music_tokens_conds=None if up is None else [up],
                                  metadata=metadata, temp=1.0, chunk_size=self.s.chunk_size,
                                  sample_tokens=known + new)
        sync(self.device)
        dt_ = time.perf_counter() - t0
        assert out.shape == (batch, known + new), out.shape
        return dt_


# ---- contention guard: the CI machine is shared; other processes' CPU time spoils a timing ------------------
def _cpu_ticks() -> tuple[int, int, int] | None:
    """(busy ticks of the whole machine, all ticks, ticks of this process), or None off Linux."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        mine = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields), int(mine[11]) + int(mine[12])


def others_share(before, after) -> float:
    """Fraction of the machine's CPU time used by other processes between two `_cpu_ticks` readings."""
    if before is None or after is None or after[1] == before[1]:
        return 0.0
    return max(0.0, (after[0] - before[0]) - (after[2] - before[2])) / (after[1] - before[1])


def wait_for_quiet(threshold: float, timeout: float) -> float:
    """Wait until other processes use under `threshold` of the CPU over half a second (at most `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        a = _cpu_ticks()
        time.sleep(0.5)
        share = others_share(a, _cpu_ticks())
        if share < threshold or time.monotonic() > deadline:
            return share


class Timer:
    """One timing of a call, free of other processes if it can be: the call is repeated (at most `max_tries` runs)
    until other processes used under `threshold` of the CPU while it ran; else the best of the spoilt runs."""

    def __init__(self, threshold: float, max_tries: int, quiet_timeout: float):
        self.threshold, self.max_tries, self.quiet_timeout = threshold, max_tries, quiet_timeout

    def one(self, fn, *args) -> dict:
        spoilt = []
        for _ in range(self.max_tries):
            wait_for_quiet(self.threshold, self.quiet_timeout)
            a = _cpu_ticks()
            t = fn(*args)
            share = round(others_share(a, _cpu_ticks()), 3)
            if share < self.threshold:
                return {"s": t, "share": share, "ok": True, "spoilt": spoilt}
            spoilt.append((t, share))
        t, share = min(spoilt)
        return {"s": t, "share": share, "ok": False, "spoilt": spoilt}


def measure(pair: Pair, batch: int, timer: Timer, split: bool, rounds: int) -> dict:
    """Best-of-`rounds` throughput of both implementations. The rounds alternate them (ours, then the reference,
    then ours again...), so a drift of this shared machine's speed, which lasts minutes, hits both alike; each
    round's back-to-back pair of timings also gives a paired ratio, reported beside the ratio of the bests."""
    s = pair.s
    fns = (("ours", pair.run_ours), ("ref", pair.run_ref))
    for _, fn in fns:
        fn(batch, min(s.known, 2 * s.chunk_size), 4)  # warm-up: allocator, kernels, lazy init
    shapes = (("", s.new), ("_prefill", 1)) if split else (("", s.new),)  # _prefill: conditioning + prefill + 1 step
    runs: dict[str, list[dict]] = {name + suffix: [] for name, _ in fns for suffix, _ in shapes}
    for _ in range(rounds):
        for name, fn in fns:
            for suffix, new in shapes:
                runs[name + suffix].append(timer.one(fn, batch, s.known, new))
    row: dict = {"batch": batch, "all_clean": all(r["ok"] for rs in runs.values() for r in rs)}
    for key, rs in runs.items():
        row[f"{key}_s"] = min(r["s"] for r in rs)
        row[f"{key}_runs"] = rs
    for name, _ in fns:
        row[f"{name}_tok_s"] = batch * s.new / row[f"{name}_s"]
    row["ratio"] = row["ours_tok_s"] / row["ref_tok_s"]
    row["paired_ratios"] = [r["s"] / o["s"] for o, r in zip(runs["ours"], runs["ref"])]
    if split:
        for name, _ in fns:
            row[f"{name}_decode_tok_s"] = batch * (s.new - 1) / max(row[f"{name}_s"] - row[f"{name}_prefill_s"], 1e-9)
        row["decode_ratio"] = row["ours_decode_tok_s"] / row["ref_decode_tok_s"]
        row["paired_decode_ratios"] = [(r["s"] - r1["s"]) / max(o["s"] - o1["s"], 1e-9) for o, o1, r, r1 in
                                       zip(runs["ours"], runs["ours_prefill"], runs["ref"], runs["ref_prefill"])]
    return row


def machine(device: torch.device) -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "load_avg_at_start": os.getloadavg()}
    try:
        import transformers
        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def print_table(style: str, s: Setup, rows: list[dict], split: bool) -> None:
    print(f"\n{style}: width {s.width}, {s.layers} layers, n_ctx {s.n_ctx}, block_ctx {s.n_ctx // s.blocks}; "
          f"window = {s.known} known (prefill, chunk {s.chunk_size}) + {s.new} sampled")
    head = f"{'batch':>5} {'ours tok/s':>11} {'ref tok/s':>10} {'ratio':>6}"
    if split:
        head += f" | {'ours decode':>11} {'ref decode':>10} {'ratio':>6}"
    print(head)
    print("(ratio: of the best timings; paired: the median and range of each round's back-to-back ratio)")
    for r in rows:
        line = f"{r['batch']:>5} {r['ours_tok_s']:>11.1f} {r['ref_tok_s']:>10.1f} {r['ratio']:>5.2f}x"
        line += f" paired {_spread(r['paired_ratios'])}"
        if split:
            line += f" | {r['ours_decode_tok_s']:>11.1f} {r['ref_decode_tok_s']:>10.1f} {r['decode_ratio']:>5.2f}x"
            line += f" paired {_spread(r['paired_decode_ratios'])}"
        if not r["all_clean"]:
            line += "  (!) some figure had no run free of other processes: not trustworthy"
        print(line, flush=True)


def _spread(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--style", choices=("upsampler", "top", "both"), default="upsampler",
                    help="which prior: an upsampler (raw pattern) or a 5b-style top prior (lyric encoder + cross)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--layers", type=int, default=None, help="default 12 (upsampler) / 19 (top: 18 raw + 1 cross)")
    ap.add_argument("--n-ctx", type=int, default=2048)
    ap.add_argument("--block-ctx", type=int, default=64)
    ap.add_argument("--known", type=int, default=None,
                    help="tokens the window has before sampling, primed by prefill (default n_ctx * (1 - hop))")
    ap.add_argument("--new", type=int, default=None, help="tokens sampled (default n_ctx * hop: 1024 upsampler, 256 top)")
    ap.add_argument("--chunk-size", type=int, default=128, help="prefill chunk, both implementations")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds, each timing both implementations back to back; the best of each is kept")
    ap.add_argument("--max-tries", type=int, default=5, help="runs per timing at most, until one is clean")
    ap.add_argument("--busy", type=float, default=0.10,
                    help="a run is spoilt when other processes used more than this share of the CPU meanwhile")
    ap.add_argument("--quiet-timeout", type=float, default=30.0, help="seconds to wait for a quiet machine per run")
    ap.add_argument("--no-split", dest="split", action="store_false",
                    help="skip the 1-token windows that separate prefill from decode")
    ap.add_argument("--quick", action="store_true", help="~1 minute: shorter window, fewer tokens")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)

    device, dtype, ref_dtype = check_device(args.device, args.dtype)
    torch.set_num_threads(args.threads)
    styles = ("upsampler", "top") if args.style == "both" else (args.style,)
    timer = Timer(args.busy, 2 if args.quick else args.max_tries, 5.0 if args.quick else args.quiet_timeout)
    rounds = 1 if args.quick else args.repeats

    result = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "argv": sys.argv[1:],
              "machine": machine(device), "device": str(device), "dtype": str(dtype), "ref_dtype": str(ref_dtype),
              "timed": __doc__.split("\n\n")[1], "runs": []}
    for style in styles:
        layers = args.layers or (12 if style == "upsampler" else 19)
        n_ctx, known, new = window_geometry(style, args.n_ctx, args.known, args.new, args.quick)
        s = Setup(style, args.width, layers, n_ctx, n_ctx // args.block_ctx, known, new, args.chunk_size)
        t0 = time.perf_counter()
        pair = Pair(s, device, dtype, ref_dtype)
        print(f"[{style}] built and loaded in {time.perf_counter() - t0:.1f}s (not timed); greedy tokens agree: "
              f"{pair.check_same_model()} compared", flush=True)
        rows = []
        for b in args.batches:
            rows.append(measure(pair, b, timer, args.split, rounds))
            r = rows[-1]
            spoilt = sum(len(run["spoilt"]) for k in r if k.endswith("_runs") for run in r[k])
            print(f"  batch {b}: window ours {r['ours_s']:.2f}s, ref {r['ref_s']:.2f}s"
                  + (f" ({spoilt} runs spoilt by other processes, discarded)" if spoilt else ""), flush=True)
        print_table(style, s, rows, args.split)
        result["runs"].append({"setup": asdict(s), "rows": rows})
        del pair
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
