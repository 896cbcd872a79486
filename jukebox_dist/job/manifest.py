"""The YAML manifest of a job: strict pydantic models, documented fields, and one-line-per-problem errors.

`load_manifest(path)` reads the file with `yaml.safe_load`, resolves relative paths against the manifest's
folder and returns a `Manifest`, or raises `ManifestError` whose message lists every problem found, one per line:

    jobs/x.yaml: songs[2].seconds: must be > 0, got -1

Only what the file itself can tell is checked here (types, ranges, unknown keys, mode rules, duplicate ids).
What needs the model's config and vocabulary (artists, lengths, files) is checked by `job.plan`.
"""
from __future__ import annotations

import hashlib
import os
import re
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional, Union, get_args, get_origin

import yaml
from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from jukebox_dist.errors import InputError

__all__ = ["AudioFormat", "Level", "LEVELS", "Manifest", "ManifestError", "Mode", "Song", "load_manifest",
           "default_seed", "default_song_id", "format_validation_error", "assign_defaults", "is_preset", "PRESETS"]

NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
NAME_RULE = "letters, digits, '.', '_' and '-' only"
URI_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
# pyarrow.fs.FileSystem.from_uri schemes (gcs and abfss are aliases of gs and abfs).
OUTPUT_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "abfs", "abfss")
PRESETS = ("tiny", "tiny5b", "1b_lyrics", "5b_lyrics")
HUB_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
MAX_LISTED = 100  # problems listed in one ManifestError; the rest are counted


class ManifestError(InputError):
    """A manifest (or its songs file) is invalid. `problems` holds one line per problem; the message joins them."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        shown = self.problems[:MAX_LISTED]
        if len(self.problems) > MAX_LISTED:
            shown.append(f"... and {len(self.problems) - MAX_LISTED} more problems")
        super().__init__("\n".join(shown))


class Mode(str, Enum):
    ANCESTRAL = "ancestral"  # from nothing
    PRIMED = "primed"  # continue an audio file
    CONTINUE = "continue"  # extend saved codes
    UPSAMPLE = "upsample"  # sample the upsampler levels under saved top-level codes


class Level(str, Enum):
    TOP = "top"
    MIDDLE = "middle"
    BOTTOM = "bottom"


LEVELS = (Level.TOP, Level.MIDDLE, Level.BOTTOM)  # prior order: 0 top, 1 middle, 2 bottom


class AudioFormat(str, Enum):
    FLAC = "flac"
    WAV = "wav"


def is_preset(model: str) -> bool:
    return model in PRESETS


def default_song_id(index: int) -> str:
    return f"song{index:05d}"


def default_seed(job_name: str, index: int) -> int:
    """A seed that depends only on the job name and the song's position: the same manifest, the same seeds."""
    digest = hashlib.sha256(f"{job_name}\0{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1  # [0, 2**31)


def _base(info: ValidationInfo) -> Path | None:
    base = (info.context or {}).get("base")
    return Path(base) if base is not None else None


def _resolve(value: str, info: ValidationInfo) -> str:
    """A local path made absolute against the manifest's folder (the context's `base`); ~ is expanded."""
    path = Path(value).expanduser()
    base = _base(info)
    if not path.is_absolute() and base is not None:
        path = base / path
    return os.path.normpath(str(path))


def _check_file_path(value: Optional[str], info: ValidationInfo) -> Optional[str]:
    if value is None:
        return None
    if not value.strip():
        raise ValueError("must not be empty; expected a file path")
    return _resolve(value, info)


# --------------------------------------------------------------------------------------------------- songs
class Song(BaseModel):
    """One prompt: who, what style, which words, how long, and how many takes."""

    model_config = ConfigDict(extra="forbid")

    id: Optional[str] = Field(None, description="Song id, unique in the job (letters, digits, '.', '_', '-'). "
                              "Default: song00000, song00001, ... by position.")
    artist: str = Field(description="Artist name as the model's vocabulary knows it, e.g. 'Alan Jackson'.")
    genres: list[str] = Field(min_length=1, description="One or more genre names, e.g. [country, rock]. "
                              "In a CSV songs file: one ';'-separated string.")
    lyrics: Optional[str] = Field(None, description="The lyrics text. Not together with lyrics_file. Default: none.")
    lyrics_file: Optional[str] = Field(None, description="A UTF-8 text file with the lyrics, relative to the "
                                       "manifest (or to the songs file). Not together with lyrics.")
    seconds: float = Field(gt=0, description="Length of the song in seconds (rounded down to whole top tokens).")
    takes: int = Field(1, ge=1, description="Samples of this song; take t uses seed + t.")
    seed: Optional[int] = Field(None, ge=0, description="Seed of take 0. Default: derived from the job name and "
                                "the song's position, so the same manifest always gives the same seeds.")
    prime: Optional[str] = Field(None, description="Audio file whose start the song continues. Required in "
                                 "primed mode, forbidden otherwise.")
    prime_seconds: Optional[float] = Field(None, gt=0, description="Use only the first seconds of prime "
                                           "(default: all of it). Must be less than seconds.")
    codes: Optional[str] = Field(None, description="A codes .npz written by `jukebox-dist sample` or a job. "
                                 "Required in continue and upsample mode, forbidden otherwise.")

    # Where this song came from, for messages: "jobs/x.yaml: songs[2]" or "prompts.csv: line 4".
    _origin: str = PrivateAttr(default="song")
    _sep: str = PrivateAttr(default=".")

    def where(self, field: str | None = None) -> str:
        """`origin.field` for inline songs, `origin: field` for rows of a songs file."""
        return self._origin if field is None else f"{self._origin}{self._sep}{field}"

    def set_origin(self, origin: str, sep: str) -> None:
        self._origin, self._sep = origin, sep

    @field_validator("id")
    @classmethod
    def _id_chars(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not NAME_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid song id; use {NAME_RULE}")
        return value

    @field_validator("artist")
    @classmethod
    def _artist_nonempty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty; expected an artist name")
        return value

    @field_validator("genres")
    @classmethod
    def _genres_nonempty(cls, value: list[str]) -> list[str]:
        blank = [i for i, g in enumerate(value) if not g.strip()]
        if blank:
            raise ValueError(f"genre {blank[0]} is empty; expected genre names like country, rock")
        return value

    @field_validator("lyrics_file", "prime", "codes")
    @classmethod
    def _paths(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        return _check_file_path(value, info)

    @model_validator(mode="after")
    def _rules(self, info: ValidationInfo) -> Song:
        problems = []
        if self.lyrics is not None and self.lyrics_file is not None:
            problems.append(("lyrics_file", "give lyrics or lyrics_file, not both"))
        if self.prime_seconds is not None and self.prime_seconds >= self.seconds:
            problems.append(("prime_seconds", f"{self.prime_seconds:g} s of prime must be less than the song's "
                                              f"seconds ({self.seconds:g}); the rest is what gets sampled"))
        mode = (info.context or {}).get("mode")
        if mode is not None:
            problems += mode_problems(self, Mode(mode))
        if problems:
            raise Problems(problems)
        return self


def mode_problems(song: Song, mode: Mode) -> list[tuple[str, str]]:
    """(field, message) for prime / codes / prime_seconds given in the wrong mode or missing in the right one."""
    out = []
    needs = {Mode.PRIMED: "prime", Mode.CONTINUE: "codes", Mode.UPSAMPLE: "codes"}.get(mode)
    for key, modes in (("prime", "primed mode"), ("codes", "continue and upsample mode")):
        given = getattr(song, key) is not None
        if given and key != needs:
            out.append((key, f"only allowed in {modes}; this manifest's mode is {mode.value}"))
        elif not given and key == needs:
            what = "an audio file to continue" if key == "prime" else "a codes .npz to continue or upsample"
            out.append((key, f"required in {mode.value} mode ({what})"))
    if song.prime_seconds is not None and mode != Mode.PRIMED:
        out.append(("prime_seconds", f"only allowed in primed mode; this manifest's mode is {mode.value}"))
    return out


class Problems(ValueError):
    """Several (field, message) problems of one model, raised from a validator and split apart again by
    `format_validation_error` (pydantic keeps the exception in the error's ctx)."""

    def __init__(self, problems: list[tuple[str | int | tuple, str]]) -> None:
        super().__init__("; ".join(msg for _, msg in problems))
        self.problems = problems


# ---------------------------------------------------------------------------------------- other sections
class LevelBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top: int = Field(3, ge=1, description="Most windows the top prior samples at once.")
    middle: int = Field(16, ge=1, description="Most windows the middle upsampler samples at once.")
    bottom: int = Field(16, ge=1, description="Most windows the bottom upsampler samples at once.")


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: Union[float, list[float]] = Field(
        [0.98, 0.99, 0.99], description="One number for every level or [top, middle, bottom], each in [0, 2] "
        "(0 = greedy). Default: the released 0.98, 0.99, 0.99.")
    top_k: int = Field(0, ge=0, description="Keep only the k most likely tokens (0 = off).")
    top_p: float = Field(0.0, ge=0, le=1, description="Nucleus sampling threshold in [0, 1] (0 = off).")
    batch: LevelBatch = Field(default_factory=LevelBatch, description="Largest batch per level.")
    chunk_size: int = Field(128, ge=1, description="Prefill chunk in tokens: bounds attention scratch memory.")

    @field_validator("temperature", mode="before")
    @classmethod
    def _temperature(cls, value: Any) -> Any:
        def bad(v: Any) -> bool:
            return isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 2

        if isinstance(value, list):
            if len(value) != 3:
                raise ValueError(f"has {len(value)} values; expected one number or 3 (top, middle, bottom)")
            wrong = [f"[{i}] = {v!r}" for i, v in enumerate(value) if bad(v)]
            if wrong:
                raise ValueError(f"{', '.join(wrong)}: each temperature must be a number in [0, 2]")
            return [float(v) for v in value]
        if bad(value):
            raise ValueError(f"{value!r}: expected a number in [0, 2] or a list of 3 (top, middle, bottom)")
        return float(value)

    def temperatures(self) -> list[float]:
        t = self.temperature
        return [float(t)] * 3 if isinstance(t, (int, float)) else [float(x) for x in t]


class Pool(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actors: int = Field(1, ge=1, description="Actors in the pool; each loads its own copy of its model part.")
    gpus: float = Field(0.0, ge=0, description="GPUs per actor (fractions share a GPU; 0 = CPU).")
    cpus: float = Field(1.0, gt=0, description="CPUs per actor (also its torch thread count).")


class TopPrior(Pool):
    tensor_parallel: int = Field(1, ge=1, description="Ranks one top-prior group splits its heads over "
                                 "(DeepSpeed tensor parallelism), all on one node: one GPU each (gpus is per "
                                 "rank), or one CPU process each when gpus is 0.")


class Upsamplers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    middle: Pool = Field(default_factory=Pool, description="The middle upsampler pool.")
    bottom: Pool = Field(default_factory=Pool, description="The bottom upsampler pool.")


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_prior: TopPrior = Field(default_factory=TopPrior, description="The top prior group.")
    upsamplers: Upsamplers = Field(default_factory=Upsamplers, description="The upsampler pools.")
    decoders: Pool = Field(default_factory=Pool, description="The VQ-VAE decoder pool (codes -> audio).")


class RaySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: Optional[str] = Field(None, description="Ray cluster address. Default: the cluster of the Ray job "
                                   "(RAY_ADDRESS), else a new local Ray instance.")
    dashboard_host: str = Field("127.0.0.1", description="Interface of a locally started Ray's dashboard.")


# ----------------------------------------------------------------------------------------------- manifest
class Manifest(BaseModel):
    """A job: which model, which songs, which mode and levels, how to sample, where to write, with what resources."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description=f"Job name ({NAME_RULE}); also seeds the default song seeds.")
    model: str = Field(description="A preset (tiny, tiny5b), a local model folder in the Hugging Face layout "
                       "(relative to the manifest), or a hub id owner/name (downloaded beforehand).")
    output: str = Field(description="Output folder: a local path (relative to the manifest) or a pyarrow "
                        f"filesystem URI ({', '.join(OUTPUT_SCHEMES)}), e.g. s3://bucket/prefix.")
    mode: Mode = Field(Mode.ANCESTRAL, description="ancestral (from nothing), primed (continue audio), continue "
                       "(extend saved codes) or upsample (upsampler levels under saved top-level codes).")
    levels: Optional[list[Level]] = Field(None, description="Levels to sample, from the top: [top], [top, middle] "
                                          "or [top, middle, bottom] (the default); upsample: middle and/or bottom "
                                          "(default [middle, bottom]).")
    audio_format: AudioFormat = Field(AudioFormat.FLAC, description="flac or wav.")
    sampling: Sampling = Field(default_factory=Sampling, description="Sampling settings.")
    songs: Optional[list[Song]] = Field(None, description="The songs. Exactly one of songs and songs_file.")
    songs_file: Optional[str] = Field(None, description="CSV, JSON lines (.jsonl) or Parquet file with the song "
                                      "columns (relative to the manifest). Exactly one of songs and songs_file.")
    resources: Resources = Field(default_factory=Resources, description="Actors, GPUs and CPUs per stage.")
    ray: RaySettings = Field(default_factory=RaySettings, description="Where Ray runs.")

    _source: str = PrivateAttr(default="manifest")  # the path as the user gave it, for messages

    @property
    def source(self) -> str:
        return self._source

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid job name; use {NAME_RULE}")
        return value

    @field_validator("model")
    @classmethod
    def _model(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("must not be empty; expected a preset (tiny), a model folder or a hub id owner/name")
        if is_preset(value):
            return value
        path, base = Path(value).expanduser(), _base(info)
        candidate = path if path.is_absolute() or base is None else base / path
        if value.startswith(("/", "./", "../", "~")) or path.is_absolute() or candidate.exists():
            return _resolve(value, info)
        if HUB_ID_RE.fullmatch(value):
            return value  # a hub id; load_model_config says so if it is neither downloaded nor a folder
        if "/" in value:
            return _resolve(value, info)  # a relative folder that is missing: load_model_config reports it
        raise ValueError(f"{value!r} is not a preset ({', '.join(PRESETS)}), an existing model folder or a hub id "
                         "owner/name")

    @field_validator("output")
    @classmethod
    def _output(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("must not be empty; expected a folder or a URI like s3://bucket/prefix")
        match = URI_RE.match(value)
        if match:
            scheme = match.group(1).lower()
            if scheme not in OUTPUT_SCHEMES:
                raise ValueError(f"unsupported scheme {scheme!r}; expected a local folder or a URI with one of: "
                                 f"{', '.join(OUTPUT_SCHEMES)}")
            return value
        return _resolve(value, info)

    @field_validator("songs_file")
    @classmethod
    def _songs_file(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        value = _check_file_path(value, info)
        if value is not None and Path(value).suffix.lower() not in (".csv", ".jsonl", ".parquet"):
            raise ValueError(f"{value}: unsupported file type {Path(value).suffix or '(none)'!r}; "
                             "expected .csv, .jsonl or .parquet")
        return value

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: Optional[list[Level]], info: ValidationInfo) -> Optional[list[Level]]:
        mode = info.data.get("mode")
        if value is None or mode is None:
            return value
        names = [lvl.value for lvl in value]
        if len(set(value)) != len(value):
            raise ValueError(f"{names} lists a level twice")
        ordered = sorted(value, key=LEVELS.index)
        if mode == Mode.UPSAMPLE:
            if not value or Level.TOP in value:
                raise ValueError(f"{names} in upsample mode: the top level comes from the codes file; expected "
                                 "[middle], [bottom] or [middle, bottom]")
        elif ordered != list(LEVELS[:len(value)]) or not value:
            raise ValueError(f"{names} in {mode.value} mode: expected levels contiguous from the top: [top], "
                             "[top, middle] or [top, middle, bottom]")
        return ordered

    @field_validator("songs")
    @classmethod
    def _songs(cls, value: Optional[list[Song]], info: ValidationInfo) -> Optional[list[Song]]:
        if value is None:
            return value
        if not value:
            raise ValueError("is empty; expected at least one song")
        problems: list[tuple[Any, str]] = []
        mode = info.data.get("mode")
        if mode is not None and (info.context or {}).get("mode") is None:  # no context: the songs did not check it
            for i, song in enumerate(value):
                problems += [((i, key), msg) for key, msg in mode_problems(song, mode)]
        if problems:
            raise Problems(problems)
        return value

    @model_validator(mode="after")
    def _one_song_source(self, info: ValidationInfo) -> Manifest:
        if (self.songs is None) == (self.songs_file is None):
            what = "both" if self.songs is not None else "neither"
            raise Problems([("songs", f"give exactly one of songs (a list) and songs_file (a CSV, JSONL or "
                                      f"Parquet file); this manifest has {what}")])
        if self.songs is not None:
            source = (info.context or {}).get("source", "manifest")
            for i, song in enumerate(self.songs):
                song.set_origin(f"{source}: songs[{i}]", ".")
            problems = assign_defaults(self.songs, self.name, lambda i: f"songs[{i}]")
            if problems:
                raise Problems([(("songs", *loc), msg) for loc, msg in problems])
        return self

    @model_validator(mode="after")
    def _default_levels(self) -> Manifest:
        if self.levels is None:
            self.levels = [Level.MIDDLE, Level.BOTTOM] if self.mode == Mode.UPSAMPLE else list(LEVELS)
        return self

    def level_indices(self) -> list[int]:
        """The manifest's levels as prior indices (0 top, 1 middle, 2 bottom), in order."""
        return [LEVELS.index(lvl) for lvl in self.levels or ()]


def assign_defaults(songs: list[Song], job_name: str, label: Callable[[int], str]) -> list[tuple[tuple, str]]:
    """Fill in default ids and seeds by position. Returns ((index, "id"), message) for each duplicate id, naming
    both positions through `label(index)`."""
    seen: dict[str, int] = {}
    problems = []
    for i, song in enumerate(songs):
        if song.id is None:
            song.id = default_song_id(i)
        if song.seed is None:
            song.seed = default_seed(job_name, i)
        if song.id in seen:
            problems.append(((i, "id"), f"{song.id!r} is also the id of {label(seen[song.id])}; "
                                        "song ids must be unique"))
        else:
            seen[song.id] = i
    return problems


# ------------------------------------------------------------------------------------------------ loading
def load_manifest(path: str | Path) -> Manifest:
    """Read, check and resolve a manifest; ManifestError lists every problem, one per line."""
    source = str(path)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{source}: no such file; expected a YAML manifest") from None
    except IsADirectoryError:
        raise ManifestError(f"{source}: is a folder; expected a YAML manifest file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{source}: cannot be read as UTF-8 text ({exc})") from None
    data = parse_yaml(text, source)
    return manifest_from_dict(data, source, base=path.resolve().parent)


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark, context = getattr(exc, "problem_mark", None), getattr(exc, "context", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if context:
            start = getattr(exc, "context_mark", None)
            started = f" (started at line {start.line + 1}, column {start.column + 1})" if start is not None else ""
            problem = f"{context}{started}: {problem}"
        raise ManifestError(f"{source}: {where}not valid YAML: {problem}") from None
    if data is None:
        raise ManifestError(f"{source}: the file is empty; expected a YAML mapping with at least "
                            "name, model, output and songs")
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected a YAML mapping (key: value lines) at the top, got a "
                            f"{_type_name(data)}")
    duplicates = _duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
    if duplicates:
        raise ManifestError([f"{source}: {d}" for d in duplicates])
    return data


def _duplicate_keys(node: yaml.Node | None) -> list[str]:
    """safe_load keeps the last of repeated keys silently; a repeated key in a manifest is a mistake."""
    out: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                line = key.start_mark.line + 1
                if key.value in seen:
                    out.append(f"line {line}: key {key.value!r} appears twice (first on line {seen[key.value]}); "
                               "give each key once")
                seen.setdefault(key.value, line)
            out += _duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            out += _duplicate_keys(item)
    return out


def manifest_from_dict(data: dict[str, Any], source: str, base: Path | None = None) -> Manifest:
    """Validate a parsed manifest. `base` is the folder relative paths are resolved against."""
    context: dict[str, Any] = {"base": base}
    try:
        context["mode"] = Mode(data.get("mode", Mode.ANCESTRAL.value))
    except (ValueError, TypeError):
        pass  # reported by the mode field itself
    try:
        manifest = Manifest.model_validate(data, context={**context, "source": source})
    except ValidationError as exc:
        raise ManifestError(format_validation_error(exc, source, Manifest)) from None
    manifest._source = source
    if manifest.songs is not None:
        for i, song in enumerate(manifest.songs):
            song.set_origin(f"{source}: songs[{i}]", ".")
    return manifest


# ------------------------------------------------------------------------------------- error formatting
def format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def format_validation_error(exc: ValidationError, prefix: str, model: type[BaseModel] = Manifest,
                            sep: str = ": ") -> list[str]:
    """pydantic errors -> `prefix: field.path: what is wrong and what was expected`, one string per problem."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, Problems):
            for sub, msg in error.problems:
                sub = sub if isinstance(sub, tuple) else (sub,)
                lines.append(_line(prefix, loc + sub, msg, sep))
            continue
        lines.append(_line(prefix, loc, _describe(err, model, loc), sep))
    return lines


def _line(prefix: str, loc: tuple, msg: str, sep: str) -> str:
    where = format_loc(loc)
    return f"{prefix}{sep}{where}: {msg}" if where else f"{prefix}{sep}{msg}"


def _describe(err: dict[str, Any], model: type[BaseModel], loc: tuple) -> str:
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    got = f", got {_show(value)}"
    if kind == "missing":
        return "required, but missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key{hint}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number{got}"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return f"expected a number{got}"
    if kind == "string_type":
        return f"expected text (a string){got}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false{got}"
    if kind in ("list_type", "tuple_type"):
        return f"expected a list{got}"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"expected a mapping (key: value){got}"
    if kind in ("enum", "literal_error"):
        return f"expected one of {ctx.get('expected')}{got}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"must be {bounds[kind]} {limit:g}, got {value!r}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty; expected at least one item"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{err['msg']}{got}"


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({_type_name(value)})"


def _type_name(value: Any) -> str:
    names = {dict: "mapping", list: "list", str: "string", int: "whole number", float: "number", bool: "boolean",
             type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys the model at `loc` (below `model`) accepts, or [] where that cannot be told."""
    annotation: Any = model
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            args = get_args(annotation)
            if get_origin(annotation) is not list or not args:
                return []
            annotation = args[0]
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and part in annotation.model_fields:
            annotation = annotation.model_fields[part].annotation
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Optional[X] -> X."""
    if get_origin(annotation) is Union:
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation
