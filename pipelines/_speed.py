"""Exact fast mode shared by the pipelines: one call on, one call off, the off state bit-exact.

Exact levers only (the same math as the default, equal within float rounding): the denoiser's repeated
blocks compiled with Inductor (``fullgraph=True``, static shapes), fused query/key/value projections, the
fastest exact attention kernel (:mod:`genface.models.attention`), and on a CUDA device CUDA graphs where the
pipeline keeps its shapes static. Approximate levers (the cache hooks, fp8) are separate switches.
"""

from __future__ import annotations

from typing import Any

import torch

from genface.errors import InvalidArgumentError
from genface.models.attention import DISPATCHER_KERNELS, KERNELS, Shape, kernel_unavailable, pick_kernel, pin_kernel

#: The levers :meth:`FastModeMixin.enable_fast_mode` reports on, in order.
FAST_LEVERS = ("fuse_qkv", "compile", "cuda_graphs", "attention")
#: Block class -> the attention kernel its compiled code was last traced under (None: PyTorch's choice).
_TRACED_UNDER: dict[type, str | None] = {}


def unfuse_legacy_attention(attn: Any) -> None:
    """Undo diffusers' ``Attention.fuse_projections`` (the legacy class has no ``unfuse_projections``): drop the
    fused layers, which only copied the separate projections' weights."""
    for name in ("to_qkv", "to_kv", "to_added_qkv"):
        if hasattr(attn, name):
            delattr(attn, name)
    attn.fused_projections = False


class FastModeMixin:
    """``enable_fast_mode()`` / ``disable_fast_mode()`` for a pipeline that says which modules to compile
    (:meth:`fast_blocks`) and how to fuse its projections (:meth:`fuse_projections`)."""

    #: Whether CUDA graphs are on by default: where the denoiser's calls are short and their shapes never change.
    fast_cuda_graphs = False
    #: What the last :meth:`enable_fast_mode` applied (lever -> "applied ..." or why not); None when off.
    fast_mode: dict[str, str] | None = None
    #: Whether the denoiser's attention goes through diffusers' attention dispatcher (then xformers reaches it).
    attention_dispatcher = False
    _fast_attention_hooks: tuple = ()

    def fast_blocks(self) -> list[torch.nn.Module]:
        """The modules compiled one by one (the denoiser's repeated blocks)."""
        raise NotImplementedError

    def fuse_projections(self, fuse: bool) -> None:
        """Fuse (``True``) or unfuse (``False``) the denoiser's query/key/value projections; both exact."""
        raise NotImplementedError

    def fast_denoiser(self) -> torch.nn.Module:
        """The module whose calls run on the chosen attention kernel: the pipeline's transformer or UNet."""
        return self.transformer if getattr(self, "transformer", None) is not None else self.unet

    def fast_denoisers(self) -> list[torch.nn.Module]:
        """Every module whose calls run on the chosen kernel (Wan 2.2 has two denoisers); default: the one."""
        return [self.fast_denoiser()]

    def attention_shape(self) -> Shape | None:
        """(batch, heads, tokens, head size) of the denoiser's attention at the pipeline's default size, where
        ``attention="auto"`` measures the kernels; None: not measured (PyTorch's own choice stays)."""
        return None

    def choose_attention(self, attention: str | None) -> tuple[str | None, str]:
        """The kernel :meth:`enable_fast_mode` pins for ``attention`` (None: none) and its report line; an unknown
        or unavailable kernel is refused in one line."""
        kernels = tuple(k for k in KERNELS if self.attention_dispatcher or k not in DISPATCHER_KERNELS)
        if attention is None:
            return None, "off (asked)"
        if attention != "auto" and attention not in kernels:
            what = "does not reach this denoiser, whose attention bypasses diffusers' dispatcher"
            raise InvalidArgumentError(
                f"Attention kernel {attention!r} {what if attention in KERNELS else 'is unknown'}; choose 'auto', "
                f"None or one of {kernels}."
            )
        device, shape = self._execution_device, self.attention_shape()
        if attention == "auto" and device.type != "cuda":
            return None, "skipped: no GPU"
        if attention == "auto" and shape is None:
            return None, "PyTorch's SDPA kernel choice"
        dtype = next(self.fast_denoiser().parameters()).dtype
        if attention == "auto":
            kernel, timings = pick_kernel(device, dtype, shape, tuple(k for k in kernels if k != "math"))
            measured = ", ".join(f"{name} {seconds * 1000:.2f} ms" for name, seconds in timings.items())
            return kernel, f"applied: {kernel} (fastest at {list(shape)}: {measured})"
        if why := kernel_unavailable(attention, device, dtype, 64 if shape is None else shape[-1]):
            raise InvalidArgumentError(f"Attention kernel {attention!r} is unavailable here: {why}.")
        return attention, f"applied: {attention} (asked)"

    def enable_fast_mode(
        self,
        *,
        compile: bool = True,
        fuse_qkv: bool = True,
        cuda_graphs: bool | None = None,
        attention: str | None = "auto",
    ) -> dict[str, str]:
        """Turn on every exact speed lever that fits the device; returns lever -> what was applied, or why not.

        ``compile``: each of :meth:`fast_blocks` compiled with Inductor (``fullgraph=True``, ``dynamic=False``);
        the first call at a new size pays the compile time. ``fuse_qkv``: one matmul for the query, key and value
        projections. ``cuda_graphs`` (CUDA only, with ``compile``): replay each compiled block as a CUDA graph;
        None applies it where the pipeline says so (:attr:`fast_cuda_graphs`). ``attention``: ``"auto"`` runs the
        denoiser's attention on the fastest exact kernel measured here (on a GPU, once per device, dtype and
        :meth:`attention_shape`; a CPU keeps PyTorch's own choice), a name from
        :data:`genface.models.attention.KERNELS` forces that kernel, None keeps PyTorch's choice.
        :meth:`disable_fast_mode` restores the default exactly.
        """
        kernel, attention_report = self.choose_attention(attention)
        self.disable_fast_mode()
        gpu = self._execution_device.type == "cuda"
        report = dict.fromkeys(FAST_LEVERS, "off (asked)")
        if fuse_qkv:
            self.fuse_projections(True)
            report["fuse_qkv"] = "applied"
        graphs = (self.fast_cuda_graphs if cuda_graphs is None else cuda_graphs) and gpu and compile
        if cuda_graphs is not False and not graphs:
            report["cuda_graphs"] = (
                "skipped: no GPU" if not gpu else "skipped: needs compile" if not compile
                else "skipped: off by default here (long denoising steps; cuda_graphs=True forces it)"
            )  # fmt: skip
        if compile:
            blocks = self.fast_blocks()
            for block_class in {type(block) for block in blocks}:
                # torch.compile does not guard on the attention kernel: a block traced under another one is retraced
                if _TRACED_UNDER.setdefault(block_class, kernel) != kernel:
                    torch._dynamo.reset_code(block_class.forward.__code__)
                    _TRACED_UNDER[block_class] = kernel
            for block in blocks:
                block.compile(fullgraph=True, dynamic=False, mode="reduce-overhead" if graphs else None)
            names = sorted({type(block).__name__ for block in blocks})
            report["compile"] = f"applied: {len(blocks)} blocks ({', '.join(names)}), Inductor, fullgraph"
        if graphs:
            report["cuda_graphs"] = "applied (compile mode reduce-overhead)"
        if kernel is not None:
            self._fast_attention_hooks = [h for d in self.fast_denoisers() for h in pin_kernel(d, kernel)]
        report["attention"] = attention_report
        self.fast_mode = report
        return report

    def save_pretrained(self, *args: Any, **kwargs: Any) -> None:
        """Refused while fast mode is on: the fused projections would be saved under names no loader knows."""
        if self.fast_mode is not None:
            raise InvalidArgumentError(
                "Fast mode fuses the attention projections, which would be saved under other names: call "
                "pipe.disable_fast_mode() before save_pretrained (and enable_fast_mode() again after)."
            )
        super().save_pretrained(*args, **kwargs)

    def disable_fast_mode(self) -> None:
        """Back to the default: blocks run eagerly, projections unfused (bit-exact to never enabling)."""
        if self.fast_mode is None:
            return
        for block in self.fast_blocks():
            block._compiled_call_impl = None  # what nn.Module.compile set
        for handle in self._fast_attention_hooks:
            handle.remove()
        self._fast_attention_hooks = ()
        self.fuse_projections(False)
        self.fast_mode = None
