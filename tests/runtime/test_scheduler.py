"""The scheduler with plain workers in this process (no Ray): the codes a job writes equal single-process
sampling, levels pipeline across songs, and a killed job resumes without losing or duplicating anything."""
from __future__ import annotations

import glob

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from jukebox_dist.model import Jukebox, JukeboxTokenizer
from jukebox_dist.output.store import OutputStore
from jukebox_dist.runtime import runner
from jukebox_dist.runtime.actors import LocalExecutor
from jukebox_dist.runtime.runner import run_job

MANIFEST = {
    "name": "unit", "model": "tiny", "mode": "ancestral", "levels": ["top", "middle", "bottom"],
    "sampling": {"temperature": [0.9, 0.95, 0.99], "top_k": 30, "top_p": 0.0,
                 "batch": {"top": 2, "middle": 3, "bottom": 2}},
    "songs": [
        {"id": "a", "artist": "Alan Jackson", "genres": ["country"], "lyrics": "down the road we go", "seconds": 0.2,
         "takes": 2, "seed": 5},
        {"id": "b", "artist": "The Beatles", "genres": ["rock", "pop"], "lyrics": "here it comes", "seconds": 0.35,
         "takes": 1, "seed": 40},
    ],
}


def _manifest(tmp_path, **changes) -> str:
    data = {**MANIFEST, "output": str(tmp_path / "out"), **changes}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _rows(out) -> list[dict]:
    parts = sorted(glob.glob(f"{out}/samples/*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]).to_pylist() if parts else []


def test_job_codes_equal_single_process_sampling(tmp_path):
    summary = run_job(_manifest(tmp_path), executor="local")
    assert summary["written"] == 3 and summary["failed"] == 0
    rows = {r["sample_id"]: r for r in _rows(tmp_path / "out")}
    assert sorted(rows) == ["00000-000", "00000-001", "00001-000"]
    model = Jukebox.from_pretrained("tiny")
    tok = JukeboxTokenizer.from_pretrained("tiny")
    for song in MANIFEST["songs"]:
        for take in range(song["takes"]):
            row = rows[f"{MANIFEST['songs'].index(song):05d}-{take:03d}"]
            labels = tok(song["artist"], song["genres"], song["lyrics"])["input_ids"]
            codes = model.ancestral_sample(labels, total_length=row["total_length"], seed=song["seed"] + take,
                                           temperature=[0.9, 0.95, 0.99], top_k=30)
            for level, name in enumerate(["codes_top", "codes_middle", "codes_bottom"]):
                assert row[name] == codes[level][0].tolist(), f"{row['sample_id']} {name}"
            assert row["status"] == "ok" and row["seed"] == song["seed"] + take
            assert row["model_hash"] == "preset-tiny"
            assert (tmp_path / "out" / row["audio_path"]).is_file()


def test_levels_pipeline_across_songs(tmp_path):
    """Upsampler windows run before the top level has finished every song (ledger timestamps)."""
    run_job(_manifest(tmp_path), executor="local")
    records = [r for recs in OutputStore(str(tmp_path / "out"), "unit").load_windows().values() for r in recs]
    last_top_start = max(r.started_at for r in records if r.level == 0)
    assert any(r.level > 0 and r.finished_at <= last_top_start for r in records)
    first_song_done = max(r.finished_at for r in records if r.sample_id == "00000-000")
    assert first_song_done < last_top_start, "the first song is finished before the top level of the last"


class _Killed(Exception):
    pass


def test_killed_job_resumes_and_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    clean = tmp_path / "clean"
    clean.mkdir()
    run_job(_manifest(clean), executor="local")
    expected = {r["sample_id"]: r for r in _rows(clean / "out")}

    calls = {"n": 0}
    original = LocalExecutor.submit

    def dying_submit(self, pool, method, *args):
        calls["n"] += 1
        if calls["n"] == 25:  # the job dies in the middle: some samples finished, others half done
            raise _Killed()
        return original(self, pool, method, *args)

    monkeypatch.setattr(LocalExecutor, "submit", dying_submit)
    with pytest.raises(_Killed):
        run_job(_manifest(tmp_path), executor="local")
    partial = _rows(tmp_path / "out")
    assert len(partial) < 3, "the kill came before the end"
    monkeypatch.setattr(LocalExecutor, "submit", original)

    summary = run_job(_manifest(tmp_path), executor="local")
    rows = _rows(tmp_path / "out")
    assert sorted(r["sample_id"] for r in rows) == sorted(expected), "complete, no duplicates"
    for r in rows:
        for name in ("codes_top", "codes_middle", "codes_bottom"):
            assert r[name] == expected[r["sample_id"]][name]
    assert summary["already_done"] == len(partial)

    # The killed run left one part per window batch; each finished run compacts them into one per folder.
    for folder in ("samples", "ledger"):
        assert len(glob.glob(f"{tmp_path}/out/{folder}/part-*.parquet")) == 1, folder
    page = (tmp_path / "out" / "report.html").read_text()  # the listening page covers every sample
    assert "3 of 3 samples finished" in page and all(f'src="report/{sid}.png"' in page for sid in expected)
    again = run_job(_manifest(tmp_path), executor="local")
    assert again["written"] == 0 and again["already_done"] == 3
    assert len(_rows(tmp_path / "out")) == 3


def test_a_failing_window_is_retried_then_recorded_as_an_error(tmp_path, monkeypatch):
    from jukebox_dist.runtime.workers import PriorWorker
    original = PriorWorker.sample
    failures = {"n": 0}

    def flaky(self, tasks):
        if any(t.sample_id == "00001-000" for t in tasks):
            failures["n"] += 1
            raise RuntimeError("GPU fell off the bus")
        return original(self, tasks)

    monkeypatch.setattr(PriorWorker, "sample", flaky)
    summary = run_job(_manifest(tmp_path), executor="local")
    assert summary["failed"] >= 1 and failures["n"] >= 3  # first try + 2 retries per failed batch
    rows = {r["sample_id"]: r for r in _rows(tmp_path / "out")}
    assert rows["00001-000"]["status"] == "error" and "GPU fell off the bus" in rows["00001-000"]["error"]
    assert rows["00001-000"]["audio_path"] is None
    assert rows["00000-000"]["status"] == rows["00000-001"]["status"] == "ok", "batch-mates of a bad row survive"
