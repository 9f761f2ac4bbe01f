"""The attention kernel choice: which kernels run here, the measured pick (with injected timings), and a pinned
kernel reaching the code torch.compile generates."""

from __future__ import annotations

import pytest
import torch

from genface.models import attention
from genface.models.attention import KERNELS, choose_kernel, kernel_unavailable, pick_kernel, pin_kernel


def test_the_fastest_kernel_is_chosen_and_near_ties_go_by_a_fixed_order() -> None:
    assert choose_kernel({"math": 9.0, "flash": 0.5, "cudnn": 0.3}) == "cudnn"
    assert choose_kernel({"cudnn": 0.300, "flash": 0.305}) == "flash"  # within 3%: flash comes first in KERNELS
    assert choose_kernel({"flash4": 0.300, "cudnn": 0.301, "efficient": 0.33}) == "cudnn"
    assert choose_kernel({"math": 1.0}) == "math"


def test_each_available_kernel_is_measured_once_per_device_dtype_and_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attention, "_CHOSEN", {})
    monkeypatch.setattr(attention, "kernel_unavailable", lambda name, *_: "absent" if name == "cudnn" else None)
    fake = {"flash": 2.0, "efficient": 1.0, "flash4": 1.5}
    measured: list[tuple[str, tuple]] = []

    def measure(name: str, device: torch.device, dtype: torch.dtype, shape: tuple) -> float:
        measured.append((name, shape))
        return fake[name] * shape[2]

    candidates = ("flash", "efficient", "cudnn", "flash4")
    shape = (2, 48, 17776, 64)
    assert pick_kernel("cpu", torch.bfloat16, shape, candidates, measure) == (
        "efficient", {"flash": 35552.0, "efficient": 17776.0, "flash4": 26664.0}
    )  # fmt: skip
    assert pick_kernel("cpu", torch.bfloat16, shape, candidates, measure)[0] == "efficient"  # remembered
    assert measured == [("flash", shape), ("efficient", shape), ("flash4", shape)]
    fake["flash"] = 0.1  # another shape is measured anew
    assert pick_kernel("cpu", torch.bfloat16, (1, 24, 8704, 128), candidates, measure)[0] == "flash"
    assert len(measured) == 6


def test_which_kernels_run_on_the_cpu() -> None:
    reasons = {name: kernel_unavailable(name, "cpu", torch.float32, 16) for name in KERNELS}
    assert reasons["flash"] is None and reasons["math"] is None
    assert reasons["cudnn"] == "PyTorch has no cudnn kernel for float32 attention of head size 16 on cpu"
    assert reasons["flash4"] in ("CUDA only", "needs the flash-attn-4 package (pip install flash-attn-4; Hopper or "
                                 "Blackwell GPUs)")  # fmt: skip
    if reasons["xformers"] is not None:
        assert reasons["xformers"] == "needs the xformers package" or "xformers" in reasons["xformers"]


class _Attention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(16, 48)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query, key, value = self.qkv(x).unflatten(-1, (3, 2, 8)).permute(2, 0, 3, 1, 4)
        return torch.nn.functional.scaled_dot_product_attention(query, key, value)


def test_a_pinned_kernel_reaches_the_compiled_code() -> None:
    """The pin's context is on while torch.compile traces the inner module, so the kernel is compiled in: the
    math kernel gives eager's result, and a kernel the CPU lacks fails inside the compiled call."""
    torch.manual_seed(0)
    outer = torch.nn.Sequential(_Attention())
    x = torch.randn(1, 10, 16)
    with torch.no_grad():
        eager = outer(x)
        outer[0].compile(fullgraph=True, dynamic=False, backend="aot_eager")  # traced to ATen as Inductor is
        handles = pin_kernel(outer, "math")
        torch.testing.assert_close(outer(x), eager, rtol=0, atol=1e-6)
        for handle in handles:
            handle.remove()
        torch._dynamo.reset_code(_Attention.forward.__code__)  # as enable_fast_mode does on a new kernel
        pin_kernel(outer, "efficient")
        with pytest.raises(RuntimeError, match="No viable backend"):
            outer(x)
