"""Which frames a protocol looks at, and the frames of a video or an array."""

from __future__ import annotations

import os

import numpy as np

#: Frames per video in ConsisID's protocol.
NUM_FRAMES = 16


def even_indices(total: int, num: int = NUM_FRAMES) -> np.ndarray:
    """``num`` indices spread evenly from the first frame to the last, truncated to integers (ConsisID's
    FaceSim / FID sampling: ``np.linspace(0, total - 1, num, dtype=int)``)."""
    return np.linspace(0, total - 1, num, dtype=int)


def stride_indices(total: int, num: int = NUM_FRAMES) -> np.ndarray:
    """``int(i * total / num)`` for ``i < num`` (ConsisID's CLIPScore sampling, which never reaches the last
    frame)."""
    return np.array([int(i * total / num) for i in range(num)])


def load_frames(video: str | os.PathLike | np.ndarray) -> np.ndarray:
    """T x H x W x 3 uint8 RGB frames of a video file, or the array itself."""
    if isinstance(video, np.ndarray):
        return video
    from genface.media.video import read_video

    return read_video(video)[0]
