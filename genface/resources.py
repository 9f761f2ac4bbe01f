"""Resource guards: refuse what cannot fit before it starts, and explain out-of-memory failures."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from genface.errors import InsufficientMemoryError

ADVICE = "use --low-memory (or pipe.enable_low_memory()), a smaller size or fewer frames, or a larger GPU"


def weight_bytes(pipe: Any) -> int:
    """Bytes of every torch module of a pipeline (its weights and buffers)."""
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            total += sum(t.numel() * t.element_size() for t in (*component.parameters(), *component.buffers()))
    return total


def free_device_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device; None where it cannot be known (CPU)."""
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.mem_get_info(device)[0]


def check_fits(pipe: Any, device: str | torch.device, free: int | None = None) -> None:
    """Refuse to move ``pipe`` whole onto ``device`` when its weights alone exceed the free memory."""
    device = torch.device(device)
    free = free_device_memory(device) if free is None else free
    needed = weight_bytes(pipe)
    if free is not None and needed > free:
        raise InsufficientMemoryError(
            f"The model's weights need {needed / 2**30:.1f} GiB but {device} has {free / 2**30:.1f} GiB free; {ADVICE}."
        )


@contextlib.contextmanager
def explain_out_of_memory() -> Iterator[None]:
    """Turn a device out-of-memory failure into an InsufficientMemoryError that says what to do."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        raise InsufficientMemoryError(f"The GPU ran out of memory ({str(exc).splitlines()[0]}); {ADVICE}.") from exc
