"""The plan: samples, seeds and lengths; windows per level; songs files; every check against the model's config and
vocabulary (with the exact messages); `validate` on the example manifests, loading no weights and writing nothing."""
from __future__ import annotations

import builtins
import csv
import io
import json
import logging
import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jukebox_dist.errors import CheckpointError, ConfigError
from jukebox_dist.job.manifest import ManifestError, load_manifest
from jukebox_dist.job.plan import (Plan, SampleSpec, check_against_model, load_model_config, load_songs, make_plan,
                                   total_length_of, validate_command)
from jukebox_dist.model.config import load_preset, tiny_config
from jukebox_dist.model.tokenizer import JukeboxTokenizer

REPO = Path(__file__).resolve().parents[2]
TINY_JOB = REPO / "jobs" / "tiny.yaml"
SR = 44100


@pytest.fixture(scope="module")
def tiny():
    return load_model_config("tiny")


def write(folder: Path, text: str, name: str = "job.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def job(tmp_path: Path, songs: str, extra: str = "") -> Path:
    return write(tmp_path, f"name: plan-test\nmodel: tiny\noutput: out\n{extra}songs:\n{songs}")


def check_problems(path: Path, config=None, tokenizer=None) -> list[str]:
    m = load_manifest(path)
    cfg, tok = load_model_config("tiny")
    with pytest.raises(ManifestError) as info:
        check_against_model(m, load_songs(m), config or cfg, tokenizer or tok)
    return str(info.value).splitlines()


def codes_file(path: Path, top: int, middle: int, bottom: int, rows: int = 1, hops=(128, 32, 8),
               total_length: int | None = None) -> Path:
    """A codes .npz in the format output.codes writes (meta JSON + int16 (rows, tokens) per level)."""
    meta = {"format": "jukebox-dist-codes", "version": 1, "sample_rate": SR, "hop_lengths": list(hops),
            "total_length": total_length or top * hops[0], "nb_discrete_codes": 64, "vqvae_fingerprint": "0" * 16,
            "model": "tiny"}
    arrays = {name: np.zeros((rows, n), dtype=np.int16) for name, n in (("top", top), ("middle", middle),
                                                                         ("bottom", bottom))}
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


# ------------------------------------------------------------------------------------------ the tiny job
def test_tiny_job_samples_ids_seeds_and_lengths(tiny):
    m = load_manifest(TINY_JOB)
    plan = make_plan(m, *tiny)
    assert [s.sample_id for s in plan.samples] == ["00000-000", "00000-001", "00001-000", "00002-000"]
    assert [s.song_id for s in plan.samples] == ["porch-light", "porch-light", "paper-moon", "lantern"]
    assert [s.seed for s in plan.samples] == [7, 8, 11, 23]  # the song's seed + take
    assert [s.take for s in plan.samples] == [0, 1, 0, 0]
    # 0.3 s -> 13230 samples -> 103 top tokens; 0.6 s -> 206; 1.0 s -> 344 (128 samples per top token)
    assert [s.total_length for s in plan.samples] == [13184, 13184, 26368, 44032]
    assert plan.samples[2].lyrics == (REPO / "jobs" / "lyrics" / "paper_moon.txt").read_text(encoding="utf-8")
    assert plan.samples[3].artist == "Céline Dion" and plan.samples[2].genres == ("rock", "pop")
    assert plan.samples[0].lyrics.startswith("The porch light hums")


def test_tiny_job_tokens_and_windows_per_level(tiny):
    plan = make_plan(load_manifest(TINY_JOB), *tiny)
    got = {lv.name: (lv.n_ctx, lv.hop, lv.tokens, lv.windows) for lv in plan.levels}
    # Per sample: top 103, 103, 206, 344 tokens in windows of 32 every 4: 19, 19, 45, 79;
    # middle x4 tokens in windows of 128 every 64: 6, 6, 12, 21; bottom x16 in windows of 512 every 256: the same.
    assert got == {"top": (32, 4, 756, 162), "middle": (128, 64, 3024, 45), "bottom": (512, 256, 12096, 45)}
    assert [lv.parallel for lv in plan.levels] == [4, 4, 4]  # min(4 samples, batch 4 x 1 actor)


def test_tiny_job_estimate_is_documented_arithmetic(tiny):
    plan = make_plan(load_manifest(TINY_JOB), *tiny, seconds_per_token={"top": 1.0, "middle": 0.5, "bottom": 0.25})
    assert plan.level("top").estimate_seconds == pytest.approx(756 * 1.0 / 4)
    assert plan.estimate_seconds == pytest.approx(756 / 4 + 3024 * 0.5 / 4 + 12096 * 0.25 / 4)
    default = make_plan(load_manifest(TINY_JOB), *tiny)
    assert 1 < default.estimate_seconds < 60  # "well under a minute" on the tiny model's own figures


def test_plans_are_stable(tiny):
    a = make_plan(load_manifest(TINY_JOB), *tiny)
    b = make_plan(load_manifest(TINY_JOB), *tiny)
    assert a == b and isinstance(a, Plan) and isinstance(a.samples[0], SampleSpec)


def test_default_seeds_are_stable_and_take_offsets(tmp_path, tiny):
    path = job(tmp_path, "  - {artist: Alan Jackson, genres: [country], seconds: 0.3, takes: 3}\n"
                         "  - {artist: The Beatles, genres: [rock], seconds: 0.3}\n")
    samples = make_plan(load_manifest(path), *tiny).samples
    again = make_plan(load_manifest(path), *tiny).samples
    assert [s.seed for s in samples] == [s.seed for s in again]
    base = samples[0].seed
    assert [s.seed for s in samples[:3]] == [base, base + 1, base + 2]
    assert samples[3].seed != base
    assert [s.sample_id for s in samples] == ["00000-000", "00000-001", "00000-002", "00001-000"]
    assert [s.song_id for s in samples] == ["song00000"] * 3 + ["song00001"]


@pytest.mark.parametrize("seconds, expected", [(0.3, 13184), (1.0, 44032), (1 / 3, 14592), (128 / SR, 128),
                                               (127 / SR, 0), (2.0, 88192)])
def test_total_length_rounds_down_to_whole_top_tokens(seconds, expected):
    assert total_length_of(seconds, tiny_config()) == expected == int(seconds * SR) // 128 * 128


def test_only_the_manifest_levels_are_planned(tmp_path, tiny):
    path = job(tmp_path, "  - {artist: Alan Jackson, genres: [country], seconds: 0.3}\n", "levels: [top]\n")
    assert [lv.name for lv in make_plan(load_manifest(path), *tiny).levels] == ["top"]


def test_describe_lists_levels_and_samples(tiny):
    lines = make_plan(load_manifest(TINY_JOB), *tiny).describe()
    assert lines[1] == "3 songs, 4 samples, 2.19 s of audio"
    assert lines[3].split() == ["top", "32", "4", "756", "162", "4", "2.4", "s"]
    assert lines[-1].startswith("  00002-000 lantern: Céline Dion [pop], 0.998 s, seed 23")


# --------------------------------------------------------------------------------------------- songs files
def _tiny_rows() -> list[dict]:
    rows = []
    for song in load_manifest(TINY_JOB).songs:
        row = {k: v for k, v in song.model_dump().items() if v is not None}
        rows.append(row)
    return rows


def _songs_file_job(tmp_path: Path, name: str) -> Path:
    return write(tmp_path, f"name: tiny\nmodel: tiny\noutput: out\nsongs_file: {name}\n")


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns = ["id", "artist", "genres", "lyrics", "lyrics_file", "seconds", "takes", "seed"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "genres": ";".join(row["genres"])})


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(dict.fromkeys(k for row in rows for k in row))  # from_pylist takes its columns from row 0 only
    pq.write_table(pa.Table.from_pylist([{k: row.get(k) for k in columns} for row in rows]), path)


WRITERS = {"csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_songs_file_equals_inline_songs(tmp_path, fmt, tiny):
    WRITERS[fmt](tmp_path / f"songs.{fmt}", _tiny_rows())
    m = load_manifest(_songs_file_job(tmp_path, f"songs.{fmt}"))
    assert m.songs is None
    songs = load_songs(m)
    inline = load_manifest(TINY_JOB)
    assert [s.model_dump() for s in songs] == [s.model_dump() for s in inline.songs]
    check_against_model(m, songs, *tiny)
    assert make_plan(m, *tiny).samples == make_plan(inline, *tiny).samples


def test_songs_file_paths_are_relative_to_the_songs_file(tmp_path):
    (tmp_path / "data").mkdir()
    _write_jsonl(tmp_path / "data" / "songs.jsonl",
                 [{"artist": "A", "genres": ["rock"], "seconds": 1, "lyrics_file": "l.txt"}])
    songs = load_songs(load_manifest(_songs_file_job(tmp_path, "data/songs.jsonl")))
    assert songs[0].lyrics_file == str(tmp_path / "data" / "l.txt")
    assert songs[0].id == "song00000"


def test_csv_bad_rows(tmp_path):
    path = tmp_path / "songs.csv"
    path.write_text("artist,genres,seconds,colour\n"
                    "Alan Jackson,country,1,red\n"
                    "The Beatles,rock;pop,abc,blue\n"
                    ",pop,1,\n"
                    "Zac Brown Band,country,1,x,extra\n", encoding="utf-8")
    m = load_manifest(_songs_file_job(tmp_path, "songs.csv"))
    with pytest.raises(ManifestError) as info:
        load_songs(m)
    assert str(info.value).splitlines() == [
        f"{path}: line 1: unknown column 'colour'; allowed columns: id, artist, genres, lyrics, lyrics_file, "
        "seconds, takes, seed, prime, prime_seconds, codes",
        f"{path}: line 3: seconds: expected a number, got 'abc' (string)",
        f"{path}: line 4: artist: required, but missing",
        f"{path}: line 5: more cells than the 4 columns",
    ]


def test_jsonl_bad_rows(tmp_path):
    path = tmp_path / "songs.jsonl"
    path.write_text('{"artist": "A", "genres": ["rock"], "seconds": 1}\n'
                    '{"artist": "B", "genres": ["rock"], "seconds": 1,\n'
                    '\n'
                    '{"artist": "C", "genres": ["rock"], "seconds": 1, "takes": 0, "prime": "p.wav"}\n'
                    '["not", "an", "object"]\n', encoding="utf-8")
    m = load_manifest(_songs_file_job(tmp_path, "songs.jsonl"))
    with pytest.raises(ManifestError) as info:
        load_songs(m)
    assert str(info.value).splitlines() == [
        f"{path}: line 2: not valid JSON (Expecting property name enclosed in double quotes at column 50); "
        "expected one object per line",
        f"{path}: line 4: takes: must be >= 1, got 0",
        f"{path}: line 5: expected a JSON object, got list",
    ]


def test_parquet_bad_rows(tmp_path):
    path = tmp_path / "songs.parquet"
    _write_parquet(path, [{"artist": "A", "genres": ["rock"], "seconds": 1.0},
                          {"artist": "B", "genres": ["rock"], "seconds": -1.0},
                          {"artist": "C", "genres": [], "seconds": 2.0}])
    m = load_manifest(_songs_file_job(tmp_path, "songs.parquet"))
    with pytest.raises(ManifestError) as info:
        load_songs(m)
    assert str(info.value).splitlines() == [
        f"{path}: row 2: seconds: must be > 0, got -1.0",
        f"{path}: row 3: genres: must not be empty; expected at least one item",
    ]


def test_songs_file_mode_rules_and_duplicates(tmp_path):
    path = tmp_path / "songs.jsonl"
    _write_jsonl(path, [{"id": "a", "artist": "A", "genres": ["rock"], "seconds": 1},
                        {"id": "a", "artist": "B", "genres": ["rock"], "seconds": 1}])
    with pytest.raises(ManifestError) as info:
        load_songs(load_manifest(_songs_file_job(tmp_path, "songs.jsonl")))
    assert str(info.value) == f"{path}: line 2: id: 'a' is also the id of line 1; song ids must be unique"
    _write_jsonl(path, [{"artist": "A", "genres": ["rock"], "seconds": 1, "codes": "c.npz"}])
    with pytest.raises(ManifestError) as info:
        load_songs(load_manifest(_songs_file_job(tmp_path, "songs.jsonl")))
    assert str(info.value) == (f"{path}: line 1: codes: only allowed in continue and upsample mode; this manifest's "
                               "mode is ancestral")


def test_missing_and_empty_songs_file(tmp_path):
    m = load_manifest(_songs_file_job(tmp_path, "nope.csv"))
    with pytest.raises(ManifestError) as info:
        load_songs(m)
    assert str(info.value) == (f"{tmp_path / 'job.yaml'}: songs_file: {tmp_path / 'nope.csv'}: no such file; expected "
                               "a CSV, JSONL or Parquet file of songs")
    (tmp_path / "empty.csv").write_text("artist,genres,seconds\n", encoding="utf-8")
    with pytest.raises(ManifestError) as info:
        load_songs(load_manifest(_songs_file_job(tmp_path, "empty.csv")))
    assert str(info.value) == f"{tmp_path / 'empty.csv'}: has no songs; expected at least one row"


# ------------------------------------------------------------------------------------- checks vs the model
def test_unknown_artist_and_genre_suggest_close_matches(tmp_path):
    path = job(tmp_path, "  - {artist: Celine Dion, genres: [pop]}\n".replace("}", ", seconds: 1}") +
                         "  - {artist: The Beatles, genres: [rok, country], seconds: 1}\n")
    assert check_problems(path) == [
        f"{path}: songs[0].artist: unknown artist 'Celine Dion' (not in the v3 or v2 vocabulary); did you mean "
        "'céline dion'?",
        f"{path}: songs[1].genres: unknown genre 'rok' (not in the v3 or v2 vocabulary); did you mean 'rock'?",
    ]


def test_too_many_genres(tmp_path):
    path = job(tmp_path, "  - {artist: The Beatles, genres: [rock, pop, country], seconds: 1}\n")
    assert check_problems(path) == [f"{path}: songs[0].genres: 3 genres ['rock', 'pop', 'country'], but this model "
                                    "takes at most 2"]


def test_over_long_and_too_short_songs(tmp_path):
    path = job(tmp_path, "  - {artist: The Beatles, genres: [rock], seconds: 12}\n"
                         "  - {artist: The Beatles, genres: [rock], seconds: 0.002}\n"
                         "  - {artist: The Beatles, genres: [rock], seconds: 10.1}\n"
                         "  - {artist: The Beatles, genres: [rock], seconds: 10}\n")  # 440,960 samples: under 10 s
    expected = "s is outside what this model supports: at least 0.003 s and under 10 s"
    assert check_problems(path) == [f"{path}: songs[0].seconds: 12 {expected}",
                                    f"{path}: songs[1].seconds: 0.002 {expected}",
                                    f"{path}: songs[2].seconds: 10.1 {expected}"]


def test_min_duration_of_the_released_5b_config(tmp_path):
    path = job(tmp_path, "  - {artist: The Beatles, genres: [rock], seconds: 20}\n")
    assert check_problems(path, load_preset("5b_lyrics"), JukeboxTokenizer.from_pretrained("tiny5b")) == [
        f"{path}: songs[0].seconds: 20 s is outside what this model supports: at least 23.800 s and under 600 s"]


def test_missing_and_unreadable_lyrics_files(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    path = job(tmp_path, "  - {artist: The Beatles, genres: [rock], seconds: 1, lyrics_file: nope.txt}\n"
                         "  - {artist: The Beatles, genres: [rock], seconds: 1, lyrics_file: nope.txt}\n"
                         "  - {artist: The Beatles, genres: [rock], seconds: 1, lyrics_file: latin1.txt}\n")
    assert check_problems(path) == [  # a file's problem is reported once, at the first song using it
        f"{path}: songs[0].lyrics_file: {tmp_path / 'nope.txt'}: no such file; expected a UTF-8 text file with the "
        "lyrics",
        f"{path}: songs[2].lyrics_file: {tmp_path / 'latin1.txt'}: not UTF-8 text (unexpected end of data at "
        "byte 3)",
    ]


def test_every_model_problem_is_listed_at_once(tmp_path):
    (tmp_path / "out").write_text("a file where the output folder should be")
    path = job(tmp_path, "  - {artist: Beatles, genres: [rock], seconds: 11, lyrics_file: nope.txt}\n")
    lines = check_problems(path)
    assert lines == [
        f"{path}: output: {tmp_path / 'out'} exists and is not a folder",
        f"{path}: songs[0].artist: unknown artist 'Beatles' (not in the v3 or v2 vocabulary); did you mean "
        "'the beatles'?",
        f"{path}: songs[0].seconds: 11 s is outside what this model supports: at least 0.003 s and under 10 s",
        f"{path}: songs[0].lyrics_file: {tmp_path / 'nope.txt'}: no such file; expected a UTF-8 text file with the "
        "lyrics",
    ]


def _wav(path: Path, seconds: float, rate: int = 22050) -> Path:
    import soundfile

    soundfile.write(str(path), np.zeros((int(seconds * rate), 2), dtype=np.float32), rate)
    return path


def test_prime_checks(tmp_path):
    _wav(tmp_path / "short.wav", 0.25)
    (tmp_path / "noise.wav").write_bytes(b"not audio at all")
    songs = ("  - {artist: The Beatles, genres: [rock], seconds: 1, prime: nope.wav}\n"
             "  - {artist: The Beatles, genres: [rock], seconds: 1, prime: noise.wav}\n"
             "  - {artist: The Beatles, genres: [rock], seconds: 1, prime: short.wav, prime_seconds: 0.5}\n"
             "  - {artist: The Beatles, genres: [rock], seconds: 0.2, prime: short.wav}\n"
             "  - {artist: The Beatles, genres: [rock], seconds: 1, prime: short.wav, prime_seconds: 0.001}\n")
    path = job(tmp_path, songs, "mode: primed\n")
    lines = check_problems(path)
    assert lines[0] == (f"{path}: songs[0].prime: {tmp_path / 'nope.wav'}: no such file; expected an audio file to "
                        "prime with (wav, flac, ...)")
    assert lines[1].startswith(f"{path}: songs[1].prime: {tmp_path / 'noise.wav'}: cannot be read as audio (")
    assert lines[1].endswith("); expected wav, flac, ogg, ...")
    assert lines[2:] == [
        f"{path}: songs[2].prime: {tmp_path / 'short.wav'} is 0.250 s long, shorter than prime_seconds (0.5)",
        f"{path}: songs[3].prime: {tmp_path / 'short.wav'} is 0.250 s long and would cover the whole song (0.2 s); "
        "set prime_seconds below 0.2 or make the song longer",
        f"{path}: songs[4].prime: {tmp_path / 'short.wav'}: 0.0010 s of prime is less than one top-level token "
        "(0.0029 s)",
    ]


def test_a_good_prime_passes(tmp_path, tiny):
    _wav(tmp_path / "p.wav", 0.5)
    path = job(tmp_path, "  - {artist: The Beatles, genres: [rock], seconds: 1, prime: p.wav, prime_seconds: 0.2}\n",
               "mode: primed\n")
    m = load_manifest(path)
    check_against_model(m, load_songs(m), *tiny)


def test_codes_checks(tmp_path):
    codes_file(tmp_path / "short.npz", 103, 412, 1648, rows=2)  # 0.3 s, two takes
    codes_file(tmp_path / "wrong-hops.npz", 10, 40, 160, hops=(128, 32, 16))
    (tmp_path / "text.npz").write_text("hello")
    songs = ("  - {artist: The Beatles, genres: [rock], seconds: 1, codes: nope.npz}\n"
             "  - {artist: The Beatles, genres: [rock], seconds: 1, codes: text.npz}\n"
             "  - {artist: The Beatles, genres: [rock], seconds: 1, codes: wrong-hops.npz}\n"
             "  - {artist: The Beatles, genres: [rock], seconds: 0.3, codes: short.npz, takes: 3}\n"
             "  - {artist: The Beatles, genres: [rock], seconds: 0.2, codes: short.npz}\n"
             "  - {artist: The Beatles, genres: [rock], seconds: 1, codes: short.npz, takes: 2}\n")
    path = job(tmp_path, songs, "mode: upsample\n")
    assert check_problems(path) == [
        f"{path}: songs[0].codes: {tmp_path / 'nope.npz'}: no such file; expected a codes .npz written by "
        "`jukebox-dist sample` or a job",
        f"{path}: songs[1].codes: {tmp_path / 'text.npz'}: not an .npz file (not a zip archive); expected a codes "
        ".npz written by `jukebox-dist sample` or a job",
        f"{path}: songs[2].codes: {tmp_path / 'wrong-hops.npz'}: codes for 44100 Hz with hops [128, 32, 16]; this "
        "model runs at 44100 Hz with hops [128, 32, 8]",
        f"{path}: songs[3].codes: {tmp_path / 'short.npz'} holds 2 samples but the song has takes=3; expected 1 row "
        "(shared by every take) or one per take",
        f"{path}: songs[4].codes: {tmp_path / 'short.npz'}: the top level has 103 tokens (0.299 s), more than this "
        "song's 0.2 s",
        f"{path}: songs[5].codes: {tmp_path / 'short.npz'}: upsample needs complete top-level codes: they cover "
        "0.299 s (103 tokens) but the song is 0.998 s (344 tokens); set seconds to 0.299 or continue the codes first",
    ]


def test_codes_for_continue_may_be_shorter_than_the_song(tmp_path, tiny):
    codes_file(tmp_path / "c.npz", 103, 0, 0, rows=1)
    path = job(tmp_path, "  - {artist: The Beatles, genres: [rock], seconds: 1, codes: c.npz, takes: 4}\n",
               "mode: continue\n")
    m = load_manifest(path)
    check_against_model(m, load_songs(m), *tiny)
    assert make_plan(m, *tiny).samples[3].codes == str(tmp_path / "c.npz")


def test_upsample_bottom_only_needs_a_complete_middle_level(tmp_path):
    codes_file(tmp_path / "c.npz", 103, 200, 0)
    path = job(tmp_path, "  - {artist: The Beatles, genres: [rock], seconds: 0.3, codes: c.npz}\n",
               "mode: upsample\nlevels: [bottom]\n")
    assert check_problems(path) == [
        f"{path}: songs[0].codes: {tmp_path / 'c.npz'}: upsample needs complete middle-level codes: they cover "
        "0.145 s (200 tokens) but the song is 0.299 s (412 tokens); set seconds to 0.145 or continue the codes first"]


def test_codes_written_by_output_codes_are_accepted(tmp_path, tiny):
    import torch

    from jukebox_dist.model import Jukebox
    from jukebox_dist.output.codes import save_codes

    model = Jukebox.from_pretrained("tiny")
    codes = [torch.zeros(2, n, dtype=torch.long) for n in (103, 412, 1648)]
    save_codes(tmp_path / "c.npz", codes, model=model, total_length=13184)
    path = job(tmp_path, "  - {artist: The Beatles, genres: [rock], seconds: 0.3, codes: c.npz, takes: 2}\n",
               "mode: upsample\n")
    m = load_manifest(path)
    check_against_model(m, load_songs(m), *tiny)


# ------------------------------------------------------------------------------------------- model configs
def test_tiny_presets_load_without_weights():
    config, tok = load_model_config("tiny")
    assert config == tiny_config("merged") and tok.version == ("v3", "v2", "v2")
    config, tok = load_model_config("tiny5b")
    assert config == tiny_config("separate") and tok.version == ("v2", "v2", "v2")


def _model_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(tiny_config().to_hf_dict()), encoding="utf-8")
    JukeboxTokenizer.from_pretrained("tiny").save_pretrained(folder)
    return folder


def test_model_folder_reads_config_and_vocab_only(tmp_path):
    config, tok = load_model_config(str(_model_folder(tmp_path / "m")))
    assert config.priors == tiny_config().priors and "alan jackson" in tok.artists
    assert not list((tmp_path / "m").glob("*.safetensors"))  # no weights needed


def test_hub_ids_must_be_downloaded(tmp_path, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError) as info:
        load_model_config("openai/jukebox-5b-lyrics")
    assert str(info.value) == ("openai/jukebox-5b-lyrics: a hub id that is not downloaded; validation reads only local "
                               "files: download it first (huggingface-cli download openai/jukebox-5b-lyrics) or set "
                               "model to a local model folder")
    # the hub cache layout: models--owner--name/{refs/main, snapshots/<commit>/...}
    repo = tmp_path / "cache" / "models--openai--jukebox-5b-lyrics"
    _model_folder(repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    config, tok = load_model_config("openai/jukebox-5b-lyrics")
    assert config.priors == tiny_config().priors


def test_model_errors():
    with pytest.raises(CheckpointError) as info:
        load_model_config("/nonexistent/jukebox")
    assert str(info.value) == ("/nonexistent/jukebox: no such folder; expected a preset (tiny, tiny5b), a Jukebox "
                               "model folder in the Hugging Face layout, or a downloaded hub id owner/name")
    with pytest.raises(ConfigError) as info:
        load_model_config("5b_lyrics")
    assert str(info.value) == ("preset '5b_lyrics' has no bundled vocabulary or weights: download "
                               "openai/jukebox-5b-lyrics and set model to that folder")


# ------------------------------------------------------------------------------------------------ validate
@pytest.fixture
def no_writes_no_weights(monkeypatch):
    """Fail on any file opened for writing, any folder made or file moved, and any attempt to load or build weights."""
    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            raise AssertionError(f"validate tried to write {file}")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC):
            raise AssertionError(f"validate tried to write {path}")
        return real_os_open(path, flags, *args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError(f"validate tried to change the file system: {args}")

    def no_weights(*args, **kwargs):
        raise AssertionError("validate tried to load weights")

    from jukebox_dist.model import checkpoint
    from jukebox_dist.model.jukebox import Jukebox

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)  # what pathlib's read_text / write_text call
    monkeypatch.setattr(os, "open", guarded_os_open)
    for name in ("mkdir", "makedirs", "replace", "rename", "remove", "unlink"):
        monkeypatch.setattr(os, name, refuse)
    monkeypatch.setattr(Jukebox, "from_pretrained", no_weights)
    monkeypatch.setattr(Jukebox, "random", no_weights)
    monkeypatch.setattr(checkpoint, "load_reference", no_weights)


def _tree(root: Path) -> dict:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")} if root.exists() else {}


def test_validate_tiny_job(tmp_path, monkeypatch, caplog, no_writes_no_weights):
    monkeypatch.chdir(tmp_path)
    before = _tree(REPO / "jobs"), _tree(REPO / "outputs"), _tree(tmp_path)
    with caplog.at_level(logging.INFO, logger="jukebox_dist"):
        assert validate_command(str(TINY_JOB)) == 0
    assert (_tree(REPO / "jobs"), _tree(REPO / "outputs"), _tree(tmp_path)) == before
    text = caplog.text
    assert "3 songs, 4 samples, 2.19 s of audio" in text
    assert "00001-000 paper-moon: The Beatles [rock, pop], 0.598 s, seed 11" in text
    assert "is valid: nothing was written and no weights were loaded" in text


def test_validate_reports_problems_as_one_error(tmp_path):
    path = job(tmp_path, "  - {artist: Celine Dion, genres: [pop], seconds: 1}\n")
    with pytest.raises(ManifestError) as info:
        validate_command(str(path))
    assert str(info.value) == (f"{path}: songs[0].artist: unknown artist 'Celine Dion' (not in the v3 or v2 "
                               "vocabulary); did you mean 'céline dion'?")


def test_validate_names_the_model_field(tmp_path):
    path = write(tmp_path, "name: x\nmodel: ./missing-model\noutput: out\nsongs:\n"
                           "  - {artist: The Beatles, genres: [rock], seconds: 1}\n")
    with pytest.raises(ManifestError) as info:
        validate_command(str(path))
    assert str(info.value) == (f"{path}: model: {tmp_path / 'missing-model'}: no such folder; expected a preset "
                               "(tiny, tiny5b), a Jukebox model folder in the Hugging Face layout, or a downloaded hub "
                               "id owner/name")


def test_example_manifests_validate(tmp_path):
    """primed / continue / upsample with the assets their comments say how to make; 5b_corpus against the released
    5b config (its vocabulary comes with the weights, so the tiny5b one, with the same artists, stands in)."""
    jobs = tmp_path / "jobs"
    shutil.copytree(REPO / "jobs", jobs, ignore=shutil.ignore_patterns("assets"))
    (jobs / "assets").mkdir()
    _wav(jobs / "assets" / "prime.wav", 0.5)
    codes_file(jobs / "assets" / "tiny-sample.codes.npz", 103, 412, 1648, rows=2)
    for name in ("tiny", "primed", "continue", "upsample"):
        assert validate_command(str(jobs / f"{name}.yaml")) == 0, name
    m = load_manifest(jobs / "5b_corpus.yaml")
    config, tok = load_preset("5b_lyrics"), JukeboxTokenizer.from_pretrained("tiny5b")
    songs = load_songs(m)
    check_against_model(m, songs, config, tok)
    plan = make_plan(m, config, tok, songs=songs)
    assert len(plan.samples) == 24 and plan.level("top").n_ctx == 8192
    assert m.resources.top_prior.tensor_parallel == 2 and m.output.startswith("s3://")


def test_tensor_parallel_must_divide_the_top_heads(tmp_path):
    """The tiny top prior has 2 heads: a group of 3 cannot split them; 2 can."""
    from jukebox_dist.job.manifest import load_manifest as _load
    from jukebox_dist.job.plan import check_against_model, load_model_config, load_songs
    for tp, ok in ((2, True), (3, False)):
        path = tmp_path / f"tp{tp}.yaml"
        path.write_text(f"name: tp\nmodel: tiny\noutput: out\nsongs: [{{artist: Alan Jackson, genres: [country], "
                        f"seconds: 0.2}}]\nresources: {{top_prior: {{tensor_parallel: {tp}}}}}\n")
        m = _load(path)
        config, tok = load_model_config(m.model)
        if ok:
            check_against_model(m, load_songs(m), config, tok)
        else:
            with pytest.raises(ManifestError, match=r"resources.top_prior.tensor_parallel: tensor_parallel=3 does not "
                                                    r"divide the 2 attention heads of prior \(level 0\)"):
                check_against_model(m, load_songs(m), config, tok)
