"""The Wan identity-video contenders of the device run (``python -m benchmarks.device --sections wan``).

``full``: random weights at the published sizes, built on the device (the values do not change the cost): the
Wan2.1-T2V-14B transformer and VAE with Stand-In's adapter (40 blocks, rank 128, float32 as published),
Wan2.1-VACE-1.3B and -14B; 81 frames at 480x832. ``tiny``: the tiny random models (the CPU rehearsal in the test
suite). The prompt's T5 embeddings are given as random tensors (text encoding, the same for every contender, is
left out), and face detection is :class:`benchmarks.device.FixedFace`'s (no detector weights on the GPU machine).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@contextlib.contextmanager
def _building(device: str, dtype: torch.dtype) -> Iterator[None]:
    """Modules made inside are created on ``device`` in ``dtype`` (no float32 copy of 14B weights first)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _vace_transformer(size: str) -> Any:
    """Wan2.1-VACE's transformer at its published size (``1.3B`` or ``14B``)."""
    from diffusers import WanVACETransformer3DModel

    if size == "1.3B":
        return WanVACETransformer3DModel(num_attention_heads=12, ffn_dim=8960, num_layers=30,
                                         vace_layers=list(range(0, 30, 2)))  # fmt: skip
    return WanVACETransformer3DModel()  # Wan2.1-VACE-14B: 40 blocks, VACE blocks at 0, 5, ..., 35


@dataclass
class WanBench:
    """The contenders: Stand-In and the same modules without it (diffusers' WanPipeline), VACE builders, and
    what every call takes."""

    stand_in: Any
    wan: Any
    vace: dict[str, Any]
    call: dict[str, Any]
    face: np.ndarray


def contenders(scale: str, device: str, analyzer: Any) -> WanBench:
    """The Wan contenders at ``scale`` on ``device`` (bf16 on a GPU), faces found by ``analyzer``."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

    from genface.identity import BiSeNet, FaceParser, IdentityEncoder
    from genface.media import load_image
    from genface.models.stand_in import StandInAdapter
    from genface.pipelines.identity_video.stand_in import StandInPipeline, StandInScheduler
    from genface.pipelines.identity_video.tiny_stand_in import tiny_pipeline as tiny_stand_in_pipeline
    from genface.pipelines.identity_video.tiny_vace import tiny_pipeline as tiny_vace_pipeline
    from genface.pipelines.identity_video.tiny_wan import TINY_CALL
    from genface.pipelines.identity_video.vace import VacePipeline
    from genface.samples import sample_path

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    encoder = IdentityEncoder(analyzer, max_side=None)
    if scale == "tiny":
        stand_in = tiny_stand_in_pipeline(analyzer)
        vace = {size: lambda seed=seed: tiny_vace_pipeline(analyzer, seed) for seed, size in enumerate(("1.3B", "14B"))}
        size, text = dict(TINY_CALL), (16, 32)
    else:
        with _building(device, dtype):
            transformer = WanTransformer3DModel().eval()  # Wan2.1-T2V-14B
            vae = AutoencoderKLWan().eval()
        with _building(device, torch.float32):
            adapter = StandInAdapter().eval()  # 40 blocks of width 5120, rank 128, float32 as Stand-In runs it
            parser = FaceParser(BiSeNet().eval(), device)
        stand_in = StandInPipeline(None, None, vae, StandInScheduler(shift=5.0), transformer, stand_in=adapter,
                                   identity_encoder=encoder, face_parser=parser)  # fmt: skip

        def vace_pipeline(size: str) -> Any:
            with _building(device, dtype):
                transformer = _vace_transformer(size).eval()
            scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
            return VacePipeline(None, None, stand_in.vae, scheduler, transformer, identity_encoder=encoder)

        vace = {size: lambda size=size: vace_pipeline(size) for size in ("1.3B", "14B")}
        size, text = {"height": 480, "width": 832, "num_frames": 81}, (512, 4096)
    stand_in.identity_encoder = encoder
    stand_in.set_progress_bar_config(disable=True)
    modules = {k: v for k, v in stand_in.components.items() if not k.startswith("stand_in")}
    wan = WanPipeline(**{**modules, "scheduler": FlowMatchEulerDiscreteScheduler(shift=5.0)})
    wan.set_progress_bar_config(disable=True)
    gen = torch.Generator().manual_seed(0)
    embeds = [torch.randn(1, *text, generator=gen).to(device, dtype) for _ in range(2)]
    call = dict(prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], output_type="np", **size)
    return WanBench(stand_in.to(device), wan, vace, call, load_image(sample_path("astronaut")))
