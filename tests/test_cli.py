"""The command line: `run` and `validate` of manifests, and user errors without tracebacks."""
from __future__ import annotations

import pyarrow.parquet as pq
import yaml

from jukebox_dist.cli import main

SMALL = {
    "name": "cli", "model": "tiny", "mode": "ancestral",
    "sampling": {"batch": {"top": 2, "middle": 2, "bottom": 2}},
    "songs": [{"artist": "Zac Brown Band", "genres": ["country"], "lyrics": "hey", "seconds": 0.15, "seed": 3}],
}


def _write(tmp_path, data) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**data, "output": str(tmp_path / "out")}))
    return str(path)


def test_validate_then_run_local(tmp_path, capsys):
    path = _write(tmp_path, SMALL)
    assert main(["validate", path]) == 0
    assert not (tmp_path / "out").exists(), "validate writes nothing"
    assert main(["run", path, "--local"]) == 0
    rows = pq.read_table(str(tmp_path / "out" / "samples")).to_pylist()
    assert [r["sample_id"] for r in rows] == ["00000-000"] and rows[0]["status"] == "ok"
    assert main(["run", path, "--local"]) == 0  # finished: nothing new
    assert len(pq.read_table(str(tmp_path / "out" / "samples")).to_pylist()) == 1


def test_bad_manifest_is_one_clear_line(tmp_path, capsys):
    path = _write(tmp_path, {**SMALL, "colour": "blue"})
    for command in (["validate", path], ["run", path, "--local"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "colour" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_missing_manifest_and_usage_errors(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2


def test_tensor_parallel_needs_ray_and_divisible_heads(tmp_path, capsys):
    path = _write(tmp_path, {**SMALL, "resources": {"top_prior": {"tensor_parallel": 2}}})
    assert main(["run", path, "--local"]) == 2
    assert "tensor_parallel=2 needs Ray (drop --local)" in capsys.readouterr().err
    path = _write(tmp_path, {**SMALL, "resources": {"top_prior": {"tensor_parallel": 3}}})
    assert main(["validate", path]) == 2
    assert "tensor_parallel=3 does not divide the 2 attention heads" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unreachable_cluster_is_a_quick_clear_error(tmp_path):
    """`validate --cluster` (and `run`) with an address nothing listens on: one line, in seconds, not minutes of
    Ray's connection retries."""
    import os
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    from jukebox_dist.runtime.runner import check_reachable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    check_reachable("auto")  # forms Ray resolves itself are left to it
    exe = Path(sys.executable).parent / "jukebox-dist"
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}"}
    t0 = time.monotonic()
    done = subprocess.run([str(exe), "validate", "--cluster", str(Path(__file__).parents[1] / "jobs" / "tiny.yaml")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert time.monotonic() - t0 < 60
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"Ray cluster 127.0.0.1:{port} (ray.address or RAY_ADDRESS): nothing answers there" in done.stderr
