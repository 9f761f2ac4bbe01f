"""``genface samples DIR``: sample inputs under the names the README's commands use, offline, from the photos
and the speech-like tone of :mod:`genface.samples`."""

from __future__ import annotations

import argparse
from pathlib import Path

from genface.cli import options
from genface.errors import InvalidArgumentError

EPILOG = """examples:
  genface samples demo && cd demo    then the README's commands run as written, e.g.
  genface identity me.jpg group.jpg
  genface video --model tiny --face me.jpg --prompt "a person smiling" --out tiny.mp4
  genface talk --model tiny --face clip.mp4 --audio speech.wav --out tiny_talk.mp4
"""


#: The files :func:`write_samples` writes, under the names the README's commands use, and what each is.
SAMPLE_FILES = {
    "me.jpg": "a photo of one face (astronaut Eileen Collins, public domain; from scikit-image)",
    "look.jpg": "a makeup reference: a made-up face cut from the group photo",
    "group.jpg": "a group photo with six faces (insightface's sample t1.jpg)",
    "clip.mp4": "a 1 s clip of me.jpg slowly zooming in, 25 fps, with speech.wav as its sound",
    "speech.wav": "1 s of a speech-like tone (a 150 Hz voice whose loudness rises and falls), 16 kHz",
}
#: The made-up face of the group photo (its box in t1.jpg, with room around it): look.jpg.
_LOOK_BOX = (208, 109, 431, 332)
_CLIP_SECONDS, _CLIP_FPS, _CLIP_SIDE = 1.0, 25, 384


def write_samples(folder: str | Path) -> dict[str, bool]:
    """Write :data:`SAMPLE_FILES` into ``folder`` (made when missing) from what installed packages ship, offline.
    A file that exists already is kept as it is, never overwritten; each new one appears whole or not at all.
    Returns each name and whether it was written (False: kept)."""
    import shutil
    import wave

    import cv2
    import numpy as np

    from genface.media import load_image, save_image, write_video
    from genface.media._files import atomic_path
    from genface.samples import sample_path, speech_like

    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    photo, group = load_image(sample_path("astronaut")), sample_path("group")
    speech = speech_like(_CLIP_SECONDS)

    def clip(path: Path) -> None:
        count, side = int(_CLIP_SECONDS * _CLIP_FPS), photo.shape[0]
        frames = []
        for t in np.linspace(0, 1, count):  # from the whole photo to a square closer around the face
            size = int(side - 112 * t)
            x, y = (int(np.clip(c - size / 2, 0, side - size)) for c in (256 - 36 * t, 256 - 76 * t))
            frames.append(
                cv2.resize(photo[y : y + size, x : x + size], (_CLIP_SIDE,) * 2, interpolation=cv2.INTER_AREA)
            )
        write_video(path, np.stack(frames), _CLIP_FPS, audio=speech)

    def wav(path: Path) -> None:
        with atomic_path(path) as tmp, wave.open(str(tmp), "wb") as handle:
            handle.setnchannels(1)
            handle.setsampwidth(2)
            handle.setframerate(16000)
            handle.writeframes((speech * 32767).astype("<i2").tobytes())

    def copy(path: Path) -> None:
        with atomic_path(path) as tmp:
            shutil.copyfile(group, tmp)

    x1, y1, x2, y2 = _LOOK_BOX
    look = cv2.resize(load_image(group)[y1:y2, x1:x2], (448, 448), interpolation=cv2.INTER_LANCZOS4)
    writers = {
        "me.jpg": lambda path: save_image(photo, path),
        "look.jpg": lambda path: save_image(look, path),
        "group.jpg": copy,
        "clip.mp4": clip,
        "speech.wav": wav,
    }
    written = {}
    for name, write in writers.items():
        path = folder / name
        written[name] = not path.exists()
        if written[name]:
            write(path)
    return written


def register(commands: argparse._SubParsersAction) -> None:
    files = "; ".join(f"{name}: {what}" for name, what in SAMPLE_FILES.items())
    parser = options.command(
        commands,
        "samples",
        "write sample inputs (a photo, a made-up face, a group photo, a clip, speech) into a folder",
        EPILOG,
    )
    parser.add_argument(
        "folder", metavar="DIR", help=f"where (made when missing; files already there are kept). {files}"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    folder = Path(args.folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError(f"{args.folder} is a file; give a folder for the samples.")
    for name, written in write_samples(folder).items():
        print(f"{'wrote' if written else 'kept '} {folder / name}" + ("" if written else " (it exists; left as it is)"))
    print(f"samples in {folder}: {', '.join(SAMPLE_FILES)}; run the README's commands from there")
    return 0
