"""Executors behind the scheduler's interface: this process (LocalExecutor) or pools of Ray actors
(RayExecutor). This module and runner.py are the only places that touch Ray."""
from __future__ import annotations

import itertools
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any

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
    handle: Any
    busy: bool = False


@dataclass
class _Pool:
    spec: PoolSpec
    actors: list[_Actor] = field(default_factory=list)


class RayExecutor:
    """A pool of Ray actors per worker kind; each actor runs one call at a time. Actors that die are restarted
    by Ray (max_restarts) and the scheduler retries the call."""

    def __init__(self, pools: dict[str, PoolSpec]) -> None:
        import ray

        self.ray = ray
        self.pools: dict[str, _Pool] = {}
        for name, spec in pools.items():
            if spec.group > 1:
                actors = [_Actor(self._group(spec)) for _ in range(spec.actors)]
            else:
                cls = ray.remote(num_cpus=spec.cpus, num_gpus=spec.gpus, max_restarts=3)(spec.worker)
                actors = [_Actor(cls.remote(**spec.kwargs)) for _ in range(spec.actors)]
            self.pools[name] = _Pool(spec, actors)
            log.info("pool %s: %d actor(s) of %s, %g CPU and %g GPU each", name, spec.actors, spec.worker.__name__,
                     spec.cpus, spec.gpus)
        self.inflight: dict[Any, tuple[int, _Actor]] = {}
        self.followers: dict[Any, list[Any]] = {}  # rank 0's ref -> the other ranks' refs of the same call
        self.ids = itertools.count()

    def _group(self, spec: PoolSpec) -> list[Any]:
        """`spec.group` ranks in one STRICT_PACK placement group (one node), joined into a torch.distributed
        group with rank 0's address. Restarting one rank alone would leave it outside the group, so a group's
        actors are not restarted; a failed call fails the window, which the scheduler retries."""
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        bundle = {"CPU": spec.cpus, **({"GPU": spec.gpus} if spec.gpus else {})}
        pg = placement_group([bundle] * spec.group, strategy="STRICT_PACK")
        self.ray.get(pg.ready())
        env = {} if spec.gpus else {"DS_ACCELERATOR": "cpu"}
        cls = self.ray.remote(num_cpus=spec.cpus, num_gpus=spec.gpus, max_restarts=0)(spec.worker)
        ranks = [cls.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i),
                             runtime_env={"env_vars": env}).remote(**spec.kwargs, rank=i, world_size=spec.group)
                 for i in range(spec.group)]
        addr, port = self.ray.get(ranks[0].address.remote())
        self.ray.get([r.setup.remote(addr, port) for r in ranks])
        log.info("tensor-parallel group of %d ranks of %s ready (rank 0 at %s:%d, STRICT_PACK)", spec.group,
                 spec.worker.__name__, addr, port)
        return ranks

    def free_slots(self, pool: str) -> int:
        p = self.pools.get(pool)
        return 0 if p is None else sum(not a.busy for a in p.actors)

    def submit(self, pool: str, method: str, *args: Any) -> int:
        actor = next(a for a in self.pools[pool].actors if not a.busy)
        actor.busy = True
        if isinstance(actor.handle, list):  # a tensor-parallel group: every rank runs the call, rank 0 answers
            refs = [getattr(rank, method).remote(*args) for rank in actor.handle]
            ref = refs[0]
            self.followers[ref] = refs[1:]
        else:
            ref = getattr(actor.handle, method).remote(*args)
        handle = next(self.ids)
        self.inflight[ref] = (handle, actor)
        return handle

    def wait(self, timeout: float) -> list[tuple[int, Any, BaseException | None]]:
        if not self.inflight:
            return []
        ready, _ = self.ray.wait(list(self.inflight), num_returns=1, timeout=timeout)
        if ready:  # collect everything else that is already done too
            ready, _ = self.ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=0)
        out = []
        for ref in ready:
            handle, actor = self.inflight.pop(ref)
            actor.busy = False
            try:
                self.ray.get(self.followers.pop(ref, []))  # the group is done only when every rank is
                out.append((handle, self.ray.get(ref), None))
            except Exception as exc:  # a task error or a dead actor: the scheduler retries
                out.append((handle, None, exc))
        return out
