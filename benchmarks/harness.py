"""What every benchmark shares: alternating timed runs, the device line, tables, and RESULTS.md records."""

from __future__ import annotations

import datetime as _dt
import gc
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


@dataclass
class Timings:
    """Seconds per run of each contender, and peak GPU memory (GiB) when on CUDA."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    peak_gib: dict[str, float] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])


def time_alternating(runs: dict[str, Callable[[], object]], repeats: int, device: str) -> Timings:
    """Warm each run up once, then time them in turn ``repeats`` times, so that drift (clocks, caches, other
    load) affects all alike."""
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    timings = Timings({name: [] for name in runs})
    for run in runs.values():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            gc.collect()
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            run()
            sync()
            timings.seconds[name].append(time.perf_counter() - start)
            if cuda:
                timings.peak_gib[name] = torch.cuda.max_memory_allocated() / 2**30
    return timings


def device_line(device: str) -> str:
    """The hardware and software a figure was measured on."""
    import diffusers

    hardware = (
        torch.cuda.get_device_name()
        if device.startswith("cuda")
        else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    )
    return f"{hardware}; torch {torch.__version__}, diffusers {diffusers.__version__}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    aligns = ["---"] + ["---:"] * (len(header) - 1)
    lines = [header, aligns, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def report(title: str, body: str, record: bool) -> None:
    """Print a result; with ``record``, also append it to RESULTS.md under a dated heading."""
    print(f"# {title}\n{body}")
    if record:
        today = _dt.date.today().isoformat()
        with RESULTS.open("a") as results:
            results.write(f"\n## {title} ({today})\n\n{body}\n")
