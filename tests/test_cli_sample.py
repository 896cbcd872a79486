"""`jukebox-dist sample`: one song in one process, every mode, and the errors a user sees before sampling."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile

from jukebox_dist.cli import main

BASE = ["sample", "--artist", "Alan Jackson", "--genres", "country", "--lyrics", "la la la"]


def _run(capsys, *args: str) -> tuple[int, str]:
    code = main([*BASE, *args])
    return code, capsys.readouterr().err


def test_ancestral_then_continue_then_upsample(tmp_path, capsys):
    code, _ = _run(capsys, "--seconds", "0.3", "--samples", "2", "--out", str(tmp_path))
    assert code == 0
    for i in range(2):
        audio, sr = soundfile.read(tmp_path / f"sample-{i}.flac")
        assert sr == 44100 and len(audio) == int(0.3 * 44100) // 128 * 128
    codes = np.load(tmp_path / "sample.codes.npz", allow_pickle=False)
    assert codes["top"].shape == (2, 103) and codes["bottom"].shape == (2, 103 * 16)

    code, _ = _run(capsys, "--seconds", "0.5", "--mode", "continue", "--codes", str(tmp_path / "sample.codes.npz"),
                   "--samples", "2", "--name", "longer", "--out", str(tmp_path))
    assert code == 0
    longer = np.load(tmp_path / "longer.codes.npz", allow_pickle=False)
    assert np.array_equal(longer["top"][:, :103], codes["top"]) and longer["top"].shape == (2, 172)

    code, _ = _run(capsys, "--seconds", "0.5", "--mode", "upsample", "--codes", str(tmp_path / "longer.codes.npz"),
                   "--samples", "2", "--name", "up", "--seed", "9", "--out", str(tmp_path))
    assert code == 0
    up = np.load(tmp_path / "up.codes.npz", allow_pickle=False)
    assert np.array_equal(up["top"], longer["top"])
    assert not np.array_equal(up["bottom"], longer["bottom"]), "seed 9 resamples the upsampler levels"


def test_primed_from_an_audio_file(tmp_path, capsys):
    t = np.arange(22050) / 22050
    soundfile.write(tmp_path / "prime.wav", np.stack([np.sin(2 * math.pi * 330 * t)] * 2, axis=1) * 0.5, 22050)
    code, _ = _run(capsys, "--seconds", "0.4", "--mode", "primed", "--prime", str(tmp_path / "prime.wav"),
                   "--prime-seconds", "0.2", "--out", str(tmp_path))
    assert code == 0
    assert soundfile.info(str(tmp_path / "sample.flac")).frames == int(0.4 * 44100) // 128 * 128


@pytest.mark.parametrize("args, message", [
    (["--seconds", "20"], "outside what this model supports"),
    (["--seconds", "0.001"], "outside what this model supports: at least 128 samples"),
    (["--seconds", "1", "--temperature", "5"], "temperature 5.0 is out of range"),
    (["--seconds", "1", "--mode", "continue"], "--mode continue needs --codes"),
    (["--seconds", "1", "--prime", "x.wav"], "--prime is only for --mode primed"),
    (["--seconds", "1", "--mode", "upsample", "--codes", "missing.npz"], "--codes missing.npz: no such file"),
    (["--seconds", "1", "--genres", "polka"], "unknown genre 'polka'"),
    (["--seconds", "1", "--name", "../x"], "--name '../x': use letters"),
])
def test_errors_before_sampling(tmp_path, capsys, args, message):
    code, err = _run(capsys, *args, "--out", str(tmp_path))
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.glob("*.flac")) and not list(tmp_path.glob("*.npz")), "nothing written"


def test_codes_from_another_model_are_refused(tmp_path, capsys):
    assert _run(capsys, "--seconds", "0.2", "--model", "tiny5b", "--out", str(tmp_path))[0] == 0
    code, err = _run(capsys, "--seconds", "0.4", "--mode", "continue", "--codes", str(tmp_path / "sample.codes.npz"),
                     "--name", "other", "--out", str(tmp_path))
    assert code == 2 and "different VQ-VAE" in err
