"""``genface talk``: face video or photo + speech -> lip-synced video (MuseTalk v1.5 or LatentSync 1.6)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from genface.arguments import LIP_SYNC_GUIDANCE
from genface.cli import common, options
from genface.errors import InvalidArgumentError

EPILOG = """examples:
  genface talk --face clip.mp4 --audio speech.wav --out dubbed.mp4
  genface talk --face me.jpg --audio speech.m4a --out talking.mp4 --fps 25
  genface talk --face clip.mp4 --audio other.wav --out again.mp4 --prepared clip_prepared/
                        the first run prepares the video into the folder; later dubs of it skip that work
  genface talk --model latentsync --face clip.mp4 --audio speech.wav --out dubbed_512.mp4 --silence source
                        LatentSync 1.6: a 512 px mouth by diffusion; the source frames are kept in the pauses
  genface talk --model tiny --face me.jpg --audio speech.wav --out tiny.mp4
                        offline demo: tiny random weights (the mouth is noise) run every stage on CPU
                        (--model tiny-latentsync: LatentSync's)
"""

#: The model a --model loads (genface.pipelines.model_name) -> its name here, and the --model of its published and
#: its tiny weights.
MODELS = {
    "musetalk": ("MuseTalk", "musetalk", "tiny"),
    "latentsync": ("LatentSync", "latentsync", "tiny-latentsync"),
}
#: The options only one model takes: each defaults to None, and given with the other model it is refused.
OWN = {
    "MuseTalk": ("--batch-size", "--prepared", "--blend"),
    "LatentSync": ("--steps", "--guidance", "--seed", "--unet-config", "--resolution"),
}
#: The options that say which published weights to load: refused with a tiny model, which loads none.
LOADING = ("--vae", "--whisper", "--unet-config", "--resolution")
#: The silence modes (pipelines/talking_face/dubbing.py SILENCE_MODES) and MuseTalk's blends (its scripts').
SILENCE = ("animate", "source", "closed")
BLENDS = ("inference", "realtime")


def register(commands: argparse._SubParsersAction) -> None:
    parser = options.command(
        commands, "talk", "face video or photo + speech -> lip-synced video (MuseTalk v1.5 or LatentSync 1.6)", EPILOG
    )
    parser.add_argument("--face", required=True, help="video to dub, or a photo")
    options.add_speech_io(parser)
    options.add_model(
        parser, "musetalk", "musetalk (TMElyralab/MuseTalk, the default), latentsync (ByteDance/LatentSync-1.6), "
        "tiny or tiny-latentsync (tiny random weights, offline), or a Hub id or folder of either model",
    )  # fmt: skip
    parser.add_argument("--vae", default=None, help="VAE Hub id or folder (default: stabilityai/sd-vae-ft-mse)")
    parser.add_argument(
        "--whisper", default=None,
        help="Whisper Hub id or folder (default: openai/whisper-tiny; LatentSync: its whisper/tiny.pt where the "
        "model's folder has one)",
    )  # fmt: skip
    options.add_fps(parser, None, "default: the video's, or 25 for a photo")
    options.add_face_index(parser, "to follow")
    parser.add_argument(
        "--silence", default="animate", choices=SILENCE,
        help="in the speech's pauses: animate (follow the speech, as published; the default), source (keep the "
        "source frame: a still mouth) or closed (the mouth the model draws for silence)",
    )  # fmt: skip
    musetalk = parser.add_argument_group("MuseTalk only")
    options.add_batch_size(musetalk, "UNet", None, "default 8")
    musetalk.add_argument(
        "--prepared", metavar="DIR", default=None,
        help="folder for the video's preparation (face track, blend masks, crop latents): read back when it holds "
        "one made for this video and these settings, else made and saved there, so dubbing the same video again "
        "skips face detection, parsing and VAE encoding",
    )  # fmt: skip
    musetalk.add_argument(
        "--blend", default=None, choices=BLENDS,
        help="whose blend: inference (scripts/inference.py; the default, or the --prepared video's) or realtime "
        "(realtime_inference.py's avatar: a mask edge feathered twice as wide)",
    )  # fmt: skip
    latentsync = parser.add_argument_group("LatentSync only")
    options.add_steps(latentsync, None, "DDIM steps", "default 20")
    options.add_guidance(latentsync, None, LIP_SYNC_GUIDANCE, "default 1.5")
    options.add_seed(latentsync, "random seed", None, "default 1247, their script's")
    options.add_latentsync_unet(latentsync)
    options.add_generation(parser, "fp16")
    options.add_no_metrics(parser, "FaceSim and the lip-sync proxy")
    options.add_json(parser)
    parser.set_defaults(func=run)


def _given(args: argparse.Namespace, flags: tuple[str, ...]) -> list[str]:
    return [flag for flag in flags if getattr(args, flag[2:].replace("-", "_")) is not None]


def _set(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` without those of options not given (None): the pipeline's defaults hold there."""
    return {key: value for key, value in values.items() if value is not None}


def _model(args: argparse.Namespace) -> tuple[str, bool]:
    """The model --model names ("MuseTalk" or "LatentSync") and whether it is a tiny one, with the options it does
    not take refused."""
    from genface.pipelines import model_name

    model, published, tiny = MODELS[model_name("talk", args.model)]
    for other, other_published, other_tiny in MODELS.values():
        if other != model and (found := _given(args, OWN[other])):
            are, them = ("is", "it") if len(found) == 1 else ("are", "them")
            raise InvalidArgumentError(
                f"{', '.join(found)} {are} {other}'s; --model {args.model} is {model}, which does not take {them} "
                f"(leave {them} out, or choose --model {other_published} or {other_tiny})."
            )
    if args.model == tiny and (found := _given(args, LOADING)):
        raise InvalidArgumentError(
            f"{', '.join(found)} choose published weights, and --model {tiny} builds tiny random ones: leave "
            f"{'it' if len(found) == 1 else 'them'} out, or choose --model {published}."
        )
    return model, args.model == tiny


def run(args: argparse.Namespace) -> int:
    from genface.media._files import check_output_path

    check_output_path(args.out, (".mp4",), [args.face, args.audio], name="--out")
    if args.prepared is not None and Path(args.prepared).expanduser().is_file():
        raise InvalidArgumentError(f"--prepared {args.prepared} is a file; give a folder (new, empty or prepared).")
    model, tiny = _model(args)  # imports torch (the model's name may be a folder's)
    unet = common.latentsync_unet(args) if model == "LatentSync" else {}
    from genface.pipelines import load_pipeline
    from genface.resources import explain_out_of_memory

    where = common.device(args.device)
    started = time.perf_counter()
    loading = _set({"vae": args.vae, "audio_encoder": args.whisper, **unet})
    pipe = load_pipeline("talk", args.model, dtype=common.dtype(args.dtype), **loading)
    common.place(pipe, args, where)
    call: dict[str, Any] = {"fps": args.fps, "face_index": args.face_index, "silence": args.silence}
    seed = None
    if model == "LatentSync":
        import torch

        from genface.pipelines.talking_face.latentsync import DEFAULT_SEED

        seed = DEFAULT_SEED if args.seed is None else args.seed
        call |= _set({"num_inference_steps": args.steps, "guidance_scale": args.guidance})
        call["generator"] = torch.Generator().manual_seed(seed)
    else:
        call |= _set({"batch_size": args.batch_size, "blend": args.blend})
    with explain_out_of_memory():
        face = args.face
        if args.prepared is not None:  # read back when it holds this video's preparation, else made and saved
            blend = args.blend or "inference"
            face = pipe.prepare(args.face, fps=args.fps, face_index=args.face_index, blend=blend, cache=args.prepared)
        output = pipe(face, args.audio, output_path=args.out, measure=not args.no_metrics, **call)
    frames = len(output.pitch)
    result = {
        **common.spoken_result(output, frames, started),
        "model": args.model,
        "lost_frames": output.lost_frames,
        **({} if seed is None else {"seed": seed}),
    }
    if args.json:
        common.print_json(result)
        return 0
    seeded = "" if seed is None else f"; seed {seed}"
    made = f"{frames} frames at {output.fps:g} fps{seeded}; made in {result['seconds']} s"
    print(f"video written: {output.path} ({made})")
    if output.lost_frames:
        print(f"face not found in {len(output.lost_frames)} source frame(s); the nearest box was held there")
    common.print_spoken_scores(output, result, "source", not args.no_metrics)
    if tiny:
        print(f"note: the tiny model has random weights; its mouths are noise. Use --model {model.lower()}.")
    return 0
