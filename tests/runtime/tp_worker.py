"""One rank of the tensor-parallel test (tests/runtime/test_tp.py runs N of these as subprocesses).

    python -m tests.runtime.tp_worker RANK WORLD_SIZE PORT OUT_DIR

Builds the tiny 5b-style top prior (every rank from the same seed), joins the group, shards the prior with
DeepSpeed and writes to OUT_DIR/rank{RANK}.pt what the test compares with a single-process run: teacher-forced
logits, greedy and seeded codes, and the per-rank weight shapes.
"""
from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from jukebox_dist.model.config import JukeboxConfig, tiny_config
from jukebox_dist.model.jukebox import Jukebox
from jukebox_dist.model.prior import Prior
from jukebox_dist.sampling.generate import sample_window
from jukebox_dist.sampling.sampler import SamplingParams

SEED = 4  # a seed whose greedy windows are not one repeated token
TOTAL_LENGTH = 128 * 300  # audio samples of the song the windows belong to
WINDOW_START = 32  # top-level tokens
SAMPLING = {"greedy": SamplingParams(0.0), "top_k": SamplingParams(1.0, top_k=20)}
SAMPLE_SEEDS = (7, 1234)
KNOWN = 5  # tokens each sampled window starts from


def tp_config() -> JukeboxConfig:
    """tiny5b with a 4-head decoder (hidden 64) and a 2-head lyric encoder: both split over 2 ranks."""
    base = tiny_config("separate")
    top = base.priors[0]
    top = replace(top, n_heads=4, hidden_size=64, encoder_config=replace(top.encoder_config, n_heads=2))
    return replace(base, priors=(top, *base.priors[1:]))


def build_prior() -> Prior:
    return Jukebox.random(tp_config(), seed=SEED).priors[0]


def inputs(prior: Prior) -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of music tokens (a whole window) and their labels (different artists, genres, lyrics)."""
    gen = torch.Generator().manual_seed(SEED)
    cfg = prior.cfg
    tokens = torch.randint(0, cfg.music_vocab_size, (2, cfg.n_ctx), generator=gen)
    rows = []
    for i in range(2):
        head = [0, 0, 0, 11 + i, i + 2] + [-1] * (cfg.max_nb_genres - 1)
        rows.append(head + torch.randint(1, 79, (40,), generator=gen).tolist())
    return tokens, torch.tensor(rows)


@torch.no_grad()
def run_all(prior: Prior) -> dict[str, torch.Tensor]:
    """Everything the test compares between a sharded and a whole prior."""
    tokens, labels = inputs(prior)
    out = {"logits": prior.logits(tokens, labels, total_length=TOTAL_LENGTH, start=WINDOW_START)}
    wc = prior.condition(labels, total_length=TOTAL_LENGTH, start=WINDOW_START)
    n_new = prior.cfg.n_ctx - KNOWN
    out["cached_logits"] = cached_logits(prior, tokens, wc)
    for name, params in SAMPLING.items():
        out[name] = sample_window(prior, wc, tokens[:, :KNOWN], n_new, params, torch.tensor(SAMPLE_SEEDS),
                                  WINDOW_START, chunk_size=3)
    return out


def cached_logits(prior: Prior, tokens: torch.Tensor, wc) -> torch.Tensor:
    """The same scores through the KV cache (whose width is this rank's heads): a prefill of KNOWN tokens in
    chunks of 3, then one position at a time."""
    seq = prior.sequence(tokens, wc)
    cache = prior.new_cache(tokens.shape[0])
    steps = [(pos, min(3, KNOWN - pos)) for pos in range(0, KNOWN, 3)]
    steps += [(pos, 1) for pos in range(KNOWN, seq.shape[1])]
    hidden = torch.cat([prior.run(seq, pos, n, wc, cache) for pos, n in steps], dim=1)
    return prior.music_logits(hidden[:, prior.prefix_len:])


def weight_shapes(prior: Prior) -> dict[str, tuple[int, ...]]:
    keep = ("q_proj.weight", "k_proj.weight", "v_proj.weight", "c_proj.weight", "c_fc.weight")
    return {name: tuple(p.shape) for name, p in prior.named_parameters() if name.endswith(keep)}


def main(rank: int, world_size: int, port: int, out_dir: Path) -> None:
    torch.set_num_threads(1)  # N ranks share the test machine's cores
    from jukebox_dist.runtime import tp

    t0 = time.perf_counter()
    prior = build_prior()
    tp.init_group(rank, world_size, "127.0.0.1", port, "gloo")
    t1 = time.perf_counter()
    tp.shard_prior(prior, world_size)
    t2 = time.perf_counter()
    result = {"split": {**run_all(prior), "shapes": weight_shapes(prior)}}
    t3 = time.perf_counter()
    # A second prior in the same group, its lyric encoder kept whole on every rank (what tp 8 does to the 5b one).
    whole = build_prior()
    tp.shard_prior(whole, world_size, split_encoder=False)
    result["whole_encoder"] = {**run_all(whole), "shapes": weight_shapes(whole)}
    result["timings"] = {"build_and_join": t1 - t0, "shard": t2 - t1, "run": t3 - t2}
    torch.save(result, out_dir / f"rank{rank}.tmp")
    (out_dir / f"rank{rank}.tmp").rename(out_dir / f"rank{rank}.pt")
    torch.distributed.barrier()
    tp.close_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
