"""Primed, continue and upsample jobs through the scheduler (workers in this process)."""
from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import soundfile
import yaml

from jukebox_dist.cli import main
from jukebox_dist.runtime.runner import run_job

SONG = {"artist": "The Beatles", "genres": ["rock"], "lyrics": "la", "seed": 4}


def _run(tmp_path, name, mode, levels, song) -> list[dict]:
    data = {"name": name, "model": "tiny", "mode": mode, "levels": levels, "output": str(tmp_path / name),
            "sampling": {"batch": {"top": 2, "middle": 2, "bottom": 2}}, "songs": [{**SONG, **song}]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    summary = run_job(str(path), executor="local")
    assert summary["failed"] == 0
    return sorted(pq.read_table(str(tmp_path / name / "samples")).to_pylist(), key=lambda r: r["sample_id"])


def test_upsample_and_continue_from_saved_codes(tmp_path):
    assert main(["sample", "--artist", "The Beatles", "--genres", "rock", "--seconds", "0.2", "--samples", "2",
                 "--name", "given", "--out", str(tmp_path)]) == 0
    given = np.load(tmp_path / "given.codes.npz", allow_pickle=False)

    rows = _run(tmp_path, "up", "upsample", ["middle", "bottom"],
                {"codes": str(tmp_path / "given.codes.npz"), "seconds": 0.2, "takes": 2})
    for take, row in enumerate(rows):
        assert row["codes_top"] == given["top"][take].tolist(), "upsampling leaves the top level untouched"
        assert len(row["codes_bottom"]) == len(given["bottom"][take])
        assert row["codes_middle"] != given["middle"][take].tolist(), "the upsampler levels are sampled afresh"

    rows = _run(tmp_path, "cont", "continue", ["top", "middle", "bottom"],
                {"codes": str(tmp_path / "given.codes.npz"), "seconds": 0.4, "takes": 2})
    for take, row in enumerate(rows):
        for level, hop in (("top", 128), ("middle", 32), ("bottom", 8)):
            n = given[level].shape[1]
            assert row[f"codes_{level}"][:n] == given[level][take].tolist(), "continuing keeps what it is given"
            assert len(row[f"codes_{level}"]) == row["total_length"] // hop > n


def test_primed_job_keeps_the_prime(tmp_path):
    t = np.arange(44100 // 4) / 44100
    soundfile.write(tmp_path / "prime.wav", 0.5 * np.sin(2 * math.pi * 262 * t), 44100)
    rows = _run(tmp_path, "primed", "primed", ["top", "middle", "bottom"],
                {"prime": str(tmp_path / "prime.wav"), "prime_seconds": 0.1, "seconds": 0.3})
    from jukebox_dist.model import Jukebox
    from jukebox_dist.output.audio import read_prime
    model = Jukebox.from_pretrained("tiny")
    prime = read_prime(tmp_path / "prime.wav", 44100, 0.1, 128)
    codes = model.vqvae.encode(prime)[::-1]
    for level, name in enumerate(("top", "middle", "bottom")):
        n = codes[level].shape[1]
        assert rows[0][f"codes_{name}"][:n] == codes[level][0].tolist()
