"""``genface video``: face photo + prompt -> video of that person (ConsisID)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from genface.arguments import VIDEO_FRAMES, VIDEO_SIDE
from genface.cli import common, options
from genface.errors import GenfaceError

EPILOG = """examples:
  genface video --face me.jpg --prompt "A woman walks along the beach at sunset" --out beach.mp4
  genface video --identity me.safetensors --prompt "..." --out out.mp4 --low-memory model --seed 7
  genface video --model tiny --face me.jpg --prompt "test" --out tiny.mp4
                        offline demo: a tiny random model (its video is noise) runs every stage on CPU
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = options.command(commands, "video", "face photo + prompt -> video of that person (ConsisID)", EPILOG)
    parser.add_argument("--face", help="photo of the person")
    parser.add_argument("--identity", metavar="PATH", help="a FaceIdentity saved with `genface identity --save`")
    parser.add_argument("--prompt", required=True, help="what the video shows")
    parser.add_argument("--negative-prompt", default=None)
    options.add_out(parser, "output .mp4, not an input (written whole or not at all)")
    options.add_model(parser, "BestWishYsh/ConsisID-preview")
    options.add_steps(parser, 50)
    options.add_guidance(parser, 6.0)
    options.add_seed(parser)
    frames = "frames in the video (exactly)"
    options.add_number(parser, "--frames", VIDEO_FRAMES, None, frames, "default 49; the tiny model: 9")
    options.add_number(parser, "--height", VIDEO_SIDE, None, "height in pixels", "default 480; the tiny model: 64")
    options.add_number(parser, "--width", VIDEO_SIDE, None, "width in pixels", "default 720; the tiny model: 64")
    options.add_fps(parser, 8.0, "ConsisID: 8")
    options.add_face_index(parser, "in the photo")
    options.add_generation(parser, "bf16")
    parser.add_argument(
        "--attention", default="sdpa", choices=["sdpa", "flash", "cudnn", "efficient", "math"],
        help="PyTorch attention kernel (default: sdpa, PyTorch chooses)",
    )  # fmt: skip
    options.add_json(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genface.media._files import check_output_path

    if (args.face is None) == (args.identity is None):
        raise GenfaceError("Give exactly one of --face PHOTO or --identity SAVED.safetensors.")
    for flag, value, rule in (("--frames", args.frames, VIDEO_FRAMES), ("--height", args.height, VIDEO_SIDE),
                              ("--width", args.width, VIDEO_SIDE)):  # fmt: skip
        if value is not None:
            rule.check(value, flag)
    check_output_path(args.out, (".mp4",), [args.face, args.identity], name="--out")
    import torch

    from genface.identity import face_similarity
    from genface.media import to_uint8
    from genface.pipelines import default_size, load_pipeline
    from genface.provenance import write_marked_video
    from genface.resources import explain_out_of_memory

    identity = common.load_identity(args.identity) if args.identity else None
    where = common.device(args.device)
    started = time.perf_counter()
    default = default_size("video", args.model)
    given = {"height": args.height, "width": args.width, "num_frames": args.frames}
    size = {key: default[key] if value is None else value for key, value in given.items()}
    pipe = load_pipeline("video", args.model, dtype=common.dtype(args.dtype))
    common.place(pipe, args, where)
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
        common.print_json(result)
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
