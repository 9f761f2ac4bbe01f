"""Which exact attention kernel a denoiser's attention runs on, and the measured choice among them.

Every kernel computes softmax(QKᵀ/√d)·V; they differ in speed and in summation order (float rounding only):

- ``flash``, ``cudnn``, ``efficient``, ``math``: PyTorch's own SDPA kernels, pinned with
  ``torch.nn.attention.sdpa_kernel``. This reaches every ``F.scaled_dot_product_attention`` call, including
  ConsisID's processors (which call it directly, out of reach of diffusers' attention dispatcher) and diffusers'
  ``native`` backend (FLUX).
- ``flash4``: FlashAttention-4 (the ``flash-attn-4`` package; Hopper and Blackwell GPUs), which PyTorch registers
  itself as the CUDA implementation of its flash kernel (``torch.nn.attention.activate_flash_attention_impl``):
  the SDPA flash kernel pinned while FA4 is active. Being the dispatcher's own op, torch.compile and CUDA graphs
  see it as they see the flash kernel.
- ``xformers``: diffusers' xformers backend (``attention_backend("xformers")``), for denoisers whose attention
  goes through diffusers' dispatcher (FLUX); the processors apply each model's RoPE before dispatching.

:func:`pin_kernel` enters a kernel's context around every call of one module (the denoiser): a torch.compile'd
block inside it is traced with the context on and keeps that kernel. :func:`pick_kernel` measures the available
kernels once per device, dtype and attention shape and keeps the fastest (:func:`choose_kernel`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

#: PyTorch SDPA kernels by name.
SDPA_KERNELS = {"flash": "FLASH_ATTENTION", "cudnn": "CUDNN_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
                "math": "MATH"}  # fmt: skip
#: Every kernel, in the order that breaks near-ties in :func:`choose_kernel` (PyTorch's own order first).
KERNELS = ("flash", "efficient", "cudnn", "flash4", "xformers", "math")
#: Kernels reached only through diffusers' attention dispatcher.
DISPATCHER_KERNELS = ("xformers",)
#: Kernels within this fraction of the fastest count as tied (measurement noise); the first in KERNELS wins.
MARGIN = 0.03
#: (batch, heads, tokens, head size) of one attention call.
Shape = tuple[int, int, int, int]

_CHOSEN: dict[tuple, tuple[str, dict[str, float]]] = {}


@contextlib.contextmanager
def _flash4() -> Iterator[None]:
    """The SDPA flash kernel with FlashAttention-4 as PyTorch's flash implementation, the previous one after."""
    from torch.nn import attention

    previous = attention.current_flash_attention_impl()
    if previous != "FA4":
        attention.activate_flash_attention_impl("FA4")
    try:
        with attention.sdpa_kernel(attention.SDPBackend.FLASH_ATTENTION):
            yield
    finally:
        if previous is None:
            attention.restore_flash_attention_impl()
        elif previous != "FA4":
            attention.activate_flash_attention_impl(previous)


def kernel_context(name: str) -> contextlib.AbstractContextManager:
    """The context in which attention runs on kernel ``name`` (one of :data:`KERNELS`)."""
    if name in SDPA_KERNELS:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(getattr(SDPBackend, SDPA_KERNELS[name]))
    if name == "flash4":
        return _flash4()
    from diffusers.models.attention_dispatch import attention_backend

    return attention_backend(name)


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """One attention call as the pipelines make it (diffusers' dispatcher: its native backend is PyTorch's SDPA)."""
    from diffusers.models.attention_dispatch import dispatch_attention_fn

    return dispatch_attention_fn(query, key, value)


def kernel_unavailable(name: str, device: torch.device | str, dtype: torch.dtype, head_dim: int) -> str | None:
    """Why kernel ``name`` cannot run attention of head size ``head_dim`` in ``dtype`` on ``device``; None if it
    can (tried on a few tokens)."""
    device = torch.device(device)
    if name == "flash4":
        if importlib.util.find_spec("flash_attn") is None or importlib.util.find_spec("flash_attn.cute") is None:
            return "needs the flash-attn-4 package (pip install flash-attn-4; Hopper or Blackwell GPUs)"
        if device.type != "cuda":
            return "CUDA only"
    if name == "xformers" and importlib.util.find_spec("xformers") is None:
        return "needs the xformers package"
    query = torch.randn(1, 16, 2, head_dim, device=device, dtype=dtype)
    try:
        with kernel_context(name), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch warns, kernel by kernel, why it refuses
            _attend(query, query, query)
    # the kernel refuses this device, dtype or size (FlashAttention-4 checks head sizes with assert, and imports its
    # compiler only when activated)
    except (RuntimeError, ValueError, NotImplementedError, AssertionError, ImportError) as exc:
        if name in SDPA_KERNELS:
            kind = str(dtype).removeprefix("torch.")
            return f"PyTorch has no {name} kernel for {kind} attention of head size {head_dim} on {device.type}"
        return str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return None


def measure_kernel(name: str, device: torch.device | str, dtype: torch.dtype, shape: Shape, repeats: int = 3) -> float:
    """Seconds per attention call of ``shape`` on kernel ``name`` (after one untimed call)."""
    device = torch.device(device)
    batch, heads, tokens, head_dim = shape
    query, key, value = (torch.randn(batch, tokens, heads, head_dim, device=device, dtype=dtype) for _ in range(3))
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    with kernel_context(name), torch.no_grad():
        _attend(query, key, value)
        synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            _attend(query, key, value)
        synchronize()
    return (time.perf_counter() - start) / repeats


def choose_kernel(timings: dict[str, float]) -> str:
    """The fastest kernel of ``timings`` (name -> seconds); those within :data:`MARGIN` of it count as tied and the
    first of them in :data:`KERNELS` is taken, so the same timings always give the same kernel."""
    fastest = min(timings.values())
    return next(name for name in KERNELS if name in timings and timings[name] <= fastest * (1 + MARGIN))


def pick_kernel(
    device: torch.device | str,
    dtype: torch.dtype,
    shape: Shape,
    candidates: tuple[str, ...],
    measure: Callable[[str, torch.device, torch.dtype, Shape], float] = measure_kernel,
) -> tuple[str, dict[str, float]]:
    """The fastest of ``candidates`` (those available) for attention of ``shape``, with every candidate's measured
    seconds; measured once per device name, dtype, shape and candidates in a process, then remembered."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    key = (name, dtype, tuple(shape), tuple(candidates))
    if key not in _CHOSEN:
        usable = [kernel for kernel in candidates if kernel_unavailable(kernel, device, dtype, shape[-1]) is None]
        timings = {kernel: measure(kernel, device, dtype, shape) for kernel in usable}
        _CHOSEN[key] = (choose_kernel(timings), timings)
    return _CHOSEN[key]


def pin_kernel(module: torch.nn.Module, name: str) -> list[Any]:
    """Run every call of ``module`` inside :func:`kernel_context` of ``name``; returns the hook handles (remove them
    to unpin)."""
    active: list[contextlib.AbstractContextManager] = []

    def enter(_: torch.nn.Module, args: tuple) -> None:
        active.append(kernel_context(name))
        active[-1].__enter__()

    def leave(_: torch.nn.Module, args: tuple, output: Any) -> None:
        active.pop().__exit__(None, None, None)

    return [module.register_forward_pre_hook(enter), module.register_forward_hook(leave, always_call=True)]
