"""``genface talk``: face video or photo + speech -> lip-synced video (MuseTalk v1.5)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from genface.cli import common, options
from genface.errors import InvalidArgumentError

EPILOG = """examples:
  genface talk --face clip.mp4 --audio speech.wav --out dubbed.mp4
  genface talk --face photo.jpg --audio speech.m4a --out talking.mp4 --fps 25
  genface talk --face clip.mp4 --audio other.wav --out again.mp4 --prepared clip_prepared/
                        the first run prepares the video into the folder; later dubs of it skip that work
  genface talk --model tiny --face photo.jpg --audio speech.wav --out tiny.mp4
                        offline demo: tiny random weights (the mouth is noise) run every stage on CPU
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = options.command(
        commands, "talk", "face video or photo + speech -> lip-synced video (MuseTalk v1.5)", EPILOG
    )
    parser.add_argument("--face", required=True, help="video to dub, or a photo")
    options.add_speech_io(parser)
    options.add_model(parser, "TMElyralab/MuseTalk")
    parser.add_argument("--vae", default="stabilityai/sd-vae-ft-mse", help="VAE Hub id or folder")
    parser.add_argument("--whisper", default="openai/whisper-tiny", help="Whisper Hub id or folder")
    options.add_fps(parser, None, "default: the video's, or 25 for a photo")
    options.add_batch_size(parser, "UNet")
    options.add_face_index(parser, "to follow")
    parser.add_argument(
        "--prepared", metavar="DIR", default=None,
        help="folder for the video's preparation (face track, blend masks, crop latents): read back when it holds "
        "one made for this video and these settings, else made and saved there, so dubbing the same video again "
        "skips face detection, parsing and VAE encoding",
    )  # fmt: skip
    options.add_generation(parser, "fp16")
    options.add_no_metrics(parser, "FaceSim and the lip-sync proxy")
    options.add_json(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genface.media._files import check_output_path

    check_output_path(args.out, (".mp4",), [args.face, args.audio], name="--out")
    if args.prepared is not None and Path(args.prepared).expanduser().is_file():
        raise InvalidArgumentError(f"--prepared {args.prepared} is a file; give a folder (new, empty or prepared).")
    from genface.pipelines import load_pipeline
    from genface.resources import explain_out_of_memory

    where = common.device(args.device)
    started = time.perf_counter()
    pipe = load_pipeline("talk", args.model, dtype=common.dtype(args.dtype), vae=args.vae, audio_encoder=args.whisper)
    common.place(pipe, args, where)
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
    result = {**common.spoken_result(output, frames, started), "lost_frames": output.lost_frames}
    if args.json:
        common.print_json(result)
        return 0
    print(f"video written: {output.path} ({frames} frames at {output.fps:g} fps; made in {result['seconds']} s)")
    if output.lost_frames:
        print(f"face not found in {len(output.lost_frames)} source frame(s); the nearest box was held there")
    common.print_spoken_scores(output, result, "source", not args.no_metrics)
    if args.model == "tiny":
        print("note: the tiny model has random weights; its mouths are noise. Use the default --model.")
    return 0
