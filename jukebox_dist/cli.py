"""The `jukebox-dist` command line.

Subcommands:
    run       run a job manifest on Ray (the cluster of `ray job submit`, or a local one)
    validate  check a manifest and print its plan, loading no weights
    sample    one song in one process, no Ray
Errors a user can fix (`JukeboxError`) end with one
line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from pathlib import Path
from typing import Sequence

from jukebox_dist import __version__
from jukebox_dist.errors import InputError, JukeboxError

log = logging.getLogger(__name__)

PRIOR_NAMES = ("top", "middle", "bottom")  # model.priors order


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jukebox-dist",
        description="A plain-PyTorch Jukebox and a Ray system for generating many songs in batch.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level instead of INFO")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    add_sample_parser(sub)
    run = sub.add_parser("run", help="run a job manifest: on the Ray cluster of `ray job submit`, or a local Ray",
                         description="Generate everything MANIFEST asks for that its output folder does not hold "
                         "yet. Inside `ray job submit` it uses that cluster; alone it starts a local Ray "
                         "(dashboard on 127.0.0.1). Re-running a finished manifest writes nothing new; re-running "
                         "a killed one finishes only what is missing.")
    run.add_argument("manifest", help="the job's YAML manifest")
    run.add_argument("--local", action="store_true",
                     help="run the workers in this process, without Ray (for debugging small jobs)")
    run.set_defaults(func=run_manifest)
    validate = sub.add_parser("validate", help="check a manifest and print its plan; loads no weights",
                              description="Check everything that can be checked without a GPU (fields, files, "
                              "artists and genres, lengths) and print the plan: samples, tokens and windows "
                              "per level, a time estimate. Writes nothing.")
    validate.add_argument("manifest")
    validate.add_argument("--cluster", action="store_true",
                          help="also check that every pool and the tensor-parallel group fit on a node of the Ray "
                          "cluster `run` would use (ray.address, RAY_ADDRESS, or a local Ray on this machine)")
    validate.set_defaults(func=lambda args: _validate(args.manifest, args.cluster))
    return parser


def run_manifest(args: argparse.Namespace) -> int:
    from jukebox_dist.runtime.runner import run_job

    summary = run_job(args.manifest, executor="local" if args.local else "ray")
    log.info("output: %s (audio/, samples/*.parquet, ledger/)", summary["output"])
    return 0 if summary["failed"] == 0 else 1


def _validate(path: str, cluster: bool = False) -> int:
    from jukebox_dist.job.plan import validate_command

    code = validate_command(path)
    if cluster:
        from jukebox_dist.runtime.runner import check_manifest_fits

        check_manifest_fits(path)
        log.info("%s fits the Ray cluster's nodes", path)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """The console script; also `python -m jukebox_dist.cli`."""
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


# --------------------------------------------------------------------------------------------- shared


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


if __name__ == "__main__":
    sys.exit(main())
