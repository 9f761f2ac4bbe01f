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


def test_kontext_flop_formula_matches_pytorchs_count() -> None:
    """The makeup benchmark's per-step formula against FlopCounterMode on FLUX.1's width at 1024x1024
    (a few blocks, on the meta device: shapes only)."""
    from diffusers import FluxTransformer2DModel
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.makeup import transformer_flops_per_step

    image, text = 4096, 512
    with torch.device("meta"):
        transformer = FluxTransformer2DModel(num_layers=1, num_single_layers=2, guidance_embeds=True)
        inputs = dict(
            hidden_states=torch.empty(1, 2 * image, 64), encoder_hidden_states=torch.empty(1, text, 4096),
            pooled_projections=torch.empty(1, 768), timestep=torch.ones(1), guidance=torch.ones(1),
            img_ids=torch.zeros(2 * image, 3), txt_ids=torch.zeros(text, 3),
        )  # fmt: skip
        counter = FlopCounterMode(display=False)
        with counter:
            transformer(**inputs)
    assert counter.get_total_flops() == pytest.approx(transformer_flops_per_step(transformer, image, text, 0), rel=0.01)
