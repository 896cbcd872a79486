"""The benchmarks still run (smoke runs on tiny shapes; their timings are not checked: speed is measured by
running the benchmarks, see BENCHMARKS.md)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_top_step_benchmark_smoke(tmp_path):
    out = tmp_path / "top.json"
    bench = _load("bench_top_step")
    assert bench.main(["--device", "cpu", "--dtype", "float32", "--width", "64", "--layers", "2", "--steps", "2",
                       "--batches", "1", "2", "--copy-bytes", str(1 << 22), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["width"] == 64 and result["layers"] == 2 and result["position"] == 8192 * 7 // 8
    assert [r["batch"] for r in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert row["s_per_step"] > 0 and row["bytes_per_step"] > result["weight_bytes"] > 0
        assert 0 < row["fraction_of_bound"]


def test_sampling_benchmark_smoke(tmp_path, hf_jukebox):
    out = tmp_path / "sampling.json"
    bench = _load("bench_sampling")
    assert bench.main(["--width", "64", "--layers", "2", "--n-ctx", "256", "--block-ctx", "16", "--known", "32",
                       "--new", "8", "--chunk-size", "16", "--batches", "1", "2", "--repeats", "2",
                       "--quiet-timeout", "0", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["runs"][0]["rows"]
    assert [r["batch"] for r in rows] == [1, 2]
    for row in rows:
        assert len(row["ours_runs"]) == len(row["ref_prefill_runs"]) == 2  # two rounds, both implementations
        assert len(row["paired_ratios"]) == len(row["paired_decode_ratios"]) == 2
        assert row["ratio"] == row["ours_tok_s"] / row["ref_tok_s"] > 0
