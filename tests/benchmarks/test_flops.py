"""The FLOP count the video benchmark divides by: ConsisID's DiT costs about 3.3e16 FLOP for 50 steps with CFG."""

from __future__ import annotations

import pytest
import torch


def test_consisid_transformer_flops_at_published_size() -> None:
    from diffusers import ConsisIDTransformer3DModel

    from benchmarks.identity_video import transformer_flops_per_step
    from genface.pipelines import IdentityVideoPipeline
    from genface.pipelines.identity_video.tiny import tiny_components

    components = tiny_components(id_dim=1280, vit_dim=1024, num_scales=1)  # its transformer is replaced
    with torch.device("meta"):
        components["transformer"] = ConsisIDTransformer3DModel(
            num_attention_heads=48, attention_head_dim=64, in_channels=32, out_channels=16, num_layers=42,
            use_rotary_positional_embeddings=True, use_learned_positional_embeddings=True, is_train_face=True,
        )  # fmt: skip
    pipe = IdentityVideoPipeline(**components)
    pipe.vae_scale_factor_spatial, pipe.vae_scale_factor_temporal = 8, 4  # CogVideoX's VAE
    flops = transformer_flops_per_step(pipe, 480, 720, 49, cfg=True) * 50
    assert flops == pytest.approx(3.3e16, rel=0.03)
