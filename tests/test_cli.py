"""The command line: `jukebox-dist demo` end to end on the tiny model, and user errors without tracebacks."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import soundfile

from jukebox_dist.cli import TONE_AMPLITUDE, TONE_FILE, TONE_HZ, main, recon_file


@pytest.fixture(scope="module")
def tiny():
    from jukebox_dist.model import Jukebox

    return Jukebox.from_pretrained("tiny")


def test_demo_writes_tone_and_reconstructions(tmp_path, caplog, tiny):
    out = tmp_path / "new" / "demo"  # missing parents are created
    with caplog.at_level(logging.INFO, logger="jukebox_dist"):
        assert main(["demo", "--out", str(out)]) == 0

    sr = tiny.config.sampling_rate
    hops = list(tiny.vqvae.hop_lengths)
    n = math.ceil(0.5 * sr / hops[-1]) * hops[-1]  # 0.5 s rounded up to whole top-level hops

    tone, tone_sr = soundfile.read(out / TONE_FILE, dtype="float32", always_2d=True)
    assert tone_sr == sr
    assert tone.shape == (n, 1)
    expected = TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * np.arange(n) / sr)
    np.testing.assert_allclose(tone[:, 0], expected, atol=1e-6)

    for level in range(len(hops)):
        recon, recon_sr = soundfile.read(out / recon_file(level), dtype="float32", always_2d=True)
        assert recon_sr == sr
        assert recon.shape == (n, 1), f"level {level}"
        assert np.isfinite(recon).all(), f"level {level}"
    assert sorted(p.name for p in out.iterdir()) == sorted([TONE_FILE, *(recon_file(l) for l in range(len(hops)))])

    text = caplog.text
    for level in range(len(hops)):
        assert f"level {level}: reconstruction" in text
    assert "RANDOM tiny model" in text
    assert "job runner" in text and "not built yet" in text


def test_demo_without_out_writes_nothing(tmp_path, monkeypatch, tiny):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("make_bad", ["file", "under_file"])
def test_demo_bad_out_is_a_one_line_error(tmp_path, capsys, make_bad):
    afile = tmp_path / "taken.wav"
    afile.write_bytes(b"not a directory")
    bad = afile if make_bad == "file" else afile / "sub"

    assert main(["demo", "--out", str(bad)]) == 2

    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("jukebox-dist demo: error: --out ")
    assert str(bad) in lines[0]
    assert "not a directory" in lines[0].lower()
    assert "Traceback" not in err
    assert afile.read_bytes() == b"not a directory"  # left untouched


def test_usage_errors_return_2(capsys):
    assert main([]) == 2
    assert main(["no-such-command"]) == 2
    assert "usage: jukebox-dist" in capsys.readouterr().err
