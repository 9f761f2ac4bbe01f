"""Loop pieces the training scripts share: step-seeded randomness, accelerate checkpoints with exact resume,
and the loss log."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch


def step_generator(seed: int, step: int) -> torch.Generator:
    """The random source of one step, a function of the seed and the step alone, so that a resumed run draws
    what the uninterrupted run drew."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def resume(accelerator: Any, output_dir: Path, checkpoint: str | None, *, strict: bool = True) -> int:
    """Load a checkpoint (a folder, or ``"latest"`` in ``output_dir``) into the prepared objects; returns the
    step to continue from (0 without one). ``strict=False`` for checkpoints of :func:`save_trainable_only`."""
    if not checkpoint:
        return 0
    if checkpoint == "latest":
        found = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        if not found:
            return 0
        folder = found[-1]
    else:
        folder = Path(checkpoint)
    accelerator.load_state(str(folder), strict=strict)
    return json.loads((folder / "progress.json").read_text())["step"]


def save_checkpoint(accelerator: Any, output_dir: Path, step: int) -> None:
    """Models, optimiser and registered objects (accelerate), and the step reached."""
    folder = output_dir / f"checkpoint-{step}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        (folder / "progress.json").write_text(json.dumps({"step": step}))


def save_trainable_only(accelerator: Any) -> None:
    """Make checkpoints hold only the parameters that train, not a frozen multi-billion-parameter base
    (resume them with ``strict=False``)."""

    def keep_trainable(models: list[torch.nn.Module], weights: list[dict[str, Any]], output_dir: str) -> None:
        for model, state in zip(models, weights, strict=True):
            names = {name for name, p in model.named_parameters() if p.requires_grad}
            for key in [key for key in state if key not in names]:
                del state[key]

    accelerator.register_save_state_pre_hook(keep_trainable)


def record_loss(accelerator: Any, losses: dict[int, float], step: int, loss: torch.Tensor) -> None:
    """The loss of a step, averaged over processes; a non-finite loss stops the run with advice."""
    losses[step] = accelerator.gather(loss.detach()[None]).mean().item()
    if not math.isfinite(losses[step]):
        raise SystemExit(f"The loss became {losses[step]} at step {step}; lower the learning rate (--lr).")


def write_losses(output_dir: Path, losses: dict[int, float]) -> None:
    """Append the run's losses to ``losses.jsonl`` (a resumed run continues the same file)."""
    with (output_dir / "losses.jsonl").open("a") as handle:
        handle.writelines(json.dumps({"step": step, "loss": loss}) + "\n" for step, loss in losses.items())


def add_loop_arguments(parser: Any, checkpoint_every: int = 500) -> None:
    """The command-line options every training script shares."""
    parser.add_argument("--checkpoint-every", type=int, default=checkpoint_every)
    parser.add_argument("--resume", default=None, help="a checkpoint folder, or 'latest'")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--seed", type=int, default=0)


def make_accelerator(args: Any) -> Any:
    """An ``Accelerator`` for the parsed options (on the CPU when there is no GPU), with the seed set."""
    from accelerate import Accelerator

    torch.manual_seed(args.seed)
    return Accelerator(mixed_precision=args.mixed_precision, cpu=not torch.cuda.is_available())


def make_ema(accelerator: Any, parameters: list[torch.nn.Parameter], decay: float) -> Any:
    """An exponential moving average of ``parameters`` (diffusers' ``EMAModel``; step it with the same list),
    saved with the checkpoints; None when ``decay`` is 0."""
    if decay <= 0:
        return None
    from diffusers.training_utils import EMAModel

    ema = EMAModel(parameters, decay=decay)
    accelerator.register_for_checkpointing(ema)
    return ema


def weight_dtype(accelerator: Any) -> torch.dtype:
    """The dtype frozen weights are kept in under the run's mixed precision (trainable ones stay float32)."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def write_validation(output_dir: Path, step: int, scores: dict[str, Any]) -> None:
    """Append one checkpoint's validation scores to ``validation.jsonl``."""
    with (output_dir / "validation.jsonl").open("a") as log:
        log.write(json.dumps({"step": step, **scores}) + "\n")
