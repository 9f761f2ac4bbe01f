"""Loop pieces the training scripts share: step-seeded randomness, checkpoints with exact resume, EMA, the loss
and validation logs."""

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


def process_step(accelerator: Any, step: int) -> int:
    """This process's draw index for ``step`` (``step * processes + rank``), so that in a data-parallel run each
    process draws its own examples and one process alone draws what process 0 would."""
    return step * accelerator.num_processes + accelerator.process_index


class Checkpoints:
    """``checkpoint-<step>/`` folders: accelerate's state (prepared models, optimiser) plus named objects with
    ``state_dict``/``load_state_dict`` (an EMA, a module trained outside ``prepare``, LoRA weights), which are
    stored as safetensors so that resuming never unpickles them (accelerate's own custom states are pickles)."""

    def __init__(self, accelerator: Any, output_dir: Path) -> None:
        self.accelerator = accelerator
        self.output_dir = output_dir
        self.states: dict[str, Any] = {}

    def track(self, name: str, state: Any | None) -> None:
        """Save and restore ``state`` with every checkpoint (None: nothing to track)."""
        if state is not None:
            self.states[name] = state

    def save(self, step: int) -> None:
        from safetensors.torch import save_file

        folder = self.output_dir / f"checkpoint-{step}"
        self.accelerator.save_state(str(folder))
        if self.accelerator.is_main_process:
            for name, state in self.states.items():
                tensors, values = _split_state(state.state_dict())
                save_file(tensors, str(folder / f"{name}.safetensors"), metadata={"values": json.dumps(values)})
            (folder / "progress.json").write_text(json.dumps({"step": step}))

    def resume(self, checkpoint: str | None, *, strict: bool = True) -> int:
        """Load a checkpoint (a folder, or ``"latest"`` in the output folder); returns the step to continue from
        (0 without one). ``strict=False`` for checkpoints of :func:`save_trainable_only`."""
        from safetensors import safe_open

        if not checkpoint:
            return 0
        if checkpoint == "latest":
            found = sorted(self.output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
            if not found:
                return 0
            folder = found[-1]
        else:
            folder = Path(checkpoint)
        self.accelerator.load_state(str(folder), strict=strict)
        for name, state in self.states.items():
            with safe_open(str(folder / f"{name}.safetensors"), "pt", device=str(self.accelerator.device)) as handle:
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
                values = json.loads(handle.metadata()["values"])
            state.load_state_dict(_join_state(tensors, values))
        return json.loads((folder / "progress.json").read_text())["step"]


def _split_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A state dict as tensors (lists of tensors by index) and JSON values."""
    tensors, values = {}, {}
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            tensors[key] = value.detach().contiguous()
        elif isinstance(value, list) and all(isinstance(v, torch.Tensor) for v in value):
            tensors |= {f"{key}.{i}": v.detach().contiguous() for i, v in enumerate(value)}
            values[key] = {"tensors": len(value)}
        else:
            values[key] = value
    return tensors, values


def _join_state(tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`_split_state`."""
    state: dict[str, Any] = {}
    listed: set[str] = set()
    for key, value in values.items():
        if isinstance(value, dict) and set(value) == {"tensors"}:
            names = [f"{key}.{i}" for i in range(value["tensors"])]
            state[key] = [tensors[name] for name in names]
            listed.update(names)
        else:
            state[key] = value
    state.update({key: value for key, value in tensors.items() if key not in listed})
    return state


def save_trainable_only(accelerator: Any) -> None:
    """Make checkpoints hold only the parameters that train, not a frozen multi-billion-parameter base
    (resume them with ``strict=False``)."""

    def keep_trainable(models: list[torch.nn.Module], weights: list[dict[str, Any]], output_dir: str) -> None:
        for model, state in zip(models, weights, strict=True):
            names = {name for name, p in model.named_parameters() if p.requires_grad}
            for key in [key for key in state if key not in names]:
                del state[key]

    accelerator.register_save_state_pre_hook(keep_trainable)


def progress(accelerator: Any, first: int, steps: int) -> Any:
    """The steps still to run (``first`` to ``steps - 1``), with a progress bar on the main process."""
    from tqdm.auto import tqdm

    return tqdm(
        range(first, steps), initial=first, total=steps, desc="training", unit="step",
        disable=not accelerator.is_local_main_process,
    )  # fmt: skip


def record_loss(accelerator: Any, losses: dict[int, float], step: int, loss: torch.Tensor, bar: Any = None) -> None:
    """The loss of a step, averaged over processes (shown on ``bar``, a :func:`progress` bar); a non-finite
    loss stops the run with advice."""
    losses[step] = accelerator.gather(loss.detach()[None]).mean().item()
    if not math.isfinite(losses[step]):
        raise SystemExit(f"The loss became {losses[step]} at step {step}; lower the learning rate (--lr).")
    if bar is not None:
        bar.set_postfix(loss=f"{losses[step]:.4f}")


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
    accelerator = Accelerator(mixed_precision=args.mixed_precision, cpu=not torch.cuda.is_available())
    require_data_parallel(accelerator)
    return accelerator


def require_data_parallel(accelerator: Any) -> None:
    """Refuse sharded set-ups (FSDP, DeepSpeed) before any work: the scripts keep the EMA and the trained weights
    whole and save them from the main process, which sharded parameters do not allow."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise SystemExit(
            f"accelerate is set up for {accelerator.distributed_type.value}, which genface's training scripts do not "
            "support: they run on one process or data parallel (DDP). Run `accelerate config` again and choose "
            "multi-GPU without FSDP or DeepSpeed; docs/training.md gives each script's GPU memory."
        )


def make_ema(parameters: list[torch.nn.Parameter], decay: float) -> Any:
    """An exponential moving average of ``parameters`` (diffusers' ``EMAModel``; step it with the same list, and
    :meth:`Checkpoints.track` it); None when ``decay`` is 0."""
    if decay <= 0:
        return None
    from diffusers.training_utils import EMAModel

    return EMAModel(parameters, decay=decay)


def add_lora(model: Any, rank: int, target_modules: list[str] | str) -> LoraState:
    """A PEFT LoRA (alpha = rank) on ``target_modules`` (names, or one regular expression matched against whole
    module names) of a diffusers model; its weights train, the base around them stays as it was."""
    from peft import LoraConfig

    model.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=target_modules))
    return LoraState(model)


class LoraState:
    """A model's PEFT LoRA weights as one object with a state dict (not the frozen base around them): checkpointed
    by :class:`Checkpoints`, and saved with a pipeline's ``save_lora_weights``."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def state_dict(self) -> dict[str, torch.Tensor]:
        from peft.utils import get_peft_model_state_dict

        return get_peft_model_state_dict(self.model)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        from peft.utils import set_peft_model_state_dict

        set_peft_model_state_dict(self.model, state)


def weight_dtype(accelerator: Any) -> torch.dtype:
    """The dtype frozen weights are kept in under the run's mixed precision (trainable ones stay float32)."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


def write_validation(output_dir: Path, step: int, scores: dict[str, Any]) -> None:
    """Append one checkpoint's validation scores to ``validation.jsonl``."""
    with (output_dir / "validation.jsonl").open("a") as log:
        log.write(json.dumps({"step": step, **scores}) + "\n")
