"""The makeup pipeline's FLUX transformer under diffusers' context parallelism (FLUX's own plan), with the
reference pathway: 2 CPU processes (gloo) give the one-process output, with and without a reference."""

from __future__ import annotations

from pathlib import Path

import torch

from genface.models.makeup import reference_position_ids
from genface.pipelines.makeup.tiny import tiny_components, tiny_injector
from tests.distributed import run_on_cpu_processes


def _pipeline():
    from genface.pipelines import MakeupPipeline

    return MakeupPipeline(**tiny_components(), injector=tiny_injector())


def _inputs(transformer: torch.nn.Module, reference: bool) -> dict:
    """A step's inputs: 4x4 generated + 4x4 context image tokens, 8 text tokens, 16 reference tokens."""
    generator = torch.Generator().manual_seed(2)
    ids = reference_position_ids(4, 4, shift=0)
    ids[:, 0] = 0
    inputs = dict(
        hidden_states=torch.randn(1, 32, 4, generator=generator),
        encoder_hidden_states=torch.randn(1, 8, 32, generator=generator),
        pooled_projections=torch.randn(1, 32, generator=generator), timestep=torch.tensor([0.5]),
        img_ids=torch.cat([ids, ids + torch.tensor([1.0, 0, 0])]), txt_ids=torch.zeros(8, 3),
    )  # fmt: skip
    if reference:
        inputs["joint_attention_kwargs"] = {
            "ref_hidden_states": torch.randn(1, 16, 32, generator=generator),
            "ref_rotary_emb": transformer.pos_embed(reference_position_ids(4, 4, shift=4)),
            "makeup_level": 1.0,
        }
    return inputs


def _worker(rank: int, out: str) -> None:
    pipe = _pipeline()
    pipe.enable_context_parallel(ulysses_degree=2)
    with torch.no_grad():
        transformer = pipe.transformer
        results = [transformer(**_inputs(transformer, reference), return_dict=False)[0] for reference in (True, False)]
    if rank == 0:  # (gathered outputs are async collective tensors: saved as plain ones)
        torch.save([torch.from_numpy(r.numpy().copy()) for r in results], out)


def test_context_parallel_over_two_processes_matches_one(tmp_path: Path) -> None:
    transformer = _pipeline().transformer
    with torch.no_grad():
        expected = [transformer(**_inputs(transformer, reference), return_dict=False)[0] for reference in (True, False)]
    assert (expected[0] - expected[1]).abs().max() > 1e-3  # the reference does change the result
    run_on_cpu_processes(_worker, 2, str(tmp_path / "out.pt"))
    got = torch.load(tmp_path / "out.pt", weights_only=True)
    for ours, theirs in zip(got, expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
