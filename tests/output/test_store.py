"""The output store: ledger round trips, de-duplication and gaps, damaged and leftover files, crash safety, sample
rows and audio, skip-if-finished, error rows, job.json checks, and pyarrow filesystem URIs (file://, mock://)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from jukebox_dist import __version__
from jukebox_dist.errors import InputError
from jukebox_dist.output.store import LEDGER_SCHEMA, SAMPLE_SCHEMA, OutputStore, WindowRecord

SR = 8000
MANIFEST = {
    "name": "nightly", "model": "tiny", "output": "/data/out", "mode": "ancestral", "levels": ["top", "middle"],
    "audio_format": "flac",
    "sampling": {"temperature": [0.98, 0.99, 0.99], "top_k": 0, "top_p": 0.0, "batch": {"top": 2}, "chunk_size": 128},
    "songs": [{"artist": "a", "genres": ["pop"], "lyrics": "la", "seconds": 2.0, "takes": 2, "seed": 7}],
    "resources": {"top_prior": {"actors": 1}}, "ray": {"address": None},
}


def rec(sid: str, level: int, start: int, tokens: list[int], finished: float = 1.0, worker: str = "w0") -> WindowRecord:
    return WindowRecord(sid, level, start, tuple(tokens), finished - 0.5, finished, worker)


def row(sid: str, status: str = "ok", **extra: Any) -> dict[str, Any]:
    base = {"sample_id": sid, "song_id": "00000", "artist": "a", "genres": ["pop", "rock"], "lyrics": "la",
            "seed": 7, "seconds": 0.25, "total_length": SR // 4, "mode": "ancestral", "model": "tiny",
            "temperature": [0.98, 0.99, 0.99], "top_k": 0, "top_p": 0.0, "codes_top": [1, 2, 3],
            "codes_middle": [4, 5], "codes_bottom": [], "status": status, "seconds_top": 1.5}
    return {**base, **extra}


def tone(n: int = SR // 4) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / SR)).astype(np.float32)


def parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


# ---- ledger ---------------------------------------------------------------------------------------------------
def test_ledger_round_trip_across_parts(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path), "nightly")
    first = [rec("00000-000", 0, 0, [1, 2, 3], 1.0), rec("00000-001", 0, 0, [9, 8], 1.1, "w1")]
    second = [rec("00000-000", 0, 3, [4, 5], 2.0), rec("00000-000", 1, 0, [2047, 0, 7, 7], 2.5)]
    store.append_windows(first)
    store.append_windows(second)
    store.append_windows([])  # nothing to say: no empty part
    assert len(parts(tmp_path / "ledger")) == 2

    loaded = OutputStore(str(tmp_path), "nightly").load_windows()  # a fresh store: what a resumed job sees
    assert loaded == {("00000-000", 0): [first[0], second[0]], ("00000-001", 0): [first[1]],
                      ("00000-000", 1): [second[1]]}
    assert store.codes_so_far(loaded) == {("00000-000", 0): [1, 2, 3, 4, 5], ("00000-001", 0): [9, 8],
                                          ("00000-000", 1): [2047, 0, 7, 7]}
    table = pq.read_table(parts(tmp_path / "ledger")[0])
    assert table.schema.equals(LEDGER_SCHEMA)


def test_ledger_duplicates_keep_first_finished_and_sort_by_start(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path), "j")
    store.append_windows([rec("s", 0, 2, [3, 4], finished=5.0, worker="retry")])
    store.append_windows([rec("s", 0, 2, [3, 4], finished=3.0, worker="first"), rec("s", 0, 0, [1, 2], 1.0)])
    windows = store.load_windows()[("s", 0)]
    assert [(r.start, r.worker) for r in windows] == [(0, "w0"), (2, "first")]
    assert store.codes_so_far(windows) == {("s", 0): [1, 2, 3, 4]}  # plain records work too


def test_codes_so_far_stops_at_a_gap(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = OutputStore(str(tmp_path), "j")
    store.append_windows([rec("s", 1, 0, [1, 2]), rec("s", 1, 2, [3]), rec("s", 1, 5, [6, 7]), rec("s", 1, 7, [8]),
                          rec("t", 2, 4, [1])])
    with caplog.at_level(logging.WARNING, logger="jukebox_dist.output.store"):
        codes = store.codes_so_far(store.load_windows())
    assert codes == {("s", 1): [1, 2, 3], ("t", 2): []}
    assert "token 5 after 3 contiguous tokens" in caplog.text


def test_tokens_outside_int16_are_refused(tmp_path: Path) -> None:
    with pytest.raises(pa.ArrowInvalid):
        OutputStore(str(tmp_path), "j").append_windows([rec("s", 0, 0, [1, 40000])])
    assert not parts(tmp_path / "ledger")


def test_corrupt_ledger_part_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = OutputStore(str(tmp_path), "j")
    store.append_windows([rec("s", 0, 0, [1, 2])])
    (tmp_path / "ledger" / "part-1-deadbeef.parquet").write_bytes(b"PAR1 not really parquet")
    pq.write_table(pa.table({"other": [1]}), tmp_path / "ledger" / "part-2-cafebabe.parquet")  # foreign schema
    with caplog.at_level(logging.WARNING, logger="jukebox_dist.output.store"):
        windows = store.load_windows()
    assert windows == {("s", 0): [rec("s", 0, 0, [1, 2])]}
    assert "part-1-deadbeef.parquet" in caplog.text and "part-2-cafebabe.parquet" in caplog.text


def test_leftover_temporaries_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = OutputStore(str(tmp_path), "j")
    store.append_windows([rec("s", 0, 0, [1])])
    store.write_samples([row("s")], [tone()], SR)
    # What a kill during a write leaves: atomic_write's dot-prefixed temporary, half written.
    (tmp_path / "ledger" / ".part-9-0.parquet.abc123.tmp").write_bytes(b"PAR1\x00\x01")
    (tmp_path / "samples" / ".part-9-0.parquet.abc123.tmp").write_bytes(b"PAR1\x00\x01")
    (tmp_path / "audio" / ".t.flac.abc123.tmp").write_bytes(b"fLaC")
    fresh = OutputStore(str(tmp_path), "j")
    with caplog.at_level(logging.WARNING):
        assert fresh.load_windows() == {("s", 0): [rec("s", 0, 0, [1])]}
        assert fresh.finished_samples() == {"s"}
        assert fresh.read_samples().num_rows == 1
    assert not caplog.records
    assert pq.read_table(tmp_path / "samples").num_rows == 1  # pyarrow's own directory reader skips them too


def test_a_crash_during_a_write_leaves_no_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = OutputStore(str(tmp_path), "j")
    store.append_windows([rec("s", 0, 0, [1])])
    real = pq.write_table

    def dies_halfway(table: pa.Table, where: Any, **kw: Any) -> None:
        where.write(b"PAR1 half a file")
        raise KeyboardInterrupt  # the job is killed mid-write

    monkeypatch.setattr(pq, "write_table", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        store.append_windows([rec("s", 0, 1, [2])])
    with pytest.raises(KeyboardInterrupt):
        store.write_samples([row("s")], [tone()], SR)
    monkeypatch.setattr(pq, "write_table", real)
    assert [p.name for p in (tmp_path / "ledger").iterdir()] == [parts(tmp_path / "ledger")[0].name]
    assert not (tmp_path / "samples").exists() or not list((tmp_path / "samples").iterdir())
    fresh = OutputStore(str(tmp_path), "j")
    assert fresh.codes_so_far(fresh.load_windows()) == {("s", 0): [1]}
    assert fresh.finished_samples() == set()  # the audio got written, its row did not: the sample is redone


# ---- samples --------------------------------------------------------------------------------------------------
def test_write_samples_writes_audio_and_parquet(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path), "nightly")
    store.write_samples([row("00000-000"), row("00000-001", seed=8)], [tone(), tone()[:SR // 8]], SR)
    assert len(parts(tmp_path / "samples")) == 1
    table = pq.read_table(parts(tmp_path / "samples")[0])
    assert table.schema.equals(SAMPLE_SCHEMA)
    rows = table.to_pylist()
    assert [r["sample_id"] for r in rows] == ["00000-000", "00000-001"]
    first = rows[0]
    assert first["audio_path"] == "audio/00000-000.flac" and first["status"] == "ok" and first["error"] is None
    assert first["job"] == "nightly" and first["sample_rate"] == SR and first["package_version"] == __version__
    assert first["codes_top"] == [1, 2, 3] and first["codes_bottom"] == [] and first["genres"] == ["pop", "rock"]
    assert first["seconds_middle"] is None and first["finished_at"] > 0
    assert table.schema.field("codes_top").type == pa.list_(pa.int16())
    data, rate = sf.read(tmp_path / first["audio_path"], dtype="float32")
    assert rate == SR and data.shape == (SR // 4,)
    np.testing.assert_allclose(data, tone(), atol=1e-5)
    assert sf.info(tmp_path / rows[1]["audio_path"]).frames == SR // 8
    assert store.read_samples().equals(table)
    assert store.finished_samples() == {"00000-000", "00000-001"}


def test_wav_format_and_read_samples_when_empty(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path), "j")
    empty = store.read_samples()
    assert empty.num_rows == 0 and empty.schema.equals(SAMPLE_SCHEMA)
    store.write_samples([row("s")], [tone()], SR, audio_format="wav")
    assert (tmp_path / "audio" / "s.wav").is_file()
    with pytest.raises(ValueError, match="audio_format"):
        store.write_samples([row("t")], [tone()], SR, audio_format="mp3")


def test_a_finished_sample_is_never_written_twice(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    OutputStore(str(tmp_path), "j").write_samples([row("s")], [tone()], SR)
    store = OutputStore(str(tmp_path), "j")  # a resumed job
    with caplog.at_level(logging.WARNING, logger="jukebox_dist.output.store"):
        store.write_samples([row("s")], [tone()], SR)
        store.write_samples([row("t"), row("t")], [tone(), tone()], SR)  # twice in one call
    assert "s is already finished" in caplog.text
    ids = store.read_samples()["sample_id"].to_pylist()
    assert sorted(ids) == ["s", "t"]
    assert len(parts(tmp_path / "samples")) == 2  # the all-skipped call wrote no part


def test_error_rows(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path), "j")
    store.write_samples([row("bad", "error", error="top.sample failed 3 times: OOM"), row("good")], [None, tone()], SR)
    rows = {r["sample_id"]: r for r in store.read_samples().to_pylist()}
    assert rows["bad"]["status"] == "error" and rows["bad"]["audio_path"] is None
    assert rows["bad"]["error"] == "top.sample failed 3 times: OOM"
    assert not (tmp_path / "audio" / "bad.flac").exists()
    assert OutputStore(str(tmp_path), "j").finished_samples() == {"good"}  # a resume retries "bad"
    store.write_samples([row("bad")], [tone()], SR)
    statuses = [(r["sample_id"], r["status"]) for r in store.read_samples().to_pylist() if r["sample_id"] == "bad"]
    assert statuses == [("bad", "error"), ("bad", "ok")]


def test_unwritable_audio_becomes_an_error_row(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path), "j")
    store.write_samples([row("nan")], [np.full(100, np.nan, np.float32)], SR)
    (r,) = store.read_samples().to_pylist()
    assert r["status"] == "error" and "non-finite" in r["error"] and r["audio_path"] is None
    assert store.finished_samples() == set()


@pytest.mark.parametrize("bad, audio, message", [
    ({"colour": "red"}, tone(), "unknown keys \\['colour'\\]"),
    ({"status": "maybe"}, tone(), "status 'maybe'"),
    ({}, None, "status ok without audio"),
    ({"status": "error"}, tone(), "status error with audio"),
])
def test_programming_errors_in_rows(tmp_path: Path, bad: dict, audio: Any, message: str) -> None:
    store = OutputStore(str(tmp_path), "j")
    with pytest.raises(ValueError, match=message):
        store.write_samples([row("s", **bad)], [audio], SR)
    assert store.read_samples().num_rows == 0
    with pytest.raises(ValueError, match="1 rows but 2 audios"):
        store.write_samples([row("s")], [tone(), tone()], SR)


def test_ids_cannot_escape_the_root(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path / "out"), "j")
    with pytest.raises(InputError, match="outside the output folder"):
        store.write_samples([row("../../evil")], [tone()], SR)
    assert not list(tmp_path.rglob("evil*"))
    remote = OutputStore("mock:///bucket/out", "j")
    with pytest.raises(InputError, match="plain relative path"):
        remote.write_samples([row("../evil")], [tone()], SR)


# ---- job.json -------------------------------------------------------------------------------------------------
def test_job_json_written_once_and_checked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    OutputStore(str(tmp_path), "nightly").write_job(MANIFEST)
    first = (tmp_path / "job.json").read_bytes()
    # Where it runs and how it batches do not change the songs: resuming with those changed is fine.
    moved = {**MANIFEST, "output": "s3://elsewhere", "resources": {"top_prior": {"actors": 4}},
             "sampling": {**MANIFEST["sampling"], "batch": {"top": 8}, "chunk_size": 64}}
    OutputStore(str(tmp_path), "nightly").write_job(moved)
    assert (tmp_path / "job.json").read_bytes() == first

    hotter = {**MANIFEST, "sampling": {**MANIFEST["sampling"], "temperature": [1.0, 0.99, 0.99]}}
    with pytest.raises(InputError) as err:
        OutputStore(str(tmp_path), "nightly").write_job(hotter)
    assert "belongs to another job ('nightly'" in str(err.value)
    assert "sampling.temperature differ" in str(err.value) and "Use a new output folder" in str(err.value)
    other = {**MANIFEST, "model": "5b_lyrics", "songs": [], "levels": ["top"]}
    with pytest.raises(InputError, match="levels, model, songs differ"):
        OutputStore(str(tmp_path), "nightly").write_job(other)
    assert (tmp_path / "job.json").read_bytes() == first


def test_damaged_job_json(tmp_path: Path) -> None:
    (tmp_path / "job.json").write_text("{ not json")
    with pytest.raises(InputError, match="job.json is unreadable"):
        OutputStore(str(tmp_path), "j").write_job(MANIFEST)
    (tmp_path / "job.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="not a jukebox-dist job file"):
        OutputStore(str(tmp_path), "j").write_job(MANIFEST)


# ---- pyarrow filesystem URIs ----------------------------------------------------------------------------------
def exercise(store: OutputStore) -> None:
    store.write_job(MANIFEST)
    store.append_windows([rec("s", 0, 0, [1, 2])])
    store.append_windows([rec("s", 0, 2, [3])])
    store.write_samples([row("s"), row("e", "error", error="x")], [tone(), None], SR)


def test_file_uri_root(tmp_path: Path) -> None:
    uri = (tmp_path / "out").as_uri()
    assert uri.startswith("file:///")
    exercise(OutputStore(uri, "nightly"))
    again = OutputStore(uri, "nightly")
    again.write_job(MANIFEST)
    assert again.codes_so_far(again.load_windows()) == {("s", 0): [1, 2, 3]}
    assert again.finished_samples() == {"s"}
    assert sf.info(tmp_path / "out" / "audio" / "s.flac").frames == SR // 4
    assert len(parts(tmp_path / "out" / "ledger")) == 2


def test_mock_uri_root_uses_the_object_store_path() -> None:
    store = OutputStore("mock:///bucket/out", "nightly")
    assert not store.local
    exercise(store)
    assert store.fs.get_file_info("bucket/out/audio/s.flac").size > 0
    assert store.fs.get_file_info("bucket/out/job.json").type == pafs.FileType.File
    assert store.codes_so_far(store.load_windows()) == {("s", 0): [1, 2, 3]}
    assert store.finished_samples() == {"s"}
    assert store.read_samples()["status"].to_pylist() == ["ok", "error"]


def test_object_store_resume_and_corrupt_part() -> None:
    fs = pafs._MockFileSystem()  # shared by both stores, as one bucket is shared by two runs
    exercise(OutputStore("bucket/out", "nightly", filesystem=fs))
    with fs.open_output_stream("bucket/out/ledger/part-0-00000000.parquet") as f:
        f.write(b"garbage")
    resumed = OutputStore("bucket/out", "nightly", filesystem=fs)
    resumed.write_job(MANIFEST)
    assert resumed.codes_so_far(resumed.load_windows()) == {("s", 0): [1, 2, 3]}
    assert resumed.finished_samples() == {"s"}
    resumed.write_samples([row("s")], [tone()], SR)
    assert resumed.read_samples().num_rows == 2
    with pytest.raises(InputError, match="another job"):
        resumed.write_job({**MANIFEST, "mode": "primed"})


def test_bad_uri_is_an_input_error() -> None:
    with pytest.raises(InputError, match="cannot open this filesystem URI"):
        OutputStore("nosuchscheme://x/y", "j")


# ---- compaction -----------------------------------------------------------------------------------------------
def test_compact_merges_parts_and_keeps_every_record(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path), "j")
    store.append_windows([rec("a", 0, 0, [1, 2], 1.0)])
    store.append_windows([rec("a", 0, 2, [3], 2.0), rec("b", 0, 0, [4], 2.5)])
    store.append_windows([rec("a", 0, 2, [3], 3.0, "w1")])  # a retried window: a second record, kept
    store.write_samples([row("bad", "error", error="boom", finished_at=1.0)], [None], SR)
    store.write_samples([row("bad", finished_at=2.0)], [tone()], SR)
    store.write_samples([row("good", finished_at=3.0)], [tone()], SR)
    windows, samples = store.load_windows(), store.read_samples()

    assert store.compact("ledger") == 3 and store.compact("samples") == 3
    assert len(parts(tmp_path / "ledger")) == 1 and len(parts(tmp_path / "samples")) == 1
    assert pq.read_table(parts(tmp_path / "ledger")[0]).num_rows == 4
    again = OutputStore(str(tmp_path), "j")
    assert again.load_windows() == windows
    assert again.read_samples().equals(samples)  # the error row of the retried sample stays, in order
    assert again.finished_samples() == {"bad", "good"}
    assert store.compact("ledger") == 0  # one part: nothing to do
    assert [p.name for p in (tmp_path / "ledger").iterdir()] == [parts(tmp_path / "ledger")[0].name]


def test_a_kill_during_compaction_duplicates_rows_that_readers_and_the_next_compaction_drop(tmp_path: Path) -> None:
    import shutil

    store = OutputStore(str(tmp_path), "j")
    store.write_samples([row("s", finished_at=1.0)], [tone()], SR)
    store.write_samples([row("t", finished_at=2.0)], [tone()], SR)
    store.append_windows([rec("s", 0, 0, [1])])
    store.append_windows([rec("t", 0, 0, [2])])
    before, windows = store.read_samples(), store.load_windows()
    # The state a kill leaves after the merged part is written and before the old parts are deleted.
    for folder in ("samples", "ledger"):
        old = parts(tmp_path / folder)
        saved = [(p.name, p.read_bytes()) for p in old]
        assert store.compact(folder) == 2
        for name, data in saved:
            (tmp_path / folder / name).write_bytes(data)
        assert len(parts(tmp_path / folder)) == 3
    resumed = OutputStore(str(tmp_path), "j")
    assert resumed.read_samples().equals(before)  # no row twice
    assert resumed.load_windows() == windows
    assert resumed.compact("samples") == 3 and resumed.compact("ledger") == 3
    assert resumed.read_samples().equals(before) and pq.read_table(parts(tmp_path / "samples")[0]).num_rows == 2
    assert pq.read_table(parts(tmp_path / "ledger")[0]).num_rows == 2


def test_compact_on_an_object_store() -> None:
    store = OutputStore("mock:///bucket/out", "nightly")
    exercise(store)
    store.append_windows([rec("t", 0, 0, [5])])
    store.write_samples([row("t")], [tone()], SR)
    windows, samples = store.load_windows(), store.read_samples()
    assert store.compact("ledger") >= 2 and store.compact("samples") >= 2
    names = [i.base_name for i in store.fs.get_file_info(pafs.FileSelector("bucket/out/ledger"))]
    assert len(names) == 1 and names[0].startswith("part-")
    assert store.load_windows() == windows and store.read_samples().equals(samples)


# ---- model fingerprint and older parts ----------------------------------------------------------------------
def test_resume_with_other_weights_is_refused(tmp_path: Path) -> None:
    OutputStore(str(tmp_path), "nightly").write_job(MANIFEST, "aaaa")
    OutputStore(str(tmp_path), "nightly").write_job(MANIFEST, "aaaa")  # same weights: resumes
    with pytest.raises(InputError, match=r"weights of model .* changed since this job started \(fingerprint aaaa, "
                                         r"now bbbb\)"):
        OutputStore(str(tmp_path), "nightly").write_job(MANIFEST, "bbbb")


def test_parts_written_before_model_hash_existed_still_read(tmp_path: Path) -> None:
    store = OutputStore(str(tmp_path), "j")
    store.write_samples([row("new", model_hash="abc")], [tone()], SR)
    old = pq.read_table(parts(tmp_path / "samples")[0]).drop_columns(["model_hash"])
    (tmp_path / "samples" / parts(tmp_path / "samples")[0].name).unlink()
    pq.write_table(old.set_column(old.schema.get_field_index("sample_id"), "sample_id", pa.array(["old"])),
                   tmp_path / "samples" / "part-1-00000000.parquet")
    resumed = OutputStore(str(tmp_path), "j")
    assert resumed.finished_samples() == {"old"}  # the old part is read, not skipped as foreign
    resumed.write_samples([row("new", model_hash="abc")], [tone()], SR)
    got = {r["sample_id"]: r["model_hash"] for r in resumed.read_samples().to_pylist()}
    assert got == {"old": None, "new": "abc"}
