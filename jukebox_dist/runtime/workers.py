"""Plain classes that own a model part. Tests call them directly; Ray actors wrap them (actors.py).

Work travels as small dataclasses of plain ints, so it serialises cheaply and means the same in every process.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

import numpy as np
import torch

from jukebox_dist.model.jukebox import Jukebox
from jukebox_dist.sampling.generate import prime_codes, sample_batch
from jukebox_dist.sampling.sampler import SamplingParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WindowTask:
    """Sample the rest of one window of one sample at one level."""

    sample_id: str
    level: int  # prior index: 0 top, 1 middle, 2 bottom
    start: int  # the window's first token at this level
    known: tuple[int, ...]  # tokens the window already has, from `start`
    n_new: int
    labels: tuple[int, ...]  # the tokenizer's row for this prior
    total_length: int  # audio samples of the whole song
    seed: int
    upper: tuple[int, ...] | None  # level-above tokens over the window's span (upsamplers)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Tasks of one shape batch together: same level, same primed length, same new tokens."""
        return self.level, len(self.known), self.n_new


@dataclass(frozen=True)
class WindowResult:
    sample_id: str
    level: int
    start: int  # index of the first new token
    tokens: tuple[int, ...]
    started_at: float
    finished_at: float
    worker: str


def _set_threads(threads: int) -> None:
    """Several CPU actors share a machine: each uses the threads its CPU share pays for (0 = torch's default)."""
    if threads > 0:
        torch.set_num_threads(threads)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class PriorWorker:
    """Hosts one prior (top or upsampler) and samples batches of window tasks of one shape."""

    def __init__(self, model: str, level: int, *, temperature: float, top_k: int = 0, top_p: float = 0.0,
                 chunk_size: int = 128, device: str = "cpu", dtype: str | None = None, threads: int = 0) -> None:
        _set_threads(threads)
        torch_dtype = getattr(torch, dtype) if dtype else None
        self.model = Jukebox.from_pretrained(model, parts=[f"priors.{level}"], device=device, dtype=torch_dtype)
        self.prior = self.model.priors[level]
        self.level = level
        self.params = SamplingParams(temperature, top_k, top_p)
        self.chunk_size = chunk_size
        self.name = worker_name()
        log.info("prior worker for level %d ready on %s (%s)", level, device, self.name)

    def sample(self, tasks: list[WindowTask]) -> list[WindowResult]:
        shapes = {t.shape for t in tasks}
        assert len(shapes) == 1 and next(iter(shapes))[0] == self.level, f"one shape per batch, got {shapes}"
        started = time.time()
        known = torch.tensor([t.known for t in tasks], dtype=torch.long).view(len(tasks), -1)
        upper = torch.tensor([t.upper for t in tasks], dtype=torch.long) if self.prior.cfg.is_upsampler else None
        new = sample_batch(self.prior, [torch.tensor(t.labels) for t in tasks], known, tasks[0].n_new, self.params,
                           torch.tensor([t.seed for t in tasks]), total_length=[t.total_length for t in tasks],
                           start=[t.start for t in tasks], upper=upper, chunk_size=self.chunk_size)
        finished = time.time()
        rows = new.cpu().tolist()
        return [WindowResult(t.sample_id, t.level, t.start + len(t.known), tuple(r), started, finished, self.name)
                for t, r in zip(tasks, rows)]


class TPPriorWorker(PriorWorker):
    """One rank of a tensor-parallel prior group: every rank gets every batch and, sampling with the same
    counter-based noise, draws the same tokens without broadcasting; the scheduler keeps rank 0's results."""

    def __init__(self, model: str, level: int, *, rank: int, world_size: int, **kwargs) -> None:
        super().__init__(model, level, **kwargs)
        self.rank, self.world_size = rank, world_size

    def address(self) -> tuple[str, int]:
        """Where rank 0 listens for the group: this node's address and a free port."""
        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return socket.gethostbyname(socket.gethostname()), port

    def setup(self, master_addr: str, master_port: int) -> None:
        from jukebox_dist.runtime.tp import init_group, shard_prior

        init_group(self.rank, self.world_size, master_addr, master_port)
        self.prior = shard_prior(self.prior, self.world_size)
        log.info("rank %d of %d of the level-%d prior group is sharded", self.rank, self.world_size, self.level)


class DecoderWorker:
    """Hosts the VQ-VAE: turns finished codes into audio, and primes/saved codes into a sample's first codes."""

    def __init__(self, model: str, *, device: str = "cpu", threads: int = 0) -> None:
        _set_threads(threads)
        self.model = Jukebox.from_pretrained(model, parts=["vqvae"], device=device)
        self.name = worker_name()

    def decode(self, sample_id: str, codes: list[int], level: int) -> tuple[str, np.ndarray]:
        """Codes of prior level `level` -> mono float32 audio."""
        vq_level = self.model.config.vqvae.levels - 1 - level
        audio = self.model.vqvae.decode([torch.tensor([codes], dtype=torch.long)], start_level=vq_level)
        return sample_id, audio[0, :, 0].numpy()

    def initial_codes(self, sample_id: str, mode: str, path: str | None, seconds: float | None, take: int,
                      total_length: int) -> tuple[str, list[list[int]]]:
        """The codes a sample starts from, in prior order: none (ancestral), a prime's (primed), or saved
        codes (continue, upsample; row `take` of the file, or its only row)."""
        n = len(self.model.priors)
        if mode == "ancestral":
            return sample_id, [[] for _ in range(n)]
        if mode == "primed":
            from jukebox_dist.output.audio import read_prime
            cfg = self.model.config
            audio = read_prime(path, cfg.sampling_rate, seconds, cfg.raw_to_tokens(0))
            return sample_id, [c[0].tolist() for c in prime_codes(self.model, audio, total_length)]
        from jukebox_dist.output.codes import load_codes
        codes, _ = load_codes(path, self.model)
        row = take if codes[0].shape[0] > 1 else 0
        kept = [c[row].tolist() if c.shape[1] else [] for c in codes]
        if mode == "upsample":  # the upsampler levels are sampled afresh under the saved top level
            kept = kept[:1] + [[] for _ in kept[1:]]
        return sample_id, kept
