"""One way to get a task's pipeline: its published weights, another checkpoint, or the tiny random model."""

from __future__ import annotations

import inspect
from importlib import import_module
from typing import Any

import torch

from genface.errors import InvalidArgumentError

#: The model name that builds tiny random weights (offline demos and tests; outputs are noise).
TINY = "tiny"
#: task -> (pipeline folder, pipeline class, dtype of published weights by default)
TASKS: dict[str, tuple[str, str, torch.dtype]] = {
    "video": ("identity_video", "IdentityVideoPipeline", torch.bfloat16),
    "makeup": ("makeup", "MakeupPipeline", torch.bfloat16),
    "talk": ("talking_face", "TalkingFacePipeline", torch.float16),
    "portrait": ("talking_portrait", "TalkingPortraitPipeline", torch.float16),
}
_SIZE_ARGUMENTS = ("height", "width", "num_frames", "size")
#: Named models of a task besides its default: name -> (module of the task's folder, pipeline class, weights to load,
#: None for the class's default).
MODELS: dict[str, dict[str, tuple[str, str, str | None]]] = {
    "video": {
        "consisid": ("pipeline", "IdentityVideoPipeline", None),
        "stand-in": ("stand_in", "StandInPipeline", None),  # Wan2.1-T2V-14B + Stand-In
        "stand-in-wan2.2": ("stand_in", "StandInPipeline", "Wan-AI/Wan2.2-T2V-A14B-Diffusers"),
        "vace": ("vace", "VacePipeline", None),  # Wan2.1-VACE-14B
        "vace-1.3b": ("vace", "VacePipeline", "Wan-AI/Wan2.1-VACE-1.3B-diffusers"),
    },
}
#: Tiny random models besides each task's ``tiny``: name -> (module of the task's folder, builder function).
TINY_MODELS: dict[str, dict[str, tuple[str, str]]] = {
    "video": {
        "tiny-stand-in": ("tiny_wan", "tiny_stand_in_pipeline"),
        "tiny-vace": ("tiny_wan", "tiny_vace_pipeline"),
    },
}


def _task(task: str) -> tuple[str, str, torch.dtype]:
    if task not in TASKS:
        raise InvalidArgumentError(f"Unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    return TASKS[task]


def _pipeline_class(module: str, name: str) -> Any:
    return getattr(import_module(f"genface.pipelines.{module}"), name)


def _tiny(task: str, model: str | None) -> Any:
    """The module of ``model``'s tiny builder (a ``tiny`` name of the task) and the builder's name, or None."""
    folder = _task(task)[0]
    module, builder = (("tiny", "tiny_pipeline") if model == TINY else TINY_MODELS.get(task, {}).get(model)) or ("", "")
    return (import_module(f"genface.pipelines.{folder}.{module}"), builder) if module else None


def _published(task: str, model: str | None) -> tuple[Any, tuple]:
    """The pipeline class for ``model`` (a named model, a Hub id or folder, or None) and the arguments of its
    ``from_pretrained``."""
    folder, name, _ = _task(task)
    if model in MODELS.get(task, {}):
        module, name, weights = MODELS[task][model]
        return _pipeline_class(f"{folder}.{module}", name), () if weights is None else (weights,)
    return _pipeline_class(folder, name), () if model is None else (model,)


def load_pipeline(task: str, model: str | None = None, *, dtype: torch.dtype | None = None, **kwargs: Any) -> Any:
    """The pipeline for ``task`` ("video", "makeup", "talk" or "portrait").

    ``model``: a Hub id or folder for ``from_pretrained`` (``None``: the published weights), a named model of the
    task (:data:`MODELS`: for video ``"consisid"``, ``"stand-in"``, ``"stand-in-wan2.2"``, ``"vace"``,
    ``"vace-1.3b"``), or ``"tiny"`` (and for video ``"tiny-stand-in"``, ``"tiny-vace"``) for tiny random weights built
    here. ``dtype`` defaults to the task's usual one (bf16 for video and makeup, fp16 for talk and portrait) and to
    float32 for the tiny models. Other keyword arguments go to ``from_pretrained``; the tiny models take none.
    """
    default_dtype = _task(task)[2]
    tiny = _tiny(task, model)
    if tiny is not None:
        pipe = getattr(*tiny)()
        return pipe if dtype in (None, torch.float32) else pipe.to(dtype=dtype)
    pipeline_class, arguments = _published(task, model)
    return pipeline_class.from_pretrained(*arguments, dtype=dtype or default_dtype, **kwargs)


def default_size(task: str, model: str | None = None) -> dict[str, int]:
    """The size arguments of the task's pipeline call that fit ``model``: the tiny model's own, or the
    call's defaults (for example ``{"height": 480, "width": 720, "num_frames": 49}`` for video)."""
    tiny = _tiny(task, model)
    if tiny is not None:
        return dict(tiny[0].TINY_CALL)
    parameters = inspect.signature(_published(task, model)[0].__call__).parameters
    return {key: parameters[key].default for key in _SIZE_ARGUMENTS if key in parameters}
