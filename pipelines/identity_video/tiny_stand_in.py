"""A tiny random Stand-In on Wan, built offline (``load_pipeline("video", "tiny-stand-in")``): for tests, the
offline demo and CPU benchmarks. Its output is noise; every stage of the real pipeline runs with no download."""

from __future__ import annotations

from typing import Any

from genface.identity import FaceAnalyzer
from genface.pipelines.identity_video.tiny_wan import (
    TINY_CALL,
    TINY_REFERENCE,
    tiny_adapter,
    tiny_identity_encoder,
    tiny_parser,
    tiny_text_side,
    tiny_transformer,
    tiny_vae,
)

__all__ = ["TINY_CALL", "tiny_pipeline"]


def tiny_pipeline(analyzer: FaceAnalyzer | None = None, seed: int = 0, wan22: bool = False) -> Any:
    """A whole tiny Stand-In pipeline (Wan 2.1 layout; ``wan22``: Wan 2.2's two experts, each with its adapter)."""
    from genface.pipelines.identity_video.stand_in import StandInPipeline, StandInScheduler

    transformer = tiny_transformer(seed)
    experts = {}
    if wan22:
        second = tiny_transformer(seed + 1)
        experts = dict(transformer_2=second, boundary_ratio=0.875,
                       stand_in=tiny_adapter(transformer, seed, wan_version="2.2", expert="high"),
                       stand_in_2=tiny_adapter(second, seed + 1, wan_version="2.2", expert="low"))  # fmt: skip
    pipe = StandInPipeline(
        **tiny_text_side(seed), vae=tiny_vae(seed), scheduler=StandInScheduler(shift=5.0), transformer=transformer,
        **(experts or {"stand_in": tiny_adapter(transformer, seed, wan_version="2.1")}),
        identity_encoder=tiny_identity_encoder(analyzer), face_parser=tiny_parser(seed),
    )  # fmt: skip
    pipe.register_to_config(_name_or_path="tiny-stand-in")  # what its marks record as the model
    pipe.reference_size = TINY_REFERENCE
    return pipe
