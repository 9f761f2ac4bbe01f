"""What a source gives the talking-portrait pipeline: a photo, or a video as Ditto takes one (``loader.py``,
``avatar_registrar.py``): its frames resized as Ditto resizes them, one crop, motion and eye openness per frame
(the motion smoothed over ``smo_k_s`` frames), and output frame ``i`` drawn on source frame ``mirror(i)`` (the
video played forwards, backwards, forwards ...).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from genface.identity import Face
from genface.media.video import VideoReader
from genface.models.motion.lmdm import mirror_index
from genface.models.motion.stitch import Motion

#: Ditto's ``max_size`` (``stream_pipeline_*.py``): sources whose longest side is larger are resized to it.
MAX_SIZE = 1920
#: Ditto's ``smo_k_s``: the moving average over a video source's motion, in frames.
SMO_K_S = 13
#: A video source uses at most its first this many frames (two minutes at 25 fps), looped back and forth.
MAX_SOURCE_FRAMES = 3000


def ditto_size(height: int, width: int, max_size: int = MAX_SIZE) -> tuple[int, int]:
    """Ditto's ``check_resize``: the longest side brought down to ``max_size`` (when positive; the other side
    rounded), then both sides made even (rounded down)."""
    if max_size > 0 and max(height, width) > max_size:
        if height > width:
            height, width = max_size, int(round(width * max_size / height))
        else:
            height, width = int(round(height * max_size / width)), max_size
    return height - height % 2, width - width % 2


def resize_frame(frame: np.ndarray, max_size: int = MAX_SIZE) -> np.ndarray:
    """A frame at Ditto's size for it (``cv2.resize``, bilinear, as Ditto's loader), unchanged when it fits."""
    height, width = ditto_size(*frame.shape[:2], max_size)
    if (height, width) == frame.shape[:2]:
        return frame
    return cv2.resize(frame, (width, height))


class SourceFrames:
    """The source's frames at Ditto's size by index: the photo, or a video's first ``count`` frames (decoded as
    they are asked for)."""

    def __init__(self, photo: np.ndarray | None = None, video: VideoReader | None = None, max_size: int = MAX_SIZE):
        self.photo, self.video, self.max_size, self.count = photo, video, max_size, 1

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if self.video is None:
            return self.photo
        return resize_frame(self.video[index], self.max_size)

    def scan(self, limit: int) -> Iterator[np.ndarray]:
        """The video's frames from the start (at most ``limit``), counting them."""
        if self.video is None:
            yield self.photo
            return
        self.count = 0
        for frame in itertools.islice(self.video, limit):
            self.count += 1
            yield resize_frame(frame, self.max_size)


@dataclass
class PortraitSource:
    """What a source gives once: its frames, the face (in the first frame), the crop matrices (image -> 512 crop,
    one per frame), the appearance feature (a photo's; a video's are made per frame as it is rendered), the motion
    (one frame per source frame: pose in bins, with the canonical keypoints), the eye openness (frames, 2) and
    whether it is a photo."""

    frames: SourceFrames
    face: Face
    matrices: np.ndarray
    feature: torch.Tensor | None
    motion: Motion
    eye_open: np.ndarray
    is_image: bool = True

    @property
    def photo(self) -> np.ndarray:
        """The (first) frame."""
        return self.frames[0]

    @property
    def matrix(self) -> np.ndarray:
        """The (first) frame's crop matrix."""
        return self.matrices[0]

    def index(self, first: int, count: int) -> np.ndarray:
        """Source frame of output frames ``first`` .. ``first + count - 1`` (Ditto's ``_mirror_index``)."""
        return mirror_index(torch.arange(first, first + count), len(self.frames)).numpy()
