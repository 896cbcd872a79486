"""The top prior as a tensor-parallel group: 2 CPU processes (gloo, DeepSpeed AutoTP with DS_ACCELERATOR=cpu) give
the single-process logits (max abs difference <= 1e-5, teacher-forced and through the KV cache) and the same greedy
and seeded codes, while each rank holds half of every split weight.

The ranks run tests/runtime/tp_worker.py as subprocesses, once for the module. The first run on a machine
JIT-compiles DeepSpeed's shared-memory all-reduce with g++ (about 1-2 minutes on 2 cores); the build is cached in
TORCH_EXTENSIONS_DIR (default here: ~/.cache/jukebox_dist/torch_extensions), after which the group takes seconds.
JUKEBOX_TP_TEST_TIMEOUT (seconds, default 900) bounds the whole run.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from jukebox_dist.errors import ConfigError
from jukebox_dist.model.config import load_preset
from jukebox_dist.runtime.tp import check_divisible, encoder_splits, mlp_grain, shm_segment
from tests.runtime import tp_worker

REPO = Path(__file__).resolve().parents[2]
WORLD = 2
TOL = 1e-5
TIMEOUT_S = float(os.environ.get("JUKEBOX_TP_TEST_TIMEOUT", "900"))

needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="deepspeed is not installed (pip install deepspeed): no tensor parallelism")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DS_ACCELERATOR="cpu", CUDA_VISIBLE_DEVICES="",  # a CPU group even on a GPU machine
        OMP_NUM_THREADS="1", TQDM_DISABLE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "jukebox_dist" / "torch_extensions"))
    return env


def _stop(procs: list[subprocess.Popen], port: int) -> None:
    """Kill what is still running: each rank was started in its own session, so its process group holds it and
    anything it started (the g++ build). Then remove the shared-memory segments of ranks killed before
    shard_prior removed them."""
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    for r in range(len(procs)):
        shm_segment(r, "127.0.0.1", port).unlink(missing_ok=True)


def _run_group(out: Path) -> tuple[list[dict], str]:
    """Start WORLD ranks, wait for all (failing fast when one dies), return their results and logs."""
    port = _free_port()
    logs = [out / f"rank{r}.log" for r in range(WORLD)]
    procs = []
    try:
        for r in range(WORLD):
            with open(logs[r], "wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "tests.runtime.tp_worker", str(r), str(WORLD), str(port), str(out)],
                    cwd=REPO, env=_child_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + TIMEOUT_S
        while any(p.poll() is None for p in procs):
            if any(p.returncode not in (None, 0) for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        _stop(procs, port)
    text = "\n".join(f"--- rank {r} (exit {p.returncode}) ---\n{logs[r].read_text(errors='replace')[-4000:]}"
                     for r, p in enumerate(procs))
    if any(p.returncode != 0 for p in procs) or not all((out / f"rank{r}.pt").exists() for r in range(WORLD)):
        return [], text
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)], text


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """The ranks' results, and the single-process reference from the same seed."""
    out = tmp_path_factory.mktemp("tp")
    start = time.perf_counter()
    results, logs = _run_group(out)
    if not results and "address already in use" in logs.lower():  # the free port was taken in between: once more
        results, logs = _run_group(out)
    wall = time.perf_counter() - start
    if not results:
        pytest.fail(f"the tensor-parallel group failed or ran over {TIMEOUT_S:.0f} s:\n{logs}")
    print(f"\ntensor-parallel group of {WORLD}: {wall:.1f} s wall, rank 0 {results[0]['timings']}")
    prior = tp_worker.build_prior()
    return results, tp_worker.run_all(prior), tp_worker.weight_shapes(prior)


# The lyric encoder split with the decoder, or kept whole on every rank (a second prior in the same group).
by_variant = pytest.mark.parametrize("variant", ["split", "whole_encoder"])


@needs_deepspeed
@pytest.mark.slow
@by_variant
@pytest.mark.parametrize("key", ["logits", "cached_logits"])
def test_logits_match_single_process(group, variant, key):
    results, ref, _ = group
    assert (ref["cached_logits"] - ref["logits"]).abs().max() <= TOL  # the reference agrees with itself
    for rank, res in enumerate(results):
        diff = (res[variant][key] - ref[key]).abs().max().item()
        assert diff <= TOL, f"rank {rank}: {key} differ from the single-process run by {diff:.3g}"


@needs_deepspeed
@pytest.mark.slow
@by_variant
@pytest.mark.parametrize("mode", list(tp_worker.SAMPLING))
def test_sampled_codes_match_single_process(group, variant, mode):
    results, ref, _ = group
    for rank, res in enumerate(results):
        got = res[variant][mode]
        assert torch.equal(got, ref[mode]), f"rank {rank} sampled other {mode} codes:\n{got}\n{ref[mode]}"


@needs_deepspeed
@pytest.mark.slow
@by_variant
def test_weights_are_split_per_head(group, variant):
    """Per rank: 1/N of q/k/v_proj and mlp.c_fc (rows: whole heads) and of attn.c_proj and mlp.c_proj (columns),
    in every decoder block and, when it is split, every lyric encoder block; the rest whole."""
    results, _, full = group
    split_dim = {"q_proj": 0, "k_proj": 0, "v_proj": 0, "c_fc": 0, "attn.c_proj": 1, "mlp.c_proj": 1}
    assert {n.split(".")[0] for n in full} == {"prior", "encoder"}, sorted(full)
    for rank, res in enumerate(results):
        shapes = res[variant]["shapes"]
        assert shapes.keys() == full.keys()
        for name, shape in shapes.items():
            expected = list(full[name])
            if variant == "split" or name.startswith("prior."):
                expected[next(d for part, d in split_dim.items() if f"{part}.weight" in name)] //= WORLD
            assert list(shape) == expected, f"rank {rank}: {name} is {shape}, expected {tuple(expected)}"


def test_check_divisible_names_the_heads():
    top = tp_worker.tp_config().priors[0]  # 4 decoder heads, 2 encoder heads
    check_divisible(top, 2)
    check_divisible(top, 4, encoder=False)
    with pytest.raises(ConfigError, match="does not divide the 4 attention heads of prior .*use one of \\[1, 2, 4\\]"):
        check_divisible(top, 3)
    with pytest.raises(ConfigError, match="2 attention heads of its lyric encoder"):
        check_divisible(top, 4)
    with pytest.raises(ConfigError, match="positive integer"):
        check_divisible(top, 0)
    assert encoder_splits(top, 2) and not encoder_splits(top, 4)


def test_5b_split_plan():
    """The released 5b top prior: 8 decoder heads, 4 encoder heads, MLP 4800 and 1280 wide."""
    top = load_preset("5b_lyrics").priors[0]
    for n in (2, 4):
        check_divisible(top, n)
        assert encoder_splits(top, n)
    check_divisible(top, 8, encoder=False)
    assert not encoder_splits(top, 8)  # tp 8: the lyric encoder stays whole on every rank
    assert [mlp_grain([4800, 1280], n) for n in (2, 4)] == [32, 16] and mlp_grain([4800], 8) == 8
    assert mlp_grain([64, 16], 2) == 8 and mlp_grain([replace(top, hidden_size=64).mlp_width], 2) == 32
