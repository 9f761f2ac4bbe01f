"""The ``genface`` command line.

Exit codes: 0 success; 1 an error the user can fix (wrong usage, a number out of range, bad input, missing
weights, an unwritable output; the one-line message says what to do); 130 interrupted
(Ctrl-C); 128 + N stopped by signal N (143 for SIGTERM). Arguments and the output path are checked before any
model work, and an interrupted run leaves no partial output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from genface import __version__
from genface.errors import GenfaceError, InvalidArgumentError, InvalidIdentityFileError

logger = logging.getLogger(__name__)

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


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit code 1, as every error a user can fix) that point to ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(1, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _number(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], int | float]:
    """An argparse ``type`` that reads an int or a finite float from ``low`` to ``high`` (NaN is refused)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {kind(low)} to {kind(high)}, got {text}")
        return value

    return parse


def _print_json(value: Any) -> None:
    """Print ``value`` as strict JSON: NaN and infinities (a FaceSim with no face found, say) become null."""

    def finite(item: Any) -> Any:
        if isinstance(item, dict):
            return {key: finite(v) for key, v in item.items()}
        if isinstance(item, list | tuple):
            return [finite(v) for v in item]
        return None if isinstance(item, float) and not math.isfinite(item) else item

    print(json.dumps(finite(value), indent=2, allow_nan=False))


STEPS = _number(int, 1, 1000)  # the schedulers' training timesteps
GUIDANCE = _number(float, 0, 50)
SEED = _number(int, 0, 2**63 - 1)  # torch.Generator.manual_seed's range
FACE_INDEX = _number(int, 0, 999)
FPS = _number(float, 1, 120)
VIDEO_SIDE = _number(int, 16, 2048)
FRAMES = _number(int, 1, 257)


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _check_output(path: str, option: str, suffixes: tuple[str, ...], inputs: Sequence[str | None] = ()) -> None:
    """Refuse an output path that cannot take the result, before any work: a wrong extension (none given for a
    folder), a folder where a file goes (or a file where a folder goes), one of the inputs, or a place that cannot
    be written. Nothing is created."""
    out = Path(path).expanduser()
    if suffixes and out.suffix.lower() not in suffixes:
        raise InvalidArgumentError(f"{option} {path}: the name must end in {' or '.join(suffixes)}.")
    if suffixes and out.is_dir():
        raise InvalidArgumentError(f"{option} {path} is a folder; give a file name (for example {out / 'out'}"
                                   f"{suffixes[0]}).")  # fmt: skip
    if not suffixes and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidArgumentError(f"{option} {path} exists and is not an empty folder; give a new folder.")
    for given in inputs:
        if given and _same_file(out, Path(given).expanduser()):
            raise InvalidArgumentError(f"{option} {path} is also an input; write the result to another file.")
    folder = out.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise InvalidArgumentError(f"{option} {path}: {folder} is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=folder):  # the real test of permissions, quotas, read-only disks
            pass
    except OSError as exc:
        raise InvalidArgumentError(f"{option} {path}: cannot write in {folder} ({exc.strerror}).") from exc


def _device(name: str | None) -> str:
    """``name`` checked to be a device this machine has (default: cuda when available, else cpu)."""
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise InvalidArgumentError(f"--device {name!r} is not a device name (cpu, cuda, cuda:1, mps, ...).") from exc
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise InvalidArgumentError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidArgumentError("--device mps: MPS is not available here.")
    return name


def _load_identity(path: str) -> Any:
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
        _print_json(info)
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
    if not args.save and not args.target:
        raise GenfaceError("Nothing to do: give a TARGET image/video to compare, or --save PATH.")
    if args.save:
        _check_output(args.save, "--save", (".safetensors",), [args.reference, args.target])
    analyzer = _analyzer(args)
    output: dict[str, Any] = {"reference": args.reference}
    if args.save:
        identity = IdentityEncoder(analyzer).encode(args.reference, args.face_index)
        output["saved"] = str(identity.save(args.save))
    if args.target:
        result = face_similarity(args.reference, args.target, analyzer=analyzer, face_index=args.face_index)
        output["target"] = args.target
        output["facesim"] = result.to_dict()
    if args.json:
        _print_json(output)
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
        _print_json({"group_faces": len(faces), **{k: v.to_dict() for k, v in rows}})
        return 0
    print(f"faces found in the group photo: {len(faces)}")
    threshold = rows[0][1].match_threshold
    for label, result in rows:
        verdict = "same" if np.nan_to_num(result.mean) >= threshold else "different"
        print(f"{label:45} FaceSim {result.mean:.4f} -> {verdict} ({result.model})")
    return 0


EPILOG_VIDEO = """examples:
  genface video --face me.jpg --prompt "A woman walks along the beach at sunset" --out beach.mp4
  genface video --identity me.safetensors --prompt "..." --out out.mp4 --low-memory model --seed 7
  genface video --model tiny --face me.jpg --prompt "test" --out tiny.mp4
                        offline demo: a tiny random model (its video is noise) runs every stage on CPU
"""


def _place(pipe: Any, args: argparse.Namespace, device: str) -> None:
    """Put the pipeline on ``device``, or offload it (``--low-memory``) when asked; refuse what cannot fit."""
    import torch

    from genface.resources import check_fits

    if args.low_memory:
        if not torch.cuda.is_available():
            raise GenfaceError("--low-memory offloads to a GPU, and none is available here.")
        pipe.enable_low_memory(args.low_memory)
    else:
        check_fits(pipe, device)
        pipe.to(device)


def _add_low_memory(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--low-memory", nargs="?", const="model", default=None, choices=["model", "group", "sequential"],
        help="offload to fit smaller GPUs (default mode: model)",
    )  # fmt: skip


def _add_dtype(parser: argparse.ArgumentParser, usual: str) -> None:
    parser.add_argument(
        "--dtype", default=None, choices=["bf16", "fp16", "fp32"],
        help=f"weights' dtype (default: {usual}; fp32 for --model tiny)",
    )  # fmt: skip


def _dtype(name: str | None) -> Any:
    """The torch dtype named on the command line; ``None`` leaves the choice to the model."""
    import torch

    return None if name is None else {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def cmd_video(args: argparse.Namespace) -> int:
    import time

    import torch

    from genface.identity import face_similarity
    from genface.media import to_uint8
    from genface.pipelines import default_size, load_pipeline
    from genface.provenance import write_marked_video
    from genface.resources import explain_out_of_memory

    if (args.face is None) == (args.identity is None):
        raise GenfaceError("Give exactly one of --face PHOTO or --identity SAVED.safetensors.")
    _check_output(args.out, "--out", (".mp4",), [args.face, args.identity])
    identity = _load_identity(args.identity) if args.identity else None
    device = _device(args.device)
    started = time.perf_counter()
    default = default_size("video", args.model)
    given = {"height": args.height, "width": args.width, "num_frames": args.frames}
    size = {key: default[key] if value is None else value for key, value in given.items()}
    pipe = load_pipeline("video", args.model, dtype=_dtype(args.dtype))
    _place(pipe, args, device)
    pipe.set_attention_backend(args.attention)
    generator = torch.Generator("cpu").manual_seed(args.seed)
    with explain_out_of_memory():
        output = pipe(
            args.prompt,
            face_image=args.face,
            identity=identity,
            negative_prompt=args.negative_prompt,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=generator,
            face_index=args.face_index,
            output_type="np",
            **size,
        )
    video = to_uint8(output.frames[0])
    path = write_marked_video(args.out, video, args.fps, "identity_video", args.model, seed=args.seed)
    result: dict[str, Any] = {
        "video": str(path),
        "model": args.model,
        "seed": args.seed,
        "frames": int(video.shape[0]),
        "size": list(video.shape[1:3]),
        "seconds": round(time.perf_counter() - started, 2),
    }
    encoder = pipe.identity_encoder
    recognizer = encoder.analyzer.recognizer if encoder is not None else None
    if recognizer is not None and output.identity.recognition_model == recognizer.name:
        result["facesim"] = face_similarity(output.identity, video, analyzer=encoder.analyzer).to_dict()
    if args.json:
        _print_json(result)
        return 0
    print(
        f"video written: {path} ({result['frames']} frames, {result['size'][1]}x{result['size'][0]}, "
        f"{args.fps} fps; made in {result['seconds']} s)"
    )
    if "facesim" in result:
        sim = result["facesim"]
        found = sim["frames"] - len(sim["missing_frames"])
        if found:
            print(
                f"FaceSim vs reference ({sim['model']}): mean {sim['mean']:.4f}, min {sim['min']:.4f} "
                f"over {found} frame(s) with a face"
            )
        else:
            print("FaceSim: no face found in the generated frames")
    if args.model == "tiny":
        print("note: the tiny model has random weights; its video is noise. Use --model BestWishYsh/ConsisID-preview.")
    return 0


EPILOG_MAKEUP = """examples:
  genface makeup --face me.jpg --reference look.jpg --out me_made_up.png
  genface makeup --face me.jpg --reference look.jpg --out lips.png --regions lips --strength 0.8
  genface makeup --model tiny --face me.jpg --reference look.jpg --out tiny.png
                        offline demo: tiny random weights (the result is noise) run every stage on CPU
"""


def cmd_makeup(args: argparse.Namespace) -> int:
    import time

    import torch

    from genface.media.image import IMAGE_SUFFIXES
    from genface.pipelines import MakeupPipeline, default_size, load_pipeline
    from genface.provenance import save_marked_image
    from genface.resources import explain_out_of_memory

    _check_output(args.out, "--out", IMAGE_SUFFIXES, [args.face, args.reference])
    regions = [r.strip() for r in args.regions.split(",") if r.strip()] if args.regions else None
    MakeupPipeline.check_regions(regions)
    device = _device(args.device)
    started = time.perf_counter()
    size = default_size("makeup", args.model)["size"] if args.size is None else args.size
    pipe = load_pipeline("makeup", args.model, dtype=_dtype(args.dtype), injector=args.injector)
    _place(pipe, args, device)
    with explain_out_of_memory():
        output = pipe(
            args.face,
            args.reference,
            strength=args.strength,
            regions=regions,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            generator=torch.Generator("cpu").manual_seed(args.seed),
            face_index=args.face_index,
            size=size,
            output_type="np",
        )
    injector = "tiny" if args.model == "tiny" else args.injector
    path = save_marked_image(args.out, output.images[0], "makeup", args.model, injector=injector, seed=args.seed)
    result = {
        "image": str(path),
        "seed": args.seed,
        "strength": args.strength,
        "regions": regions,
        "facesim": output.facesim,
        "makeup_similarity": output.makeup_similarity,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if args.json:
        _print_json(result)
        return 0
    print(f"image written: {path} (made in {result['seconds']} s)")
    if output.facesim is not None:
        print(f"FaceSim source vs result: {output.facesim:.4f}")
    for region, score in output.makeup_similarity.items():
        print(f"makeup similarity, {region}: {score:.3f}")
    if args.model == "tiny":
        print("note: the tiny model has random weights; its result is noise. Use the default --model.")
    return 0


EPILOG_TALK = """examples:
  genface talk --face clip.mp4 --audio speech.wav --out dubbed.mp4
  genface talk --face photo.jpg --audio speech.m4a --out talking.mp4 --fps 25
  genface talk --face clip.mp4 --audio other.wav --out again.mp4 --prepared clip_prepared/
                        the first run prepares the video into the folder; later dubs of it skip that work
  genface talk --model tiny --face photo.jpg --audio speech.wav --out tiny.mp4
                        offline demo: tiny random weights (the mouth is noise) run every stage on CPU
"""


def _spoken_result(output: Any, frames: int, started: float) -> dict[str, Any]:
    """The result fields a talking-face and a talking-portrait run share (``seconds`` last)."""
    import time

    return {
        "video": str(output.path),
        "frames": frames,
        "fps": output.fps,
        "seconds_of_audio": round(len(output.audio) / 16000, 3),
        "facesim": output.facesim.to_dict() if output.facesim is not None else None,
        "lip_sync": None if output.lip_sync is None or math.isnan(output.lip_sync) else round(output.lip_sync, 4),
        "seconds": round(time.perf_counter() - started, 2),
    }


def _print_spoken_scores(output: Any, result: dict[str, Any], reference: str) -> None:
    """FaceSim to the ``reference`` and the lip-sync proxy, where measured."""
    if output.facesim is not None and output.facesim.found.any():
        print(f"FaceSim vs {reference} ({output.facesim.model}): mean {output.facesim.mean:.4f}")
    if result["lip_sync"] is not None:
        print(f"lip-sync proxy (mouth opening vs loudness, Pearson r): {result['lip_sync']:.3f}")


def cmd_talk(args: argparse.Namespace) -> int:
    import time

    from genface.pipelines import load_pipeline
    from genface.resources import explain_out_of_memory

    _check_output(args.out, "--out", (".mp4",), [args.face, args.audio])
    if args.prepared is not None and Path(args.prepared).expanduser().is_file():
        raise InvalidArgumentError(f"--prepared {args.prepared} is a file; give a folder (new, empty or prepared).")
    device = _device(args.device)
    started = time.perf_counter()
    pipe = load_pipeline("talk", args.model, dtype=_dtype(args.dtype), vae=args.vae, audio_encoder=args.whisper)
    _place(pipe, args, device)
    with explain_out_of_memory():
        face = args.face
        if args.prepared is not None:  # read back when it holds this video's preparation, else made and saved
            face = pipe.prepare(args.face, fps=args.fps, face_index=args.face_index, cache=args.prepared)
        output = pipe(
            face,
            args.audio,
            fps=args.fps,
            face_index=args.face_index,
            batch_size=args.batch_size,
            output_path=args.out,
            measure=not args.no_metrics,
        )
    frames = len(output.pitch)
    result = {**_spoken_result(output, frames, started), "lost_frames": output.lost_frames}
    if args.json:
        _print_json(result)
        return 0
    print(f"video written: {output.path} ({frames} frames at {output.fps:g} fps; made in {result['seconds']} s)")
    if output.lost_frames:
        print(f"face not found in {len(output.lost_frames)} source frame(s); the nearest box was held there")
    _print_spoken_scores(output, result, "source")
    if args.model == "tiny":
        print("note: the tiny model has random weights; its mouths are noise. Use the default --model.")
    return 0


EPILOG_PORTRAIT = """examples:
  genface portrait --photo me.jpg --audio speech.wav --out talking.mp4
  genface portrait --photo me.jpg --audio speech.m4a --out happy.mp4 --emotion happy --head-motion 0.5 --yaw 10
  genface portrait --model tiny --photo me.jpg --audio speech.wav --out tiny.mp4
                        offline demo: tiny random weights (the face is noise) run every stage on CPU
"""


def _emotion(text: str) -> list[str]:
    """``--emotion``: one of Ditto's emotions or several, comma-separated (mixed)."""
    from genface.models.motion.lmdm import EMOTIONS

    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in EMOTIONS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(EMOTIONS)} (comma-separated to mix)")
    return names


def cmd_portrait(args: argparse.Namespace) -> int:
    import time

    import torch

    from genface.pipelines import load_pipeline
    from genface.resources import explain_out_of_memory

    _check_output(args.out, "--out", (".mp4",), [args.photo, args.audio])
    device = _device(args.device)
    started = time.perf_counter()
    dtype = _dtype(args.dtype) or (torch.float32 if device == "cpu" else None)  # fp16 3-D pooling is GPU-only
    pipe = load_pipeline("portrait", args.model, dtype=dtype, audio_encoder=args.hubert)
    _place(pipe, args, device)
    offsets = {key: getattr(args, key) for key in ("pitch", "yaw", "roll") if getattr(args, key)}
    with explain_out_of_memory():
        output = pipe(
            args.photo,
            args.audio,
            emotion=args.emotion,
            head_motion=args.head_motion,
            blink_rate=args.blink_rate,
            pose_offsets=offsets,
            num_inference_steps=args.steps,
            generator=torch.Generator().manual_seed(args.seed),
            face_index=args.face_index,
            batch_size=args.batch_size,
            output_path=args.out,
            measure=not args.no_metrics,
        )
    frames = len(output.head_pose)
    spread = output.head_pose.std(axis=0)
    result = {
        **_spoken_result(output, frames, started),
        "seed": args.seed,
        "head_pose_std_degrees": dict(zip(("pitch", "yaw", "roll"), (round(float(v), 3) for v in spread), strict=True)),
        "blinks": output.blinks,
        "first_frame_seconds": round(output.first_frame_seconds, 3),
    }
    if args.json:
        _print_json(result)
        return 0
    print(f"video written: {output.path} ({frames} frames at {output.fps:g} fps; made in {result['seconds']} s)")
    pose = result["head_pose_std_degrees"]
    print(f"head motion (std, degrees): pitch {pose['pitch']}, yaw {pose['yaw']}, roll {pose['roll']}")
    if output.blinks is not None:
        print(f"blinks seen: {output.blinks}")
    _print_spoken_scores(output, result, "photo")
    if args.model == "tiny":
        print("note: the tiny model has random weights; its faces are noise. Use the default --model.")
    return 0


EPILOG_EVAL = """examples:
  genface eval video generated/ --out scores.jsonl --inception inception_v3_google-0cc3c7bd.pth
                        ConsisID's table: NAME.mp4 with NAME.png (the face) and NAME.txt (the prompt)
  genface eval video items.jsonl --out scores.jsonl --protocol standard \\
      --fid-inception pt_inception-2015-12-05-6726825d.pth [--fid-real real_faces/]
  genface eval talk dubbed/ --out sync.jsonl --syncnet syncnet_v2.model --latentsync-syncnet latentsync_syncnet.pt
  genface eval makeup pairs.csv --out makeup.jsonl --detector diffusion
  genface eval consisid-testset ConsisID-preview-Data --jobs jobs.jsonl [--videos videos/ --out items.jsonl]
                        ConsisID's test set as generation jobs, and as the manifest of the videos made from them
Rows of a manifest (.jsonl or .csv; paths relative to it): video: video, reference, prompt; talk: video,
speech (default: the video's audio); makeup: image, source, reference; any: id. A run resumes: items already
scored in --out are skipped. The summary goes beside --out (NAME.summary.json, NAME.summary.md).
"""
FRAMES_PER_VIDEO = _number(int, 1, 1000)


def _eval_judges(args: argparse.Namespace, items: Sequence[Any], device: str) -> tuple[list[Any], dict[str, Any]]:
    """The judges of ``args.kind`` (and the forgery detector), with the weights each was loaded from."""
    from genface.eval.runner import forgery_judge

    weights: dict[str, Any] = {}
    detector, unavailable = _forgery_detector(args)  # first, so that missing weights stop the run before the rest
    if unavailable:
        raise GenfaceError(unavailable.replace("no forgery score: ", "--detector: ", 1))
    if args.kind == "video":
        from genface.eval import VideoJudge, consisid_analyzer, load_clip, load_curricularface, load_inception
        from genface.eval.weights import judge_source

        analyzer = consisid_analyzer(*judge_source(args.face_encoder, "face_encoder"), model_name=args.face_pack)
        weights["face_encoder"] = f"{args.face_encoder} ({args.face_pack})"
        curricular = None
        if args.curricularface != "none":
            weights["curricularface"] = args.curricularface or args.face_encoder
            curricular = load_curricularface(*judge_source(weights["curricularface"], "face_encoder")).to(device)
        inception = load_inception(args.inception).to(device) if args.inception else None
        weights["inception"] = args.inception
        clip = None
        if args.clip != "none" and any(item.fields.get("prompt") for item in items):
            model, processor = load_clip(args.clip)
            clip, weights["clip"] = (model.to(device), processor), args.clip
        fid = None
        if args.fid_inception:
            from genface.eval.runner import FIDFeatures, fid_folder

            fid = FIDFeatures(load_inception(args.fid_inception, fid=True).to(device), fid_folder(args.out))
            weights["fid_inception"], weights["fid_real"] = args.fid_inception, args.fid_real or "the references"
        judge: Any = VideoJudge(analyzer, curricularface=curricular, inception=inception, clip=clip,
                                fid_features=fid, protocol=args.protocol, num_frames=args.frames)  # fmt: skip
    elif args.kind == "talk":
        from genface.eval import TalkJudge, load_latentsync_syncnet, load_syncnet

        syncnet = load_syncnet(args.syncnet).to(device) if args.syncnet else None
        latentsync = load_latentsync_syncnet(args.latentsync_syncnet).to(device) if args.latentsync_syncnet else None
        judge = TalkJudge(_analyzer(args), syncnet, latentsync=latentsync)
        weights |= {"syncnet": args.syncnet, "latentsync_syncnet": args.latentsync_syncnet, "face_engine": args.backend}
    else:
        from genface.identity import FaceParser
        from genface.pipelines.makeup.evaluate import MakeupJudge

        parser = None if args.parser == "none" else FaceParser.from_pretrained(args.parser, device=device)
        judge = MakeupJudge(_analyzer(args), parser, args.size)
        weights |= {"parser": args.parser, "face_engine": args.backend}
    if detector is None:
        return [judge], weights
    weights["detector"] = f"FSFM {args.detector} ({args.detector_weights})"
    return [judge, forgery_judge(detector)], weights


def _consisid_testset(args: argparse.Namespace) -> int:
    """``genface eval consisid-testset``: the test set's generation jobs and / or the manifest of its videos."""
    from genface.eval.consisid_testset import write_consisid_files

    if not (args.jobs or args.out):
        raise InvalidArgumentError(
            "genface eval consisid-testset writes --jobs FILE.jsonl (what to generate), --out FILE.jsonl with --videos "
            "DIR (the manifest of the generated videos), or both."
        )
    if args.out and not args.videos:
        raise InvalidArgumentError(f"--out {args.out}: give --videos DIR, the generated videos the manifest lists.")
    if args.videos and not Path(args.videos).expanduser().is_dir():
        raise InvalidArgumentError(f"--videos {args.videos} is not a folder.")
    outputs = [(path, option) for path, option in ((args.jobs, "--jobs"), (args.out, "--out")) if path]
    for path, option in outputs:
        _check_output(path, option, (".jsonl",), [args.input])
    if len(outputs) == 2 and Path(args.jobs).expanduser().absolute() == Path(args.out).expanduser().absolute():
        raise InvalidArgumentError(f"--jobs and --out are both {args.out}; give two files.")
    cases, found = write_consisid_files(args.input, args.videos, args.jobs, args.out, args.seed)
    result = {"cases": cases, "jobs": args.jobs, "videos": args.videos, "videos_found": found, "manifest": args.out}
    if args.json:
        _print_json(result)
        return 0
    print(f"{cases} test cases" + (f"; generation jobs: {args.jobs} (seed {args.seed})" if args.jobs else ""))
    if args.videos:
        print(f"{found} of their videos found in {args.videos}" + (f"; manifest: {args.out}" if args.out else ""))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    if args.kind == "consisid-testset":
        return _consisid_testset(args)
    if not args.out:
        raise InvalidArgumentError(f"genface eval {args.kind} needs --out FILE.jsonl, where its records go.")
    from genface.eval.runner import (
        evaluate,
        read_items,
        read_records,
        summarize,
        summary_markdown,
        summary_paths,
        write_summary,
    )

    _check_output(args.out, "--out", (".jsonl",), [args.input])
    for path, suffix in zip(summary_paths(args.out), (".json", ".md"), strict=True):
        _check_output(str(path), "--out's summary", (suffix,), [args.input])
    if args.kind == "talk" and not (args.syncnet or args.latentsync_syncnet):
        raise InvalidArgumentError(
            "genface eval talk needs --syncnet (syncnet_v2.model of joonson/syncnet_python, or a folder or Hub id "
            "holding it), --latentsync-syncnet (latentsync_syncnet.pt), or both."
        )
    if args.fid_real and not (args.fid_inception and Path(args.fid_real).expanduser().is_dir()):
        raise InvalidArgumentError(f"--fid-real {args.fid_real}: give a folder of face photos, with --fid-inception.")
    items = read_items(args.input, args.kind)
    done = read_records(args.out)
    device = args.device = _device(args.device)
    todo = sum("metrics" not in done.get(item.id, {}) for item in items)
    logger.info("%d of %d item(s) to score; the rest are in %s already", todo, len(items), args.out)
    fid = args.kind == "video" and args.fid_inception
    judges, weights = _eval_judges(args, items, device) if todo or (fid and args.fid_real) else ([], {})
    records = evaluate(items, judges, args.out, progress=not args.json)
    about = {"kind": args.kind, "protocol": args.protocol if args.kind == "video" else None, "weights": weights}
    if fid:
        from genface.eval.runner import FIDFeatures, fid_folder, real_features

        real = real_features(args.fid_real, judges[0].analyzer, judges[0].fid_features.model) if args.fid_real else None
        about["fid_set"] = FIDFeatures(None, fid_folder(args.out)).set_fid(records, real)
    summary = summarize(records, **about)
    json_path, md_path = write_summary(summary, args.out)
    if args.json:
        _print_json(summary)
        return 0
    print(summary_markdown(summary), end="")
    print(f"records: {args.out}; summary: {json_path}, {md_path}")
    return 0


def _verify_files(paths: Sequence[str]) -> list[Path]:
    """The files named, a folder standing for its images and videos (not its subfolders); refused up front when
    a path is missing or a folder holds none."""
    from genface.media.image import IMAGE_SUFFIXES
    from genface.media.video import VIDEO_SUFFIXES

    files = []
    for given in paths:
        path = Path(given).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)
            )
            if not found:
                raise InvalidArgumentError(f"{given} holds no images or videos.")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise InvalidArgumentError(f"{given} does not exist.")
    return files


def _forgery_detector(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The FSFM detector ``--detector`` asks for, or None and why: not asked for, or its weights unavailable."""
    from genface.forensics import FSFM_REPO, load_detector

    if args.detector == "none":
        return None, None
    args.detector_weights = args.detector_weights or FSFM_REPO
    return load_detector(args.detector_weights, args.detector, device=args.device)


def _print_verify(result: dict[str, Any]) -> None:
    from genface.forensics import score_line

    name = result["file"]
    if not result["synthetic"]:
        print(f"{name}: no mark (neither genface metadata nor the genface watermark was found)")
    else:
        print(f"{name}: synthetic (made by genface)")
        meta = result["metadata"]
        if meta:
            print(
                f"  metadata: {meta.get('generator')}, pipeline {meta.get('pipeline')}, model {meta.get('model')}, "
                f"created {meta.get('created')}"
            )
        else:
            print("  metadata: none (removed or re-saved)")
        mark = result["watermark"]
        bits = "too small to carry one" if mark is None else f"{mark['matching_bits']}/{mark['of']} bits"
        print(f"  watermark: {bits}")
    forgery = result.get("forgery")
    if forgery is None or "unavailable" in forgery:
        return
    print(f"  {score_line(forgery)}")
    if "error" not in forgery:
        print(f"    {forgery['caution']}")


def cmd_verify(args: argparse.Namespace) -> int:
    from genface.forensics import score_report
    from genface.provenance import verify

    files = _verify_files(args.files)
    if args.detector != "none":
        args.device = _device(args.device)
    detector, unavailable = _forgery_detector(args)
    if unavailable:
        print(f"genface: note: {unavailable}; the marks are reported alone", file=sys.stderr)
    results, failed = [], 0
    for path in files:
        try:
            result = verify(path)
        except _expected_errors() as exc:
            failed += 1
            message = _one_line(str(exc))
            results.append({"file": str(path), "error": message})
            print(f"genface: error: {path}: {message}", file=sys.stderr)
            continue
        if detector is not None:
            name = f"FSFM {args.detector}"
            result["forgery"] = score_report(detector, path, name) | {"weights": args.detector_weights}
        elif unavailable:
            result["forgery"] = {"unavailable": unavailable}
        results.append(result)
        if not args.json:
            _print_verify(result)
    if args.json:
        single = len(args.files) == 1 and len(files) == 1 and not Path(args.files[0]).is_dir()
        _print_json(results[0] if single else results)
    return 1 if failed else 0


def cmd_convert(args: argparse.Namespace) -> int:
    from genface.media._files import atomic_folder

    _check_output(args.out, "OUT", (), [args.source])
    if args.fsfm:
        from genface.models.fsfm import load_fsfm

        model = load_fsfm(args.source, args.subfolder)
        with atomic_folder(args.out) as folder:
            model.save_pretrained(folder)
        print(f"converted {args.source} -> {args.out} (FSFM {model.config.head_type} head, safetensors), usable as "
              "`verify --detector-weights`")  # fmt: skip
        return 0
    if args.ditto or (Path(args.source).expanduser() / "ditto_pytorch").is_dir():
        from genface.pipelines import TalkingPortraitPipeline

        portrait = TalkingPortraitPipeline.from_pretrained(args.source, audio_encoder=args.hubert)
        with atomic_folder(args.out) as folder:
            portrait.save_pretrained(folder)
        print(f"converted {args.source} -> {args.out} (safetensors), usable as `portrait --model`")
        return 0
    if Path(args.source).suffix not in (".pt", ".pth", ".bin", ".safetensors"):  # a MuseTalk folder or Hub id
        from genface.pipelines import TalkingFacePipeline

        pipe = TalkingFacePipeline.from_pretrained(args.source, vae=args.vae, audio_encoder=args.whisper)
        with atomic_folder(args.out) as folder:
            pipe.save_pretrained(folder)
        print(f"converted {args.source} -> {args.out} (diffusers layout, safetensors), usable as `talk --model`")
        return 0
    from genface.models.makeup import MakeupInjector

    injector = MakeupInjector.from_published_checkpoint(args.source, attention_head_dim=args.attention_head_dim)
    with atomic_folder(args.out) as folder:
        injector.save_pretrained(folder)
    count = sum(p.numel() for p in injector.parameters())
    print(f"converted {args.source} -> {args.out} (safetensors, {count / 1e6:.1f}M parameters)")
    return 0


EPILOG_SERVE = """examples:
  genface serve                       the published models, on http://127.0.0.1:7860
  genface serve --model tiny          offline demo: tiny random models (outputs are noise), CPU
"""


def cmd_serve(args: argparse.Namespace) -> int:
    from genface.web import serve

    serve(args.model, args.host, args.port, args.device and _device(args.device), args.concurrency, args.max_queue)
    return 0


def _add_detector(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--detector", default=default, choices=["deepfake", "diffusion", "none"],
        help=f"FSFM forgery detector: face swaps, diffusion-made faces, or none (default: {default})",
    )  # fmt: skip
    parser.add_argument(
        "--detector-weights", default=None, metavar="HUB_ID_OR_FOLDER",
        help="the detector's checkpoint: a folder, a .pth, or a Hub id (default: the --detector checkpoint of "
        "Wolowolo/fsfm-3c)",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="genface", description="Generative face video and face editing.")
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
    ident.add_argument(
        "--face-index", type=FACE_INDEX, default=None, help="which face in the reference (0 = largest; up to 999)"
    )
    ident.add_argument("--backend", default="auto", choices=["auto", "insightface", "dlib"], help="face engine")
    ident.add_argument("--weights", metavar="DIR", default=None, help="folder of the face engine's weights")
    ident.add_argument("--demo", action="store_true", help="run on the sample photos of installed packages")
    ident.add_argument("--json", action="store_true", help="machine-readable output")
    ident.set_defaults(func=cmd_identity)

    video = sub.add_parser(
        "video",
        help="face photo + prompt -> video of that person (ConsisID)",
        epilog=EPILOG_VIDEO,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    video.add_argument("--face", help="photo of the person")
    video.add_argument("--identity", metavar="PATH", help="a FaceIdentity saved with `genface identity --save`")
    video.add_argument("--prompt", required=True, help="what the video shows")
    video.add_argument("--negative-prompt", default=None)
    video.add_argument("--out", required=True, help="output .mp4, not an input (written whole or not at all)")
    video.add_argument("--model", default="BestWishYsh/ConsisID-preview", help="Hub id, local folder, or 'tiny'")
    video.add_argument("--steps", type=STEPS, default=50, help="denoising steps, 1-1000 (default 50)")
    video.add_argument("--guidance", type=GUIDANCE, default=6.0, help="classifier-free guidance, 0-50 (default 6)")
    video.add_argument("--seed", type=SEED, default=42, help="random seed, 0 to 2^63-1 (default 42)")
    video.add_argument("--frames", type=FRAMES, default=None, help="4k+1 frames, 1-257 (default 49)")
    video.add_argument("--height", type=VIDEO_SIDE, default=None, help="multiple of 16, 16-2048 (default 480)")
    video.add_argument("--width", type=VIDEO_SIDE, default=None, help="multiple of 16, 16-2048 (default 720)")
    video.add_argument("--fps", type=FPS, default=8.0, help="frame rate of the mp4, 1-120 (ConsisID: 8)")
    video.add_argument(
        "--face-index", type=FACE_INDEX, default=None, help="which face in the photo (0 = largest; up to 999)"
    )
    video.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    _add_dtype(video, "bf16")
    _add_low_memory(video)
    video.add_argument(
        "--attention", default="sdpa", choices=["sdpa", "flash", "cudnn", "efficient", "math"],
        help="PyTorch attention kernel (default: sdpa, PyTorch chooses)",
    )  # fmt: skip
    video.add_argument("--json", action="store_true", help="machine-readable result")
    video.set_defaults(func=cmd_video)

    makeup = sub.add_parser(
        "makeup",
        help="source face + makeup reference -> the source wearing that makeup (FLUX-Makeup)",
        epilog=EPILOG_MAKEUP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    makeup.add_argument("--face", required=True, help="photo of the person to make up")
    makeup.add_argument("--reference", required=True, help="photo of a made-up face")
    makeup.add_argument("--out", required=True, help="output image (.png, .jpg, .webp), not an input")
    makeup.add_argument(
        "--strength", type=_number(float, 0, 2), default=1.0, help="reference strength, 0-2 (0: no reference)"
    )
    makeup.add_argument("--regions", default=None, help="comma-separated regions to change: lips,eyes,skin,brows,...")
    makeup.add_argument(
        "--model", default="black-forest-labs/FLUX.1-Kontext-dev", help="Kontext Hub id, folder, or 'tiny'"
    )
    makeup.add_argument("--injector", default="qihoo360/FLUX-Makeup", help="injector Hub id or folder")
    makeup.add_argument("--steps", type=STEPS, default=25, help="denoising steps, 1-1000")
    makeup.add_argument("--guidance", type=GUIDANCE, default=2.5, help="guidance, 0-50 (default 2.5)")
    makeup.add_argument("--seed", type=SEED, default=42, help="random seed, 0 to 2^63-1 (default 42)")
    makeup.add_argument(
        "--size", type=_number(int, 16, 2048), default=None,
        help="working resolution of the face crop, 16-2048 (default 1024)",
    )  # fmt: skip
    makeup.add_argument(
        "--face-index", type=FACE_INDEX, default=None, help="which face in --face (0 = largest; up to 999)"
    )
    makeup.add_argument("--device", default=None)
    _add_dtype(makeup, "bf16")
    _add_low_memory(makeup)
    makeup.add_argument("--json", action="store_true", help="machine-readable result")
    makeup.set_defaults(func=cmd_makeup)

    talk = sub.add_parser(
        "talk",
        help="face video or photo + speech -> lip-synced video (MuseTalk v1.5)",
        epilog=EPILOG_TALK,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    talk.add_argument("--face", required=True, help="video to dub, or a photo")
    talk.add_argument("--audio", required=True, help="speech (wav, mp3, m4a, or a video's audio track)")
    talk.add_argument(
        "--out", required=True, help="output .mp4 with the speech, not an input (written whole or not at all)"
    )
    talk.add_argument("--model", default="TMElyralab/MuseTalk", help="Hub id, local folder, or 'tiny'")
    talk.add_argument("--vae", default="stabilityai/sd-vae-ft-mse", help="VAE Hub id or folder")
    talk.add_argument("--whisper", default="openai/whisper-tiny", help="Whisper Hub id or folder")
    talk.add_argument(
        "--fps", type=FPS, default=None, help="frame rate, 1-120 (default: the video's, or 25 for a photo)"
    )
    talk.add_argument(
        "--batch-size", type=_number(int, 1, 256), default=8, help="frames per UNet call, 1-256 (default 8)"
    )
    talk.add_argument(
        "--face-index", type=FACE_INDEX, default=None, help="which face to follow (0 = largest; up to 999)"
    )
    talk.add_argument(
        "--prepared", metavar="DIR", default=None,
        help="folder for the video's preparation (face track, blend masks, crop latents): read back when it holds "
        "one made for this video and these settings, else made and saved there, so dubbing the same video again "
        "skips face detection, parsing and VAE encoding",
    )  # fmt: skip
    talk.add_argument("--device", default=None)
    _add_dtype(talk, "fp16")
    _add_low_memory(talk)
    talk.add_argument("--no-metrics", action="store_true", help="skip FaceSim and the lip-sync proxy")
    talk.add_argument("--json", action="store_true", help="machine-readable result")
    talk.set_defaults(func=cmd_talk)

    portrait = sub.add_parser(
        "portrait",
        help="photo + speech -> talking head that moves, blinks and shows expression (Ditto)",
        epilog=EPILOG_PORTRAIT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    portrait.add_argument("--photo", required=True, help="photo of the face to animate")
    portrait.add_argument("--audio", required=True, help="speech (wav, mp3, m4a, or a video's audio track)")
    portrait.add_argument(
        "--out", required=True, help="output .mp4 with the speech, not an input (written whole or not at all)"
    )
    portrait.add_argument("--model", default="digital-avatar/ditto-talkinghead", help="Hub id, local folder, or 'tiny'")
    portrait.add_argument(
        "--hubert", default="facebook/hubert-large-ls960-ft", help="HuBERT Hub id or folder (Ditto's layout only)"
    )
    portrait.add_argument(
        "--emotion", type=_emotion, default=["neutral"],
        help="neutral (default), happy, sad, angry, surprise, fear, disgust or contempt; comma-separated to mix",
    )  # fmt: skip
    portrait.add_argument(
        "--head-motion", type=_number(float, 0, 3), default=1.0, help="head movement, 0 (still) to 3 (default 1)"
    )
    portrait.add_argument(
        "--blink-rate", type=_number(float, 0, 120), default=None,
        help="blinks a minute, 0-120 (0: none; default: one every 2.4-4 s at random)",
    )  # fmt: skip
    for axis, meaning in (("pitch", "nod"), ("yaw", "turn"), ("roll", "tilt")):
        portrait.add_argument(
            f"--{axis}", type=_number(float, -45, 45), default=0.0, help=f"degrees added to the head's {axis} "
            f"({meaning}), -45 to 45",
        )  # fmt: skip
    portrait.add_argument("--steps", type=STEPS, default=50, help="motion model's DDIM steps, 1-1000 (default 50)")
    portrait.add_argument("--seed", type=SEED, default=42, help="random seed, 0 to 2^63-1 (default 42)")
    portrait.add_argument(
        "--batch-size", type=_number(int, 1, 256), default=8, help="frames per render call, 1-256 (default 8)"
    )
    portrait.add_argument(
        "--face-index", type=FACE_INDEX, default=None, help="which face in --photo (0 = largest; up to 999)"
    )
    portrait.add_argument("--device", default=None)
    _add_dtype(portrait, "fp16 on a GPU, fp32 on the CPU")
    portrait.add_argument("--no-metrics", action="store_true", help="skip FaceSim, blinks and the lip-sync proxy")
    portrait.add_argument("--json", action="store_true", help="machine-readable result")
    portrait.set_defaults(func=cmd_portrait, low_memory=None)  # small enough for any GPU: no offloading

    evaluation = sub.add_parser(
        "eval",
        help="score generated videos, talking faces or makeup with the papers' metrics, over a folder or manifest",
        epilog=EPILOG_EVAL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluation.add_argument(
        "kind", choices=["video", "talk", "makeup", "consisid-testset"],
        help="what the items are; consisid-testset writes ConsisID's test set as jobs and a video manifest",
    )  # fmt: skip
    evaluation.add_argument(
        "input", help="a folder, or a manifest (.jsonl or .csv) with one item per row; consisid-testset: the test set"
    )
    evaluation.add_argument(
        "--out", default=None,
        help="per-item records (.jsonl), appended as items finish; a rerun resumes it. consisid-testset: the manifest",
    )  # fmt: skip
    evaluation.add_argument(
        "--videos", metavar="DIR", default=None,
        help="consisid-testset: the generated videos the manifest lists (ID.mp4, or ConsisID's ID/*.mp4)",
    )  # fmt: skip
    evaluation.add_argument(
        "--jobs", default=None, help="consisid-testset: write generation jobs (.jsonl) for examples/batch_generate.py"
    )
    evaluation.add_argument(
        "--seed", type=SEED, default=42, help="consisid-testset: the jobs' seed, 0 to 2^63-1 (default 42, ConsisID's)"
    )
    evaluation.add_argument(
        "--protocol", default="consisid", choices=["consisid", "standard"],
        help="video: ConsisID's scripts (BGR CLIPScore, per-frame FID) or standard (RGB CLIPScore, no per-frame FID)",
    )  # fmt: skip
    evaluation.add_argument(
        "--face-encoder", default="BestWishYsh/ConsisID-preview",
        help="video: Hub id or folder with the insightface pack (in face_encoder/ when there is one)",
    )  # fmt: skip
    evaluation.add_argument(
        "--face-pack", default="buffalo_l", choices=["buffalo_l", "antelopev2"],
        help="video: insightface pack (ConsisID's script: buffalo_l)",
    )  # fmt: skip
    evaluation.add_argument(
        "--curricularface", default=None,
        help="video: CurricularFace .bin, folder or Hub id (default: --face-encoder; 'none' skips FaceSim-Cur)",
    )  # fmt: skip
    evaluation.add_argument(
        "--inception", default=None, help="video: torchvision's Inception-v3 .pth (file, folder, Hub id) for the FID"
    )
    evaluation.add_argument(
        "--fid-inception", default=None,
        help="video: pytorch-fid's pt_inception-2015-12-05-6726825d.pth (file, folder, Hub id): the set-level FID",
    )  # fmt: skip
    evaluation.add_argument(
        "--fid-real", metavar="DIR", default=None,
        help="video: a folder of real face photos as the FID's real set (default: the items' references)",
    )  # fmt: skip
    evaluation.add_argument(
        "--clip", default="openai/clip-vit-base-patch32", help="video: CLIP Hub id or folder ('none' skips CLIPScore)"
    )
    evaluation.add_argument(
        "--frames", type=FRAMES_PER_VIDEO, default=16, help="video: frames sampled per video, 1-1000 (default 16)"
    )
    evaluation.add_argument("--syncnet", default=None, help="talk: syncnet_v2.model, or a folder / Hub id holding it")
    evaluation.add_argument(
        "--latentsync-syncnet", default=None,
        help="talk: LatentSync's latentsync_syncnet.pt (file, folder, Hub id), a second judge beside --syncnet",
    )  # fmt: skip
    evaluation.add_argument(
        "--parser", default="qihoo360/FLUX-Makeup", help="makeup: face parser (.pth, folder, Hub id; 'none' skips)"
    )
    evaluation.add_argument(
        "--size", type=_number(int, 16, 2048), default=512, help="makeup: face crop side, 16-2048 (default 512)"
    )
    evaluation.add_argument(
        "--backend", default="auto", choices=["auto", "insightface", "dlib"], help="talk, makeup: face engine"
    )
    evaluation.add_argument("--weights", metavar="DIR", default=None, help="talk, makeup: the face engine's weights")
    _add_detector(evaluation, "none")
    evaluation.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    evaluation.add_argument("--json", action="store_true", help="print the summary as JSON (no progress bar)")
    evaluation.set_defaults(func=cmd_eval)

    check = sub.add_parser(
        "verify", help="read genface's marks (metadata, watermark) and ask a forgery detector, for files or folders"
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="images or videos, or folders of them")
    _add_detector(check, "deepfake")
    check.add_argument("--device", default=None, help="where the detector runs (default: cuda when available)")
    check.add_argument("--json", action="store_true", help="machine-readable result")
    check.set_defaults(func=cmd_verify)

    convert = sub.add_parser("convert", help="convert published .pt/.pth weights to safetensors folders, once")
    convert.add_argument(
        "source", help="FLUX-Makeup's checkpoint.pt, MuseTalk (Hub id or folder with musetalkV15/), or Ditto (a folder "
        "with ditto_pytorch/, or a Hub id with --ditto)",
    )  # fmt: skip
    convert.add_argument(
        "out", help="new (or empty) output folder, usable as makeup --injector, talk --model or portrait --model; "
        "written whole or not",
    )  # fmt: skip
    convert.add_argument(
        "--attention-head-dim", type=_number(int, 1, 1024), default=128, help="makeup: FLUX's head size (128)"
    )
    convert.add_argument("--vae", default="stabilityai/sd-vae-ft-mse", help="talking: VAE Hub id or folder")
    convert.add_argument("--whisper", default="openai/whisper-tiny", help="talking: Whisper Hub id or folder")
    convert.add_argument("--ditto", action="store_true", help="SOURCE is Ditto (digital-avatar/ditto-talkinghead)")
    convert.add_argument(
        "--hubert", default="facebook/hubert-large-ls960-ft", help="ditto: the HuBERT Hub id or folder to include"
    )
    convert.add_argument(
        "--fsfm", action="store_true", help="SOURCE is an FSFM checkpoint (.pth, a folder holding one, or a Hub id)"
    )
    convert.add_argument("--subfolder", default=None, help="fsfm: the checkpoint's folder inside a Hub repository")
    convert.set_defaults(func=cmd_convert)

    web = sub.add_parser(
        "serve",
        help="web app (Gradio) with a tab per job; needs the web extra: pip install 'genface[web]'",
        epilog=EPILOG_SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    web.add_argument("--model", default="hub", choices=["hub", "tiny"], help="published weights, or tiny offline")
    web.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it to the network)")
    web.add_argument("--port", type=_number(int, 1, 65535), default=7860, help="1-65535 (default 7860)")
    web.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when available)")
    web.add_argument(
        "--concurrency", type=_number(int, 1, 64), default=1, help="jobs run at once, 1-64; the rest wait in the queue"
    )
    web.add_argument(
        "--max-queue", type=_number(int, 1, 1000), default=16,
        help="jobs that may wait, 1-1000 (default 16); beyond that a user is told the app is busy",
    )  # fmt: skip
    web.set_defaults(func=cmd_serve)
    return parser


class Stopped(BaseException):
    """A termination signal (SIGTERM, SIGHUP) arrived: raised so that every cleanup runs on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """While the block runs (in the main thread), SIGINT raises KeyboardInterrupt and SIGTERM / SIGHUP raise
    :class:`Stopped`, so partial outputs are removed as on any error; signals after the first are ignored while
    that cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if received:
            return
        received.append(signum)
        raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)

    names = ("SIGINT", "SIGTERM", "SIGHUP")
    previous = {sig: signal.signal(sig, handler) for sig in (getattr(signal, n) for n in names if hasattr(signal, n))}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """Failures a user can cause or fix outside genface: files and permissions, full disks, memory, corrupt
    safetensors or media."""
    import av
    from safetensors import SafetensorError

    return (GenfaceError, OSError, MemoryError, SafetensorError, av.FFmpegError)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        with _signals_raise():
            return args.func(args)
    except KeyboardInterrupt:
        print("genface: interrupted; no partial output was left", file=sys.stderr)
        return 130
    except Stopped as exc:
        print(f"genface: stopped by {exc}; no partial output was left", file=sys.stderr)
        return 128 + exc.signum
    except _expected_errors() as exc:
        logger.info("the error below came from here:", exc_info=True)  # shown with -v
        message = str(exc) if isinstance(exc, GenfaceError) else f"{type(exc).__name__}: {exc}"
        print(f"genface: error: {_one_line(message)}", file=sys.stderr)
        return 1
    except Exception as exc:
        if args.verbose:
            raise
        print(
            f"genface: unexpected error ({type(exc).__name__}: {_one_line(str(exc))}); run again with -v for the "
            "traceback, and please report it",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
