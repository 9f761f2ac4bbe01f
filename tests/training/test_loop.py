"""Checkpoints: accelerate's state plus tracked objects in safetensors, restored exactly, nothing pickled."""

from __future__ import annotations

from pathlib import Path

import torch

from genface.training import loop


def test_tracked_states_come_back_from_safetensors(tmp_path: Path) -> None:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model, outside = torch.nn.Linear(3, 2), torch.nn.Linear(2, 2)  # prepared, and trained outside prepare
    optimizer = torch.optim.AdamW([*model.parameters(), *outside.parameters()], lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    ema = loop.make_ema(list(outside.parameters()), 0.5)
    checkpoints = loop.Checkpoints(accelerator, tmp_path)
    checkpoints.track("outside", outside)
    checkpoints.track("ema", ema)
    checkpoints.track("nothing", None)  # e.g. no EMA asked for
    outside(model(torch.ones(1, 3))).sum().backward()
    optimizer.step()
    ema.step(outside.parameters())
    checkpoints.save(7)
    saved = {k: v.clone() for k, v in outside.state_dict().items()}
    shadow = [p.clone() for p in ema.shadow_params]
    with torch.no_grad():
        for p in outside.parameters():
            p.add_(1.0)
    ema.step(outside.parameters())
    assert checkpoints.resume("latest") == 7
    assert all(torch.equal(saved[k], v) for k, v in outside.state_dict().items())
    assert all(torch.equal(a, b) for a, b in zip(shadow, ema.shadow_params, strict=True))
    assert ema.optimization_step == 1 and ema.decay == 0.5
    folder = tmp_path / "checkpoint-7"
    assert {p.name for p in folder.glob("*.safetensors")} >= {"outside.safetensors", "ema.safetensors"}
    assert not list(folder.glob("custom_checkpoint_*"))  # accelerate's pickled custom states are not used
    assert loop.Checkpoints(accelerator, tmp_path / "empty").resume("latest") == 0


def test_sharded_setups_are_refused_before_any_work() -> None:
    from types import SimpleNamespace

    import pytest
    from accelerate.utils import DistributedType

    for sharded in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        with pytest.raises(SystemExit, match=f"{sharded.value}.*data parallel"):
            loop.require_data_parallel(SimpleNamespace(distributed_type=sharded))
    for fine in (DistributedType.NO, DistributedType.MULTI_GPU, DistributedType.MULTI_CPU):
        loop.require_data_parallel(SimpleNamespace(distributed_type=fine))
