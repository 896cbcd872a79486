"""Audio in and out: primes read with soundfile (any rate, any channels), songs written atomically, safe paths.

Resampling is a windowed-sinc (Kaiser) interpolator written with torch, because torchaudio is not a dependency and
nearest/linear interpolation would alias audibly into the prime the model continues.
"""
from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch

from jukebox_dist.errors import AudioError, InputError

__all__ = ["SILENCE_PEAK", "atomic_write", "read_prime", "resample", "safe_join", "write_audio"]

log = logging.getLogger(__name__)

SILENCE_PEAK = 1e-4  # about -80 dBFS: below this a prime carries nothing for the model to continue
WRITE_FORMATS = {".flac": ("FLAC", "PCM_24"), ".wav": ("WAV", "FLOAT")}

# Resampler design: ZERO_CROSSINGS of the sinc on each side and a Kaiser window of KAISER_BETA (stopband about
# -85 dB) give a transition band ~0.16 Nyquist wide; centring it at ROLLOFF of the lower Nyquist keeps all of it
# below that Nyquist (no aliasing) and leaves the passband flat to ~84% of it (18.5 kHz at 44.1 kHz).
ZERO_CROSSINGS = 32
KAISER_BETA = 8.6
ROLLOFF = 0.92


def read_prime(path: str | Path, sample_rate: int, seconds: float | None, hop: int) -> torch.Tensor:
    """Audio to prime a model with: (1, T, 1) float32 at `sample_rate`, mono, the first `seconds` (all if None),
    T a multiple of `hop`. Everything that can be checked from the header is checked before reading samples."""
    if sample_rate <= 0 or hop <= 0:
        raise InputError(f"read_prime: sample_rate={sample_rate} and hop={hop} must be positive")
    if seconds is not None and not (math.isfinite(seconds) and seconds > 0):
        raise InputError(f"{path}: prime seconds={seconds} must be a positive number of seconds")
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file; expected an audio file to prime with")
    if not path.is_file():
        raise AudioError(f"{path}: not a file; expected an audio file (wav, flac, ogg, ...) to prime with")
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioError(f"{path}: cannot read as audio ({_reason(exc)}); expected a file soundfile reads: "
                         "wav, flac, ogg, mp3, aiff, ...") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{path}: is empty (0 audio samples); expected audio to prime with")
    file_seconds = info.frames / info.samplerate
    available = _resampled_length(info.frames, info.samplerate, sample_rate)
    wanted = available if seconds is None else round(seconds * sample_rate)
    if wanted > available:
        raise AudioError(f"{path}: is {file_seconds:.2f} s long, shorter than the {seconds:g} s of prime requested")

    # Read only what the output needs, plus the filter's reach so the last kept samples are not edge-affected.
    reach = _design(info.samplerate, sample_rate)[4] + 2
    frames = min(info.frames, math.ceil(wanted * info.samplerate / sample_rate) + reach)
    try:
        data, _ = sf.read(str(path), frames=frames, dtype="float64", always_2d=True)  # (T_in, C)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioError(f"{path}: cannot decode its audio ({_reason(exc)})") from None
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise AudioError(f"{path}: has {bad} non-finite samples (NaN or inf); expected finite audio")
    mono = torch.from_numpy(data.mean(axis=1))  # (T_in,): averaging keeps the level of correlated channels
    audio = resample(mono, info.samplerate, sample_rate)[:wanted]
    if audio.numel() < wanted:
        # The header promised more frames than the file holds (a truncated file).
        raise AudioError(f"{path}: holds only {audio.numel() / sample_rate:.2f} s of readable audio, expected "
                         f"{wanted / sample_rate:.2f} s; the file may be truncated")

    peak = float(audio.abs().max())
    if peak < SILENCE_PEAK:
        where = "" if seconds is None else f" in its first {seconds:g} s"
        raise AudioError(f"{path}: is silent{where} (peak {peak:.1e}, below {SILENCE_PEAK:.0e}); "
                         "expected audible audio to prime with")
    usable = audio.numel() // hop * hop
    if usable == 0:
        raise AudioError(f"{path}: is {audio.numel()} samples at {sample_rate} Hz, shorter than one hop of "
                         f"{hop} samples; expected at least {hop / sample_rate * 1000:.1f} ms of audio")
    if usable < audio.numel():
        log.debug("%s: trimmed %d samples to a multiple of the hop %d", path, audio.numel() - usable, hop)
    log.info("%s: prime of %.2f s (%d Hz, %d channel(s) -> mono %d Hz)", path, usable / sample_rate,
             info.samplerate, info.channels, sample_rate)
    return audio[:usable].to(torch.float32).view(1, usable, 1)


def resample(x: torch.Tensor, orig_rate: int, new_rate: int) -> torch.Tensor:
    """Band-limited resampling of a 1-D signal to float32; `ceil(len * new / orig)` samples out.

    Output n sits at input time n * down / up (the rates divided by their gcd) and is a Kaiser-windowed-sinc
    weighted sum of the inputs around it, with the cutoff below the lower of the two Nyquist frequencies. The
    outputs n = p, p + up, p + 2 up, ... share one fractional offset, hence one filter row, and their inputs
    advance by exactly `down`: each such phase is a strided view times a vector (polyphase filtering)."""
    assert x.ndim == 1, "resample takes a 1-D signal"
    if orig_rate == new_rate:
        return x.to(torch.float32, copy=True)
    up, down, cutoff, half, reach = _design(orig_rate, new_rate)
    width = 2 * reach + 2  # inputs floor(t) - reach .. floor(t) + reach + 1 cover [t - half, t + half]
    n_out = _resampled_length(x.numel(), orig_rate, new_rate)
    phases = min(up, n_out)
    # Row p: the filter of outputs p, p + up, ...; designed in float64 (t's fraction is exactly (p*down % up)/up).
    frac = (torch.arange(phases, dtype=torch.int64) * down % up).to(torch.float64) / up
    taps = torch.arange(-reach, reach + 2, dtype=torch.float64)
    table = _kaiser_sinc(taps.view(1, -1) - frac.view(-1, 1), cutoff, half).to(torch.float32)  # (phases, width)
    # Zeros beyond both ends; padded[i] is x[i - reach], so floor(t) - reach sits at padded[floor(t)].
    padded = torch.nn.functional.pad(x.to(torch.float32), (reach, reach + 2))
    out = torch.empty(n_out, dtype=torch.float32)
    for p in range(phases):
        count = (n_out - 1 - p) // up + 1
        first = p * down // up  # floor(t) of output p; integer maths, so no drift over long files
        windows = padded[first:first + (count - 1) * down + width].unfold(0, width, down)  # (count, width) view
        out[p::up] = windows @ table[p]
    return out


def _kaiser_sinc(offset: torch.Tensor, cutoff: float, half: float) -> torch.Tensor:
    """Low-pass impulse response at `offset` input samples; unit gain at DC (it sums to ~1 at any phase)."""
    inside = (offset / half).clamp(-1.0, 1.0)
    window = torch.special.i0(KAISER_BETA * torch.sqrt(1.0 - inside**2)) / torch.special.i0(
        torch.tensor(KAISER_BETA, dtype=torch.float64))
    window = torch.where(offset.abs() <= half, window, torch.zeros_like(window))
    return 2 * cutoff * torch.sinc(2 * cutoff * offset) * window


def _resampled_length(frames: int, orig_rate: int, new_rate: int) -> int:
    return -(-frames * new_rate // orig_rate)  # ceil without floats


def _design(orig_rate: int, new_rate: int) -> tuple[int, int, float, float, int]:
    """(up, down, cutoff in cycles per input sample, half-width and its ceiling `reach` in input samples)."""
    g = math.gcd(orig_rate, new_rate)
    up, down = new_rate // g, orig_rate // g  # output n sits at input time n * down / up
    cutoff = 0.5 * ROLLOFF * min(1.0, up / down)
    half = ZERO_CROSSINGS / (2 * cutoff)
    return up, down, cutoff, half, math.ceil(half)


def _reason(exc: BaseException) -> str:
    # soundfile's LibsndfileError carries libsndfile's own sentence ("Format not recognised.") without the path.
    return str(getattr(exc, "error_string", None) or exc).strip().rstrip(".")


def write_audio(path: str | Path, audio: torch.Tensor | np.ndarray, sample_rate: int) -> Path:
    """Write mono audio (T,) or (T, 1): `.flac` as 24-bit PCM, `.wav` as 32-bit float. Samples beyond [-1, 1]
    are clipped (with a warning). The file appears under its name complete or not at all."""
    path = Path(path)
    if path.suffix.lower() not in WRITE_FORMATS:
        raise AudioError(f"{path}: unknown audio suffix {path.suffix or '(none)'!r}; expected .flac or .wav")
    if sample_rate <= 0:
        raise AudioError(f"{path}: sample_rate={sample_rate} must be positive")
    data = audio.detach().to("cpu", torch.float32).numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    if data.ndim == 2 and data.shape[1] == 1:
        data = data[:, 0]
    if data.ndim != 1 or data.size == 0:
        raise AudioError(f"{path}: audio to write has shape {tuple(data.shape)}; expected (T,) or (T, 1) with T > 0")
    data = data.astype(np.float32, copy=False)
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise AudioError(f"{path}: audio to write has {bad} non-finite samples (NaN or inf)")
    clipped = int(np.count_nonzero(np.abs(data) > 1.0))
    if clipped:
        log.warning("%s: clipped %.3f%% of samples (%d) to [-1, 1]", path, 100 * clipped / data.size, clipped)
        data = np.clip(data, -1.0, 1.0)
    fmt, subtype = WRITE_FORMATS[path.suffix.lower()]
    atomic_write(path, lambda f: sf.write(f, data, sample_rate, format=fmt, subtype=subtype))
    log.info("wrote %s (%.2f s at %d Hz)", path, data.size / sample_rate, sample_rate)
    return path


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Run `write` on a temporary file beside `path`, sync it, then rename it onto `path`: a reader (or a resumed
    job) sees the old file or the whole new one, never half of one. Parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder so os.replace is a rename on one filesystem; dot-prefixed so globs over outputs skip it.
    # O_EXCL with mode 0o666 (not mkstemp's 0o600) so the final file gets the user's umask like any other.
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def safe_join(root: str | Path, relative: str | Path) -> Path:
    """`root / relative`, resolved, refusing anything that lands outside `root`: absolute paths, `..` that climbs
    out, and symlinks (existing at call time) that point out. Every output path goes through here because
    parts of it (sample ids, manifest names) come from user input."""
    rel = str(relative)
    if not rel or "\x00" in rel:
        raise InputError(f"output path {relative!r}: expected a non-empty relative path")
    if Path(rel).is_absolute() or Path(rel).drive:
        raise InputError(f"output path {rel!r} is absolute; expected a path relative to {root}")
    base = Path(root).resolve()
    target = (base / rel).resolve()
    if target == base:
        raise InputError(f"output path {rel!r} is the output folder {base} itself; expected a path inside it")
    if not target.is_relative_to(base):
        raise InputError(f"output path {rel!r} resolves to {target}, outside the output folder {base}")
    return target
