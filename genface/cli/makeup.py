"""``genface makeup``: source face + makeup reference -> the source wearing that makeup (FLUX-Makeup)."""

from __future__ import annotations

import argparse
import time

from genface.arguments import CROP_SIZE, STRENGTH
from genface.cli import common, options

EPILOG = """examples:
  genface makeup --face me.jpg --reference look.jpg --out me_made_up.png
  genface makeup --face me.jpg --reference look.jpg --out lips.png --regions lips --strength 0.8
  genface makeup --model tiny --face me.jpg --reference look.jpg --out tiny.png
                        offline demo: tiny random weights (the result is noise) run every stage on CPU
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = options.command(
        commands, "makeup", "source face + makeup reference -> the source wearing that makeup (FLUX-Makeup)", EPILOG
    )
    parser.add_argument("--face", required=True, help="photo of the person to make up")
    parser.add_argument("--reference", required=True, help="photo of a made-up face")
    options.add_out(parser, "output image (.png, .jpg, .webp), not an input")
    options.add_number(parser, "--strength", STRENGTH, 1.0, "reference strength", "0: no reference; default 1")
    parser.add_argument("--regions", default=None, help="comma-separated regions to change: lips,eyes,skin,brows,...")
    options.add_model(parser, "black-forest-labs/FLUX.1-Kontext-dev", "Kontext Hub id, folder, or 'tiny'")
    parser.add_argument("--injector", default="qihoo360/FLUX-Makeup", help="injector Hub id or folder")
    options.add_steps(parser, 25)
    options.add_guidance(parser, 2.5)
    options.add_seed(parser)
    options.add_number(parser, "--size", CROP_SIZE, None, "working resolution of the face crop", "default 1024")
    options.add_face_index(parser, "in --face")
    options.add_generation(parser, "bf16")
    options.add_json(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genface.media._files import check_output_path
    from genface.media.image import IMAGE_SUFFIXES

    check_output_path(args.out, IMAGE_SUFFIXES, [args.face, args.reference], name="--out")
    import torch

    from genface.pipelines import MakeupPipeline, default_size, load_pipeline
    from genface.provenance import save_marked_image
    from genface.resources import explain_out_of_memory

    regions = [r.strip() for r in args.regions.split(",") if r.strip()] if args.regions else None
    MakeupPipeline.check_regions(regions)
    where = common.device(args.device)
    started = time.perf_counter()
    size = default_size("makeup", args.model)["size"] if args.size is None else args.size
    pipe = load_pipeline("makeup", args.model, dtype=common.dtype(args.dtype), injector=args.injector)
    common.place(pipe, args, where)
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
        common.print_json(result)
        return 0
    print(f"image written: {path} (made in {result['seconds']} s)")
    if output.facesim is not None:
        print(f"FaceSim source vs result: {output.facesim:.4f}")
    for region, score in output.makeup_similarity.items():
        print(f"makeup similarity, {region}: {score:.3f}")
    if args.model == "tiny":
        print("note: the tiny model has random weights; its result is noise. Use the default --model.")
    return 0
