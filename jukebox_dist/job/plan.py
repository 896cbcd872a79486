"""Manifest -> samples (ids, seeds, labels, lengths) -> windows per level, and every check that needs the model's
config and vocabulary but not its weights.

    manifest = load_manifest(path)
    songs = load_songs(manifest)                       # inline songs, or the rows of songs_file
    config, tokenizer = load_model_config(manifest.model)  # config.json and vocab files only
    check_against_model(manifest, songs, config, tokenizer)
    plan = make_plan(manifest, config, tokenizer, songs=songs)

`validate_command(path)` does exactly that and logs the plan (`jukebox-dist validate MANIFEST`).
"""
from __future__ import annotations

import csv
import json
import logging
import math
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from jukebox_dist.errors import CheckpointError, ConfigError, JukeboxError
from jukebox_dist.job.manifest import (LEVELS, HUB_ID_RE, Level, Manifest, ManifestError, Mode, Song, assign_defaults,
                                       format_validation_error, load_manifest)
from jukebox_dist.model.checkpoint import weights_fingerprint
from jukebox_dist.model.config import JukeboxConfig, tiny_config
from jukebox_dist.model.tokenizer import JukeboxTokenizer
from jukebox_dist.sampling.windows import hop_length, level_tokens, windows

__all__ = ["LevelPlan", "Plan", "RELEASED_SECONDS_PER_TOKEN", "SampleSpec", "TINY_SECONDS_PER_TOKEN",
           "check_against_model", "default_seconds_per_token", "load_model_config", "load_songs", "make_plan",
           "total_length_of", "validate_command"]

log = logging.getLogger(__name__)

TINY_PRESETS = {"tiny": "merged", "tiny5b": "separate"}
VOCAB_ONLY_PRESETS = ("1b_lyrics", "5b_lyrics")  # configs ship with us; vocabularies and weights do not
LEVEL_NAMES = tuple(lvl.value for lvl in LEVELS)
CODES_ARRAYS = ("meta", *LEVEL_NAMES)
CODES_WHAT = "a codes .npz written by `jukebox-dist sample` or a job"
CODES_HINT = f"expected {CODES_WHAT}"

# The time estimate's one assumption: seconds per sampled token at each level, for one batch of windows (a batch is
# assumed to cost about what one window costs: true on a GPU at these batch sizes, optimistic on a CPU), so a level
# takes tokens * seconds_per_token / min(samples, batch * actors). Pass measured figures (bench/bench_sampling.py)
# to make_plan(seconds_per_token=...) for a better guess.
# The tiny presets: measured with `generate` on 2 CPU cores (each top window re-primes 28 of its 32 tokens).
TINY_SECONDS_PER_TOKEN: Mapping[str, float] = {"top": 0.0125, "middle": 0.0027, "bottom": 0.0014}
# Released models: the original openai/jukebox README's "about 3 hrs to fully sample 20 seconds of music" on a V100
# (6,890 top, 27,562 middle and 110,250 bottom tokens), split as 0.2 s per top step and 0.07 s per upsampler step.
RELEASED_SECONDS_PER_TOKEN: Mapping[str, float] = {"top": 0.2, "middle": 0.07, "bottom": 0.07}


def default_seconds_per_token(model: str) -> Mapping[str, float]:
    return TINY_SECONDS_PER_TOKEN if model in TINY_PRESETS else RELEASED_SECONDS_PER_TOKEN


# ---------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class SampleSpec:
    """One sample: take `take` of song `song_index`."""

    sample_id: str  # f"{song_index:05d}-{take:03d}": stable, sorts in manifest order
    song_id: str
    song_index: int
    take: int  # 0-based
    artist: str
    genres: tuple[str, ...]
    lyrics: str
    seed: int  # the song's seed + take
    seconds: float  # as asked for
    total_length: int  # audio samples: whole top-level tokens
    prime: str | None = None
    prime_seconds: float | None = None
    codes: str | None = None


@dataclass(frozen=True)
class LevelPlan:
    name: str  # top, middle, bottom
    prior: int  # 0, 1, 2
    n_ctx: int
    hop: int  # new tokens per window after the first
    raw_to_tokens: int  # audio samples per token
    tokens: int  # summed over samples
    windows: int  # summed over samples
    parallel: int  # windows sampled at once: min(samples, batch * actors)
    seconds_per_token: float

    @property
    def estimate_seconds(self) -> float:
        return self.tokens * self.seconds_per_token / max(1, self.parallel)


@dataclass(frozen=True)
class Plan:
    name: str
    model: str
    mode: str
    output: str
    sample_rate: int
    n_songs: int
    samples: list[SampleSpec]
    levels: list[LevelPlan]

    @property
    def estimate_seconds(self) -> float:
        """Sum over levels: an upper bound, since the levels overlap in a pipeline."""
        return sum(level.estimate_seconds for level in self.levels)

    def level(self, name: str) -> LevelPlan:
        return next(level for level in self.levels if level.name == name)

    def describe(self, max_samples: int = 20) -> list[str]:
        """The plan as log lines."""
        audio = sum(s.total_length for s in self.samples) / self.sample_rate
        lines = [f"job {self.name}: model {self.model}, mode {self.mode}, levels "
                 f"{', '.join(lvl.name for lvl in self.levels)}, output {self.output}",
                 f"{self.n_songs} songs, {len(self.samples)} samples, {audio:.2f} s of audio",
                 f"{'level':<7}{'n_ctx':>7}{'hop':>6}{'tokens':>11}{'windows':>9}{'parallel':>9}{'estimate':>11}"]
        for lv in self.levels:
            lines.append(f"{lv.name:<7}{lv.n_ctx:>7}{lv.hop:>6}{lv.tokens:>11,}{lv.windows:>9,}{lv.parallel:>9}"
                         f"{_duration(lv.estimate_seconds):>11}")
        lines.append(f"estimate: {_duration(self.estimate_seconds)} at most (levels overlap), a rough guess from "
                     f"seconds per token {dict((lv.name, lv.seconds_per_token) for lv in self.levels)}")
        for s in self.samples[:max_samples]:
            extra = "".join(f", {k} {v}" for k, v in (("prime", s.prime), ("codes", s.codes)) if v)
            lines.append(f"  {s.sample_id} {s.song_id}: {s.artist} [{', '.join(s.genres)}], "
                         f"{s.total_length / self.sample_rate:.3f} s, seed {s.seed}, "
                         f"{len(s.lyrics)} lyric characters{extra}")
        if len(self.samples) > max_samples:
            lines.append(f"  ... and {len(self.samples) - max_samples} more samples")
        return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def total_length_of(seconds: float, config: JukeboxConfig) -> int:
    """Audio samples of a song of `seconds`: rounded down to whole top-level tokens (as `jukebox-dist sample`)."""
    hop = config.raw_to_tokens(0)
    return int(seconds * config.sampling_rate) // hop * hop


def make_plan(manifest: Manifest, config: JukeboxConfig, tokenizer: JukeboxTokenizer, *,
              songs: list[Song] | None = None, seconds_per_token: Mapping[str, float] | None = None) -> Plan:
    """Samples (song by song, take by take) and, for each of the manifest's levels, tokens and windows summed over
    samples and a rough time estimate (see default_seconds_per_token). Run check_against_model first."""
    songs = load_songs(manifest) if songs is None else songs
    cost = {**default_seconds_per_token(manifest.model), **(seconds_per_token or {})}
    lyrics_cache: dict[str, str] = {}
    samples = []
    for index, song in enumerate(songs):
        lyrics = song.lyrics or ""
        if song.lyrics_file is not None:
            if song.lyrics_file not in lyrics_cache:
                lyrics_cache[song.lyrics_file] = _read_lyrics(song)
            lyrics = lyrics_cache[song.lyrics_file]
        total = total_length_of(song.seconds, config)
        for take in range(song.takes):
            samples.append(SampleSpec(
                sample_id=f"{index:05d}-{take:03d}", song_id=song.id, song_index=index, take=take,
                artist=song.artist, genres=tuple(song.genres), lyrics=lyrics, seed=song.seed + take,
                seconds=song.seconds, total_length=total, prime=song.prime, prime_seconds=song.prime_seconds,
                codes=song.codes))
    levels = []
    batch = manifest.sampling.batch
    res = manifest.resources
    for prior in manifest.level_indices():
        name = LEVEL_NAMES[prior]
        n_ctx = config.priors[prior].n_ctx
        hop = hop_length(config.vqvae.hop_fraction[prior], n_ctx)
        r2t = config.raw_to_tokens(prior)
        counts = [level_tokens(s.total_length, r2t) for s in samples]
        actors = res.top_prior.actors if prior == 0 else getattr(res.upsamplers, name).actors
        levels.append(LevelPlan(
            name=name, prior=prior, n_ctx=n_ctx, hop=hop, raw_to_tokens=r2t, tokens=sum(counts),
            windows=sum(len(windows(n, n_ctx, hop)) for n in counts if n > 0),
            parallel=min(len(samples), getattr(batch, name) * actors), seconds_per_token=float(cost[name])))
    return Plan(name=manifest.name, model=manifest.model, mode=manifest.mode.value, output=manifest.output,
                sample_rate=config.sampling_rate, n_songs=len(songs), samples=samples, levels=levels)


# --------------------------------------------------------------------------------------------- songs file
def load_songs(manifest: Manifest) -> list[Song]:
    """The manifest's songs, or the rows of its songs_file (CSV, JSONL, Parquet) validated as the same Song model
    (relative paths in a row are relative to the songs file). ManifestError names the file and line or row."""
    if manifest.songs is not None:
        return list(manifest.songs)
    path = Path(manifest.songs_file)
    shown = manifest.songs_file
    if not path.is_file():
        what = "no such file" if not path.exists() else "not a file"
        raise ManifestError(f"{manifest.source}: songs_file: {shown}: {what}; expected a CSV, JSONL or Parquet file "
                            "of songs")
    readers = {".csv": _csv_rows, ".jsonl": _jsonl_rows, ".parquet": _parquet_rows}
    problems: list[str] = []
    songs: list[Song] = []
    labels: list[str] = []
    context = {"base": path.resolve().parent, "mode": manifest.mode}
    for label, row in readers[path.suffix.lower()](path, shown, problems):
        prefix = f"{shown}: {label}"
        try:
            song = Song.model_validate(row, context=context)
        except ValidationError as exc:
            problems += format_validation_error(exc, prefix, Song)
            continue
        song.set_origin(prefix, ": ")
        songs.append(song)
        labels.append(label)
    if not songs and not problems:
        problems.append(f"{shown}: has no songs; expected at least one row")
    if not problems:
        dupes = assign_defaults(songs, manifest.name, lambda i: labels[i])
        problems += [f"{songs[i].where('id')}: {msg}" for (i, _), msg in dupes]
    if problems:
        raise ManifestError(problems)
    return songs


_COLUMNS = tuple(Song.model_fields)


def _drop_unknown(columns: list[str], shown: str, where: str, problems: list[str]) -> set[str]:
    unknown = [c for c in columns if c not in _COLUMNS]
    for c in unknown:
        problems.append(f"{shown}: {where}: unknown column {c!r}; allowed columns: {', '.join(_COLUMNS)}")
    return set(unknown)


def _csv_rows(path: Path, shown: str, problems: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows as {column: text}; empty cells are left out (defaults apply) and genres split on ';'."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None:
                return
            unknown = _drop_unknown(list(reader.fieldnames), shown, "line 1", problems)
            line = reader.line_num
            for row in reader:
                start, line = line + 1, reader.line_num
                if None in row:
                    problems.append(f"{shown}: line {start}: more cells than the {len(reader.fieldnames)} columns")
                    continue
                out: dict[str, Any] = {k: v for k, v in row.items() if k not in unknown and v not in (None, "")}
                if "genres" in out:
                    out["genres"] = [g.strip() for g in out["genres"].split(";") if g.strip()]
                yield f"line {start}", out
    except UnicodeDecodeError as exc:
        problems.append(f"{shown}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    except (OSError, csv.Error) as exc:
        problems.append(f"{shown}: cannot be read as CSV ({exc})")


def _jsonl_rows(path: Path, shown: str, problems: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{shown}: cannot be read as UTF-8 text ({exc})")
        return
    for n, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(f"{shown}: line {n}: not valid JSON ({exc.msg} at column {exc.colno}); expected one "
                            "object per line")
            continue
        if not isinstance(row, dict):
            problems.append(f"{shown}: line {n}: expected a JSON object, got {type(row).__name__}")
            continue
        yield f"line {n}", {k: v for k, v in row.items() if v is not None}


def _parquet_rows(path: Path, shown: str, problems: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        problems.append(f"{shown}: cannot be read as Parquet ({exc})")
        return
    unknown = _drop_unknown(table.column_names, shown, "schema", problems)
    for n, row in enumerate(table.to_pylist(), start=1):
        yield f"row {n}", {k: v for k, v in row.items() if k not in unknown and v is not None}


# ------------------------------------------------------------------------------------------ model checks
def check_against_model(manifest: Manifest, songs: list[Song], config: JukeboxConfig,
                        tokenizer: JukeboxTokenizer) -> None:
    """Everything the model's config and vocabulary can tell without weights: files exist and read, artists and
    genres are known, lengths fit the model, primes and codes fit their songs. ManifestError lists every problem."""
    problems: list[str] = []
    if not manifest.output.startswith(tuple(f"{s}://" for s in ("s3", "gs", "gcs", "hdfs", "abfs", "abfss"))):
        local = Path(manifest.output.removeprefix("file://"))
        if local.exists() and not local.is_dir():
            problems.append(f"{manifest.source}: output: {manifest.output} exists and is not a folder")
    tp = manifest.resources.top_prior.tensor_parallel
    if tp > 1 and Level.TOP in manifest.levels:
        from jukebox_dist.runtime.tp import check_divisible  # imports no deepspeed; only the divisibility rule
        try:
            check_divisible(config.priors[0], tp, encoder=False)
        except JukeboxError as exc:
            problems.append(f"{manifest.source}: resources.top_prior.tensor_parallel: {exc}")
    files = _FileChecks()
    for song in songs:
        total = total_length_of(song.seconds, config)
        problems += _label_problems(song, tokenizer)
        problems += _length_problems(song, total, config)
        if song.lyrics_file is not None:
            problems += files.check(song, "lyrics_file", _lyrics_problem)
        if song.prime is not None and manifest.mode == Mode.PRIMED:
            problems += files.check(song, "prime", lambda s: _prime_problem(s, config))
        if song.codes is not None and manifest.mode in (Mode.CONTINUE, Mode.UPSAMPLE):
            problems += files.check(song, "codes", lambda s: _codes_problem(s, total, config, manifest))
    if problems:
        raise ManifestError(problems)


def _label_problems(song: Song, tokenizer: JukeboxTokenizer) -> list[str]:
    if len(song.genres) > tokenizer.n_genres:
        return [f"{song.where('genres')}: {len(song.genres)} genres {song.genres}, but this model takes at most "
                f"{tokenizer.n_genres}"]
    return [f"{song.where('artist' if msg.startswith('unknown artist') else 'genres')}: {msg}"
            for msg in tokenizer.unknown(song.artist, song.genres)]


def _length_problems(song: Song, total: int, config: JukeboxConfig) -> list[str]:
    """The rule of sampling.generate.check_length: at least one top token and min_duration, under max_duration."""
    sr, hop = config.sampling_rate, config.raw_to_tokens(0)
    lo, hi = max(hop, int(config.min_duration * sr)), config.max_duration * sr
    if lo <= total < hi:
        return []
    return [f"{song.where('seconds')}: {song.seconds:g} s is outside what this model supports: at least "
            f"{math.ceil(lo / sr * 1000) / 1000:.3f} s and under {hi / sr:g} s"]


class _FileChecks:
    """Each file is checked once; its problem is reported at the first song that uses it."""

    def __init__(self) -> None:
        self.done: dict[tuple[str, str, Any], bool] = {}

    def check(self, song: Song, key: str, problem: Callable[[Song], str | None]) -> list[str]:
        path = getattr(song, key)
        # prime and codes problems depend on the song too; a lyrics file's only on the path
        cache_key = (key, path, None if key == "lyrics_file" else (song.seconds, song.takes, song.prime_seconds))
        if cache_key in self.done:
            return []
        self.done[cache_key] = True
        message = problem(song)
        return [] if message is None else [f"{song.where(key)}: {message}"]


def _file_problem(path: str, expected: str) -> str | None:
    p = Path(path)
    if not p.exists():
        return f"{path}: no such file; expected {expected}"
    if not p.is_file():
        return f"{path}: not a file; expected {expected}"
    return None


def _read_lyrics(song: Song) -> str:
    try:
        return Path(song.lyrics_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{song.where('lyrics_file')}: {song.lyrics_file}: cannot be read as UTF-8 text "
                            f"({exc})") from None


def _lyrics_problem(song: Song) -> str | None:
    missing = _file_problem(song.lyrics_file, "a UTF-8 text file with the lyrics")
    if missing:
        return missing
    try:
        Path(song.lyrics_file).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return f"{song.lyrics_file}: not UTF-8 text ({exc.reason} at byte {exc.start})"
    except OSError as exc:
        return f"{song.lyrics_file}: cannot be read ({exc.strerror or exc})"
    return None


def _prime_problem(song: Song, config: JukeboxConfig) -> str | None:
    """The header of the prime: readable audio, long enough for prime_seconds, shorter than the song."""
    path = song.prime
    missing = _file_problem(path, "an audio file to prime with (wav, flac, ...)")
    if missing:
        return missing
    import soundfile as sf

    try:
        info = sf.info(path)
    except (sf.SoundFileError, RuntimeError, OSError) as exc:
        return f"{path}: cannot be read as audio ({str(exc).splitlines()[0]}); expected wav, flac, ogg, ..."
    length = info.frames / info.samplerate if info.samplerate > 0 else 0.0
    hop_seconds = config.raw_to_tokens(0) / config.sampling_rate
    used = length if song.prime_seconds is None else song.prime_seconds
    if song.prime_seconds is not None and song.prime_seconds > length:
        return f"{path} is {length:.3f} s long, shorter than prime_seconds ({song.prime_seconds:g})"
    if used < hop_seconds:
        return f"{path}: {used:.4f} s of prime is less than one top-level token ({hop_seconds:.4f} s)"
    if used >= song.seconds:
        return (f"{path} is {length:.3f} s long and would cover the whole song ({song.seconds:g} s); set "
                f"prime_seconds below {song.seconds:g} or make the song longer")
    return None


def _codes_problem(song: Song, total: int, config: JukeboxConfig, manifest: Manifest) -> str | None:
    """What a codes file must hold for its song: the model's hops and rate, one row or one per take, no level longer
    than the song; upsample needs the level above the first sampled one to cover the song. The VQ-VAE fingerprint
    needs the weights, so it is checked when the job loads the model."""
    path = song.codes
    missing = _file_problem(path, CODES_WHAT)
    if missing:
        return missing
    if not zipfile.is_zipfile(path):
        return f"{path}: not an .npz file (not a zip archive); {CODES_HINT}"
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            absent = [k for k in CODES_ARRAYS if k not in npz.files]
            if absent:
                return f"{path}: missing arrays {absent}; {CODES_HINT}"
            meta = json.loads(str(npz["meta"]))
            shapes = {name: npz[name].shape for name in LEVEL_NAMES}
    except Exception as exc:  # zip, zlib, numpy header and JSON errors all mean the same to the user
        return f"{path}: unreadable codes file ({type(exc).__name__}: {exc}); {CODES_HINT}"
    hops = [config.raw_to_tokens(p) for p in range(len(LEVEL_NAMES))]
    if not isinstance(meta, dict):
        return f"{path}: its meta is not a JSON object; {CODES_HINT}"
    if list(meta.get("hop_lengths") or []) != hops or meta.get("sample_rate") != config.sampling_rate:
        return (f"{path}: codes for {meta.get('sample_rate')} Hz with hops {meta.get('hop_lengths')}; this model "
                f"runs at {config.sampling_rate} Hz with hops {hops}")
    if any(len(s) != 2 for s in shapes.values()):
        return f"{path}: arrays of shapes {shapes}; expected (samples, tokens) per level"
    rows = shapes["top"][0]
    if rows != 1 and rows < song.takes:
        return (f"{path} holds {rows} samples but the song has takes={song.takes}; expected 1 row (shared by every "
                f"take) or one per take")
    sr = config.sampling_rate
    for (name, shape), hop in zip(shapes.items(), hops):
        if shape[1] > total // hop:
            return (f"{path}: the {name} level has {shape[1]} tokens ({shape[1] * hop / sr:.3f} s), more than "
                    f"this song's {song.seconds:g} s")
    if manifest.mode == Mode.UPSAMPLE:
        above = min(manifest.level_indices()) - 1  # the level the first upsampled one is conditioned on
        name, hop = LEVEL_NAMES[above], hops[above]
        have, need = shapes[name][1], total // hop
        if have != need:
            return (f"{path}: upsample needs complete {name}-level codes: they cover {have * hop / sr:.3f} s "
                    f"({have} tokens) but the song is {total / sr:.3f} s ({need} tokens); set seconds to "
                    f"{have * hop / sr:.3f} or continue the codes first")
    return None


# ---------------------------------------------------------------------------------------- model config
def load_model_config(model: str) -> tuple[JukeboxConfig, JukeboxTokenizer]:
    """The config and vocabulary of `model` without its weights: a tiny preset, a local folder in the Hugging Face
    layout (config.json, artists.json, genres.json, lyrics.json), or a hub id already in the local cache."""
    if model in TINY_PRESETS:
        return tiny_config(TINY_PRESETS[model]), JukeboxTokenizer.from_pretrained(model)
    folder = model_folder(model)
    return JukeboxConfig.from_json(folder / "config.json"), JukeboxTokenizer.from_pretrained(folder)


def model_fingerprint(model: str) -> str:
    """What identifies the weights a job samples with (stored with every sample and checked on resume): the
    preset name for the seeded random presets, else a fingerprint of the model folder's files."""
    if model in TINY_PRESETS:
        return f"preset-{model}"
    return weights_fingerprint(model_folder(model))


def model_folder(model: str) -> Path:
    """The local folder of a model folder path or a downloaded hub id (presets with weights have none)."""
    if model in VOCAB_ONLY_PRESETS:
        raise ConfigError(f"preset {model!r} has no bundled vocabulary or weights: download "
                          f"openai/jukebox-{model.replace('_', '-')} and set model to that folder")
    folder = Path(model).expanduser()
    if not folder.is_dir() and not folder.exists() and HUB_ID_RE.fullmatch(model):
        cached = _cached_hub_folder(model)
        if cached is None:
            raise CheckpointError(f"{model}: a hub id that is not downloaded; validation reads only local files: "
                                  f"download it first (huggingface-cli download {model}) or set model to a local "
                                  "model folder")
        folder = cached
    if not folder.is_dir():
        what = "no such folder" if not folder.exists() else "not a folder"
        raise CheckpointError(f"{model}: {what}; expected a preset (tiny, tiny5b), a Jukebox model folder in the "
                              "Hugging Face layout, or a downloaded hub id owner/name")
    return folder


def _cached_hub_folder(repo_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=["*.json"]))
    except Exception:  # not in the cache (or no usable cache): the caller explains
        return None


# ------------------------------------------------------------------------------------------------ command
def validate_command(path: str) -> int:
    """`jukebox-dist validate MANIFEST`: every check that needs no weights, then the plan, logged at INFO."""
    manifest = load_manifest(path)
    songs = load_songs(manifest)
    try:
        config, tokenizer = load_model_config(manifest.model)
    except JukeboxError as exc:
        raise ManifestError(f"{manifest.source}: model: {exc}") from None
    check_against_model(manifest, songs, config, tokenizer)
    plan = make_plan(manifest, config, tokenizer, songs=songs)
    for line in plan.describe():
        log.info("%s", line)
    log.info("%s is valid: nothing was written and no weights were loaded", path)
    return 0
