"""``genface portrait``: photo + speech -> talking head that moves, blinks and shows expression (Ditto)."""

from __future__ import annotations

import argparse
import time

from genface.arguments import BLINK_RATE, HEAD_MOTION, POSE_OFFSET
from genface.cli import common, options

EPILOG = """examples:
  genface portrait --photo me.jpg --audio speech.wav --out talking.mp4
  genface portrait --photo me.jpg --audio speech.m4a --out happy.mp4 --emotion happy --head-motion 0.5 --yaw 10
  genface portrait --model tiny --photo me.jpg --audio speech.wav --out tiny.mp4
                        offline demo: tiny random weights (the face is noise) run every stage on CPU
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = options.command(
        commands, "portrait", "photo + speech -> talking head that moves, blinks and shows expression (Ditto)", EPILOG
    )
    parser.add_argument("--photo", required=True, help="photo of the face to animate")
    options.add_speech_io(parser)
    options.add_model(parser, "digital-avatar/ditto-talkinghead")
    parser.add_argument(
        "--hubert", default="facebook/hubert-large-ls960-ft", help="HuBERT Hub id or folder (Ditto's layout only)"
    )
    parser.add_argument(
        "--emotion", type=_emotion, default=["neutral"],
        help="neutral (default), happy, sad, angry, surprise, fear, disgust or contempt; comma-separated to mix",
    )  # fmt: skip
    options.add_number(parser, "--head-motion", HEAD_MOTION, 1.0, "head movement", "0: still; default 1")
    options.add_number(
        parser, "--blink-rate", BLINK_RATE, None, "blinks a minute", "0: none; default: one every 2.4-4 s at random"
    )
    for axis, meaning in (("pitch", "nod"), ("yaw", "turn"), ("roll", "tilt")):
        options.add_number(parser, f"--{axis}", POSE_OFFSET, 0.0, f"degrees added to the head's {axis} ({meaning})")
    options.add_steps(parser, 50, "motion model's DDIM steps")
    options.add_seed(parser)
    options.add_batch_size(parser, "render")
    options.add_face_index(parser, "in --photo")
    options.add_generation(parser, "fp16 on a GPU, fp32 on the CPU", low_memory=False)  # small enough for any GPU
    options.add_no_metrics(parser, "FaceSim, blinks and the lip-sync proxy")
    options.add_json(parser)
    parser.set_defaults(func=run)


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

    from genface.pipelines import load_pipeline
    from genface.resources import explain_out_of_memory

    where = common.device(args.device)
    started = time.perf_counter()
    weights = common.dtype(args.dtype) or (torch.float32 if where == "cpu" else None)  # fp16 3-D pooling is GPU-only
    pipe = load_pipeline("portrait", args.model, dtype=weights, audio_encoder=args.hubert)
    common.place(pipe, args, where)
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
    print(f"head motion (std, degrees): pitch {pose['pitch']}, yaw {pose['yaw']}, roll {pose['roll']}")
    if output.blinks is not None:
        print(f"blinks seen: {output.blinks}")
    common.print_spoken_scores(output, result, "photo", not args.no_metrics)
    if args.model == "tiny":
        print("note: the tiny model has random weights; its faces are noise. Use the default --model.")
    return 0
