"""The ``genface`` command line.

Exit codes: 0 success; 1 a genface error (bad input, missing weights; the message says what to do);
2 wrong usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from genface import __version__
from genface.errors import GenfaceError

_PACKAGES = (
    "torch", "diffusers", "transformers", "accelerate", "safetensors", "huggingface_hub",
    "insightface", "onnxruntime", "dlib-bin", "face-recognition-models", "opencv-python", "av", "numpy",
)  # fmt: skip

EPILOG_IDENTITY = """examples:
  genface identity me.jpg frame.png          FaceSim of a photo against another photo
  genface identity me.jpg out.mp4 --json     per-frame FaceSim of a video, as JSON
  genface identity me.jpg --save me.safetensors
                                             encode once; pipelines reuse the saved identity
  genface identity --demo                    run on sample photos shipped with the installed packages
"""


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


def cmd_info(args: argparse.Namespace) -> int:
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
        print(json.dumps(info, indent=2))
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


def _analyzer(args: argparse.Namespace) -> Any:
    from genface.identity import FaceAnalyzer

    return FaceAnalyzer(args.backend, model_root=args.weights)


def cmd_identity(args: argparse.Namespace) -> int:
    from genface.identity import IdentityEncoder, face_similarity

    if args.demo:
        return _identity_demo(args)
    if args.reference is None:
        raise GenfaceError("Give a reference face image (or --demo). See `genface identity --help`.")
    analyzer = _analyzer(args)
    output: dict[str, Any] = {"reference": args.reference}
    if args.save:
        identity = IdentityEncoder(analyzer).encode(args.reference, args.face_index)
        output["saved"] = str(identity.save(args.save))
    if args.target:
        result = face_similarity(args.reference, args.target, analyzer=analyzer, face_index=args.face_index)
        output["target"] = args.target
        output["facesim"] = result.to_dict()
    if not args.save and not args.target:
        raise GenfaceError("Nothing to do: give a TARGET image/video to compare, or --save PATH.")
    if args.json:
        print(json.dumps(output, indent=2))
        return 0
    if "saved" in output:
        print(f"identity saved: {output['saved']}")
    if "facesim" in output:
        sim = output["facesim"]
        print(
            f"FaceSim ({sim['model']}; same person above ~{sim['match_threshold']}): "
            f"mean {sim['mean']:.4f}, min {sim['min']:.4f} over {sim['frames']} frame(s)"
        )
        if sim["missing_frames"]:
            print(f"no face in frames: {sim['missing_frames']}")
    return 0


def _identity_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from genface.identity import face_similarity
    from genface.media import load_image
    from genface.samples import sample_path

    analyzer = _analyzer(args)
    portrait, astronaut = sample_path("portrait"), sample_path("astronaut")
    mirrored = load_image(portrait)[:, ::-1]
    rows = [
        ("portrait vs its mirror image (same person)", face_similarity(portrait, mirrored, analyzer=analyzer)),
        ("portrait vs astronaut (different people)", face_similarity(portrait, astronaut, analyzer=analyzer)),
    ]
    faces = analyzer.detect(sample_path("group"))
    if args.json:
        print(json.dumps({"group_faces": len(faces), **{k: v.to_dict() for k, v in rows}}, indent=2))
        return 0
    print(f"faces found in the group photo: {len(faces)}")
    threshold = rows[0][1].match_threshold
    for label, result in rows:
        verdict = "same" if np.nan_to_num(result.mean) >= threshold else "different"
        print(f"{label:45} FaceSim {result.mean:.4f} -> {verdict} ({result.model})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genface", description="Generative face video and face editing.")
    parser.add_argument("--version", action="version", version=f"genface {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and decisions")
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="versions, devices and usable face backends")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)

    ident = sub.add_parser(
        "identity",
        help="encode a face, or measure FaceSim against images or a video",
        epilog=EPILOG_IDENTITY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ident.add_argument("reference", nargs="?", help="reference face image")
    ident.add_argument("target", nargs="?", help="image or video to compare with the reference")
    ident.add_argument("--save", metavar="PATH", help="save the reference's FaceIdentity (.safetensors)")
    ident.add_argument("--face-index", type=int, default=None, help="which face in the reference (0 = largest)")
    ident.add_argument("--backend", default="auto", choices=["auto", "insightface", "dlib"], help="face engine")
    ident.add_argument("--weights", metavar="DIR", default=None, help="folder of the face engine's weights")
    ident.add_argument("--demo", action="store_true", help="run on the sample photos of installed packages")
    ident.add_argument("--json", action="store_true", help="machine-readable output")
    ident.set_defaults(func=cmd_identity)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.func(args)
    except GenfaceError as exc:
        print(f"genface: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
