"""``genface eval``: score generated videos, talking faces or makeup with the papers' metrics."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genface.arguments import CROP_SIZE, SAMPLED_FRAMES
from genface.cli import common, options
from genface.errors import GenfaceError, InvalidArgumentError

logger = logging.getLogger(__name__)

EPILOG = """examples:
  genface eval video generated/ --out scores.jsonl --inception inception_v3_google-0cc3c7bd.pth
                        ConsisID's table: NAME.mp4 with NAME.png (the face) and NAME.txt (the prompt)
  genface eval video items.jsonl --out scores.jsonl --protocol standard \\
      --fid-inception pt_inception-2015-12-05-6726825d.pth [--fid-real real_faces/]
  genface eval video generated/ --out opens2v.jsonl --protocol opens2v
                        OpenS2V-Eval's FaceSim (the leaderboard's): judges from BestWishYsh/OpenS2V-Weight
  genface eval video generated/ --out tiny.jsonl --protocol opens2v --judges tiny
                        the same run offline, on tiny random judges (the scores are noise)
  genface eval talk dubbed/ --out sync.jsonl --syncnet syncnet_v2.model --latentsync-syncnet latentsync_syncnet.pt
  genface eval makeup pairs.csv --out makeup.jsonl --detector diffusion
  genface eval consisid-testset ConsisID-preview-Data --jobs jobs.jsonl [--videos videos/ --out items.jsonl]
                        ConsisID's test set as generation jobs, and as the manifest of the videos made from them
Rows of a manifest (.jsonl or .csv; paths relative to it): video: video, reference, prompt; talk: video,
speech (default: the video's audio); makeup: image, source, reference; any: id. A run resumes: items already
scored in --out are skipped. The summary goes beside --out (NAME.summary.json, NAME.summary.md).
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = options.command(
        commands,
        "eval",
        "score generated videos, talking faces or makeup with the papers' metrics, over a folder or manifest",
        EPILOG,
    )
    parser.add_argument(
        "kind", choices=["video", "talk", "makeup", "consisid-testset"],
        help="what the items are; consisid-testset writes ConsisID's test set as jobs and a video manifest",
    )  # fmt: skip
    parser.add_argument(
        "input", help="a folder, or a manifest (.jsonl or .csv) with one item per row; consisid-testset: the test set"
    )
    parser.add_argument(
        "--out", default=None,
        help="per-item records (.jsonl), appended as items finish; a rerun resumes it. consisid-testset: the manifest",
    )  # fmt: skip
    parser.add_argument(
        "--videos", metavar="DIR", default=None,
        help="consisid-testset: the generated videos the manifest lists (ID.mp4, or ConsisID's ID/*.mp4)",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", default=None, help="consisid-testset: write generation jobs (.jsonl) for examples/batch_generate.py"
    )
    options.add_seed(parser, "consisid-testset: the jobs' seed (ConsisID's: 42)")
    parser.add_argument(
        "--protocol", default="consisid", choices=["consisid", "standard", "opens2v"],
        help="video: ConsisID's scripts (BGR CLIPScore, per-frame FID), standard (RGB CLIPScore, no per-frame FID), "
        "or opens2v (OpenS2V-Eval's FaceSim: 32 frames, FaceSim-Cur without the frames that score 0; FaceSim only)",
    )  # fmt: skip
    parser.add_argument(
        "--face-encoder", default=None,
        help="video: Hub id or folder with the insightface pack (default: ConsisID's BestWishYsh/ConsisID-preview, "
        "in its face_encoder/; OpenS2V's BestWishYsh/OpenS2V-Weight, in its face_extractor/)",
    )  # fmt: skip
    parser.add_argument(
        "--face-pack", default="buffalo_l", choices=["buffalo_l", "antelopev2"],
        help="video: insightface pack (ConsisID's script: buffalo_l)",
    )  # fmt: skip
    parser.add_argument(
        "--curricularface", default=None,
        help="video: CurricularFace .bin, folder or Hub id (default: --face-encoder's; 'none' skips FaceSim-Cur)",
    )  # fmt: skip
    parser.add_argument(
        "--inception", default=None,
        help="video: torchvision's Inception-v3 .pth (file, folder, Hub id) for ConsisID's per-frame FID",
    )  # fmt: skip
    parser.add_argument(
        "--fid-inception", default=None,
        help="video: pytorch-fid's pt_inception-2015-12-05-6726825d.pth (file, folder, Hub id): the set-level FID",
    )  # fmt: skip
    parser.add_argument(
        "--fid-real", metavar="DIR", default=None,
        help="video: a folder of real face photos as the FID's real set (default: the items' references)",
    )  # fmt: skip
    parser.add_argument(
        "--clip", default=None,
        help="video: CLIP Hub id or folder (default: openai/clip-vit-base-patch32; 'none' skips CLIPScore; not with "
        "opens2v)",
    )  # fmt: skip
    options.add_number(parser, "--frames", SAMPLED_FRAMES, None, "video: frames sampled per video",
                       "default: ConsisID's 16, OpenS2V's 32")  # fmt: skip
    parser.add_argument("--syncnet", default=None, help="talk: syncnet_v2.model, or a folder / Hub id holding it")
    parser.add_argument(
        "--latentsync-syncnet", default=None,
        help="talk: LatentSync's latentsync_syncnet.pt (file, folder, Hub id), a second judge beside --syncnet",
    )  # fmt: skip
    parser.add_argument(
        "--parser", default="qihoo360/FLUX-Makeup", help="makeup: face parser (.pth, folder, Hub id; 'none' skips)"
    )
    options.add_number(parser, "--size", CROP_SIZE, 512, "makeup: face crop side")
    parser.add_argument(
        "--judges", default="published", choices=["published", "tiny"],
        help="published: the judges' weights as the options above name them; tiny: tiny random judges built offline "
        "(the face engine of --backend, a random CurricularFace, SyncNet, parser and forgery detector; no CLIPScore "
        "or FID unless their files are given): the scores are noise, the run and its records are real",
    )  # fmt: skip
    options.add_face_engine(parser, "talk, makeup, and video with --judges tiny: ")
    options.add_detector(parser, "none")
    options.add_device(parser)
    options.add_json(parser, "print the summary as JSON (no progress bar)")
    parser.set_defaults(func=run)


def _judges(args: argparse.Namespace, items: Sequence[Any], where: str) -> tuple[list[Any], dict[str, Any]]:
    """The judges of ``args.kind`` (and the forgery detector), with the weights each was loaded from."""
    from genface.eval import tiny
    from genface.eval.runner import forgery_judge

    weights: dict[str, Any] = {}
    detector, unavailable = common.forgery_detector(args)  # first, so that missing weights stop the run before the rest
    if unavailable:
        raise GenfaceError(unavailable.replace("no forgery score: ", "--detector: ", 1))
    small = args.judges == "tiny"
    if small:
        weights["judges"] = "tiny random (their scores are noise)"
    if args.kind == "video":
        from genface.eval import consisid_analyzer, load_clip, load_curricularface, load_inception, video_judge
        from genface.eval.clipscore import CLIP_REPO
        from genface.eval.facesim import CONSISID_REPO
        from genface.eval.opens2v import OPENS2V_REPO
        from genface.eval.weights import judge_source

        opens2v = args.protocol == "opens2v"
        source = args.face_encoder or (OPENS2V_REPO if opens2v else CONSISID_REPO)
        folder = "face_extractor" if opens2v else "face_encoder"  # where the published repository keeps the pack
        if small:
            engine, weights["face_engine"] = common.analyzer(args), args.backend
        else:
            # OpenS2V's script builds its engine as ConsisID's does (genface.eval.opens2v_analyzer)
            engine = consisid_analyzer(*judge_source(source, folder), model_name=args.face_pack)
            weights["face_encoder"] = f"{source} ({args.face_pack})"
        curricular = None
        if args.curricularface != "none":
            given = weights["curricularface"] = "tiny" if small else args.curricularface or source
            if small:
                curricular = tiny.tiny_curricularface()
            else:  # ConsisID keeps CurricularFace in face_encoder/, OpenS2V at its repository's root
                curricular = load_curricularface(*((given, None) if opens2v else judge_source(given, folder)))
            curricular = curricular.to(where)
        inception = load_inception(args.inception).to(where) if args.inception else None
        weights["inception"] = args.inception
        clip = None
        if not opens2v and args.clip != "none" and not small and any(item.fields.get("prompt") for item in items):
            weights["clip"] = args.clip or CLIP_REPO
            model, processor = load_clip(weights["clip"])
            clip = model.to(where), processor
        fid = None
        if args.fid_inception:
            from genface.eval.runner import FIDFeatures, fid_folder

            fid = FIDFeatures(load_inception(args.fid_inception, fid=True).to(where), fid_folder(args.out))
            weights["fid_inception"], weights["fid_real"] = args.fid_inception, args.fid_real or "the references"
        judge: Any = video_judge(args.protocol, engine, curricular, args.frames, inception=inception, clip=clip,
                                 fid_features=fid)  # fmt: skip
    elif args.kind == "talk":
        from genface.eval import TalkJudge, load_latentsync_syncnet, load_syncnet

        if small:
            syncnet, latentsync = tiny.tiny_syncnet().to(where), tiny.tiny_latentsync_syncnet().to(where)
            args.syncnet = args.latentsync_syncnet = "tiny"
        else:
            syncnet = load_syncnet(args.syncnet).to(where) if args.syncnet else None
            latentsync = load_latentsync_syncnet(args.latentsync_syncnet).to(where) if args.latentsync_syncnet else None
        judge = TalkJudge(common.analyzer(args), syncnet, latentsync=latentsync)
        weights |= {"syncnet": args.syncnet, "latentsync_syncnet": args.latentsync_syncnet, "face_engine": args.backend}
    else:
        from genface.identity import BiSeNet, FaceParser
        from genface.pipelines.makeup.evaluate import MakeupJudge

        if small and args.parser != "none":
            parser, args.parser = FaceParser(BiSeNet(), device=where), "tiny"
        else:
            parser = None if args.parser == "none" else FaceParser.from_pretrained(args.parser, device=where)
        judge = MakeupJudge(common.analyzer(args), parser, args.size)
        weights |= {"parser": args.parser, "face_engine": args.backend}
    if detector is None:
        return [judge], weights
    weights["detector"] = f"FSFM {args.detector} ({args.detector_weights})"
    return [judge, forgery_judge(detector)], weights


def _consisid_testset(args: argparse.Namespace) -> int:
    """``genface eval consisid-testset``: the test set's generation jobs and / or the manifest of its videos."""
    from genface.media._files import check_output_path

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
        check_output_path(path, (".jsonl",), [args.input], name=option)
    if len(outputs) == 2 and Path(args.jobs).expanduser().absolute() == Path(args.out).expanduser().absolute():
        raise InvalidArgumentError(f"--jobs and --out are both {args.out}; give two files.")
    from genface.eval.consisid_testset import write_consisid_files

    cases, found = write_consisid_files(args.input, args.videos, args.jobs, args.out, args.seed)
    result = {"cases": cases, "jobs": args.jobs, "videos": args.videos, "videos_found": found, "manifest": args.out}
    if args.json:
        common.print_json(result)
        return 0
    print(f"{cases} test cases" + (f"; generation jobs: {args.jobs} (seed {args.seed})" if args.jobs else ""))
    if args.videos:
        print(f"{found} of their videos found in {args.videos}" + (f"; manifest: {args.out}" if args.out else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    from genface.media._files import check_output_path

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

    check_output_path(args.out, (".jsonl",), [args.input], name="--out")
    for path, suffix in zip(summary_paths(args.out), (".json", ".md"), strict=True):
        check_output_path(str(path), (suffix,), [args.input], name="--out's summary")
    if args.kind == "talk" and not (args.syncnet or args.latentsync_syncnet or args.judges == "tiny"):
        raise InvalidArgumentError(
            "genface eval talk needs --syncnet (syncnet_v2.model of joonson/syncnet_python, or a folder or Hub id "
            "holding it), --latentsync-syncnet (latentsync_syncnet.pt), or both."
        )
    if args.kind == "video" and args.protocol == "opens2v":
        others = {"--inception": args.inception, "--fid-inception": args.fid_inception, "--fid-real": args.fid_real,
                  "--clip": args.clip}  # fmt: skip
        given = [flag for flag, value in others.items() if value not in (None, "none")]
        if given:
            raise InvalidArgumentError(
                f"--protocol opens2v scores OpenS2V-Eval's FaceSim only; {', '.join(given)}: use --protocol consisid "
                "or standard (a second run, with its own --out)."
            )
    if args.fid_real and not (args.fid_inception and Path(args.fid_real).expanduser().is_dir()):
        raise InvalidArgumentError(f"--fid-real {args.fid_real}: give a folder of face photos, with --fid-inception.")
    items = read_items(args.input, args.kind)
    done = read_records(args.out)
    where = args.device = common.device(args.device)
    todo = sum("metrics" not in done.get(item.id, {}) for item in items)
    logger.info("%d of %d item(s) to score; the rest are in %s already", todo, len(items), args.out)
    fid = args.kind == "video" and args.fid_inception
    judges, weights = _judges(args, items, where) if todo or (fid and args.fid_real) else ([], {})
    records = evaluate(items, judges, args.out, progress=not args.json)
    about = {"kind": args.kind, "protocol": args.protocol if args.kind == "video" else None, "weights": weights}
    if fid:
        from genface.eval.runner import FIDFeatures, fid_folder, real_features

        real = real_features(args.fid_real, judges[0].analyzer, judges[0].fid_features.model) if args.fid_real else None
        about["fid_set"] = FIDFeatures(None, fid_folder(args.out)).set_fid(records, real)
    summary = summarize(records, **about)
    json_path, md_path = write_summary(summary, args.out)
    if args.json:
        common.print_json(summary)
        return 0
    print(summary_markdown(summary), end="")
    print(f"records: {args.out}; summary: {json_path}, {md_path}")
    return 0
