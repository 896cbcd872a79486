"""Audio I/O: prime reading (formats, resampling accuracy, mixing, trimming), each error a user can meet, atomic
writes, and safe output paths."""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from jukebox_dist.errors import AudioError, InputError
from jukebox_dist.output.audio import atomic_write, read_prime, resample, safe_join, write_audio

SR = 44100


def sine(freq: float, rate: int, n: int, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def noise(n: int, seed: int = 0, amp: float = 0.9) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-amp, amp, n)


def write_float_wav(path: Path, data: np.ndarray, rate: int) -> Path:
    sf.write(path, data.astype(np.float32), rate, subtype="FLOAT")
    return path


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


# ---- round trips ------------------------------------------------------------------------------------------------
def test_flac_round_trip_within_24_bit_quantisation(tmp_path: Path) -> None:
    audio = noise(SR // 2)
    path = write_audio(tmp_path / "song.flac", torch.from_numpy(audio).float(), SR)
    assert sf.info(path).subtype == "PCM_24" and sf.info(path).format == "FLAC"
    back = read_prime(path, SR, None, hop=1)
    assert back.shape == (1, audio.size, 1) and back.dtype == torch.float32
    # One 24-bit step is 2**-23; the float32 input itself is within 2**-24 of the float64 original.
    assert np.abs(back[0, :, 0].numpy() - audio).max() <= 2**-23


def test_wav_is_float_and_exact(tmp_path: Path) -> None:
    audio = noise(1000, seed=1).astype(np.float32)
    path = write_audio(tmp_path / "song.wav", audio[:, None], SR)  # (T, 1) is accepted too
    assert sf.info(path).subtype == "FLOAT"
    assert torch.equal(read_prime(path, SR, None, hop=1)[0, :, 0], torch.from_numpy(audio))


@pytest.mark.parametrize("suffix", [".ogg", ".aiff"])
def test_reads_other_formats(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"prime{suffix}"
    sf.write(path, sine(440, SR, SR).astype(np.float32), SR)
    got = read_prime(path, SR, 0.5, hop=128)[0, :, 0].numpy()
    assert got.size == SR // 2 // 128 * 128
    assert np.corrcoef(got, sine(440, SR, got.size))[0, 1] > 0.99  # ogg is lossy: shape, not samples


# ---- resampling -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate,freq", [(22050, 1000.0), (48000, 1000.0), (22050, 8000.0), (48000, 15000.0),
                                       (16000, 3000.0), (96000, 1000.0)])
def test_resampled_sine_matches_the_analytic_sine(tmp_path: Path, rate: int, freq: float) -> None:
    # Linear interpolation misses these by 2.5e-3 (1 kHz from 22050 Hz) to 0.15 (8 kHz): the bound tests the filter.
    path = write_float_wav(tmp_path / "sine.wav", sine(freq, rate, rate), rate)
    got = read_prime(path, SR, None, hop=1)[0, :, 0].numpy()
    assert got.size == SR
    edge = 1000  # the filter sees zeros past both ends
    assert rms(got[edge:-edge] - sine(freq, SR, SR)[edge:-edge]) < 1e-3


def test_content_above_the_new_nyquist_is_removed_not_aliased() -> None:
    x = torch.from_numpy(sine(23000.0, 48000, 48000))  # representable at 48 kHz, not at 44.1 kHz
    y = resample(x, 48000, SR).numpy()
    assert rms(y[1000:-1000]) < 1e-3  # linear interpolation leaves a 21.1 kHz alias of RMS 0.2


def test_resample_of_an_awkward_ratio() -> None:
    # 44101 -> 44100 has 44100 phases after the gcd, more than the 8820 outputs: each phase is used once.
    x = torch.from_numpy(sine(1000.0, 44101, 8820))
    y = resample(x, 44101, SR).numpy()
    assert y.size == 8820 and rms(y[1000:-1000] - sine(1000.0, SR, 8820)[1000:-1000]) < 1e-3


def test_resample_keeps_dc_and_length() -> None:
    y = resample(torch.ones(480), 48000, SR)
    assert y.numel() == math.ceil(480 * SR / 48000)
    assert torch.allclose(y[60:-60], torch.ones(1), atol=1e-4)


# ---- mixing and trimming ----------------------------------------------------------------------------------------
def test_stereo_is_mixed_to_mono_by_averaging(tmp_path: Path) -> None:
    left, right = sine(440, SR, 4096), noise(4096, seed=2, amp=0.3)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1).astype(np.float32), SR, subtype="FLOAT")
    got = read_prime(path, SR, None, hop=1)[0, :, 0].numpy()
    np.testing.assert_allclose(got, (left.astype(np.float32) + right.astype(np.float32)) / 2, atol=1e-7)


def test_trims_to_seconds_then_to_a_hop_multiple(tmp_path: Path) -> None:
    audio = noise(2 * SR, seed=3)
    path = write_float_wav(tmp_path / "long.wav", audio, SR)
    got = read_prime(path, SR, 0.5, hop=128)
    assert got.shape == (1, 22050 // 128 * 128, 1)  # 0.5 s is 22050 samples, cut down to 172 hops
    np.testing.assert_allclose(got[0, :, 0].numpy(), audio[:got.shape[1]], atol=1e-7)


def test_trims_whole_file_to_a_hop_multiple(tmp_path: Path) -> None:
    path = write_float_wav(tmp_path / "odd.wav", noise(1000), SR)
    assert read_prime(path, SR, None, hop=128).shape == (1, 896, 1)


def test_seconds_after_resampling_are_at_the_target_rate(tmp_path: Path) -> None:
    path = write_float_wav(tmp_path / "48k.wav", sine(500, 48000, 48000), 48000)
    got = read_prime(path, SR, 0.25, hop=8)[0, :, 0].numpy()
    assert got.size == round(0.25 * SR) // 8 * 8
    # Only part of the file was read, yet the kept end is not an edge: the filter saw real samples past it.
    assert rms(got[-500:] - sine(500, SR, got.size)[-500:]) < 1e-3


# ---- errors, with the message a user reads ----------------------------------------------------------------------
def expect(exc_type: type[Exception], message: str, *args, **kwargs) -> None:
    with pytest.raises(exc_type) as info:
        read_prime(*args, **kwargs)
    assert str(info.value) == message


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope.flac"
    expect(AudioError, f"{p}: no such file; expected an audio file to prime with", p, SR, None, 128)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    expect(AudioError, f"{tmp_path}: not a file; expected an audio file (wav, flac, ogg, ...) to prime with",
           tmp_path, SR, None, 128)


def test_unreadable_file_names_soundfiles_reason(tmp_path: Path) -> None:
    p = tmp_path / "notes.wav"
    p.write_text("these are not samples")
    expect(AudioError, f"{p}: cannot read as audio (Format not recognised); expected a file soundfile reads: "
           "wav, flac, ogg, mp3, aiff, ...", p, SR, None, 128)


def test_empty_file(tmp_path: Path) -> None:
    p = write_float_wav(tmp_path / "empty.wav", np.zeros(0), SR)
    expect(AudioError, f"{p}: is empty (0 audio samples); expected audio to prime with", p, SR, None, 128)


def test_silent_file(tmp_path: Path) -> None:
    p = write_float_wav(tmp_path / "quiet.wav", np.full(SR, 1e-5), SR)
    expect(AudioError, f"{p}: is silent (peak 1.0e-05, below 1e-04); expected audible audio to prime with",
           p, SR, None, 128)


def test_silent_start_names_the_seconds(tmp_path: Path) -> None:
    audio = np.concatenate([np.zeros(SR), noise(SR)])  # audible only after the part asked for
    p = write_float_wav(tmp_path / "late.wav", audio, SR)
    expect(AudioError, f"{p}: is silent in its first 0.5 s (peak 0.0e+00, below 1e-04); expected audible audio "
           "to prime with", p, SR, 0.5, 128)


def test_shorter_than_seconds_says_how_long_it_is(tmp_path: Path) -> None:
    p = write_float_wav(tmp_path / "short.wav", noise(SR), SR)
    expect(AudioError, f"{p}: is 1.00 s long, shorter than the 2.5 s of prime requested", p, SR, 2.5, 128)


def test_shorter_than_one_hop(tmp_path: Path) -> None:
    p = write_float_wav(tmp_path / "blip.wav", noise(100), SR)
    expect(AudioError, f"{p}: is 100 samples at 44100 Hz, shorter than one hop of 128 samples; expected at least "
           "2.9 ms of audio", p, SR, None, 128)


def test_non_finite_samples(tmp_path: Path) -> None:
    audio = noise(1000)
    audio[[10, 20]] = [np.nan, np.inf]
    p = write_float_wav(tmp_path / "nan.wav", audio, SR)
    expect(AudioError, f"{p}: has 2 non-finite samples (NaN or inf); expected finite audio", p, SR, None, 128)


def test_bad_seconds(tmp_path: Path) -> None:
    p = tmp_path / "x.wav"
    expect(InputError, f"{p}: prime seconds=0 must be a positive number of seconds", p, SR, 0, 128)


# ---- writing ----------------------------------------------------------------------------------------------------
def test_write_clips_and_warns_with_the_fraction(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    audio = np.zeros(1000, dtype=np.float32)
    audio[:5], audio[5:10] = 1.5, -3.0
    with caplog.at_level(logging.WARNING, logger="jukebox_dist.output.audio"):
        path = write_audio(tmp_path / "loud.wav", audio, SR)
    assert [r.getMessage() for r in caplog.records] == [f"{path}: clipped 1.000% of samples (10) to [-1, 1]"]
    back, _ = sf.read(path)
    assert back[:5].tolist() == [1.0] * 5 and back[5:10].tolist() == [-1.0] * 5


def test_write_in_range_does_not_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="jukebox_dist.output.audio"):
        write_audio(tmp_path / "ok.flac", noise(100), SR)
    assert not caplog.records


def test_write_creates_folders_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "a" / "b" / "song.flac", noise(4410), SR)
    write_audio(path, noise(4410, seed=9), SR)  # overwrite in place
    assert sorted(p.name for p in path.parent.iterdir()) == ["song.flac"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0o600


def test_failed_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "keep.bin"
    path.write_bytes(b"old")

    def half_then_fail(f) -> None:
        f.write(b"new but incomp")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["keep.bin"]


@pytest.mark.parametrize("name,message", [("song.mp3", "unknown audio suffix '.mp3'; expected .flac or .wav"),
                                          ("song", "unknown audio suffix '(none)'; expected .flac or .wav")])
def test_write_rejects_other_suffixes(tmp_path: Path, name: str, message: str) -> None:
    with pytest.raises(AudioError) as info:
        write_audio(tmp_path / name, noise(10), SR)
    assert str(info.value) == f"{tmp_path / name}: {message}"


@pytest.mark.parametrize("audio,shape", [(np.zeros((2, 100)), "(2, 100)"), (np.zeros(0), "(0,)")])
def test_write_rejects_shapes(tmp_path: Path, audio: np.ndarray, shape: str) -> None:
    with pytest.raises(AudioError) as info:
        write_audio(tmp_path / "x.flac", audio, SR)
    assert str(info.value) == f"{tmp_path / 'x.flac'}: audio to write has shape {shape}; expected (T,) or (T, 1) " \
                              "with T > 0"


def test_write_rejects_nan(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="has 1 non-finite samples"):
        write_audio(tmp_path / "x.flac", np.array([0.0, np.nan]), SR)
    assert not list(tmp_path.iterdir())


# ---- safe_join --------------------------------------------------------------------------------------------------
def test_safe_join_inside(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    assert safe_join(tmp_path, "audio/00001-000.flac") == root / "audio" / "00001-000.flac"
    assert safe_join(tmp_path, Path("a/../b.flac")) == root / "b.flac"  # `..` that stays inside is fine
    (tmp_path / "inner").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "inner")
    assert safe_join(tmp_path, "link/x.flac") == root / "inner" / "x.flac"


@pytest.mark.parametrize("rel", ["../x.flac", "audio/../../x.flac", "a/b/../../../etc"])
def test_safe_join_rejects_climbing_out(tmp_path: Path, rel: str) -> None:
    out = (tmp_path / rel).resolve()
    with pytest.raises(InputError) as info:
        safe_join(tmp_path, rel)
    assert str(info.value) == f"output path {rel!r} resolves to {out}, outside the output folder {tmp_path.resolve()}"


def test_safe_join_rejects_absolute(tmp_path: Path) -> None:
    inside = str(tmp_path / "x.flac")  # absolute even where it points inside: outputs are named relative
    with pytest.raises(InputError) as info:
        safe_join(tmp_path, inside)
    assert str(info.value) == f"output path {inside!r} is absolute; expected a path relative to {tmp_path}"


def test_safe_join_rejects_symlink_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir(), outside.mkdir()
    (root / "audio").symlink_to(outside)
    with pytest.raises(InputError, match="outside the output folder"):
        safe_join(root, "audio/x.flac")


@pytest.mark.parametrize("rel", ["", ".", "a/.."])
def test_safe_join_rejects_the_root_itself(tmp_path: Path, rel: str) -> None:
    with pytest.raises(InputError):
        safe_join(tmp_path, rel)
