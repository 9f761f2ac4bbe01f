"""``genface samples DIR``: sample inputs under the names the README's commands use, offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from genface.errors import InvalidArgumentError

EPILOG = """examples:
  genface samples demo && cd demo    then the README's commands run as written, e.g.
  genface identity me.jpg group.jpg
  genface video --model tiny --face me.jpg --prompt "a person smiling" --out tiny.mp4
  genface talk --model tiny --face clip.mp4 --audio speech.wav --out tiny_talk.mp4
"""


def register(commands: argparse._SubParsersAction) -> None:
    from genface.cli import options
    from genface.samples import SAMPLE_FILES

    files = "; ".join(f"{name}: {what}" for name, what in SAMPLE_FILES.items())
    parser = options.command(
        commands, "samples", "write sample inputs (a photo, a group photo, a clip, speech) into a folder", EPILOG
    )
    parser.add_argument(
        "folder", metavar="DIR", help=f"where (made when missing; files already there are kept). {files}"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genface.samples import SAMPLE_FILES, write_samples

    folder = Path(args.folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError(f"{args.folder} is a file; give a folder for the samples.")
    for name, written in write_samples(folder).items():
        print(f"{'wrote' if written else 'kept '} {folder / name}" + ("" if written else " (it exists; left as it is)"))
    print(f"samples in {folder}: {', '.join(SAMPLE_FILES)}; run the README's commands from there")
    return 0
