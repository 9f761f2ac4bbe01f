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


def _task(task: str) -> tuple[str, str, torch.dtype]:
    if task not in TASKS:
        raise InvalidArgumentError(f"Unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    return TASKS[task]


def _pipeline_class(folder: str, name: str) -> Any:
    return getattr(import_module(f"genface.pipelines.{folder}"), name)


def _tiny_module(folder: str) -> Any:
    return import_module(f"genface.pipelines.{folder}.tiny")


def load_pipeline(task: str, model: str | None = None, *, dtype: torch.dtype | None = None, **kwargs: Any) -> Any:
    """The pipeline for ``task`` ("video", "makeup", "talk" or "portrait").

    ``model``: a Hub id or folder for ``from_pretrained`` (``None``: the published weights), or ``"tiny"`` for
    tiny random weights built here. ``dtype`` defaults to the task's usual one (bf16 for video and makeup, fp16
    for talk and portrait) and to float32 for the tiny model. Other keyword arguments go to ``from_pretrained``; the tiny
    model takes none.
    """
    folder, name, default_dtype = _task(task)
    if model == TINY:
        pipe = _tiny_module(folder).tiny_pipeline()
        return pipe if dtype in (None, torch.float32) else pipe.to(dtype=dtype)
    arguments = () if model is None else (model,)
    return _pipeline_class(folder, name).from_pretrained(*arguments, dtype=dtype or default_dtype, **kwargs)


def default_size(task: str, model: str | None = None) -> dict[str, int]:
    """The size arguments of the task's pipeline call that fit ``model``: the tiny model's own, or the
    call's defaults (for example ``{"height": 480, "width": 720, "num_frames": 49}`` for video)."""
    folder, name, _ = _task(task)
    if model == TINY:
        return dict(_tiny_module(folder).TINY_CALL)
    parameters = inspect.signature(_pipeline_class(folder, name).__call__).parameters
    return {key: parameters[key].default for key in _SIZE_ARGUMENTS if key in parameters}
