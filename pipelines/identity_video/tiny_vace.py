"""A tiny random VACE on Wan, built offline (``load_pipeline("video", "tiny-vace")``): for tests, the offline demo
and CPU benchmarks. Its output is noise; every stage of the real pipeline runs with no download."""

from __future__ import annotations

from typing import Any

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanVACETransformer3DModel

from genface.identity import FaceAnalyzer
from genface.pipelines.identity_video.tiny_wan import (
    TINY_CALL,
    TRANSFORMER,
    tiny_identity_encoder,
    tiny_text_side,
    tiny_vae,
)

__all__ = ["TINY_CALL", "tiny_pipeline"]


def tiny_pipeline(analyzer: FaceAnalyzer | None = None, seed: int = 0) -> Any:
    """A whole tiny VACE pipeline (three blocks, VACE blocks after the first and the third)."""
    from genface.pipelines.identity_video.vace import VacePipeline

    torch.manual_seed(seed)
    transformer = WanVACETransformer3DModel(**(TRANSFORMER | {"num_layers": 3}), vace_layers=[0, 2],
                                            vace_in_channels=96).eval()  # fmt: skip
    pipe = VacePipeline(
        **tiny_text_side(seed), vae=tiny_vae(seed), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        transformer=transformer, identity_encoder=tiny_identity_encoder(analyzer),
    )  # fmt: skip
    pipe.register_to_config(_name_or_path="tiny-vace")
    return pipe
