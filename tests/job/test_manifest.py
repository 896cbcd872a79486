"""The manifest schema: every problem a user can make, with the exact message they see, and what a valid one means."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from jukebox_dist.errors import InputError
from jukebox_dist.job.manifest import (MAX_LISTED, Level, Manifest, ManifestError, Mode, Song, default_seed,
                                       load_manifest)

REPO = Path(__file__).resolve().parents[2]

BASE = """\
name: test-job
model: tiny
output: out
"""
SONG = "  - {artist: Alan Jackson, genres: [country], seconds: 1}\n"


def write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    return str(info.value).splitlines()


def manifest(tmp_path: Path, extra: str = "", songs: str = SONG) -> Path:
    return write(tmp_path, BASE + extra + "songs:\n" + songs)


# ------------------------------------------------------------------------------------------ valid manifests
def test_minimal_manifest_gets_the_documented_defaults(tmp_path):
    m = load_manifest(manifest(tmp_path))
    assert m.mode is Mode.ANCESTRAL
    assert m.levels == [Level.TOP, Level.MIDDLE, Level.BOTTOM]
    assert m.audio_format.value == "flac"
    assert m.sampling.temperature == [0.98, 0.99, 0.99]
    assert (m.sampling.top_k, m.sampling.top_p, m.sampling.chunk_size) == (0, 0.0, 128)
    assert (m.sampling.batch.top, m.sampling.batch.middle, m.sampling.batch.bottom) == (3, 16, 16)
    r = m.resources
    assert (r.top_prior.actors, r.top_prior.gpus, r.top_prior.cpus, r.top_prior.tensor_parallel) == (1, 0, 1, 1)
    for pool in (r.upsamplers.middle, r.upsamplers.bottom, r.decoders):
        assert (pool.actors, pool.gpus, pool.cpus) == (1, 0, 1)
    assert (m.ray.address, m.ray.dashboard_host) == (None, "127.0.0.1")
    song = m.songs[0]
    assert (song.id, song.takes, song.lyrics, song.seed) == ("song00000", 1, None, default_seed("test-job", 0))
    assert m.output == str(tmp_path / "out")  # relative to the manifest's folder


def test_upsample_defaults_to_the_upsampler_levels(tmp_path):
    codes = "  - {artist: A, genres: [rock], seconds: 1, codes: c.npz}\n"
    m = load_manifest(manifest(tmp_path, "mode: upsample\n", codes))
    assert m.levels == [Level.MIDDLE, Level.BOTTOM]
    assert m.songs[0].codes == str(tmp_path / "c.npz")


def test_relative_paths_resolve_against_the_manifest_folder_not_the_cwd(tmp_path, monkeypatch):
    sub = tmp_path / "jobs"
    sub.mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = write(sub, BASE.replace("output: out", "output: ../outputs/x") +
                 "songs:\n  - {artist: A, genres: [rock], seconds: 1, lyrics_file: lyrics/a.txt}\n")
    m = load_manifest(path)
    assert m.output == str(tmp_path / "outputs" / "x")
    assert m.songs[0].lyrics_file == str(sub / "lyrics" / "a.txt")


@pytest.mark.parametrize("output", ["s3://bucket/prefix", "gs://b/p", "hdfs://namenode:8020/x", "abfs://c@a/p",
                                    "file:///data/x"])
def test_filesystem_uris_are_kept_as_given(tmp_path, output):
    m = load_manifest(write(tmp_path, BASE.replace("output: out", f"output: {output}") + "songs:\n" + SONG))
    assert m.output == output


def test_model_presets_hub_ids_and_folders(tmp_path):
    def model_of(value: str) -> str:
        return load_manifest(write(tmp_path, BASE.replace("model: tiny", f"model: {value}") + "songs:\n" + SONG)).model

    assert model_of("tiny5b") == "tiny5b"
    assert model_of("openai/jukebox-5b-lyrics") == "openai/jukebox-5b-lyrics"  # a hub id stays an id
    assert model_of("/models/jukebox-5b-lyrics") == "/models/jukebox-5b-lyrics"
    assert model_of("./models/jb") == str(tmp_path / "models" / "jb")
    (tmp_path / "local").mkdir()
    assert model_of("local") == str(tmp_path / "local")  # an existing folder beside the manifest


def test_default_seeds_depend_only_on_job_name_and_position(tmp_path):
    songs = SONG * 3
    a = load_manifest(manifest(tmp_path, "", songs))
    b = load_manifest(manifest(tmp_path, "", songs))
    seeds = [s.seed for s in a.songs]
    assert seeds == [s.seed for s in b.songs] == [default_seed("test-job", i) for i in range(3)]
    assert len(set(seeds)) == 3 and all(0 <= s < 2**31 for s in seeds)
    assert default_seed("test-job", 0) == default_seed("test-job", 0) != default_seed("other-job", 0)
    assert [s.id for s in a.songs] == ["song00000", "song00001", "song00002"]


def test_temperature_one_number_or_three(tmp_path):
    m = load_manifest(manifest(tmp_path, "sampling: {temperature: 0.5}\n"))
    assert m.sampling.temperatures() == [0.5, 0.5, 0.5]
    m = load_manifest(manifest(tmp_path, "sampling: {temperature: [1, 0.9, 0]}\n"))
    assert m.sampling.temperatures() == [1.0, 0.9, 0.0]


def _models(model: type[BaseModel], seen: set) -> None:
    if model in seen:
        return
    seen.add(model)
    for field in model.model_fields.values():
        for arg in _types(field.annotation):
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                _models(arg, seen)


def _types(annotation) -> list:
    from typing import get_args

    args = list(get_args(annotation))
    return [annotation] + [t for a in args for t in _types(a)]


def test_every_model_forbids_extra_keys_and_every_field_is_described():
    seen: set = set()
    _models(Manifest, seen)
    assert Song in seen and len(seen) >= 9
    for model in seen:
        assert model.model_config.get("extra") == "forbid", model.__name__
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


# ----------------------------------------------------------------------------------------------- the file
def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert problems(path) == [f"{path}: no such file; expected a YAML manifest"]


def test_empty_file(tmp_path):
    path = write(tmp_path, "# only a comment\n")
    assert problems(path) == [f"{path}: the file is empty; expected a YAML mapping with at least name, model, "
                              "output and songs"]


def test_not_a_mapping(tmp_path):
    path = write(tmp_path, "- name: x\n- model: tiny\n")
    assert problems(path) == [f"{path}: expected a YAML mapping (key: value lines) at the top, got a list"]


def test_bad_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "name: x\nmodel: tiny\n  output: out\n")
    assert problems(path) == [f"{path}: line 3, column 9: not valid YAML: mapping values are not allowed here"]


def test_unclosed_bracket_names_where_it_started(tmp_path):
    path = write(tmp_path, "name: x\nsongs: [a, b\n")
    assert problems(path) == [f"{path}: line 3, column 1: not valid YAML: while parsing a flow sequence (started at "
                              "line 2, column 8): expected ',' or ']', but got '<stream end>'"]


def test_repeated_key(tmp_path):
    path = write(tmp_path, BASE + "name: again\nsongs:\n" + SONG)
    assert problems(path) == [f"{path}: line 4: key 'name' appears twice (first on line 1); give each key once"]


def test_is_an_input_error_so_the_cli_prints_one_line_per_problem_and_exits_2(tmp_path):
    with pytest.raises(InputError):
        load_manifest(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------------------------- the schema
def test_unknown_keys_say_which_keys_are_allowed(tmp_path):
    path = manifest(tmp_path, "colour: red\nsampling: {temprature: 1}\n",
                    "  - {artist: A, genres: [rock], seconds: 1, lyric: hi}\n")
    assert problems(path) == [
        f"{path}: sampling.temprature: unknown key; allowed keys: temperature, top_k, top_p, batch, chunk_size",
        f"{path}: songs[0].lyric: unknown key; allowed keys: id, artist, genres, lyrics, lyrics_file, seconds, "
        "takes, seed, prime, prime_seconds, codes",
        f"{path}: colour: unknown key; allowed keys: name, model, output, mode, levels, audio_format, sampling, "
        "songs, songs_file, resources, ray",
    ]


def test_unknown_resource_key(tmp_path):
    path = manifest(tmp_path, "resources: {upsamplers: {middle: {gpu: 1}}}\n")
    assert problems(path) == [f"{path}: resources.upsamplers.middle.gpu: unknown key; allowed keys: actors, gpus, "
                              "cpus"]


def test_wrong_types(tmp_path):
    path = manifest(tmp_path, "sampling: {top_k: many, batch: 4}\n",
                    "  - {artist: 3, genres: country, seconds: abc, takes: 1.5}\n")
    assert problems(path) == [
        f"{path}: sampling.top_k: expected a whole number, got 'many' (string)",
        f"{path}: sampling.batch: expected a mapping (key: value), got 4 (whole number)",
        f"{path}: songs[0].artist: expected text (a string), got 3 (whole number)",
        f"{path}: songs[0].genres: expected a list, got 'country' (string)",
        f"{path}: songs[0].seconds: expected a number, got 'abc' (string)",
        f"{path}: songs[0].takes: expected a whole number, got 1.5 (number)",
    ]


def test_missing_fields(tmp_path):
    path = write(tmp_path, "name: x\nsongs:\n  - {genres: [rock]}\n")
    assert problems(path) == [
        f"{path}: model: required, but missing",
        f"{path}: output: required, but missing",
        f"{path}: songs[0].artist: required, but missing",
        f"{path}: songs[0].seconds: required, but missing",
    ]


def test_out_of_range_values(tmp_path):
    path = manifest(tmp_path, "sampling: {top_p: 1.5, temperature: [1, 2.5, -1], batch: {top: 0}}\n"
                              "resources: {decoders: {cpus: 0}}\n",
                    "  - {artist: A, genres: [rock], seconds: -1, takes: 0, seed: -3}\n")
    assert problems(path) == [
        f"{path}: sampling.temperature: [1] = 2.5, [2] = -1: each temperature must be a number in [0, 2]",
        f"{path}: sampling.top_p: must be <= 1, got 1.5",
        f"{path}: sampling.batch.top: must be >= 1, got 0",
        f"{path}: songs[0].seconds: must be > 0, got -1",
        f"{path}: songs[0].takes: must be >= 1, got 0",
        f"{path}: songs[0].seed: must be >= 0, got -3",
        f"{path}: resources.decoders.cpus: must be > 0, got 0",
    ]


def test_zero_takes(tmp_path):
    path = manifest(tmp_path, "", "  - {artist: A, genres: [rock], seconds: 1, takes: 0}\n")
    assert problems(path) == [f"{path}: songs[0].takes: must be >= 1, got 0"]


def test_temperature_of_the_wrong_length(tmp_path):
    path = manifest(tmp_path, "sampling: {temperature: [1, 1]}\n")
    assert problems(path) == [f"{path}: sampling.temperature: has 2 values; expected one number or 3 "
                              "(top, middle, bottom)"]


def test_bad_names(tmp_path):
    path = write(tmp_path, BASE.replace("test-job", "my job") +
                 "songs:\n  - {id: 'a/b', artist: ' ', genres: [''], seconds: 1}\n")
    assert problems(path) == [
        f"{path}: name: 'my job' is not a valid job name; use letters, digits, '.', '_' and '-' only",
        f"{path}: songs[0].id: 'a/b' is not a valid song id; use letters, digits, '.', '_' and '-' only",
        f"{path}: songs[0].artist: must not be empty; expected an artist name",
        f"{path}: songs[0].genres: genre 0 is empty; expected genre names like country, rock",
    ]


def test_empty_genres(tmp_path):
    path = manifest(tmp_path, "", "  - {artist: A, genres: [], seconds: 1}\n")
    assert problems(path) == [f"{path}: songs[0].genres: must not be empty; expected at least one item"]


def test_bad_mode_and_format(tmp_path):
    path = manifest(tmp_path, "mode: sideways\naudio_format: mp3\n")
    assert problems(path) == [
        f"{path}: mode: expected one of 'ancestral', 'primed', 'continue' or 'upsample', got 'sideways' (string)",
        f"{path}: audio_format: expected one of 'flac' or 'wav', got 'mp3' (string)",
    ]


def test_unsupported_output_scheme(tmp_path):
    path = write(tmp_path, BASE.replace("output: out", "output: http://host/x") + "songs:\n" + SONG)
    assert problems(path) == [f"{path}: output: unsupported scheme 'http'; expected a local folder or a URI with one "
                              "of: file, s3, gs, gcs, hdfs, abfs, abfss"]


def test_unknown_model_name(tmp_path):
    path = write(tmp_path, BASE.replace("model: tiny", "model: huge") + "songs:\n" + SONG)
    assert problems(path) == [f"{path}: model: 'huge' is not a preset (tiny, tiny5b, 1b_lyrics, 5b_lyrics), an "
                              "existing model folder or a hub id owner/name"]


def test_tensor_parallel_on_cpu_is_allowed(tmp_path):
    path = manifest(tmp_path, "resources: {top_prior: {tensor_parallel: 2}}\n")
    assert load_manifest(path).resources.top_prior.tensor_parallel == 2


# ----------------------------------------------------------------------------------------- levels and mode
@pytest.mark.parametrize("levels, mode, message", [
    ("[middle]", "ancestral", "['middle'] in ancestral mode: expected levels contiguous from the top: [top], "
                              "[top, middle] or [top, middle, bottom]"),
    ("[top, bottom]", "primed", "['top', 'bottom'] in primed mode: expected levels contiguous from the top: [top], "
                                "[top, middle] or [top, middle, bottom]"),
    ("[]", "continue", "[] in continue mode: expected levels contiguous from the top: [top], [top, middle] or "
                       "[top, middle, bottom]"),
    ("[top, middle]", "upsample", "['top', 'middle'] in upsample mode: the top level comes from the codes file; "
                                  "expected [middle], [bottom] or [middle, bottom]"),
    ("[top, top]", "ancestral", "['top', 'top'] lists a level twice"),
])
def test_bad_levels(tmp_path, levels, mode, message):
    key = {"primed": "prime: p.wav", "continue": "codes: c.npz", "upsample": "codes: c.npz"}.get(mode)
    song = f"  - {{artist: A, genres: [rock], seconds: 1{', ' + key if key else ''}}}\n"
    path = manifest(tmp_path, f"mode: {mode}\nlevels: {levels}\n", song)
    assert problems(path) == [f"{path}: levels: {message}"]


def test_levels_are_put_in_order(tmp_path):
    m = load_manifest(manifest(tmp_path, "levels: [middle, top]\n"))
    assert m.levels == [Level.TOP, Level.MIDDLE] and m.level_indices() == [0, 1]


def test_prime_in_ancestral_mode(tmp_path):
    path = manifest(tmp_path, "", "  - {artist: A, genres: [rock], seconds: 1, prime: p.wav, prime_seconds: 0.5}\n")
    assert problems(path) == [
        f"{path}: songs[0].prime: only allowed in primed mode; this manifest's mode is ancestral",
        f"{path}: songs[0].prime_seconds: only allowed in primed mode; this manifest's mode is ancestral",
    ]


def test_missing_codes_in_upsample_mode(tmp_path):
    path = manifest(tmp_path, "mode: upsample\n")
    assert problems(path) == [f"{path}: songs[0].codes: required in upsample mode (a codes .npz to continue or "
                              "upsample)"]


def test_missing_prime_and_stray_codes_in_primed_mode(tmp_path):
    path = manifest(tmp_path, "mode: primed\n", "  - {artist: A, genres: [rock], seconds: 1, codes: c.npz}\n")
    assert problems(path) == [
        f"{path}: songs[0].prime: required in primed mode (an audio file to continue)",
        f"{path}: songs[0].codes: only allowed in continue and upsample mode; this manifest's mode is primed",
    ]


def test_prime_seconds_must_leave_something_to_sample(tmp_path):
    path = manifest(tmp_path, "mode: primed\n",
                    "  - {artist: A, genres: [rock], seconds: 1, prime: p.wav, prime_seconds: 1}\n")
    assert problems(path) == [f"{path}: songs[0].prime_seconds: 1 s of prime must be less than the song's seconds "
                              "(1); the rest is what gets sampled"]


def test_mode_rules_also_hold_without_load_manifest():
    data = {"name": "x", "model": "tiny", "output": "/tmp/x", "mode": "upsample",
            "songs": [{"artist": "A", "genres": ["rock"], "seconds": 1}]}
    with pytest.raises(Exception) as info:
        Manifest.model_validate(data)
    assert "required in upsample mode" in str(info.value)


# ------------------------------------------------------------------------------------------------- songs
def test_both_lyrics_and_lyrics_file(tmp_path):
    path = manifest(tmp_path, "", "  - {artist: A, genres: [rock], seconds: 1, lyrics: la, lyrics_file: l.txt}\n")
    assert problems(path) == [f"{path}: songs[0].lyrics_file: give lyrics or lyrics_file, not both"]


def test_duplicate_song_ids_name_both_positions(tmp_path):
    path = manifest(tmp_path, "", "  - {id: a, artist: A, genres: [rock], seconds: 1}\n" + SONG +
                    "  - {id: a, artist: B, genres: [pop], seconds: 1}\n"
                    "  - {id: song00001, artist: B, genres: [pop], seconds: 1}\n")
    assert problems(path) == [
        f"{path}: songs[2].id: 'a' is also the id of songs[0]; song ids must be unique",
        f"{path}: songs[3].id: 'song00001' is also the id of songs[1]; song ids must be unique",
    ]


def test_songs_and_songs_file_are_exclusive(tmp_path):
    both = manifest(tmp_path, "songs_file: s.csv\n")
    assert problems(both) == [f"{both}: songs: give exactly one of songs (a list) and songs_file (a CSV, JSONL or "
                              "Parquet file); this manifest has both"]
    neither = write(tmp_path, BASE)
    assert problems(neither) == [f"{neither}: songs: give exactly one of songs (a list) and songs_file (a CSV, JSONL "
                                 "or Parquet file); this manifest has neither"]


def test_empty_song_list_and_bad_songs_file_type(tmp_path):
    path = write(tmp_path, BASE + "songs: []\n")
    assert problems(path) == [f"{path}: songs: is empty; expected at least one song"]
    path = write(tmp_path, BASE + "songs_file: songs.xlsx\n")
    assert problems(path) == [f"{path}: songs_file: {tmp_path / 'songs.xlsx'}: unsupported file type '.xlsx'; "
                              "expected .csv, .jsonl or .parquet"]


def test_every_problem_is_listed_at_once(tmp_path):
    path = write(tmp_path, BASE.replace("model: tiny", "model: 3") + "mode: upsample\nlevels: [top]\n"
                 "sampling: {top_k: -1}\nsongs:\n" + "".join(
                     f"  - {{artist: A, genres: [rock], seconds: {-i}, codes: c.npz}}\n" for i in range(3)))
    lines = problems(path)
    assert len(lines) == 6
    assert lines[0] == f"{path}: model: expected text (a string), got 3 (whole number)"
    assert lines[-1] == f"{path}: songs[2].seconds: must be > 0, got -2"
    assert all(line.startswith(f"{path}: ") for line in lines)


def test_very_many_problems_are_counted_not_all_printed():
    error = ManifestError([f"p{i}" for i in range(MAX_LISTED + 5)])
    assert len(error.problems) == MAX_LISTED + 5
    assert str(error).splitlines()[-1] == "... and 5 more problems"


def test_the_example_manifests_load():
    for name in ("tiny", "5b_corpus", "primed", "continue", "upsample"):
        m = load_manifest(REPO / "jobs" / f"{name}.yaml")
        assert m.songs, name
