"""What several commands do while they run: check an output path, pick the device and dtype, place a pipeline,
read a saved identity, build the face engine or the forgery detector, print JSON. Light to import: each heavy
module is imported inside the function that needs it."""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from typing import Any

from genface.errors import GenfaceError, InvalidArgumentError, InvalidIdentityFileError


def print_json(value: Any) -> None:
    """Print ``value`` as strict JSON: NaN and infinities (a FaceSim with no face found, say) become null."""

    def finite(item: Any) -> Any:
        if isinstance(item, dict):
            return {key: finite(v) for key, v in item.items()}
        if isinstance(item, list | tuple):
            return [finite(v) for v in item]
        return None if isinstance(item, float) and not math.isfinite(item) else item

    print(json.dumps(finite(value), indent=2, allow_nan=False))


def one_line(text: str) -> str:
    return " ".join(text.split())


def expected_errors() -> tuple[type[BaseException], ...]:
    """Failures a user can cause or fix outside genface: files and permissions, full disks, memory, corrupt
    safetensors or media."""
    import av
    from safetensors import SafetensorError

    return (GenfaceError, OSError, MemoryError, SafetensorError, av.FFmpegError)


def device(name: str | None) -> str:
    """``name`` checked to be a device this machine has (default: cuda when available, else cpu)."""
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        found = torch.device(name)
    except RuntimeError as exc:
        raise InvalidArgumentError(f"--device {name!r} is not a device name (cpu, cuda, cuda:1, mps, ...).") from exc
    if found.type == "cuda" and (found.index or 0) >= torch.cuda.device_count():
        raise InvalidArgumentError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    if found.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidArgumentError("--device mps: MPS is not available here.")
    return name


def dtype(name: str | None) -> Any:
    """The torch dtype named on the command line; ``None`` leaves the choice to the model."""
    import torch

    return None if name is None else {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def place(pipe: Any, args: argparse.Namespace, where: str) -> None:
    """Put the pipeline on ``where``, or offload it (``--low-memory``) when asked; refuse what cannot fit."""
    import torch

    from genface.resources import check_fits

    if args.low_memory:
        if not torch.cuda.is_available():
            raise GenfaceError("--low-memory offloads to a GPU, and none is available here.")
        pipe.enable_low_memory(args.low_memory)
    else:
        check_fits(pipe, where)
        pipe.to(where)


def latentsync_unet(args: argparse.Namespace) -> dict[str, Any]:
    """``LatentSyncPipeline.from_pretrained``'s ``config`` and ``resolution`` from ``--unet-config`` and
    ``--resolution``, checked before any model work."""
    from pathlib import Path

    from genface.arguments import LATENTSYNC_RESOLUTION

    if args.resolution is not None:
        LATENTSYNC_RESOLUTION.check(args.resolution, "--resolution")
    if args.unet_config is not None and not Path(args.unet_config).expanduser().is_file():
        raise InvalidArgumentError(
            f"--unet-config {args.unet_config} is not a file; give one of LatentSync's configs/unet/*.yaml."
        )
    return {"config": args.unet_config, "resolution": args.resolution}


def load_identity(path: str) -> Any:
    """A saved FaceIdentity, with damaged metadata or arrays refused as InvalidIdentityFileError."""
    import numpy as np

    from genface.identity import FaceIdentity

    try:
        identity = FaceIdentity.load(path)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, GenfaceError):
            raise
        raise InvalidIdentityFileError(f"{path} is a damaged FaceIdentity file ({exc!r}); save it again.") from exc
    crop = identity.crop
    arrays = [getattr(identity, name) for name in ("crop_matrix", "recognition", "clip_embeds", "clip_hidden")]
    if (
        crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8 or identity.crop_matrix.shape != (2, 3)
        or not all(np.isfinite(a).all() for a in arrays if a is not None)
    ):  # fmt: skip
        raise InvalidIdentityFileError(f"{path} is a damaged FaceIdentity file (bad crop or values); save it again.")
    return identity


def analyzer(args: argparse.Namespace) -> Any:
    """The face engine ``--backend`` / ``--weights`` name."""
    from genface.identity import FaceAnalyzer

    return FaceAnalyzer(args.backend, model_root=args.weights)


def forgery_detector(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The FSFM detector ``--detector`` asks for (a tiny random one with ``--judges tiny``), or None and why: not
    asked for, or its weights unavailable."""
    from genface.forensics import FSFM_REPO, ForgeryDetector, load_detector, tiny_fsfm

    if args.detector == "none":
        return None, None
    if getattr(args, "judges", None) == "tiny":
        args.detector_weights = "tiny"
        return ForgeryDetector(tiny_fsfm(), device=args.device), None
    args.detector_weights = args.detector_weights or FSFM_REPO
    return load_detector(args.detector_weights, args.detector, device=args.device)


def spoken_result(output: Any, frames: int, started: float) -> dict[str, Any]:
    """The result fields a talking-face and a talking-portrait run share (``seconds`` last)."""
    return {
        "video": str(output.path),
        "frames": frames,
        "fps": output.fps,
        "seconds_of_audio": round(len(output.audio) / 16000, 3),
        "facesim": output.facesim.to_dict() if output.facesim is not None else None,
        "lip_sync": None if output.lip_sync is None or math.isnan(output.lip_sync) else round(output.lip_sync, 4),
        "seconds": round(time.perf_counter() - started, 2),
    }


def print_spoken_scores(output: Any, result: dict[str, Any], reference: str, measured: bool) -> None:
    """FaceSim to the ``reference`` and the lip-sync proxy when ``measured`` (not ``--no-metrics``); where one
    could not be measured, why."""
    if not measured:
        return
    if output.facesim is None:
        print("FaceSim: not measured (the face engine has no recognizer)")
    elif not output.facesim.found.any():
        print("FaceSim: no face found in the generated frames")
    else:
        print(f"FaceSim vs {reference} ({output.facesim.model}): mean {output.facesim.mean:.4f}")
    if result["lip_sync"] is None:
        print("lip-sync proxy: not measured (it needs 3 frames with a face, and a mouth and a voice that vary)")
    else:
        print(f"lip-sync proxy (mouth opening vs loudness, Pearson r): {result['lip_sync']:.3f}")


#: The Python API's argument names and the command line's flags for them: a library message that names one is
#: shown with the flag, by the commands that have it.
FLAGS = {
    "face_index": "--face-index", "num_inference_steps": "--steps", "guidance_scale": "--guidance",
    "num_frames": "--frames", "batch_size": "--batch-size", "head_motion": "--head-motion",
    "blink_rate": "--blink-rate", "alpha_pitch": "--alpha-pitch", "alpha_yaw": "--alpha-yaw",
    "alpha_roll": "--alpha-roll", "vad_alpha": "--vad-alpha", "fade_in": "--fade-in", "fade_out": "--fade-out",
    "fade_type": "--fade-type", "max_size": "--max-size", "smo_k_s": "--source-smoothing",
}  # fmt: skip


def in_flags(text: str, args: argparse.Namespace) -> str:
    """``text`` with the argument names of :data:`FLAGS` that the command has as flags written as those flags
    (``face_index=3`` -> ``--face-index 3``)."""
    for name, flag in FLAGS.items():
        if hasattr(args, flag[2:].replace("-", "_")):
            text = re.sub(rf"\b{name}(=|\b)", lambda match, flag=flag: flag + (" " if match.group(1) else ""), text)
    return text
