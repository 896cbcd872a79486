"""Dependency-driven dispatch of window tasks: batching, pipelining across levels and songs, resume, progress.

Every (sample, level) advances one window at a time (a window is primed by the one before it). A middle or
bottom window is ready as soon as the level above covers its span, so upsamplers start long before the top
level has finished every song. Ready windows of one shape (level, primed length, new tokens) from different
samples are batched up to the level's batch size and sent to whichever actor of the level's pool is free.
Finished windows go to the ledger at once; a restarted job reads it back and continues where it stopped.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from jukebox_dist.output.store import OutputStore, WindowRecord
from jukebox_dist.runtime.workers import WindowResult, WindowTask
from jukebox_dist.sampling.windows import Window, hop_length, level_tokens, upper_span, windows

log = logging.getLogger(__name__)

LEVEL_POOLS = ("top", "middle", "bottom")
DECODER_POOL = "decoder"


class Executor(Protocol):
    """Where work runs: this process (LocalExecutor) or Ray actor pools (actors.RayExecutor)."""

    def free_slots(self, pool: str) -> int: ...
    def submit(self, pool: str, method: str, *args: Any) -> int: ...
    def wait(self, timeout: float) -> list[tuple[int, Any, BaseException | None]]: ...


@dataclass(frozen=True)
class SampleJob:
    """What the scheduler needs of a planned sample (job.plan.SampleSpec carries more)."""

    sample_id: str
    seed: int
    total_length: int
    labels: tuple[tuple[int, ...], ...]  # tokenizer row per prior
    mode: str
    source: str | None = None  # prime audio or codes file
    prime_seconds: float | None = None
    take: int = 0
    # carried through to the output row
    song_id: str = ""
    artist: str = ""
    genres: tuple[str, ...] = ()
    lyrics: str = ""


@dataclass
class _State:
    job: SampleJob
    tokens: list[list[int]]
    targets: list[int]
    windows: list[list[Window]]
    ready: bool = False  # initial codes known
    busy: set[int] = field(default_factory=set)
    decoding: bool = False
    level_time: dict[int, list[float]] = field(default_factory=dict)  # level -> [first start, last finish]


@dataclass
class Settings:
    levels: Sequence[int]
    n_ctx: Sequence[int]
    hop: Sequence[int]
    raw_to_tokens: Sequence[int]
    ratio: Sequence[int]  # token-rate ratio to the level above (upsamplers)
    batch: Sequence[int]
    max_active: int = 8
    max_retries: int = 2
    progress_every: float = 5.0


@dataclass
class Finished:
    """A sample ready to be stored (audio None when it failed)."""

    job: SampleJob
    codes: list[list[int]]
    audio: Any
    level_seconds: dict[int, float]
    error: str | None = None


class Scheduler:
    def __init__(self, jobs: Sequence[SampleJob], settings: Settings, executor: Executor, store: OutputStore,
                 on_finished: Callable[[list[Finished]], None]) -> None:
        self.settings = settings
        self.executor = executor
        self.store = store
        self.on_finished = on_finished
        done = store.finished_samples()
        self.pending = [j for j in jobs if j.sample_id not in done]
        self.total, self.skipped = len(jobs), len(jobs) - len(self.pending)
        self.ledger = store.codes_so_far(store.load_windows())
        self.active: dict[str, _State] = {}
        self.inflight: dict[int, tuple[str, Any, int]] = {}  # handle -> (kind, payload, attempt)
        self.retries: deque[tuple[str, str, tuple, int]] = deque()  # resubmitted when their pool has room
        self.stats = {lvl: [0, 0, 0.0] for lvl in range(len(settings.n_ctx))}  # windows, tokens, first start
        self.n_done = self.n_failed = 0
        self.started = time.time()

    # ---- main loop --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        if self.skipped:
            log.info("%d of %d samples are already finished in the output; %d to go",
                     self.skipped, self.total, len(self.pending))
        last_report = time.time()
        while self.pending or self.active:
            self._admit()
            self._dispatch()
            if not self.inflight:
                raise RuntimeError("scheduler stalled: samples remain but nothing is ready or running")
            for handle, result, error in self.executor.wait(timeout=self.settings.progress_every):
                self._complete(handle, result, error)
            if time.time() - last_report >= self.settings.progress_every:
                self._report()
                last_report = time.time()
        return self._summary()

    def _admit(self) -> None:
        while self.pending and len(self.active) < self.settings.max_active:
            job = self.pending.pop(0)
            s = self.settings
            n = len(s.n_ctx)
            targets = [level_tokens(job.total_length, s.raw_to_tokens[lvl]) for lvl in range(n)]
            state = _State(job, [[] for _ in range(n)], targets,
                           [windows(targets[lvl], s.n_ctx[lvl], s.hop[lvl]) for lvl in range(n)])
            self.active[job.sample_id] = state
            resumed = {lvl: self.ledger.get((job.sample_id, lvl)) for lvl in range(n)}
            if any(resumed.values()) or job.mode == "ancestral":
                # The ledger holds the initial codes too (written as records at start 0), so a resumed
                # sample never re-reads its prime or codes file.
                state.tokens = [list(resumed[lvl] or []) for lvl in range(n)]
                state.ready = True
                if any(resumed.values()):
                    log.info("%s: resuming with %s tokens", job.sample_id, [len(t) for t in state.tokens])
            else:
                self._submit(DECODER_POOL, "initial_codes", (job.sample_id, job.mode, job.source,
                                                            job.prime_seconds, job.take, job.total_length))

    def _dispatch(self) -> None:
        for _ in range(len(self.retries)):
            pool, method, args, attempt = self.retries.popleft()
            if self.executor.free_slots(pool) > 0:
                self._submit(pool, method, args, attempt)
            else:
                self.retries.append((pool, method, args, attempt))
        for lvl in sorted(self.settings.levels, reverse=True):  # finish samples first: lower levels lead
            pool = LEVEL_POOLS[lvl]
            while self.executor.free_slots(pool) > 0:
                batch = self._ready_batch(lvl)
                if not batch:
                    break
                for task in batch:
                    self.active[task.sample_id].busy.add(lvl)
                self._submit(pool, "sample", (batch,))
        for state in self.active.values():
            if state.ready and not state.decoding and self._complete_levels(state) and \
                    self.executor.free_slots(DECODER_POOL) > 0:
                state.decoding = True
                finest = max(self.settings.levels) if self.settings.levels else len(state.tokens) - 1
                self._submit(DECODER_POOL, "decode", (state.job.sample_id, state.tokens[finest], finest))

    def _ready_batch(self, lvl: int) -> list[WindowTask]:
        by_shape: dict[tuple, list[WindowTask]] = defaultdict(list)
        for state in self.active.values():  # insertion order: oldest samples first
            task = self._next_task(state, lvl)
            if task is not None:
                by_shape[task.shape].append(task)
        if not by_shape:
            return []
        # The shape of the oldest ready sample goes first, filled with others of that shape.
        first = next(iter(by_shape.values()))
        return first[: self.settings.batch[lvl]]

    def _next_task(self, state: _State, lvl: int) -> WindowTask | None:
        if not state.ready or lvl in state.busy:
            return None
        have = len(state.tokens[lvl])
        if have >= state.targets[lvl]:
            return None
        window = next(w for w in state.windows[lvl] if w.new_tokens(have) > 0)
        upper = None
        if lvl > 0:
            lo, hi = upper_span(window, self.settings.ratio[lvl])
            if len(state.tokens[lvl - 1]) < hi:
                return None  # the level above does not cover this window yet
            upper = tuple(state.tokens[lvl - 1][lo:hi])
        job = state.job
        return WindowTask(job.sample_id, lvl, window.start, tuple(state.tokens[lvl][window.start:have]),
                          window.new_tokens(have), job.labels[lvl], job.total_length, job.seed, upper)

    def _complete_levels(self, state: _State) -> bool:
        return all(len(state.tokens[lvl]) >= state.targets[lvl] for lvl in self.settings.levels)

    # ---- results ----------------------------------------------------------------------------------
    def _submit(self, pool: str, method: str, args: tuple, attempt: int = 0) -> None:
        handle = self.executor.submit(pool, method, *args)
        self.inflight[handle] = ((pool, method), args, attempt)

    def _complete(self, handle: int, result: Any, error: BaseException | None) -> None:
        (pool, method), args, attempt = self.inflight.pop(handle)
        if error is not None:
            if attempt < self.settings.max_retries:
                log.warning("%s.%s failed (%s: %s); retrying (%d/%d)", pool, method, type(error).__name__, error,
                            attempt + 1, self.settings.max_retries)
                self.retries.append((pool, method, args, attempt + 1))
                return
            if method == "sample" and len(args[0]) > 1:
                # One bad row should not sink its batch-mates: give each task one more try on its own.
                for task in args[0]:
                    self.retries.append((pool, method, ([task],), attempt))
                return
            ids = [t.sample_id for t in args[0]] if method == "sample" else [args[0]]
            for sample_id in ids:
                self._fail(sample_id, f"{pool}.{method} failed {attempt + 1} times: {type(error).__name__}: {error}")
            return
        if method == "sample":
            self._windows_done(result)
        elif method == "initial_codes":
            sample_id, codes = result
            state = self.active[sample_id]
            state.tokens = [list(c) for c in codes]
            state.ready = True
            now = time.time()
            self.store.append_windows([WindowRecord(sample_id, lvl, 0, tuple(c), now, now, "init")
                                       for lvl, c in enumerate(codes) if c])
        elif method == "decode":
            sample_id, audio = result
            state = self.active.pop(sample_id)
            seconds = {lvl: t[1] - t[0] for lvl, t in state.level_time.items()}
            self.on_finished([Finished(state.job, state.tokens, audio, seconds)])
            self.n_done += 1

    def _windows_done(self, results: list[WindowResult]) -> None:
        records = []
        for r in results:
            state = self.active.get(r.sample_id)
            if state is None:  # failed meanwhile
                continue
            assert r.start == len(state.tokens[r.level]), "windows of a level arrive in order"
            state.tokens[r.level].extend(r.tokens)
            state.busy.discard(r.level)
            span = state.level_time.setdefault(r.level, [r.started_at, r.finished_at])
            span[1] = r.finished_at
            records.append(WindowRecord(r.sample_id, r.level, r.start, r.tokens, r.started_at, r.finished_at,
                                        r.worker))
            stats = self.stats[r.level]
            stats[0] += 1
            stats[1] += len(r.tokens)
            stats[2] = stats[2] or r.started_at
        self.store.append_windows(records)

    def _rate(self, lvl: int) -> float:
        """Tokens per second of a level since its first window started, over all its actors."""
        _, tokens, first = self.stats[lvl]
        return tokens / max(time.time() - first, 1e-9) if first else 0.0

    def _fail(self, sample_id: str, error: str) -> None:
        state = self.active.pop(sample_id, None)
        if state is None:
            return
        log.error("%s failed: %s", sample_id, error)
        self.n_failed += 1
        self.on_finished([Finished(state.job, state.tokens, None, {}, error=error)])

    # ---- reporting --------------------------------------------------------------------------------
    def _report(self) -> None:
        elapsed = time.time() - self.started
        parts = [f"{self.n_done + self.skipped}/{self.total} samples done"]
        for lvl in self.settings.levels:
            parts.append(f"{LEVEL_POOLS[lvl]} {self.stats[lvl][0]} windows {self._rate(lvl):.0f} tok/s")
        left = len(self.pending) + len(self.active)
        done = self.n_done + self.n_failed
        if done:
            parts.append(f"~{elapsed / done * left:.0f} s left")
        log.info("[%5.0f s] %s", elapsed, " | ".join(parts))

    def _summary(self) -> dict[str, Any]:
        wall = time.time() - self.started
        levels = {LEVEL_POOLS[lvl]: {"windows": self.stats[lvl][0], "tokens": self.stats[lvl][1],
                                     "tokens_per_second": round(self._rate(lvl), 1)}
                  for lvl in self.settings.levels}
        summary = {"samples": self.total, "written": self.n_done, "failed": self.n_failed,
                   "already_done": self.skipped, "wall_seconds": round(wall, 2), "levels": levels}
        log.info("done in %.1f s: %d written, %d failed, %d already done; %s", wall, self.n_done, self.n_failed,
                 self.skipped, ", ".join(f"{k} {v['tokens']} tokens at {v['tokens_per_second']:.0f} tok/s"
                                         for k, v in levels.items()))
        return summary


def settings_for(config, levels: Sequence[int], batch: Sequence[int], **kwargs: Any) -> Settings:
    """Window geometry of every level from the model config."""
    n = len(config.priors)
    n_ctx = [config.priors[lvl].n_ctx for lvl in range(n)]
    rtt = [config.raw_to_tokens(lvl) for lvl in range(n)]
    return Settings(levels=list(levels), n_ctx=n_ctx,
                    hop=[hop_length(config.vqvae.hop_fraction[lvl], n_ctx[lvl]) for lvl in range(n)],
                    raw_to_tokens=rtt, ratio=[1] + [rtt[lvl - 1] // rtt[lvl] for lvl in range(1, n)],
                    batch=list(batch), **kwargs)
