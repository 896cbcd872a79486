"""The benchmarks still run (smoke runs on tiny shapes; their timings are not checked: speed is measured by
running the benchmarks, see BENCHMARKS.md)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
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
