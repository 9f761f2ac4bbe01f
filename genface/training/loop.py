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


def resume(accelerator: Any, output_dir: Path, checkpoint: str | None) -> int:
    """Load a checkpoint (a folder, or ``"latest"`` in ``output_dir``) into the prepared objects; returns the
    step to continue from (0 without one)."""
    if not checkpoint:
        return 0
    if checkpoint == "latest":
        found = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        if not found:
            return 0
        folder = found[-1]
    else:
        folder = Path(checkpoint)
    accelerator.load_state(str(folder))
    return json.loads((folder / "progress.json").read_text())["step"]


def save_checkpoint(accelerator: Any, output_dir: Path, step: int) -> None:
    """Models, optimiser and registered objects (accelerate), and the step reached."""
    folder = output_dir / f"checkpoint-{step}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        (folder / "progress.json").write_text(json.dumps({"step": step}))


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


def make_ema(accelerator: Any, module: torch.nn.Module, decay: float) -> Any:
    """An exponential moving average of ``module``'s weights (diffusers' ``EMAModel``), saved with the
    checkpoints; None when ``decay`` is 0."""
    if decay <= 0:
        return None
    from diffusers.training_utils import EMAModel

    ema = EMAModel(accelerator.unwrap_model(module).parameters(), decay=decay)
    accelerator.register_for_checkpointing(ema)
    return ema
