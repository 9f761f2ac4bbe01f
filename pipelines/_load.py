"""One way to get a task's pipeline: its published weights, another checkpoint, or the tiny random model."""

from __future__ import annotations

import inspect
import json
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genface.errors import InvalidArgumentError

if TYPE_CHECKING:
    import torch

#: The model name that builds tiny random weights (offline demos and tests; outputs are noise).
TINY = "tiny"
#: task -> (pipeline folder, pipeline class, dtype of published weights by default: a torch attribute's name, so
#: that naming a model, as the command line does before any heavy import, needs no torch)
TASKS: dict[str, tuple[str, str, str]] = {
    "video": ("identity_video", "IdentityVideoPipeline", "bfloat16"),
    "makeup": ("makeup", "MakeupPipeline", "bfloat16"),
    "talk": ("talking_face", "TalkingFacePipeline", "float16"),
    "portrait": ("talking_portrait", "TalkingPortraitPipeline", "float16"),
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
#: What a pipeline class may name as ``default_<key>`` for the front ends (what its outputs are written with).
_FRONT_END = ("fps", "negative_prompt")


def _task(task: str) -> tuple[str, str, str]:
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
    import torch

    folder, _, default_dtype = _task(task)
    name, model, tiny = _model(task, model)
    if tiny is not None:
        pipe = import_module(f"genface.pipelines.{folder}.{tiny}").tiny_pipeline()
        return pipe if dtype in (None, torch.float32) else pipe.to(dtype=dtype)
    arguments = () if model is None else (model,)
    dtype = dtype or getattr(torch, default_dtype)
    return _pipeline_class(folder, name).from_pretrained(*arguments, dtype=dtype, **kwargs)


def model_name(task: str, model: str | None = None) -> str | None:
    """The name in :data:`MODELS` of the model ``model`` loads for ``task`` (for video: "consisid", "stand-in" or
    "vace", from a name, ``"tiny"`` / ``"tiny-<name>"``, or a Hub id or folder as :func:`load_pipeline` routes it);
    None for a task with one model. Reads at most a folder's ``model_index.json``: no torch, no weights."""
    pipeline, _, _ = _model(task, model)
    return next((name for name, (cls, _, _) in MODELS.get(task, {}).items() if cls == pipeline), None)


def _call_defaults(task: str, model: str | None, keys: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
    """(the pipeline class ``model`` loads, the defaults of those of ``keys`` its ``__call__`` takes)."""
    folder, _, _ = _task(task)
    name, _, _ = _model(task, model)
    pipeline = _pipeline_class(folder, name)
    parameters = inspect.signature(pipeline.__call__).parameters
    return pipeline, {key: parameters[key].default for key in keys if key in parameters}


def default_size(task: str, model: str | None = None) -> dict[str, int]:
    """The size arguments of the task's pipeline call that fit ``model``: the tiny model's own, or the
    call's defaults (for example ``{"height": 480, "width": 720, "num_frames": 49}`` for video)."""
    folder, _, _ = _task(task)
    _, _, tiny = _model(task, model)
    if tiny is not None:
        return dict(import_module(f"genface.pipelines.{folder}.{tiny}").TINY_CALL)
    return _call_defaults(task, model, _SIZE_ARGUMENTS)[1]


def call_defaults(task: str, model: str | None = None) -> dict[str, Any]:
    """Where a run of ``model`` starts when its user says nothing, the one source of the command line's and the web
    demo's defaults: :func:`default_size`, the call's ``guidance_scale`` and the pipeline's ``default_fps`` and
    ``default_negative_prompt`` where it has them (video: ConsisID's 6.0, 8 fps and none; Wan's 5.0, 16 fps and
    Wan's recommended negative prompt)."""
    pipeline, found = _call_defaults(task, model, ("guidance_scale",))
    found |= {key: getattr(pipeline, f"default_{key}") for key in _FRONT_END if hasattr(pipeline, f"default_{key}")}
    return default_size(task, model) | found
