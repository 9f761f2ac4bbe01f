"""Following one face through video frames: per-frame detection, a consistent choice, lost-face policy,
and temporal smoothing of boxes (no jitter, no lag)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from genface.errors import NoFaceError
from genface.identity.detect import FaceAnalyzer, choose_face
from genface.identity.types import Face

logger = logging.getLogger(__name__)

#: A face in the next frame continues the track when its box overlaps the last one by at least this IoU.
MIN_TRACK_IOU = 0.3


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class FaceTrack:
    """One person's face in every frame: ``faces[i]`` is None where it was not found (``lost`` frames)."""

    faces: list[Face | None]

    @property
    def found(self) -> np.ndarray:
        return np.array([f is not None for f in self.faces], dtype=bool)

    @property
    def lost(self) -> list[int]:
        return np.flatnonzero(~self.found).tolist()

    def __len__(self) -> int:
        return len(self.faces)


def track_face(
    frames: Iterable[np.ndarray],
    analyzer: FaceAnalyzer,
    face_index: int | None = None,
    *,
    min_iou: float = MIN_TRACK_IOU,
    progress: bool = True,
) -> FaceTrack:
    """Detect in every frame and follow one face.

    The face is chosen in the first frame that has one (largest, or ``face_index``, as :func:`choose_face`);
    in later frames the track continues with the face overlapping its last box most (IoU >= ``min_iou``),
    so a second person never takes over. Frames where it is not found are marked lost; a video where it is
    never found raises :class:`NoFaceError`.
    """
    faces: list[Face | None] = []
    last: Face | None = None
    for i, frame in enumerate(tqdm(frames, desc="tracking the face", unit="frame", disable=not progress)):
        found = analyzer.detect(frame)
        if last is None:
            face = (
                choose_face(found, face_index, min_face_size=analyzer.min_face_size, what=f"frame {i}")
                if found
                else None
            )
        else:
            scored = [(box_iou(f.bbox, last.bbox), f) for f in found]
            best = max(scored, key=lambda s: s[0], default=(0.0, None))
            face = best[1] if best[0] >= min_iou else None
        faces.append(face)
        last = face or last
    if last is None:
        where = "the photo" if len(faces) == 1 else f"any of the {len(faces)} frames"
        raise NoFaceError(
            f"No face found in {where}. Use one where a face is clearly visible, roughly frontal, and at least 80 "
            "pixels wide."
        )
    track = FaceTrack(faces)
    if track.lost:
        logger.warning(
            "The face was not found in %d of %d frames (%s); the nearest found box is held there.",
            len(track.lost),
            len(track),
            _ranges(track.lost),
        )
    return track


def _ranges(indices: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    parts, start = [], None
    for i, value in enumerate(indices):
        if start is None:
            start = value
        if i + 1 == len(indices) or indices[i + 1] != value + 1:
            parts.append(f"{start}-{value}" if value != start else f"{value}")
            start = None
    return ", ".join(parts)


def fill_and_smooth(boxes: np.ndarray, found: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Boxes (T x 4) for every frame: lost frames hold the nearest found box (the last one before, or the
    first one after at the start), then each coordinate is smoothed over time with a zero-phase Gaussian of
    ``sigma`` frames (no lag; 0 disables). At least one frame must be found."""
    from scipy.ndimage import gaussian_filter1d

    boxes = np.asarray(boxes, dtype=np.float64).copy()
    found = np.asarray(found, dtype=bool)
    if not found.any():
        raise NoFaceError("No frame has a face box to hold.")
    index = np.where(found, np.arange(len(found)), -1)
    index = np.maximum.accumulate(index)  # last found at or before each frame
    index[index < 0] = np.flatnonzero(found)[0]  # before the first detection: the first found box
    boxes = boxes[index]
    if sigma > 0 and len(boxes) > 1:
        boxes = gaussian_filter1d(boxes, sigma, axis=0, mode="nearest")
    return boxes


def track_boxes(track: FaceTrack, box_of: Callable[[Face], np.ndarray], sigma: float = 1.5) -> np.ndarray:
    """Per-frame boxes (or any other points, flattened) derived from the tracked faces by ``box_of``, with lost
    frames held and smoothed."""
    values = [None if f is None else np.asarray(box_of(f), dtype=np.float64).reshape(-1) for f in track.faces]
    size = next((v.size for v in values if v is not None), 4)
    raw = np.array([np.zeros(size) if v is None else v for v in values])
    return fill_and_smooth(raw, track.found, sigma)
