"""One way to get a task's pipeline: its published weights, another checkpoint, or the tiny random model."""

from __future__ import annotations

import inspect
import json
from importlib import import_module
from pathlib import Path
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
#: task -> model name -> (pipeline class, its tiny module, what names a folder or Hub id of it: a part of its name, a
#: file in it, or the pipeline class its model_index.json names) for tasks with more than one model; the first is the
#: default. ``"tiny-<name>"`` builds that model's tiny random weights.
MODELS: dict[str, dict[str, tuple[str, str, tuple[str, ...]]]] = {
    "video": {
        "consisid": ("IdentityVideoPipeline", "tiny", ("ConsisID",)),
        # Wan2.1-T2V-14B with Stand-In by name; Wan2.2-T2V-A14B by its Hub id or folder
        "stand-in": ("StandInPipeline", "tiny_stand_in", ("WanPipeline", "-T2V-")),
        # Wan2.1-VACE-14B by name; Wan2.1-VACE-1.3B by its Hub id or folder
        "vace": ("VacePipeline", "tiny_vace", ("WanVACEPipeline", "VACE")),
    },
    "talk": {
        "musetalk": ("TalkingFacePipeline", "tiny", ()),
        "latentsync": ("LatentSyncPipeline", "tiny_latentsync", ("latentsync_unet.pt", "LatentSync")),
    },
}
_SIZE_ARGUMENTS = ("height", "width", "num_frames", "size")


def _task(task: str) -> tuple[str, str, torch.dtype]:
    if task not in TASKS:
        raise InvalidArgumentError(f"Unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    return TASKS[task]


def _pipeline_class(folder: str, name: str) -> Any:
    return getattr(import_module(f"genface.pipelines.{folder}"), name)


def _model(task: str, model: str | None) -> tuple[str, str | None, str | None]:
    """(pipeline class, what its ``from_pretrained`` gets, its tiny module or None) for ``model`` of ``task``."""
    _, name, _ = _task(task)
    models = MODELS.get(task, {})
    if model == TINY:
        return name, None, "tiny"
    if model in models:
        return models[model][0], None, None
    if model is not None and model.startswith(f"{TINY}-"):
        if model.removeprefix(f"{TINY}-") not in models:
            known = ", ".join([TINY, *(f"{TINY}-{m}" for m in models)])
            raise InvalidArgumentError(f"Unknown tiny model {model!r} for {task}; choose one of: {known}.")
        pipeline, tiny, _ = models[model.removeprefix(f"{TINY}-")]
        return pipeline, None, tiny
    if model is None:
        return name, None, None
    folder = Path(model).expanduser()
    saved = folder / "model_index.json"
    saved_class = json.loads(saved.read_text()).get("_class_name") if saved.is_file() else None
    for pipeline, _, marks in models.values():
        if saved_class in (pipeline, *marks) or any(mark in model or (folder / mark).is_file() for mark in marks):
            return pipeline, model, None
    return name, model, None


def pipeline_name(task: str, model: str | None = None) -> str:
    """The class name of the pipeline :func:`load_pipeline` builds for ``model`` of ``task``, found without loading
    anything (an unknown tiny name is refused as there)."""
    return _model(task, model)[0]


def load_pipeline(task: str, model: str | None = None, *, dtype: torch.dtype | None = None, **kwargs: Any) -> Any:
    """The pipeline for ``task`` ("video", "makeup", "talk" or "portrait").

    ``model``: a Hub id or folder for ``from_pretrained`` (``None``: the published weights), or ``"tiny"`` for
    tiny random weights built here. A task with several models (:data:`MODELS`; "video": "consisid", the default,
    "stand-in" and "vace"; "talk": "musetalk", the default, and "latentsync") also takes a model's name (its
    published weights) or ``"tiny-<name>"`` (its tiny random weights); a folder or Hub id goes to the model its files
    or name say (LatentSync: ``latentsync_unet.pt``; Wan: ``Wan-AI/Wan2.2-T2V-A14B-Diffusers`` to Stand-In,
    ``Wan-AI/Wan2.1-VACE-1.3B-diffusers`` to VACE).
    ``dtype`` defaults to the task's usual one (bf16 for video and makeup, fp16 for talk and portrait) and to
    float32 for the tiny model. Other keyword arguments go to ``from_pretrained``; the tiny model takes none.
    """
    folder, _, default_dtype = _task(task)
    name, model, tiny = _model(task, model)
    if tiny is not None:
        pipe = import_module(f"genface.pipelines.{folder}.{tiny}").tiny_pipeline()
        return pipe if dtype in (None, torch.float32) else pipe.to(dtype=dtype)
    arguments = () if model is None else (model,)
    return _pipeline_class(folder, name).from_pretrained(*arguments, dtype=dtype or default_dtype, **kwargs)


def default_size(task: str, model: str | None = None) -> dict[str, int]:
    """The size arguments of the task's pipeline call that fit ``model``: the tiny model's own, or the
    call's defaults (for example ``{"height": 480, "width": 720, "num_frames": 49}`` for video)."""
    folder, _, _ = _task(task)
    name, _, tiny = _model(task, model)
    if tiny is not None:
        return dict(import_module(f"genface.pipelines.{folder}.{tiny}").TINY_CALL)
    parameters = inspect.signature(_pipeline_class(folder, name).__call__).parameters
    return {key: parameters[key].default for key in _SIZE_ARGUMENTS if key in parameters}
