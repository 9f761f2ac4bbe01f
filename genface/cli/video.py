"""``genface video``: face photo + prompt -> video of that person (ConsisID, or Stand-In / VACE on Wan)."""

from __future__ import annotations

import argparse
import time
from typing import Any

from genface.arguments import GUIDANCE, VIDEO_FRAMES, VIDEO_SIDE
from genface.cli import common, options
from genface.errors import GenfaceError, InvalidArgumentError

EPILOG = """examples:
  genface video --face me.jpg --prompt "A woman walks along the beach at sunset" --out beach.mp4
  genface video --model stand-in --face me.jpg --prompt "..." --out wan.mp4 --low-memory group
  genface video --identity me.safetensors --prompt "..." --out out.mp4 --low-memory model --seed 7
  genface video --model tiny --face me.jpg --prompt "test" --out tiny.mp4
  genface video --model tiny-stand-in --face me.jpg --prompt "test" --out tiny_stand_in.mp4
                        offline demos: tiny random models (their videos are noise) run every stage on CPU
"""
#: The options only some models take: flag -> (the models of genface.pipelines' MODELS["video"] that take it, the
#: Namespace attribute, what it is called in the message).
MODEL_OPTIONS = {
    "--dynamic-cfg": (("consisid",), "dynamic_cfg", "CogVideoX's dynamic guidance"),
    "--no-reference-cache": (("stand-in",), "no_reference_cache", "its key/value cache of the face's tokens"),
    "--guidance-2": (("stand-in", "vace"), "guidance_2", "the low-noise expert's guidance of a Wan 2.2 base"),
    "--conditioning-scale": (("vace",), "conditioning_scale", "how strongly the face reference conditions the video"),
}
#: How the help and the messages name each model.
MODEL_LABELS = {"consisid": "ConsisID", "stand-in": "Stand-In", "vace": "VACE"}


def register(commands: argparse._SubParsersAction) -> None:
    parser = options.command(
        commands, "video", "face photo + prompt -> video of that person (ConsisID, Stand-In or VACE)", EPILOG
    )
    parser.add_argument("--face", help="photo of the person")
    parser.add_argument("--identity", metavar="PATH", help="a FaceIdentity saved with `genface identity --save`")
    parser.add_argument("--prompt", required=True, help="what the video shows")
    parser.add_argument(
        "--negative-prompt", default=None,
        help="what the video should not show (default: ConsisID's none, Wan's recommended one; \"\" for none)",
    )  # fmt: skip
    options.add_out(parser, "output .mp4, not an input (written whole or not at all)")
    options.add_model(
        parser, "consisid",
        "consisid (default: BestWishYsh/ConsisID-preview), stand-in (Stand-In on Wan2.1-T2V-14B), vace "
        "(Wan2.1-VACE-14B), tiny, tiny-stand-in, tiny-vace (tiny random models, offline), or a Hub id or folder (a "
        "Wan one goes to Stand-In or VACE by its model_index.json or name); a Wan model (Stand-In, VACE) changes the "
        "defaults below to Wan's",
    )  # fmt: skip
    options.add_steps(parser, 50)
    options.add_number(parser, "--guidance", GUIDANCE, None, "classifier-free guidance",
                       "default: ConsisID's 6, Wan's 5")  # fmt: skip
    options.add_seed(parser)
    frames, tiny = "frames in the video (exactly)", "the tiny models'"
    options.add_number(parser, "--frames", VIDEO_FRAMES, None, frames, f"default: ConsisID's 49, Wan's 81; {tiny} 9")
    options.add_number(parser, "--height", VIDEO_SIDE, None, "height in pixels",
                       f"default: ConsisID's 480, Wan's 480; {tiny} 64 (ConsisID), 32 (Wan)")  # fmt: skip
    options.add_number(parser, "--width", VIDEO_SIDE, None, "width in pixels",
                       f"default: ConsisID's 720, Wan's 832; {tiny} 64 (ConsisID), 32 (Wan)")  # fmt: skip
    options.add_fps(parser, None, "default: ConsisID's 8, Wan's 16")
    options.add_face_index(parser, "in the photo")
    options.add_generation(parser, "bf16")
    parser.add_argument(
        "--attention", default="sdpa", choices=["sdpa", "flash", "cudnn", "efficient", "math"],
        help="PyTorch attention kernel (default: sdpa, PyTorch chooses)",
    )  # fmt: skip
    parser.add_argument(
        "--dynamic-cfg", action="store_true",
        help="ConsisID only: CogVideoX's dynamic guidance (the call's use_dynamic_cfg; off in ConsisID's scripts)",
    )  # fmt: skip
    parser.add_argument(
        "--no-reference-cache", action="store_true",
        help="Stand-In only: recompute the face's keys and values at every step instead of keeping them from the "
        "first (the same frames, slower)",
    )  # fmt: skip
    options.add_number(parser, "--guidance-2", GUIDANCE, None, "Stand-In and VACE on a Wan 2.2 base (two experts): "
                       "the low-noise expert's classifier-free guidance", "default: --guidance")  # fmt: skip
    options.add_number(parser, "--conditioning-scale", GUIDANCE, None, "VACE only: how strongly the face reference "
                       "conditions the video (diffusers' conditioning_scale)", "default 1")  # fmt: skip
    options.add_json(parser)
    parser.set_defaults(func=run)


def check_model_options(args: argparse.Namespace, kind: str) -> None:
    """Refuse, in one line, an option the model ``kind`` does not take (:data:`MODEL_OPTIONS`)."""
    for flag, (kinds, attribute, what) in MODEL_OPTIONS.items():
        value = getattr(args, attribute)
        if value is not None and value is not False and kind not in kinds:  # a switch set, or a number given (0 too)
            takes = " or ".join(MODEL_LABELS[k] for k in kinds)
            raise InvalidArgumentError(
                f"{flag} is for {takes} only ({what}); --model {args.model} is {MODEL_LABELS[kind]}."
            )


def run(args: argparse.Namespace) -> int:
    from genface.media._files import check_output_path

    if (args.face is None) == (args.identity is None):
        raise GenfaceError("Give exactly one of --face PHOTO or --identity SAVED.safetensors.")
    for flag, value, rule in (("--frames", args.frames, VIDEO_FRAMES), ("--height", args.height, VIDEO_SIDE),
                              ("--width", args.width, VIDEO_SIDE)):  # fmt: skip
        if value is not None:
            rule.check(value, flag)
    check_output_path(args.out, (".mp4",), [args.face, args.identity], name="--out")
    from genface.pipelines import model_name

    kind = model_name("video", args.model)
    check_model_options(args, kind)
    import torch

    from genface.identity import face_similarity
    from genface.media import to_uint8
    from genface.pipelines import call_defaults, load_pipeline
    from genface.provenance import write_marked_video
    from genface.resources import explain_out_of_memory

    identity = common.load_identity(args.identity) if args.identity else None
    where = common.device(args.device)
    started = time.perf_counter()
    default = call_defaults("video", args.model)
    given = {"height": args.height, "width": args.width, "num_frames": args.frames, "guidance_scale": args.guidance,
             "negative_prompt": args.negative_prompt, "fps": args.fps}  # fmt: skip
    settings = {key: default[key] if value is None else value for key, value in given.items()}
    fps = settings.pop("fps")
    if kind == "consisid":
        settings["use_dynamic_cfg"] = args.dynamic_cfg
    for key, value in (("guidance_scale_2", args.guidance_2), ("conditioning_scale", args.conditioning_scale)):
        if value is not None:  # only given to the models that take it (check_model_options)
            settings[key] = value
    pipe = load_pipeline("video", args.model, dtype=common.dtype(args.dtype))
    common.place(pipe, args, where)
    pipe.set_attention_backend(args.attention)
    if kind == "stand-in":
        pipe.reference_cache = not args.no_reference_cache
    if args.guidance_2 is not None and getattr(pipe, "transformer_2", None) is None:
        raise InvalidArgumentError(
            f"--guidance-2 is for a Wan 2.2 base (two experts); --model {args.model} is on Wan 2.1 (one): leave it out."
        )
    generator = torch.Generator("cpu").manual_seed(args.seed)
    with explain_out_of_memory():
        output = pipe(
            args.prompt,
            face_image=args.face,
            identity=identity,
            num_inference_steps=args.steps,
            generator=generator,
            face_index=args.face_index,
            output_type="np",
            **settings,
        )
    video = to_uint8(output.frames[0])
    path = write_marked_video(args.out, video, fps, "identity_video", args.model, seed=args.seed, model_kind=kind)
    result: dict[str, Any] = {
        "video": str(path),
        "model": args.model,
        "model_kind": kind,
        "seed": args.seed,
        "frames": int(video.shape[0]),
        "size": list(video.shape[1:3]),
        "fps": fps,
        "guidance": settings["guidance_scale"],
        "seconds": round(time.perf_counter() - started, 2),
    }
    sim = getattr(output, "facesim", None)  # the Wan pipelines measure it; ConsisID's does not
    encoder = pipe.identity_encoder
    recognizer = encoder.analyzer.recognizer if encoder is not None else None
    if sim is None and recognizer is not None and output.identity.recognition_model == recognizer.name:
        sim = face_similarity(output.identity, video, analyzer=encoder.analyzer)
    if sim is not None:
        result["facesim"] = sim.to_dict()
    if args.json:
        common.print_json(result)
        return 0
    print(
        f"video written: {path} ({result['frames']} frames, {result['size'][1]}x{result['size'][0]}, "
        f"{fps:g} fps; made in {result['seconds']} s)"
    )
    if sim is not None:
        found = int(sim.found.sum())
        if found:
            print(
                f"FaceSim vs reference ({sim.model}): mean {sim.mean:.4f}, min {sim.min:.4f} "
                f"over {found} frame(s) with a face"
            )
        else:
            print("FaceSim: no face found in the generated frames")
    if args.model == "tiny" or args.model.startswith("tiny-"):
        published = args.model.removeprefix("tiny").removeprefix("-") or "consisid"
        print(f"note: the tiny model has random weights; its video is noise. Use --model {published}.")
    return 0
