"""End to end on a real Ray head bound to 127.0.0.1: `ray job submit` of jobs/tiny.yaml, then a job stopped
halfway (`ray job stop`) and submitted again, which must finish only what is missing and match the codes of an
uninterrupted run. Token authentication stays on; the client sends the token (RAY_AUTH_MODE=token).

The head is stopped by the process group we started it in (and any straggler whose command line names our
private temp dir): never `ray stop`, which would end every Ray process on the machine."""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile
import yaml

from tests.runtime.tp_job import write_tp_job

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (BIN / "ray").exists() or not (BIN / "jukebox-dist").exists(),
                                reason="needs the ray and jukebox-dist commands of this environment")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head():
    temp = Path(tempfile.mkdtemp(prefix="jbx", dir="/tmp"))  # short: Ray's unix sockets live under it
    dash = _free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    log = open(temp / "head.log", "w")
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={_free_port()}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=2", f"--temp-dir={temp}",
         "--include-dashboard=true", "--disable-usage-stats"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    client_env = {**env, "RAY_AUTH_MODE": "token"}
    try:
        deadline = time.time() + 90
        while True:
            probe = subprocess.run([str(BIN / "ray"), "job", "list", "--address", address], env=client_env,
                                   capture_output=True, text=True)
            if probe.returncode == 0:
                break
            if head.poll() is not None or time.time() > deadline:
                pytest.fail(f"ray head did not come up: {probe.stderr[-2000:]}\n{(temp / 'head.log').read_text()[-2000:]}")
            time.sleep(1)
        yield address, client_env
    finally:
        _stop_head(head, temp)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def _stop_head(head: subprocess.Popen, temp: Path) -> None:
    try:
        os.killpg(head.pid, signal.SIGTERM)  # `ray start --block` stops the processes it started on SIGTERM
        head.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    for proc in psutil.process_iter(["pid", "cmdline"]):  # only processes that name our private temp dir
        try:
            if any(str(temp) in part for part in proc.info["cmdline"] or []):
                proc.kill()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def _manifest(tmp_path: Path, name: str) -> Path:
    """jobs/tiny.yaml with its last song made 3 s long: the job then ends with one sample running well after the
    others are written, which gives the stop-halfway test a wide window to stop it in."""
    data = yaml.safe_load((REPO / "jobs" / "tiny.yaml").read_text())
    data["output"] = str(tmp_path / name)
    data["songs"][-1]["seconds"] = 3.0
    for song in data["songs"]:
        if "lyrics_file" in song:
            song["lyrics_file"] = str(REPO / "jobs" / song["lyrics_file"])
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _ray_job(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), "job", *args], env=env, capture_output=True, text=True, timeout=600)


def _submit(address: str, env: dict, manifest: Path, job_id: str, wait: bool) -> subprocess.CompletedProcess:
    cmd = ["submit", "--address", address, "--submission-id", job_id]
    if not wait:
        cmd.append("--no-wait")
    return _ray_job(env, *cmd, "--", str(BIN / "jukebox-dist"), "run", str(manifest))


def _status(address: str, env: dict, job_id: str) -> str:
    out = _ray_job(env, "status", "--address", address, job_id).stdout.lower()
    for state in ("succeeded", "failed", "stopped", "running", "pending"):
        if state in out:
            return state.upper()
    return out


def _rows(out: Path) -> list[dict]:
    parts = sorted(glob.glob(f"{out}/samples/part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]).to_pylist() if parts else []


def test_submit_tiny_job_then_stop_and_resubmit(ray_head, tmp_path):
    address, env = ray_head
    full = _manifest(tmp_path, "full")
    done = _submit(address, env, full, "tiny-full", wait=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _status(address, env, "tiny-full") == "SUCCEEDED"
    rows = _rows(tmp_path / "full")
    spec = yaml.safe_load(full.read_text())
    n_samples = sum(s.get("takes", 1) for s in spec["songs"])
    assert len(rows) == n_samples >= 3
    for row in rows:
        assert row["status"] == "ok"
        top = row["total_length"] // 128
        assert (len(row["codes_top"]), len(row["codes_middle"]), len(row["codes_bottom"])) == (top, 4 * top, 16 * top)
        info = soundfile.info(str(tmp_path / "full" / row["audio_path"]))
        assert info.samplerate == 44100 and info.frames == row["total_length"]
        assert abs(row["seconds"] - row["total_length"] / 44100) < 1e-9
    assert json.loads((tmp_path / "full" / "job.json").read_text())
    # Pipelining on the cluster: upsampler windows finish before the top level has started its last window.
    from jukebox_dist.output.store import OutputStore
    records = [r for recs in OutputStore(str(tmp_path / "full"), spec["name"]).load_windows().values() for r in recs]
    last_top = max(r.started_at for r in records if r.level == 0)
    assert sum(r.level > 0 and r.finished_at < last_top for r in records) >= 3

    # The same job stopped halfway, then submitted again.
    half = _manifest(tmp_path, "half")
    assert _submit(address, env, half, "tiny-half-1", wait=False).returncode == 0
    deadline = time.time() + 300
    polls = 0
    while len(_rows(tmp_path / "half")) < 1:  # stop once some samples are written and others are not
        assert time.time() < deadline, _ray_job(env, "logs", "--address", address, "tiny-half-1").stdout[-3000:]
        polls += 1
        if polls % 20 == 0:  # `ray job status` takes about a second: ask only now and then
            assert _status(address, env, "tiny-half-1") in ("RUNNING", "PENDING")
        time.sleep(0.1)
    stop = _ray_job(env, "stop", "--address", address, "tiny-half-1")
    assert stop.returncode == 0, stop.stderr
    assert _status(address, env, "tiny-half-1") == "STOPPED"
    written_before = len(_rows(tmp_path / "half"))
    assert 1 <= written_before < n_samples, "the stop came halfway"

    again = _submit(address, env, half, "tiny-half-2", wait=True)
    assert again.returncode == 0, again.stdout[-3000:]
    logs = _ray_job(env, "logs", "--address", address, "tiny-half-2").stdout
    assert f"of {n_samples} samples are already finished" in logs, logs[-3000:]
    resumed = _rows(tmp_path / "half")
    assert sorted(r["sample_id"] for r in resumed) == sorted(r["sample_id"] for r in rows), "complete, no duplicates"
    by_id = {r["sample_id"]: r for r in rows}
    for r in resumed:
        for level in ("codes_top", "codes_middle", "codes_bottom"):
            assert r[level] == by_id[r["sample_id"]][level], f"{r['sample_id']} {level}"


def test_tensor_parallel_top_prior_group_gives_the_same_codes(ray_head, tmp_path):
    """`tensor_parallel: 2`: the top prior runs as two ranks in one placement group (two CPU processes, gloo,
    DeepSpeed AutoTP); the codes equal those of the same job with one top-prior actor."""
    pytest.importorskip("deepspeed")
    address, env = ray_head
    results = {}
    for tp in (1, 2):
        path, _ = write_tp_job(tmp_path, tp, seconds=0.2)
        done = _submit(address, env, path, f"tiny-tp{tp}", wait=True)
        assert done.returncode == 0 and _status(address, env, f"tiny-tp{tp}") == "SUCCEEDED", done.stdout[-3000:]
        results[tp] = {r["sample_id"]: r for r in _rows(tmp_path / f"tp{tp}")}
    logs = _ray_job(env, "logs", "--address", address, "tiny-tp2").stdout
    assert "tensor-parallel group of 2 ranks of TPPriorWorker ready" in logs, logs[-3000:]
    assert sorted(results[1]) == sorted(results[2]) and len(results[2]) == 2
    for sample_id, row in results[2].items():
        assert row["status"] == "ok"
        assert (tmp_path / "tp2" / row["audio_path"]).is_file()
        for level in ("codes_top", "codes_middle"):
            assert row[level] == results[1][sample_id][level], f"{sample_id} {level}"
