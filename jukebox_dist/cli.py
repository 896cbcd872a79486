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
import re
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
    add_sample_parser(sub)
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


# --------------------------------------------------------------------------------------------- sample
MODES = ("ancestral", "primed", "continue", "upsample")


def add_sample_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="sample one song in this process and write its audio and codes",
                       description="Sample one song (or --samples takes of it) with a single process: no Ray. "
                       "Writes NAME.flac (or NAME-i.flac per take) and NAME.codes.npz, which --mode continue "
                       "and --mode upsample accept back.")
    p.add_argument("--model", default="tiny", help="preset (tiny, tiny5b) or a model folder in the HF layout")
    p.add_argument("--artist", required=True)
    p.add_argument("--genres", nargs="+", required=True, metavar="GENRE")
    lyr = p.add_mutually_exclusive_group()
    lyr.add_argument("--lyrics", default="", help="the lyrics text")
    lyr.add_argument("--lyrics-file", type=Path, help="a UTF-8 text file with the lyrics")
    p.add_argument("--seconds", type=float, required=True, help="length of the song")
    p.add_argument("--seed", type=int, default=0, help="take i uses seed+i")
    p.add_argument("--samples", type=int, default=1, help="takes of the song, sampled as one batch")
    p.add_argument("--mode", choices=MODES, default="ancestral")
    p.add_argument("--prime", type=Path, help="audio file to continue (--mode primed)")
    p.add_argument("--prime-seconds", type=float, help="use only the first seconds of --prime")
    p.add_argument("--codes", type=Path, help="codes .npz to continue or upsample (--mode continue/upsample)")
    p.add_argument("--levels", nargs="+", choices=PRIOR_NAMES, help="levels to sample (default: all the mode needs)")
    p.add_argument("--temperature", type=float, nargs="+", help="one value or one per level (default 0.98 0.99 0.99)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=0.0)
    p.add_argument("--format", choices=("flac", "wav"), default="flac")
    p.add_argument("--name", default="sample", help="file name stem of the outputs")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created if missing)")
    p.set_defaults(func=run_sample)


def _check_sample_args(args: argparse.Namespace) -> str:
    """Everything that can be checked before loading a model; returns the lyrics."""
    needs = {"primed": "prime", "continue": "codes", "upsample": "codes"}.get(args.mode)
    for option in ("prime", "codes"):
        given = getattr(args, option) is not None
        if given and option != needs:
            raise InputError(f"--{option} is only for --mode {'primed' if option == 'prime' else 'continue/upsample'}")
        if option == needs and not given:
            raise InputError(f"--mode {args.mode} needs --{option}")
        if given and not getattr(args, option).is_file():
            raise InputError(f"--{option} {getattr(args, option)}: no such file")
    if args.seconds <= 0 or args.samples < 1:
        raise InputError("--seconds must be positive and --samples at least 1")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", args.name):
        raise InputError(f"--name {args.name!r}: use letters, digits, '.', '_' and '-' only")
    if args.lyrics_file is None:
        return args.lyrics
    try:
        return args.lyrics_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--lyrics-file {args.lyrics_file}: cannot read it as UTF-8 text ({exc})") from None


def run_sample(args: argparse.Namespace) -> int:
    lyrics = _check_sample_args(args)
    out_dir = prepare_out_dir(args.out)

    import torch

    from jukebox_dist.model import Jukebox, JukeboxTokenizer
    from jukebox_dist.output.audio import read_prime, write_audio
    from jukebox_dist.output.codes import load_codes, save_codes
    from jukebox_dist.sampling.generate import DEFAULT_TEMPERATURES

    tokenizer = JukeboxTokenizer.from_pretrained(args.model)
    unknown = tokenizer.unknown(args.artist, args.genres)
    if unknown:
        raise InputError("; ".join(unknown))
    model = Jukebox.from_pretrained(args.model)
    cfg = model.config
    hop = cfg.raw_to_tokens(0)
    total = int(args.seconds * cfg.sampling_rate) // hop * hop
    labels = tokenizer(args.artist, args.genres, lyrics)["input_ids"]
    levels = [PRIOR_NAMES.index(name) for name in args.levels] if args.levels else None
    kwargs = dict(total_length=total, seed=args.seed, levels=levels, top_k=args.top_k, top_p=args.top_p,
                  temperature=(args.temperature[0] if args.temperature and len(args.temperature) == 1
                               else args.temperature or DEFAULT_TEMPERATURES),
                  progress=ProgressBar())
    if args.mode == "ancestral":
        codes = model.ancestral_sample(labels, args.samples, **kwargs)
    elif args.mode == "primed":
        audio = read_prime(args.prime, cfg.sampling_rate, args.prime_seconds, hop)
        codes = model.primed_sample(audio.expand(args.samples, -1, -1), labels, **kwargs)
    else:
        given, meta = load_codes(args.codes, model)
        given = [c[:1].expand(args.samples, -1) if c.shape[0] == 1 else c for c in given]
        if args.mode == "upsample":
            kwargs["total_length"] = int(meta["total_length"])
            codes = model.upsample(given[:1], labels, **kwargs)  # the upsampler levels are sampled afresh
        else:
            codes = model.continue_sample(given, labels, **kwargs)
    total = kwargs["total_length"]
    with torch.no_grad():
        audio = model.decode(codes)
    written = []
    for i in range(audio.shape[0]):
        stem = args.name if audio.shape[0] == 1 else f"{args.name}-{i}"
        written.append(write_audio(out_path(out_dir, f"{stem}.{args.format}"), audio[i], cfg.sampling_rate))
    extra = {"seeds": [args.seed + i for i in range(audio.shape[0])], "artist": args.artist,
             "genres": list(args.genres), "lyrics": lyrics, "mode": args.mode, "top_k": args.top_k,
             "top_p": args.top_p}
    codes_path = save_codes(out_path(out_dir, f"{args.name}.codes.npz"), codes, model=model, total_length=total,
                            extra=extra)
    log.info("wrote %s and %s", ", ".join(str(p) for p in written), codes_path)
    return 0


class ProgressBar:
    """One line per level on stderr, redrawn in place on a terminal and logged every 10 % otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last: dict[int, int] = {}

    def __call__(self, level: int, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        name = PRIOR_NAMES[level] if level < len(PRIOR_NAMES) else str(level)
        if self.tty:
            bar = "#" * (percent // 4)
            end = "\n" if done >= total else ""
            sys.stderr.write(f"\r{name:>6} [{bar:<25}] {done}/{total} tokens{end}")
            sys.stderr.flush()
        elif percent // 10 != self.last.get(level, -1) // 10 or done >= total:
            self.last[level] = percent
            log.info("%s: %d/%d tokens (%d%%)", name, done, total, percent)
