"""``genface verify``: read genface's marks (metadata, watermark) and ask a forgery detector."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genface.cli import common, options
from genface.errors import InvalidArgumentError


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "verify", help="read genface's marks (metadata, watermark) and ask a forgery detector, for files or folders"
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILE",
        help="images or videos, or folders of them: each file gets its line; one that cannot be read says why (exit "
        "code 1), and a folder's other entries are named as not read",
    )  # fmt: skip
    options.add_detector(parser, "deepfake")
    options.add_device(parser, "where the detector runs: ")
    options.add_json(parser)
    parser.set_defaults(func=run)


def _files(paths: Sequence[str]) -> list[Path]:
    """The files named, a folder standing for its images and videos. Every other entry of a folder is named on
    stderr, once, as not read (files that are not images or videos by their names, and subfolders; hidden files
    aside). Refused up front: a path that is missing, a folder that holds no image or video."""
    from genface.media.image import IMAGE_SUFFIXES
    from genface.media.video import VIDEO_SUFFIXES

    files = []
    for given in paths:
        path = Path(given).expanduser()
        if not path.is_dir():
            if not path.exists():
                raise InvalidArgumentError(f"{given} does not exist.")
            files.append(path)
            continue
        inside = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        media = [p for p in inside if p.is_file() and p.suffix.lower() in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES)]
        for other in (p for p in inside if p not in media):
            what = "a folder (name it to verify it)" if other.is_dir() else "not an image or a video by its name"
            print(f"genface: note: {other}: not read: {what}", file=sys.stderr)
        if not media:
            raise InvalidArgumentError(f"{given} holds no images or videos.")
        files.extend(media)
    return files


def _print(result: dict[str, Any]) -> None:
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


def run(args: argparse.Namespace) -> int:
    from genface.forensics import score_report
    from genface.provenance import verify

    files = _files(args.files)
    if args.detector != "none":
        args.device = common.device(args.device)
    detector, unavailable = common.forgery_detector(args)
    if unavailable:
        print(f"genface: note: {unavailable}; the marks are reported alone", file=sys.stderr)
    results, failed = [], 0
    for path in files:
        try:
            result = verify(path)
        except common.expected_errors() as exc:
            failed += 1
            message = common.one_line(str(exc))
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
            _print(result)
    if args.json:
        single = len(args.files) == 1 and len(files) == 1 and not Path(args.files[0]).is_dir()
        common.print_json(results[0] if single else results)
    return 1 if failed else 0
