"""ConsisID through diffusers' attention dispatcher and context parallelism (2 CPU processes, gloo)."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.models.embeddings import get_3d_rotary_pos_embed

from genface.models.consisid_parallel import CogVideoXDispatchAttnProcessor, consisid_cp_plan
from genface.pipelines.identity_video.tiny import tiny_components
from tests.distributed import run_on_cpu_processes


def _components() -> dict:
    return tiny_components(id_dim=512 + 32, vit_dim=64, num_scales=1)


def _inputs(transformer: torch.nn.Module) -> dict:
    """A denoising step's inputs: 3 latent frames of 8x8 (48 video tokens), 16 text tokens, identity features."""
    config = transformer.config
    generator = torch.Generator().manual_seed(1)
    rope = get_3d_rotary_pos_embed(config.attention_head_dim, ((0, 0), (4, 4)), (4, 4), 3, use_real=True)
    return dict(
        hidden_states=torch.randn(1, 3, config.in_channels, 8, 8, generator=generator),
        encoder_hidden_states=torch.randn(1, config.max_text_seq_length, config.text_embed_dim, generator=generator),
        timestep=torch.tensor([500]), image_rotary_emb=rope, id_cond=torch.randn(1, 544, generator=generator),
        id_vit_hidden=[torch.randn(1, 17, 64, generator=generator)], return_dict=False,
    )  # fmt: skip


def test_dispatch_processor_equals_cogvideox_processor() -> None:
    transformer = _components()["transformer"]
    with torch.no_grad():
        expected = transformer(**_inputs(transformer))[0]
        transformer.set_attn_processor(CogVideoXDispatchAttnProcessor())
        got = transformer(**_inputs(transformer))[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_plan_splits_both_streams_at_the_first_block_and_gathers_after_the_last() -> None:
    plan = consisid_cp_plan(_components()["transformer"])
    assert set(plan) == {"", "transformer_blocks.0", "transformer_blocks.1"}
    assert set(plan["transformer_blocks.0"]) == {"hidden_states", "encoder_hidden_states"}


def _worker(rank: int, out: str) -> None:
    from genface.pipelines import IdentityVideoPipeline

    pipe = IdentityVideoPipeline(**_components())
    pipe.enable_context_parallel(ulysses_degree=2)
    with torch.no_grad():
        result = pipe.transformer(**_inputs(pipe.transformer))[0]
    if rank == 0:
        torch.save(result, out)


def test_context_parallel_over_two_processes_matches_one(tmp_path: Path) -> None:
    """The video's tokens split over 2 processes (Ulysses attention through gloo) give the single-process
    output of the whole transformer, identity cross-attention included."""
    transformer = _components()["transformer"]
    with torch.no_grad():
        expected = transformer(**_inputs(transformer))[0]
    run_on_cpu_processes(_worker, 2, str(tmp_path / "out.pt"))
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
