"""The output folder of a generation job: audio files, Parquet parts, the window ledger. The source of truth for resume.

Layout under the root (a local path or a pyarrow filesystem URI such as s3://bucket/prefix):

    job.json                    the manifest as loaded + package version, written once at job start
    audio/{sample_id}.flac      (or .wav) one file per finished sample
    samples/part-*.parquet      one row per sample (SAMPLE_SCHEMA): metadata, codes, timings, status
    ledger/part-*.parquet       one row per finished window (LEDGER_SCHEMA): what a restart resumes from
    report/{sample_id}.png      each finished sample's spectrogram
    report.html                 the listening page, rewritten at the end of every run

Nothing is ever rewritten in place: every write adds a new uniquely named part, and every file appears under its
final name complete or not at all (local: temporary name in the same folder + rename; object stores: one put,
which they publish atomically). So a job killed at any instant leaves a folder that readers and a resumed job can
use as is; a temporary file left behind starts with "." and is never matched by the `part-*.parquet` readers.

A finished job compacts each folder's parts into one (`compact`): the merged part is written first, then the
parts it holds are deleted, so a kill in between leaves rows twice, never none; the readers here drop such exact
duplicates and the next compaction removes them.
"""
from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from jukebox_dist import __version__
from jukebox_dist.errors import AudioError, InputError
from jukebox_dist.output.audio import atomic_write, safe_join, write_audio
from jukebox_dist.output.report import render_report, spectrogram_png

__all__ = ["AUDIO_FORMATS", "LEDGER_SCHEMA", "SAMPLE_SCHEMA", "OutputStore", "WindowRecord"]

log = logging.getLogger(__name__)

AUDIO_FORMATS = ("flac", "wav")
JOB_FILE = "job.json"
REPORT_FILE = "report.html"
LEVEL_NAMES = ("top", "middle", "bottom")  # prior order

LEDGER_SCHEMA = pa.schema([
    ("sample_id", pa.string()), ("level", pa.int8()), ("start", pa.int32()), ("tokens", pa.list_(pa.int16())),
    ("started_at", pa.float64()), ("finished_at", pa.float64()), ("worker", pa.string()),
])

SAMPLE_SCHEMA = pa.schema([
    ("job", pa.string()), ("sample_id", pa.string()), ("song_id", pa.string()), ("artist", pa.string()),
    ("genres", pa.list_(pa.string())), ("lyrics", pa.string()), ("seed", pa.int64()), ("seconds", pa.float64()),
    ("total_length", pa.int64()), ("sample_rate", pa.int32()), ("mode", pa.string()), ("model", pa.string()),
    ("model_hash", pa.string()),
    ("temperature", pa.list_(pa.float32())), ("top_k", pa.int32()), ("top_p", pa.float32()),
    ("codes_top", pa.list_(pa.int16())), ("codes_middle", pa.list_(pa.int16())),
    ("codes_bottom", pa.list_(pa.int16())), ("audio_path", pa.string()), ("status", pa.string()),
    ("error", pa.string()), ("seconds_top", pa.float64()), ("seconds_middle", pa.float64()),
    ("seconds_bottom", pa.float64()), ("package_version", pa.string()), ("finished_at", pa.float64()),
])
STATUSES = ("ok", "error")

# Manifest entries that do not change what a job produces, so they may differ on resume: where it writes, the
# cluster it runs on, and batch / prefill chunk sizes (tokens depend on seeds, not on batching; DESIGN.md).
# Everything else (model, mode, levels, sampling, songs, name, audio format, and any field added later) must match.
_NOT_RESULTS = {("output",), ("resources",), ("ray",), ("sampling", "batch"), ("sampling", "chunk_size")}

# Columns added after parts were first written: older parts lack them and read as null. Any other missing
# column makes a part foreign (skipped).
_ADDED_COLUMNS = {"model_hash"}

# What reading a damaged or foreign part can raise; one bad part must never stop a resume.
_READ_ERRORS = (pa.ArrowException, OSError, ValueError, KeyError, TypeError)


@dataclass(frozen=True)
class WindowRecord:
    """One finished window of one sample at one level: its new tokens and who made them when."""

    sample_id: str
    level: int  # prior index: 0 top, 1 middle, 2 bottom
    start: int  # index (at this level) of the first NEW token of the window
    tokens: tuple[int, ...]  # the new tokens
    started_at: float  # unix seconds
    finished_at: float
    worker: str


Windows = dict[tuple[str, int], list[WindowRecord]]


class OutputStore:
    """A job's output folder. `root` is a local path or a pyarrow filesystem URI (s3://, gs://, file://, ...);
    `filesystem` (optional) is a pyarrow filesystem to use as is, `root` then being a path inside it."""

    def __init__(self, root: str, job: str, *, filesystem: pafs.FileSystem | None = None) -> None:
        self.root = str(root)
        self.job = job
        if filesystem is not None:
            self.fs, base = filesystem, self.root
        elif "://" in self.root:
            try:
                self.fs, base = pafs.FileSystem.from_uri(self.root)
            except (pa.ArrowException, OSError, ValueError) as exc:
                raise InputError(f"output {self.root!r}: cannot open this filesystem URI ({exc}); expected a local "
                                 "path or a URI pyarrow supports (s3://, gs://, hdfs://, file://)") from None
        else:
            self.fs, base = pafs.LocalFileSystem(), str(Path(self.root).expanduser().resolve())
        # Local folders get rename-based atomic writes and safe_join's symlink checks; anything else is an
        # object store (or alike) where a single put is the atomic unit and paths are plain strings.
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.base = str(Path(base).resolve()) if self.local else base.rstrip("/")
        self._finished: set[str] | None = None  # cache: only this job writes here, so we keep it up to date
        self._dirs: set[str] = set()

    def __repr__(self) -> str:
        return f"OutputStore({self.root!r}, job={self.job!r})"

    # ---- job.json --------------------------------------------------------------------------------------
    def write_job(self, manifest_dict: Mapping[str, Any], model_hash: str | None = None) -> None:
        """Record the manifest (and the fingerprint of the weights) at job start; on a resume, check the folder
        belongs to this same job, sampled with the same weights."""
        new = json.loads(json.dumps(manifest_dict, default=str))  # normalise tuples, enums, paths as on disk
        path = self._path(JOB_FILE)
        if self.fs.get_file_info(path).type == pafs.FileType.File:
            old = self._read_job(path)
            changed = _result_changes(old.get("manifest", {}), new)
            if changed:
                raise InputError(
                    f"output {self.root}: this folder belongs to another job ({old.get('job')!r}, started "
                    f"{_when(old.get('created_at'))}): its {', '.join(changed)} differ from this manifest's. "
                    "Use a new output folder, or the original manifest to resume that job.")
            if model_hash and old.get("model_hash") and old["model_hash"] != model_hash:
                raise InputError(
                    f"output {self.root}: the weights of model {new.get('model')!r} changed since this job started "
                    f"(fingerprint {old['model_hash']}, now {model_hash}); finishing it would mix samples of two "
                    "models. Use a new output folder, or the original weights to resume.")
            if old.get("package_version") != __version__:
                log.warning("%s was started by jukebox-dist %s, this is %s; resuming anyway", self.root,
                            old.get("package_version"), __version__)
            log.info("%s: resuming job %s started %s", self.root, old.get("job"), _when(old.get("created_at")))
            return
        doc = {"job": self.job, "package_version": __version__, "created_at": time.time(), "manifest": new,
               "model_hash": model_hash}
        self._put(JOB_FILE, json.dumps(doc, indent=2, sort_keys=True).encode())
        log.info("%s: new job %s", self.root, self.job)

    def _read_job(self, path: str) -> dict[str, Any]:
        try:
            with self.fs.open_input_stream(path) as f:
                doc = json.loads(f.read().decode())
        except (OSError, pa.ArrowException, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"output {self.root}: {JOB_FILE} is unreadable ({exc}); this is not a jukebox-dist "
                             "output folder, or it is damaged. Use a new output folder.") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("manifest"), dict):
            raise InputError(f"output {self.root}: {JOB_FILE} is not a jukebox-dist job file. Use a new output "
                             "folder.")
        return doc

    # ---- ledger ----------------------------------------------------------------------------------------
    def append_windows(self, records: Sequence[WindowRecord]) -> None:
        """Add finished windows to the ledger as one new part (nothing is written for no records)."""
        if not records:
            return
        cols = {name: [getattr(r, name) for r in records] for name in LEDGER_SCHEMA.names}
        cols["tokens"] = [list(t) for t in cols["tokens"]]
        table = pa.Table.from_pydict(cols, schema=LEDGER_SCHEMA)  # raises on tokens outside int16
        self._put_table("ledger", table)
        log.debug("ledger: +%d windows", len(records))

    def load_windows(self) -> Windows:
        """Every window in the ledger, by (sample_id, level), sorted by start, one record per start."""
        best: dict[tuple[str, int, int], WindowRecord] = {}
        for table in self._read_parts("ledger", LEDGER_SCHEMA):
            for row in table.to_pylist():
                r = WindowRecord(row["sample_id"], int(row["level"]), int(row["start"]), tuple(row["tokens"]),
                                 row["started_at"], row["finished_at"], row["worker"])
                key = (r.sample_id, r.level, r.start)
                # A retry after a crash can record a window twice; its tokens are the same (seeded noise), so
                # keeping the earliest finished is only a choice of timings.
                if key not in best or r.finished_at < best[key].finished_at:
                    best[key] = r
        out: Windows = defaultdict(list)
        for r in best.values():
            out[(r.sample_id, r.level)].append(r)
        for recs in out.values():
            recs.sort(key=lambda r: r.start)
        return dict(out)

    def codes_so_far(self, records: Mapping[tuple[str, int], Sequence[WindowRecord]] | Iterable[WindowRecord]
                     ) -> dict[tuple[str, int], list[int]]:
        """Contiguous tokens per (sample_id, level) from `load_windows()` output (or plain records). Records
        must chain (each starts where the tokens so far end); from a gap on, a level's records are dropped:
        the windows after it were primed by tokens we no longer have, so they are redone."""
        if not isinstance(records, Mapping):
            grouped: Windows = defaultdict(list)
            for r in records:
                grouped[(r.sample_id, r.level)].append(r)
            records = grouped
        codes: dict[tuple[str, int], list[int]] = {}
        for key, recs in records.items():
            tokens: list[int] = []
            for r in sorted(recs, key=lambda r: r.start):
                if r.start != len(tokens):
                    log.warning("ledger: %s level %d has a window at token %d after %d contiguous tokens; "
                                "ignoring it and the later ones (they will be sampled again)", key[0], key[1],
                                r.start, len(tokens))
                    break
                tokens.extend(r.tokens)
            codes[key] = tokens
        return codes

    # ---- samples ---------------------------------------------------------------------------------------
    def finished_samples(self) -> set[str]:
        """sample_ids with an "ok" row in samples/ (error rows do not count: a resume tries those again)."""
        if self._finished is None:
            self._finished = set()
            for table in self._read_parts("samples", SAMPLE_SCHEMA, columns=["sample_id", "status"]):
                for sid, status in zip(table["sample_id"].to_pylist(), table["status"].to_pylist()):
                    if status == "ok":
                        self._finished.add(sid)
        return set(self._finished)

    def write_samples(self, rows: Sequence[Mapping[str, Any]], audios: Sequence[np.ndarray | None], sample_rate: int,
                      audio_format: str = "flac") -> None:
        """Store finished samples: each "ok" row's audio file first, then one Parquet part with all the rows, so
        a row never points at a missing file. Samples already finished here are skipped (with a warning).
        Audio may also be a torch tensor (anything `write_audio` takes)."""
        fmt = str(getattr(audio_format, "value", audio_format)).lower()
        if fmt not in AUDIO_FORMATS:
            raise ValueError(f"audio_format {audio_format!r}: expected one of {AUDIO_FORMATS}")
        if len(rows) != len(audios):
            raise ValueError(f"write_samples: {len(rows)} rows but {len(audios)} audios")
        done = self.finished_samples()
        out: list[dict[str, Any]] = []
        for row, audio in zip(rows, audios):
            row = self._check_row(row, audio)
            sid = row["sample_id"]
            if sid in done:
                log.warning("%s is already finished in %s; not writing it again", sid, self.root)
                continue
            if row["status"] == "ok":
                rel = f"audio/{sid}.{fmt}"
                try:
                    self._put_audio(rel, audio, sample_rate)
                    row["audio_path"] = rel
                except AudioError as exc:  # bad audio from one sample (NaN, empty) fails that sample, not the job
                    log.error("%s: cannot write its audio: %s", sid, exc)
                    row.update(status="error", error=f"writing audio: {exc}", audio_path=None)
                else:
                    self._put_spectrogram(sid, audio, sample_rate)
            row.setdefault("job", self.job)
            row.setdefault("sample_rate", sample_rate)
            row.setdefault("package_version", __version__)
            row.setdefault("finished_at", time.time())
            out.append(row)
            if row["status"] == "ok":
                done.add(sid)  # a second row for it in this same call is skipped too
        if not out:
            return
        self._put_table("samples", pa.Table.from_pylist(out, schema=SAMPLE_SCHEMA))
        assert self._finished is not None
        self._finished |= {r["sample_id"] for r in out if r["status"] == "ok"}
        log.info("stored %d samples (%d ok) in %s", len(out), sum(r["status"] == "ok" for r in out), self.root)

    def read_samples(self) -> pa.Table:
        """Every sample row written so far (all parts), with SAMPLE_SCHEMA; empty when there are none."""
        tables = [table for _, table in self._read_parts_named("samples", SAMPLE_SCHEMA)]
        return _unique_rows(tables, SAMPLE_SCHEMA, _ROW_KEYS["samples"])

    # ---- report -----------------------------------------------------------------------------------------
    def write_report(self) -> str:
        """report.html: a player, spectrogram and metadata per sample (output/report.py); returns its path."""
        self._put(REPORT_FILE, render_report(self.job, self.read_samples().to_pylist()).encode())
        return self._path(REPORT_FILE)

    def _put_spectrogram(self, sample_id: str, audio: Any, sample_rate: int) -> None:
        try:
            self._put(f"report/{sample_id}.png", spectrogram_png(audio, sample_rate))
        except (RuntimeError, ValueError, OSError, pa.ArrowException) as exc:  # a picture never fails a sample
            log.warning("%s: no spectrogram for the report (%s)", sample_id, exc)

    # ---- compaction --------------------------------------------------------------------------------------
    def compact(self, folder: str) -> int:
        """Merge the readable parts of "ledger" or "samples" into one new part, dropping exact duplicate rows;
        returns how many parts were merged (0 when there was at most one). Unreadable parts are left alone."""
        schema = {"ledger": LEDGER_SCHEMA, "samples": SAMPLE_SCHEMA}[folder]
        named = list(self._read_parts_named(folder, schema))
        if len(named) <= 1:
            return 0
        merged = _unique_rows([table for _, table in named], schema, _ROW_KEYS[folder])
        self._put_table(folder, merged)  # first the merged part: a kill from here on loses no row
        for path, _ in named:
            self.fs.delete_file(path)
        log.info("%s: compacted %d %s parts (%d rows) into one", self.root, len(named), folder, merged.num_rows)
        return len(named)

    @staticmethod
    def _check_row(row: Mapping[str, Any], audio: Any | None) -> dict[str, Any]:
        # Rows come from our own runner, so a wrong one is a programming error (ValueError), not a user error.
        unknown = sorted(set(row) - set(SAMPLE_SCHEMA.names))
        if unknown:
            raise ValueError(f"sample row has unknown keys {unknown}; expected keys of SAMPLE_SCHEMA")
        row = dict(row)  # the stored row gains audio_path etc.; the caller's dict stays as it was
        sid, status = row.get("sample_id"), row.get("status", "ok")
        if not isinstance(sid, str) or not sid:
            raise ValueError(f"sample row has sample_id {sid!r}; expected a non-empty string")
        if status not in STATUSES:
            raise ValueError(f"sample {sid}: status {status!r}; expected one of {STATUSES}")
        if status == "ok" and audio is None:
            raise ValueError(f"sample {sid}: status ok without audio")
        if status == "error" and audio is not None:
            raise ValueError(f"sample {sid}: status error with audio; a failed sample has none")
        row["status"] = status
        return row

    # ---- filesystem ------------------------------------------------------------------------------------
    def _path(self, relative: str) -> str:
        """Path of `relative` (built from ids) in self.fs, never outside the root."""
        if self.local:
            return str(safe_join(self.base, relative))
        # No symlinks in object stores: a lexical check is the whole of safe_join's job there.
        rel = PurePosixPath(relative)
        if (not relative or "\x00" in relative or "\\" in relative or rel.is_absolute()
                or any(part in ("", ".", "..") for part in relative.split("/"))):
            raise InputError(f"output path {relative!r}: expected a plain relative path inside {self.root}")
        return f"{self.base}/{relative}"

    def _put(self, relative: str, data: bytes) -> None:
        path = self._path(relative)
        if self.local:
            atomic_write(path, lambda f: f.write(data))
            return
        self._ensure_dir(path.rsplit("/", 1)[0])
        with self.fs.open_output_stream(path) as out:  # object stores publish the object only on close
            out.write(data)

    def _put_table(self, folder: str, table: pa.Table) -> None:
        # time_ns first: parts list in write order; the uuid keeps two writers in one nanosecond apart.
        name = f"{folder}/part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        if self.local:
            atomic_write(self._path(name), lambda f: pq.write_table(table, f))
            return
        buf = pa.BufferOutputStream()
        pq.write_table(table, buf)
        self._put(name, buf.getvalue().to_pybytes())

    def _put_audio(self, relative: str, audio: Any, sample_rate: int) -> None:
        path = self._path(relative)
        if self.local:
            write_audio(path, audio, sample_rate)  # atomic itself
            return
        # soundfile writes local files only: encode to a temp file, then upload it in one put (S3 multipart
        # uploads too appear only when completed).
        with tempfile.TemporaryDirectory(prefix="jukebox-dist-") as tmp:
            local = str(Path(tmp) / PurePosixPath(relative).name)
            write_audio(local, audio, sample_rate)
            self._ensure_dir(path.rsplit("/", 1)[0])
            pafs.copy_files(local, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs)

    def _ensure_dir(self, path: str) -> None:
        if path not in self._dirs:  # S3 and GCS need no folders, but HDFS and other filesystems do
            self.fs.create_dir(path, recursive=True)
            self._dirs.add(path)

    def _read_parts(self, folder: str, schema: pa.Schema, columns: list[str] | None = None) -> Iterable[pa.Table]:
        """Each readable `part-*.parquet` of `folder`, in write order, as `schema` (its `columns`); damaged or
        foreign parts are skipped with a warning, so one bad file never stops a resume."""
        for _, table in self._read_parts_named(folder, schema, columns):
            yield table

    def _read_parts_named(self, folder: str, schema: pa.Schema,
                          columns: list[str] | None = None) -> Iterable[tuple[str, pa.Table]]:
        selector = pafs.FileSelector(self._path(folder), allow_not_found=True)
        infos = [i for i in self.fs.get_file_info(selector)
                 if i.type == pafs.FileType.File and i.base_name.startswith("part-")
                 and i.base_name.endswith(".parquet")]  # leftover temporaries start with "." and never match
        want = pa.schema([schema.field(c) for c in columns]) if columns else schema
        for info in sorted(infos, key=lambda i: i.base_name):
            try:
                have = set(pq.read_schema(info.path, filesystem=self.fs).names)
                table = pq.read_table(info.path, filesystem=self.fs, columns=[c for c in want.names if c in have])
                for field in want:  # a part written before a column was added: the column is null there
                    if field.name not in have:
                        if field.name not in _ADDED_COLUMNS:
                            raise KeyError(f"no column {field.name!r}")
                        table = table.append_column(field.name, pa.nulls(table.num_rows, field.type))
                yield info.path, table.select(want.names).cast(want)
            except _READ_ERRORS as exc:
                log.warning("%s: skipping unreadable part %s (%s: %s)", self.root, info.path,
                            type(exc).__name__, exc)


# What makes two rows the same record: a row written twice (a part and the compacted part that holds it) agrees
# on these; two different records of one sample (an error, then the ok of its retry) do not.
_ROW_KEYS = {"samples": ("sample_id", "status", "finished_at"),
             "ledger": ("sample_id", "level", "start", "finished_at", "worker")}


def _unique_rows(tables: list[pa.Table], schema: pa.Schema, keys: tuple[str, ...]) -> pa.Table:
    """The rows of `tables` (in order), keeping the first of rows that agree on `keys`."""
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables(tables)
    seen: set[tuple] = set()
    keep = []
    for i, key in enumerate(zip(*(table[k].to_pylist() for k in keys))):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return table if len(keep) == table.num_rows else table.take(keep)


def _result_changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[str]:
    """Dotted names of the manifest entries that differ between `old` and `new` and change results."""
    changed = []
    for key in sorted(set(old) | set(new)):
        where = (*prefix, key)
        if where in _NOT_RESULTS:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            changed += _result_changes(a, b, where)
        elif a != b:
            changed.append(".".join(where))
    return changed


def _when(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)):
        return "at an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))

