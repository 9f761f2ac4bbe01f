"""Low-memory modes shared by the pipelines: diffusers' offloading and VAE tiling, chosen by one word."""

from __future__ import annotations

import torch

from genface.errors import InvalidArgumentError

LOW_MEMORY_MODES = ("model", "sequential", "group")


class LowMemoryMixin:
    """``enable_low_memory(mode)`` for a diffusers pipeline whose denoiser is ``transformer`` or ``unet``."""

    def enable_low_memory(self, mode: str = "model") -> None:
        """Fit smaller GPUs: VAE tiling + slicing where the VAE has them, and one offloading mode.

        ``model``: whole models move to the GPU when used (diffusers' model CPU offload; fast, most memory).
        ``group``: the denoiser streams blocks to the GPU with prefetching (diffusers' group offload), the other
        models layer by layer.
        ``sequential``: every layer moves when used (least memory, slowest).
        """
        if mode not in LOW_MEMORY_MODES:
            raise InvalidArgumentError(f"Unknown low-memory mode {mode!r}; choose from {LOW_MEMORY_MODES}.")
        for name in ("enable_tiling", "enable_slicing"):
            if hasattr(self.vae, name):
                getattr(self.vae, name)()
        if mode == "model":
            self.enable_model_cpu_offload()
        elif mode == "sequential":
            self.enable_sequential_cpu_offload()
        else:
            from diffusers.hooks import apply_group_offloading

            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            # the denoisers (both of Wan 2.2's experts) stream their blocks; the other models go layer by layer
            denoisers = [n for n in ("transformer", "transformer_2", "unet") if getattr(self, n, None) is not None]
            for name in denoisers:
                getattr(self, name).enable_group_offload(
                    onload_device=device,
                    offload_type="block_level",
                    num_blocks_per_group=1,
                    use_stream=device.type == "cuda",
                )
            for name, component in self.components.items():
                if name not in denoisers and isinstance(component, torch.nn.Module):
                    apply_group_offloading(component, onload_device=device, offload_type="leaf_level")
