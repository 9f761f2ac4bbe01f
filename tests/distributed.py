"""Running a test function in several CPU processes joined by torch.distributed (gloo)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, worker: Callable[..., None], world: int, port: int, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    # diffusers' enable_parallelism places each rank on an accelerator; a CPU-only machine has none, so it is
    # told there is one device (the CPU). Everything else is diffusers' own context-parallel path.
    torch.accelerator.device_count = lambda: 1
    try:
        worker(rank, *args)
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_on_cpu_processes(worker: Callable[..., None], world: int, *args: object) -> None:
    """Call ``worker(rank, *args)`` in ``world`` processes (a module-level function, so it can be spawned)."""
    if not dist.is_available():
        pytest.skip("this PyTorch build has no torch.distributed")
    mp.spawn(_entry, args=(worker, world, free_port(), args), nprocs=world)
