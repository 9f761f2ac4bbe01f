"""ConsisID through diffusers' attention dispatcher, context parallelism and CFG-parallelism (CPU processes, gloo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers.models.embeddings import get_3d_rotary_pos_embed

from genface.errors import InvalidArgumentError
from genface.models.consisid_parallel import CogVideoXDispatchAttnProcessor, consisid_cp_plan
from genface.pipelines.identity_video.tiny import TINY_CALL, tiny_components
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


def _pipeline():  # -> IdentityVideoPipeline
    from genface.pipelines import IdentityVideoPipeline

    pipe = IdentityVideoPipeline(**_components())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _video(pipe: torch.nn.Module, guidance_scale: float = 6.0) -> torch.Tensor:
    """Two denoising steps with guidance on ConsisID's precomputed conditions, decoded to float frames."""
    generator = torch.Generator().manual_seed(2)
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    conditions = dict(id_cond=torch.randn(1, 544, generator=generator),
                      id_vit_hidden=[torch.randn(1, 17, 64, generator=generator)])  # fmt: skip
    frames = pipe(image, "a person smiling", num_inference_steps=2, guidance_scale=guidance_scale, output_type="np",
                  generator=torch.Generator().manual_seed(3), **conditions, **TINY_CALL).frames  # fmt: skip
    return torch.from_numpy(frames)


def _cfg_parallel_video(rank: int, ulysses_degree: int, out: Path) -> None:
    """Frames made with CFG-parallel (x ``ulysses_degree`` context parallelism), saved as ``out/cfg-<rank>.pt``;
    the wrong number of processes and guidance off are refused first."""
    pipe = _pipeline()
    with pytest.raises(InvalidArgumentError, match=f"needs 2 x {2 * ulysses_degree} = {4 * ulysses_degree} processes"):
        pipe.enable_cfg_parallel(ulysses_degree=2 * ulysses_degree)
    pipe.enable_cfg_parallel(ulysses_degree=ulysses_degree)
    with pytest.raises(InvalidArgumentError, match="already on"):
        pipe.enable_cfg_parallel(ulysses_degree=ulysses_degree)
    with pytest.raises(InvalidArgumentError, match="guidance_scale=1.0 turns guidance off"):
        _video(pipe, guidance_scale=1.0)
    torch.save(_video(pipe), out / f"cfg-{rank}.pt")


def _worker(rank: int, out: Path) -> None:
    """Context parallelism (the transformer's tokens over 2 processes), then CFG-parallel alone."""
    pipe = _pipeline()
    pipe.enable_context_parallel(ulysses_degree=2)
    with torch.no_grad():
        result = pipe.transformer(**_inputs(pipe.transformer))[0]
    if rank == 0:
        torch.save(result, out / "context.pt")
    _cfg_parallel_video(rank, 1, out)


def _check_cfg_frames(out: Path, world: int) -> None:
    expected = _video(_pipeline())
    frames = [torch.load(out / f"cfg-{rank}.pt", weights_only=True) for rank in range(world)]
    # float rounding of a batch of 1 against one of 2, multiplied by the guidance scale (6) over 2 steps
    torch.testing.assert_close(frames[0], expected, rtol=0, atol=1e-4)
    assert all(torch.equal(other, frames[0]) for other in frames[1:])  # every rank stepped identically


def test_two_processes_match_one_with_context_or_cfg_parallel(tmp_path: Path) -> None:
    """The video's tokens split over 2 processes (Ulysses attention through gloo) give the single-process
    output of the whole transformer, identity cross-attention included; and the conditional pass on one process,
    the unconditional on the other, predictions gathered, give the single-process frames on both."""
    transformer = _components()["transformer"]
    with torch.no_grad():
        expected = transformer(**_inputs(transformer))[0]
    run_on_cpu_processes(_worker, 2, tmp_path)
    got = torch.load(tmp_path / "context.pt", weights_only=True)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    _check_cfg_frames(tmp_path, 2)


def test_cfg_times_context_parallel_over_four_processes_matches_one(tmp_path: Path) -> None:
    """A 2 x 2 mesh: each guidance pass on 2 processes that split the video's tokens (diffusers' context
    parallelism on the mesh's ring and ulysses dimensions)."""
    run_on_cpu_processes(_cfg_parallel_video, 4, 2, tmp_path)
    _check_cfg_frames(tmp_path, 4)


def test_cfg_parallel_needs_torch_distributed() -> None:
    with pytest.raises(InvalidArgumentError, match="init_process_group"):
        _pipeline().enable_cfg_parallel()
