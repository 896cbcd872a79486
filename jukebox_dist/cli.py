"""The `jukebox-dist` command line.

Subcommands:
    demo    build the tiny random model and round-trip a test tone through its VQ-VAE, level by level.

More come with the job runner (sample, run, validate). Errors a user can fix (`JukeboxError`) end with one
line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path
from typing import Sequence

from jukebox_dist import __version__
from jukebox_dist.errors import AudioError, InputError, JukeboxError

log = logging.getLogger(__name__)

TONE_SECONDS = 0.5
TONE_HZ = 440.0
TONE_AMPLITUDE = 0.5
TONE_FILE = "tone.wav"
PRIOR_NAMES = ("top", "middle", "bottom")  # model.priors order


def recon_file(level: int) -> str:
    """Name of the WAV file holding the reconstruction from VQ-VAE level `level` (0 is the finest)."""
    return f"recon_level{level}.wav"


def tone_length(sampling_rate: int, hop: int, seconds: float = TONE_SECONDS) -> int:
    """Audio samples in the test tone: `seconds` rounded up to a whole number of top-level hops."""
    return math.ceil(seconds * sampling_rate / hop) * hop


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jukebox-dist",
        description="A plain-PyTorch Jukebox and a Ray system for generating many songs in batch.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level instead of INFO")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="build the tiny random model and round-trip a test tone through its VQ-VAE",
        description="Build the tiny random model, encode a 0.5 s 440 Hz tone with its VQ-VAE and decode "
        "it again from each level. Shows that the model package works end to end in seconds on a CPU.",
    )
    demo.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help=f"write {TONE_FILE} and {recon_file(0)}, {recon_file(1)}, ... here (created if missing)",
    )
    demo.set_defaults(func=run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error that argparse already explained
        return exc.code if isinstance(exc.code, int) else 2
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.func(args)
    except JukeboxError as exc:
        print(f"jukebox-dist {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"jukebox-dist {args.command}: interrupted", file=sys.stderr)
        return 130


def setup_logging(level: int) -> None:
    """INFO lines like `12:00:01 jukebox_dist.cli: message`; leaves an already configured root alone."""
    logging.basicConfig(level=level, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("jukebox_dist").setLevel(level)


# --------------------------------------------------------------------------------------------- demo


def prepare_out_dir(out: Path) -> Path:
    """Create `out` if needed and return it resolved; a clear InputError if it cannot be a directory."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot create the directory ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: the directory is not writable")
    return out.resolve()


def out_path(out_dir: Path, name: str) -> Path:
    """`out_dir / name`, refusing any name that would land outside `out_dir`."""
    path = (out_dir / name).resolve()
    if path.parent != out_dir:
        raise InputError(f"refusing to write {name!r}: it is not a plain file name inside {out_dir}")
    return path


def write_wav(path: Path, audio, sampling_rate: int) -> None:
    """Write a (T, 1) float array as 32-bit float WAV, via a temporary name so no half-written file stays."""
    import soundfile

    tmp = path.with_name(f".{path.name}.part")
    try:
        soundfile.write(str(tmp), audio, sampling_rate, subtype="FLOAT", format="WAV")
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # soundfile raises its LibsndfileError, a RuntimeError
        tmp.unlink(missing_ok=True)
        raise AudioError(f"cannot write {path}: {exc}") from None


def count_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def run_demo(args: argparse.Namespace) -> int:
    # Check the output folder before any model work, so a bad --out fails at once.
    out_dir = prepare_out_dir(args.out) if args.out is not None else None

    import torch

    from jukebox_dist.model import Jukebox

    log.info("building the tiny preset: a seeded RANDOM model, not trained weights")
    model = Jukebox.from_pretrained("tiny")
    model.eval()

    log.info("parameters: vqvae %s", f"{count_parameters(model.vqvae):,}")
    for p, prior in enumerate(model.priors):
        name = PRIOR_NAMES[p] if p < len(PRIOR_NAMES) else "?"
        log.info("parameters: priors[%d] (%s) %s", p, name, f"{count_parameters(prior):,}")

    sampling_rate = int(model.config.sampling_rate)
    hop_lengths = list(model.vqvae.hop_lengths)
    n = tone_length(sampling_rate, hop_lengths[-1])
    t = torch.arange(n, dtype=torch.float64) / sampling_rate  # float64 phase: exact to float32 rounding
    audio = (TONE_AMPLITUDE * torch.sin(2 * math.pi * TONE_HZ * t)).float().reshape(1, n, 1)  # (B, T, 1)
    log.info("test tone: %.0f Hz, %d samples at %d Hz (%.3f s, a multiple of the top hop %d)",
             TONE_HZ, n, sampling_rate, n / sampling_rate, hop_lengths[-1])

    with torch.no_grad():
        codes = model.vqvae.encode(audio)  # [(B, T / hop_l)] finest level first
        for level, (c, hop) in enumerate(zip(codes, hop_lengths)):
            log.info("level %d: hop %d, codes %s, %s", level, hop, tuple(c.shape), str(c.dtype).replace("torch.", ""))
        recons = []
        for level in range(len(codes)):
            recon = model.vqvae.decode(codes[level:level + 1], start_level=level)  # (B, T, 1)
            m = min(recon.shape[1], n)
            rms = torch.sqrt(torch.mean((recon[:, :m] - audio[:, :m]) ** 2)).item()
            log.info("level %d: reconstruction %s, RMS error %.4f (tone RMS %.4f)",
                     level, tuple(recon.shape), rms, TONE_AMPLITUDE / math.sqrt(2))
            recons.append(recon)

    if out_dir is not None:
        write_wav(out_path(out_dir, TONE_FILE), audio[0].numpy(), sampling_rate)
        for level, recon in enumerate(recons):
            write_wav(out_path(out_dir, recon_file(level)), recon[0].float().numpy(), sampling_rate)
        log.info("wrote %s and %d reconstructions to %s", TONE_FILE, len(recons), out_dir)

    log.info("this was a RANDOM tiny model, so the reconstructions are noise-like and the errors large; "
             "it shows the model package runs end to end")
    log.info("the batch job runner (manifests, Ray workers, Parquet output) is not built yet")
    return 0
