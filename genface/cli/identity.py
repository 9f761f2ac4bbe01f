"""``genface identity``: encode a face, or measure FaceSim against images or a video."""

from __future__ import annotations

import argparse
from typing import Any

from genface.cli import common, options
from genface.errors import GenfaceError

EPILOG = """examples:
  genface identity me.jpg frame.png          FaceSim of a photo against another photo
  genface identity me.jpg out.mp4 --json     per-frame FaceSim of a video, as JSON
  genface identity me.jpg --save me.safetensors
                                             encode once; pipelines reuse the saved identity
  genface identity --demo                    run on sample photos shipped with the installed packages
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = options.command(
        commands, "identity", "encode a face, or measure FaceSim against images or a video", EPILOG
    )
    parser.add_argument("reference", nargs="?", help="reference face image")
    parser.add_argument("target", nargs="?", help="image or video to compare with the reference")
    parser.add_argument("--save", metavar="PATH", help="save the reference's FaceIdentity (.safetensors)")
    options.add_face_index(parser, "in the reference")
    options.add_face_engine(parser)
    parser.add_argument("--demo", action="store_true", help="run on the sample photos of installed packages")
    options.add_json(parser, "machine-readable output")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.demo:
        return _demo(args)
    if args.reference is None:
        raise GenfaceError("Give a reference face image (or --demo). See `genface identity --help`.")
    if not args.save and not args.target:
        raise GenfaceError("Nothing to do: give a target image or video to compare with, or --save PATH.")
    if args.save:
        from genface.media._files import check_output_path

        check_output_path(args.save, (".safetensors",), [args.reference, args.target], name="--save")
    from genface.identity import IdentityEncoder, face_similarity

    engine = common.analyzer(args)
    output: dict[str, Any] = {"reference": args.reference}
    if args.save:
        identity = IdentityEncoder(engine).encode(args.reference, args.face_index)
        output["saved"] = str(identity.save(args.save))
    if args.target:
        result = face_similarity(args.reference, args.target, analyzer=engine, face_index=args.face_index)
        output["target"] = args.target
        output["facesim"] = result.to_dict()
    if args.json:
        common.print_json(output)
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


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    from genface.identity import face_similarity
    from genface.media import load_image
    from genface.samples import sample_path

    engine = common.analyzer(args)
    portrait, astronaut = sample_path("portrait"), sample_path("astronaut")
    mirrored = load_image(portrait)[:, ::-1]
    rows = [
        ("portrait vs its mirror image (same person)", face_similarity(portrait, mirrored, analyzer=engine)),
        ("portrait vs astronaut (different people)", face_similarity(portrait, astronaut, analyzer=engine)),
    ]
    faces = engine.detect(sample_path("group"))
    if args.json:
        common.print_json({"group_faces": len(faces), **{k: v.to_dict() for k, v in rows}})
        return 0
    print(f"faces found in the group photo: {len(faces)}")
    threshold = rows[0][1].match_threshold
    for label, result in rows:
        verdict = "same" if np.nan_to_num(result.mean) >= threshold else "different"
        print(f"{label:45} FaceSim {result.mean:.4f} -> {verdict} ({result.model})")
    return 0
