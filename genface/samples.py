"""Real face photos that installed packages ship, and a speech-like tone, for demos, notebooks and tests (no
download); :func:`write_samples` puts them in a folder under the names the README's commands use."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from genface.errors import MissingWeightsError

if TYPE_CHECKING:
    import numpy as np

#: name -> (package, path inside it, what it shows)
SAMPLES = {
    "portrait": ("insightface", "data/images/Tom_Hanks_54745.png", "one face, 112x112, ArcFace-aligned"),
    "group": ("insightface", "data/images/t1.jpg", "group photo with six faces"),
    "astronaut": ("skimage", "data/astronaut.png", "portrait of astronaut Eileen Collins (public domain)"),
}


def sample_path(name: str) -> Path:
    """Path of a sample photo (see :data:`SAMPLES`)."""
    if name not in SAMPLES:
        raise ValueError(f"Unknown sample {name!r}; choose from {sorted(SAMPLES)}.")
    package, relative, _ = SAMPLES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingWeightsError(f"Sample {name!r} ships with the {package} package; install it.")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise MissingWeightsError(f"Sample {name!r} is missing from the installed {package} ({path}).")
    return path


def speech_like(seconds: float, rate: int = 16000) -> np.ndarray:
    """A voiced 150 Hz tone whose loudness rises and falls three times a second (float32 mono at ``rate``): a
    stand-in for speech where no recording is needed (tests, benchmarks)."""
    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 150 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


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
