"""A stand-in for one rank of a tensor-parallel group (tests/runtime/test_group_restart.py): it has the interface
RayExecutor drives (`address`, `setup`, then calls sent to every rank) and one gloo all-reduce per call, so a dead
rank leaves the other stuck in a collective, exactly like a DeepSpeed row-parallel layer would."""
from __future__ import annotations

import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist


class AllReduceRank:
    def __init__(self, *, rank: int, world_size: int, fail_first_setup: str | None = None) -> None:
        self.rank, self.world_size = rank, world_size
        self.fail_first_setup = fail_first_setup  # a marker file: the first setup that finds it absent fails

    def address(self) -> tuple[str, int]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return "127.0.0.1", s.getsockname()[1]

    def setup(self, addr: str, port: int) -> None:
        if self.fail_first_setup and self.rank == 0:
            marker = Path(self.fail_first_setup)
            if not marker.exists():
                marker.write_text("failed once")
                raise RuntimeError("simulated failure to form the group")
        dist.init_process_group("gloo", init_method=f"tcp://{addr}:{port}", rank=self.rank,
                                world_size=self.world_size, timeout=timedelta(seconds=120))

    def add(self, x: int, sleep_rank: int = -1, sleep_s: float = 0.0) -> tuple[int, int]:
        """(x + 0) + (x + 1) + ... over the ranks, and this process's id."""
        if self.rank == sleep_rank:
            time.sleep(sleep_s)
        t = torch.tensor([x + self.rank])
        dist.all_reduce(t)
        return int(t.item()), os.getpid()

    def pid(self) -> int:
        return os.getpid()
