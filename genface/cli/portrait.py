"""``genface portrait``: photo + speech -> talking head that moves, blinks and shows expression (Ditto)."""

from __future__ import annotations

import argparse
import time

from genface.arguments import (
    BLINK_RATE,
    FADE_FRAMES,
    HEAD_MOTION,
    POSE_FACTOR,
    POSE_OFFSET,
    SOURCE_SIZE,
    SOURCE_SMOOTHING,
    VOICE_ACTIVITY,
)
from genface.cli import common, options

EPILOG = """examples:
  genface portrait --photo me.jpg --audio speech.wav --out talking.mp4
  genface portrait --photo me.jpg --audio speech.m4a --out happy.mp4 --emotion happy --head-motion 0.5 --yaw 10
  genface portrait --photo me.jpg --audio speech.wav --out calm.mp4 --alpha-yaw 0.5 --fade-in 10 --fade-type s
  genface portrait --photo clip.mp4 --audio speech.wav --out talking_clip.mp4
                        a video as the source: the lips follow the speech, the head and eyes the video
  genface portrait --model tiny --photo me.jpg --audio speech.wav --out tiny.mp4
                        offline demo: tiny random weights (the face is noise) run every stage on CPU
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = options.command(
        commands, "portrait", "photo + speech -> talking head that moves, blinks and shows expression (Ditto)", EPILOG
    )
    parser.add_argument(
        "--photo", required=True,
        help="photo of the face to animate, or a video (Ditto's video source: the lips follow the speech, the head "
        "and eyes the video, played forwards then backwards for as long as the speech)",
    )  # fmt: skip
    options.add_speech_io(parser)
    options.add_model(parser, "digital-avatar/ditto-talkinghead")
    parser.add_argument(
        "--hubert", default="facebook/hubert-large-ls960-ft", help="HuBERT Hub id or folder (Ditto's layout only)"
    )
    parser.add_argument(
        "--emotion", type=_emotion, default=["neutral"],
        help="neutral (default), happy, sad, angry, surprise, fear, disgust or contempt; comma-separated to mix",
    )  # fmt: skip
    options.add_number(parser, "--head-motion", HEAD_MOTION, 1.0, "head movement", "0: still; default 1; photos only")
    options.add_number(
        parser, "--blink-rate", BLINK_RATE, None, "blinks a minute",
        "0: none; default: one every 2.4-4 s at random; photos only",
    )  # fmt: skip
    for axis, meaning in AXES.items():
        options.add_number(parser, f"--{axis}", POSE_OFFSET, 0.0, f"degrees added to the head's {axis} ({meaning})")
    for axis in AXES:
        options.add_number(
            parser, f"--alpha-{axis}", POSE_FACTOR, None, f"factor on the head's {axis} (Ditto's alpha_{axis})",
            f"unset or 1 keeps it, 0 faces the camera; with --{axis} it multiplies the angle, without it it sharpens "
            "(above 1) or softens (below 1) the angle's estimate",
        )  # fmt: skip
    options.add_number(
        parser, "--vad-alpha", VOICE_ACTIVITY, None, "how far the expression follows the speech (Ditto's vad_alpha)",
        "1 or unset: fully; 0: the photo's expression, mouth as in the photo",
    )  # fmt: skip
    options.add_number(
        parser, "--fade-in", FADE_FRAMES, -1, "frames over which the expression fades in from --fade-type's target "
        "at the start (Ditto's fade_in)", "default -1: none",
    )  # fmt: skip
    options.add_number(
        parser, "--fade-out", FADE_FRAMES, -1, "frames over which the expression fades out to --fade-type's target "
        "at the end (Ditto's fade_out)", "default -1: none",
    )  # fmt: skip
    parser.add_argument(
        "--fade-type", choices=["d0", "s"], default=None,
        help="what the fades go to: d0 the first frame's motion, s the photo's (Ditto's fade_type; default: the "
        "model's configuration's, else none, and then --fade-in and --fade-out are refused)",
    )  # fmt: skip
    parser.add_argument(
        "--no-motion-clamp", action="store_true",
        help="do not clamp the motion to the bounds in the model's configuration (Ditto's v_min_max_for_clip; the "
        "clamp is on when the configuration has them)",
    )  # fmt: skip
    options.add_number(
        parser, "--max-size", SOURCE_SIZE, None, "longest side of the photo or video in pixels: larger ones are "
        "resized down to it and the video has that size (Ditto's max_size)",
        "odd sides lose a pixel; -1 or 0: any size; default: the model's configuration's, else 1920",
    )  # fmt: skip
    options.add_number(
        parser, "--source-smoothing", SOURCE_SMOOTHING, None, "frames of the moving average over a video source's "
        "motion (Ditto's smo_k_s)", "1: none; default: the model's configuration's, else 13; video sources only",
    )  # fmt: skip
    options.add_steps(parser, 50, "motion model's DDIM steps")
    options.add_seed(parser)
    options.add_batch_size(parser, "render")
    options.add_face_index(parser, "in --photo")
    options.add_generation(parser, "fp16 on a GPU, fp32 on the CPU", low_memory=False)  # small enough for any GPU
    options.add_no_metrics(parser, "FaceSim, blinks and the lip-sync proxy")
    options.add_json(parser)
    parser.set_defaults(func=run)


#: The head's angles and what each does.
AXES = {"pitch": "nod", "yaw": "turn", "roll": "tilt"}


def _emotion(text: str) -> list[str]:
    """``--emotion``: one of Ditto's emotions or several, comma-separated (mixed)."""
    from genface.models.motion.lmdm import EMOTIONS

    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in EMOTIONS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"{text!r}: choose from {', '.join(EMOTIONS)} (comma-separated to mix)")
    return names


def run(args: argparse.Namespace) -> int:
    from genface.media._files import check_output_path

    check_output_path(args.out, (".mp4",), [args.photo, args.audio], name="--out")
    import torch

    from genface.media.video import is_video_path
    from genface.pipelines.talking_portrait.pipeline import check_source_options

    check_source_options(args.photo, args.head_motion, args.blink_rate, args.source_smoothing)

    from genface.pipelines import load_pipeline
    from genface.resources import explain_out_of_memory

    where = common.device(args.device)
    started = time.perf_counter()
    weights = common.dtype(args.dtype) or (torch.float32 if where == "cpu" else None)  # fp16 3-D pooling is GPU-only
    pipe = load_pipeline("portrait", args.model, dtype=weights, audio_encoder=args.hubert)
    common.place(pipe, args, where)
    offsets = {key: getattr(args, key) for key in AXES if getattr(args, key)}
    with explain_out_of_memory():
        output = pipe(
            args.photo,
            args.audio,
            emotion=args.emotion,
            head_motion=args.head_motion,
            blink_rate=args.blink_rate,
            pose_offsets=offsets,
            **{f"alpha_{axis}": getattr(args, f"alpha_{axis}") for axis in AXES},
            vad_alpha=args.vad_alpha,
            fade_in=args.fade_in,
            fade_out=args.fade_out,
            fade_type=args.fade_type,
            v_min_max_for_clip=False if args.no_motion_clamp else None,
            max_size=args.max_size,
            smo_k_s=args.source_smoothing,
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
        **common.spoken_result(output, frames, started),
        "seed": args.seed,
        "head_pose_std_degrees": dict(zip(("pitch", "yaw", "roll"), (round(float(v), 3) for v in spread), strict=True)),
        "blinks": output.blinks,
        "first_frame_seconds": round(output.first_frame_seconds, 3),
    }
    if args.json:
        common.print_json(result)
        return 0
    print(f"video written: {output.path} ({frames} frames at {output.fps:g} fps; made in {result['seconds']} s)")
    pose = result["head_pose_std_degrees"]
    print(f"head motion (std, degrees): pitch {pose['pitch']:.3f}, yaw {pose['yaw']:.3f}, roll {pose['roll']:.3f}")
    if output.blinks is not None:
        print(f"blinks seen: {output.blinks}")
    reference = "the video's first frame" if is_video_path(args.photo) else "photo"
    common.print_spoken_scores(output, result, reference, not args.no_metrics)
    if args.model == "tiny":
        print("note: the tiny model has random weights; its faces are noise. Use the default --model.")
    return 0
