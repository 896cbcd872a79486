"""Executors behind the scheduler's interface: this process (LocalExecutor) or pools of Ray actors
(RayExecutor). This module and runner.py are the only places that touch Ray."""
from __future__ import annotations

import itertools
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from jukebox_dist.errors import InputError

log = logging.getLogger(__name__)


@dataclass
class PoolSpec:
    """One pool of identical workers: the class, its constructor arguments and each actor's resources."""

    worker: type
    kwargs: dict[str, Any]
    actors: int = 1
    cpus: float = 1.0
    gpus: float = 0.0
    group: int = 1  # ranks per actor group (tensor parallelism): each group is one slot of the pool
    field: str = ""  # the manifest entry that sets these resources (e.g. resources.top_prior), for messages

    @property
    def source(self) -> str:
        return self.field or f"the {self.worker.__name__} pool"


class LocalExecutor:
    """Runs every call at once in this process, one worker per pool: for tests and Ray-free runs."""

    def __init__(self, pools: dict[str, PoolSpec]) -> None:
        self.workers = {name: spec.worker(**spec.kwargs) for name, spec in pools.items()}
        self.done: deque[tuple[int, Any, BaseException | None]] = deque()
        self.ids = itertools.count()

    def free_slots(self, pool: str) -> int:
        return 1 if pool in self.workers else 0

    def submit(self, pool: str, method: str, *args: Any) -> int:
        handle = next(self.ids)
        try:
            self.done.append((handle, getattr(self.workers[pool], method)(*args), None))
        except Exception as exc:  # reported to the scheduler, which retries or marks the samples failed
            self.done.append((handle, None, exc))
        return handle

    def wait(self, timeout: float) -> list[tuple[int, Any, BaseException | None]]:
        out = list(self.done)
        self.done.clear()
        return out


@dataclass
class _Actor:
    handle: Any  # one actor, or the ranks of a tensor-parallel group (a list)
    busy: bool = False
    pg: Any = None  # a group's placement group


@dataclass
class _Call:
    handle: int
    actor: _Actor
    pool: str
    refs: list[Any]  # one per rank; refs[0] (rank 0) carries the result
    pending: set[Any]
    result: Any = None


@dataclass
class _Pool:
    spec: PoolSpec
    actors: list[_Actor] = field(default_factory=list)


class RayExecutor:
    """A pool of Ray actors per worker kind; each actor runs one call at a time. A plain actor that dies is
    restarted by Ray (max_restarts); a tensor-parallel group whose call fails is torn down and rebuilt as a
    whole (a lone restarted rank could not rejoin the group). Either way the scheduler retries the call."""

    def __init__(self, pools: dict[str, PoolSpec], *, group_timeout_s: float = 600.0, group_tries: int = 3) -> None:
        import ray

        self.ray = ray
        self.group_timeout_s, self.group_tries = group_timeout_s, group_tries
        self.pools: dict[str, _Pool] = {}
        for name, spec in pools.items():
            if spec.group > 1:
                actors = [self._group(spec) for _ in range(spec.actors)]
            else:
                cls = ray.remote(num_cpus=spec.cpus, num_gpus=spec.gpus, max_restarts=3)(spec.worker)
                pool_id = uuid.uuid4().hex[:8]  # names tell pools and actors apart in `ray list actors`
                actors = [_Actor(cls.options(name=f"{spec.worker.__name__}-{name}-{pool_id}-{i}").remote(**spec.kwargs))
                          for i in range(spec.actors)]
            self.pools[name] = _Pool(spec, actors)
            log.info("pool %s: %d actor(s) of %s, %g CPU and %g GPU each", name, spec.actors, spec.worker.__name__,
                     spec.cpus, spec.gpus)
        self.calls: dict[Any, _Call] = {}  # every rank's ref of every call in flight -> its call
        self.ids = itertools.count()
        self.group_restarts = 0

    def _group(self, spec: PoolSpec) -> _Actor:
        """`spec.group` ranks in one STRICT_PACK placement group (one node), joined into a torch.distributed
        group with rank 0's address. Forming the group is tried `group_tries` times: the free port rank 0 found
        can be taken by another process before it listens on it."""
        for attempt in range(1, self.group_tries + 1):
            actor = self._start_group(spec)
            try:
                addr, port = self.ray.get(actor.handle[0].address.remote(), timeout=self.group_timeout_s)
                self.ray.get([r.setup.remote(addr, port) for r in actor.handle], timeout=self.group_timeout_s)
            except Exception as exc:  # noqa: BLE001 -- any failure to form the group: tear down, try again
                self._stop_group(actor)
                if attempt == self.group_tries:
                    raise RuntimeError(f"could not form the tensor-parallel group of {spec.group} "
                                       f"{spec.worker.__name__} ranks in {attempt} tries: {exc}") from exc
                log.warning("forming the tensor-parallel group failed (try %d of %d): %s", attempt,
                            self.group_tries, exc)
                continue
            log.info("tensor-parallel group of %d ranks of %s ready (rank 0 at %s:%d, STRICT_PACK)", spec.group,
                     spec.worker.__name__, addr, port)
            return actor
        raise AssertionError("unreachable")

    def _start_group(self, spec: PoolSpec) -> _Actor:
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundle = {"CPU": spec.cpus, **({"GPU": spec.gpus} if spec.gpus else {})}
        pg = placement_group([bundle] * spec.group, strategy="STRICT_PACK")
        try:
            self.ray.get(pg.ready(), timeout=self.group_timeout_s)
        except self.ray.exceptions.GetTimeoutError:
            self.ray.util.remove_placement_group(pg)
            raise InputError(f"no node could host a tensor-parallel group of {spec.group} ranks with {bundle} each "
                             f"within {self.group_timeout_s:g} s ({spec.source}; all ranks must fit on one "
                             "node)") from None
        env = {} if spec.gpus else {"DS_ACCELERATOR": "cpu"}
        cls = self.ray.remote(num_cpus=spec.cpus, num_gpus=spec.gpus, max_restarts=0)(spec.worker)
        group_id = uuid.uuid4().hex[:8]  # names tell the ranks of each group apart in `ray list actors`
        ranks = [cls.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i),
                             runtime_env={"env_vars": env}, name=f"{spec.worker.__name__}-{group_id}-rank{i}")
                 .remote(**spec.kwargs, rank=i, world_size=spec.group) for i in range(spec.group)]
        return _Actor(ranks, pg=pg)

    def _stop_group(self, actor: _Actor) -> None:
        for rank in actor.handle:
            self.ray.kill(rank, no_restart=True)
        if actor.pg is not None:
            self.ray.util.remove_placement_group(actor.pg)

    def _restart_group(self, pool: str, actor: _Actor) -> None:
        """Kill every rank (a surviving rank may be stuck in a collective with a dead one) and form a new group
        in the same slot of the pool."""
        spec = self.pools[pool].spec
        log.warning("a rank of the %s tensor-parallel group failed: restarting the whole group", pool)
        self._stop_group(actor)
        fresh = self._group(spec)
        actor.handle, actor.pg = fresh.handle, fresh.pg
        self.group_restarts += 1

    def free_slots(self, pool: str) -> int:
        p = self.pools.get(pool)
        return 0 if p is None else sum(not a.busy for a in p.actors)

    def submit(self, pool: str, method: str, *args: Any) -> int:
        actor = next(a for a in self.pools[pool].actors if not a.busy)
        actor.busy = True
        ranks = actor.handle if isinstance(actor.handle, list) else [actor.handle]
        # Every rank of a group runs the call (their collectives pair up); rank 0 answers.
        refs = [getattr(rank, method).remote(*args) for rank in ranks]
        call = _Call(next(self.ids), actor, pool, refs, set(refs))
        for ref in refs:
            self.calls[ref] = call
        return call.handle

    def wait(self, timeout: float) -> list[tuple[int, Any, BaseException | None]]:
        """Finished calls as (handle, result, error). A group call finishes when every rank has, or as soon as
        one rank fails: the others may never return from a collective with it, so they are not waited for."""
        if not self.calls:
            return []
        refs = list(self.calls)
        ready, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready:  # collect everything else that is already done too
            ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        out = []
        for ref in ready:
            call = self.calls.pop(ref, None)
            if call is None:  # a rank of a call that already failed
                continue
            call.pending.discard(ref)
            try:
                value = self.ray.get(ref)
            except Exception as exc:  # a task error or a dead actor: the scheduler retries
                out.append((call.handle, None, exc))
                self._finish(call, failed=True)
                continue
            if ref is call.refs[0]:
                call.result = value
            if not call.pending:
                out.append((call.handle, call.result, None))
                self._finish(call, failed=False)
        return out

    def _finish(self, call: _Call, *, failed: bool) -> None:
        for ref in call.pending:
            self.calls.pop(ref, None)
        call.actor.busy = False
        if failed and len(call.refs) > 1:
            self._restart_group(call.pool, call.actor)


def check_fits(pools: dict[str, PoolSpec], nodes: list[dict[str, Any]], where: str = "the cluster") -> None:
    """Every actor, and every tensor-parallel group as a whole, must fit on one alive node of `nodes` (entries of
    `ray.nodes()`), or the job would wait forever for its placement. Raises InputError naming the pool."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    most = {key: max((r.get(key, 0.0) for r in alive), default=0.0) for key in ("CPU", "GPU")}
    for name, spec in pools.items():
        need = {"CPU": spec.cpus * spec.group, "GPU": spec.gpus * spec.group}
        if any(all(r.get(k, 0.0) >= v for k, v in need.items()) for r in alive):
            continue
        what = (f"a tensor-parallel group of {spec.group} ranks x ({spec.gpus:g} GPU, {spec.cpus:g} CPU) = "
                f"{need['GPU']:g} GPUs and {need['CPU']:g} CPUs on one node" if spec.group > 1
                else f"{spec.gpus:g} GPUs and {spec.cpus:g} CPUs per actor")
        raise InputError(f"{spec.source}: needs {what}, but no node of {where} has that much (its "
                         f"largest: {most['GPU']:g} GPUs, {most['CPU']:g} CPUs; {len(alive)} node(s) alive)"
                         + (": lower tensor_parallel or gpus" if spec.group > 1 else ""))

