"""Real face photos that installed packages ship, and a speech-like tone, for demos, notebooks and tests (no
download)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from genface.errors import MissingWeightsError

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
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 150 * t) * (0.55 + 0.45 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
