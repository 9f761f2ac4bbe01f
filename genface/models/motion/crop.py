"""LivePortrait's source crop (as Ditto uses it) on the shared identity stack's keypoints, the paste-back, and
Ditto's resize of a source (``loader.py``).

LivePortrait crops a square around the face: its axis runs from the eyes' centre to the lips' centre (so
the crop cancels roll), its side is ``scale`` times the landmarks' extent along that axis, shifted by
``vy_ratio`` of the side (up, for the forehead), resized to ``dsize``. Ditto measures this on a 203-point
landmark model (found from insightface's 106 points); genface has no 203-point model, so the same formula
runs on the landmarks the shared :class:`~genface.identity.detect.FaceAnalyzer` gives: dlib's 68 points or
insightface's 106 (LivePortrait's own indices for both). The 68/106 contours span about the same face as
the 203 points (jaw to brows), so the crop lands close to Ditto's but not on the same pixels. With five
keypoints only, the side and centre come from the eye-to-lip distance, measured on dlib's 68 points (mean
over 9 faces: genface's sample photos and Ditto's example): side 2.35 eye-to-lip distances (spread 2.0-2.7),
centre 0.69 of them below the eyes (0.6-0.8), so within about 15% of the dense crop.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from genface.errors import InvalidArgumentError
from genface.identity.align import paste_back, similarity_transform
from genface.identity.types import Face

#: Ditto's crop settings (``stream_pipeline_offline.py``: crop_scale, crop_vx_ratio, crop_vy_ratio).
CROP_SIZE, CROP_SCALE, CROP_VX_RATIO, CROP_VY_RATIO = 512, 2.3, 0.0, -0.125
#: Ditto's ``max_size`` (``stream_pipeline_*.py``): sources whose longest side is larger are resized to it.
MAX_SIZE = 1920
#: Five keypoints only: the dense landmarks' square extent and centre (below the eyes) in eye-to-lip distances.
FIVE_POINT_EXTENT, FIVE_POINT_CENTRE = 2.35, 0.69
#: (left-eye points, right-eye points, lip points) averaged into the eye and lip centres, per landmark count
#: (LivePortrait's ``parse_pt2_from_pt68`` / ``_pt106`` / ``_pt5``).
_AXIS_POINTS = {
    68: ([36, 39], [42, 45], [48, 54]),
    106: ([33, 35, 40, 39], [87, 89, 94, 93], [52, 61]),
    5: ([0], [1], [3, 4]),
}


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


def eye_lip_axis(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eyes' centre and lips' centre from 5, 68 or 106 face points (N, 2)."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] not in _AXIS_POINTS:
        raise InvalidArgumentError(f"Face points must be 5, 68 or 106 (x, y) points; got shape {points.shape}.")
    left, right, lips = _AXIS_POINTS[points.shape[0]]
    eyes = (points[left].mean(0) + points[right].mean(0)) / 2
    return eyes, points[lips].mean(0)


def crop_rect(
    points: np.ndarray, scale: float = CROP_SCALE, vx_ratio: float = CROP_VX_RATIO, vy_ratio: float = CROP_VY_RATIO
) -> tuple[np.ndarray, float, np.ndarray]:
    """LivePortrait's crop square (``parse_rect_from_landmark``): centre (2,), side, and axes (2, 2) = rows
    ux (across), uy (eyes to lips)."""
    points = np.asarray(points, dtype=np.float64)
    eyes, lips = eye_lip_axis(points)
    length = np.linalg.norm(lips - eyes)
    uy = (lips - eyes) / length if length > 1e-3 else np.array([0.0, 1.0])
    axes = np.stack([[uy[1], -uy[0]], uy])
    if len(points) == 5:
        side, centre = FIVE_POINT_EXTENT * length, eyes + uy * FIVE_POINT_CENTRE * length
    else:
        mean = points.mean(0)
        rotated = (points - mean) @ axes.T
        low, high = rotated.min(0), rotated.max(0)
        side, centre = (high - low).max(), mean + ((low + high) / 2) @ axes
    side *= scale
    return centre + (np.array([vx_ratio, vy_ratio]) * side) @ axes, float(side), axes


def crop_matrix(
    points: np.ndarray,
    dsize: int = CROP_SIZE,
    scale: float = CROP_SCALE,
    vx_ratio: float = CROP_VX_RATIO,
    vy_ratio: float = CROP_VY_RATIO,
    rotate: bool = True,
) -> np.ndarray:
    """2x3 matrix from image pixels to LivePortrait's ``dsize`` crop of the face with ``points``: the
    similarity (genface.identity.align's fit) taking the crop square's corners onto the crop's."""
    centre, side, axes = crop_rect(points, scale, vx_ratio, vy_ratio)
    if not rotate:
        axes = np.eye(2)
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    return similarity_transform(centre + corners * side / 2 @ axes, (corners + 1) * dsize / 2)


def face_points(face: Face) -> np.ndarray:
    """The points a crop is measured on: the dense landmarks (68 or 106) when present, else the five keypoints."""
    landmarks = face.landmarks
    return landmarks if landmarks is not None and len(landmarks) in _AXIS_POINTS else face.kps


def crop_face(image: np.ndarray, face: Face, dsize: int = CROP_SIZE, **kwargs: float) -> tuple[np.ndarray, np.ndarray]:
    """LivePortrait's crop of ``face`` in ``image`` -> (crop dsize x dsize, matrix image -> crop). ``kwargs``:
    scale, vx_ratio, vy_ratio, rotate (see :func:`crop_matrix`)."""
    matrix = crop_matrix(face_points(face), dsize, **kwargs)
    return cv2.warpAffine(image, matrix, (dsize, dsize), flags=cv2.INTER_LINEAR), matrix


@functools.lru_cache(maxsize=4)
def paste_mask(size: int = CROP_SIZE, ratio: float = 0.9) -> np.ndarray:
    """Ditto's paste-back mask (``get_mask``), (size, size) float32: 1 in the central ``ratio`` of the crop,
    falling linearly to 0 towards the edges and radially in the corners (1 - distance outside the centre)."""
    inner = int(size * ratio)
    low = (size - inner) // 2
    outside = np.concatenate([np.linspace(1, 0, low), np.zeros(inner), np.linspace(0, 1, size - low - inner)])
    mask = (1 - np.clip(np.hypot(outside[:, None], outside[None, :]), 0, 1)).astype(np.float32)
    mask.setflags(write=False)  # made once per size and shared by every frame pasted
    return mask


def paste_render(
    image: np.ndarray, render: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None = None
) -> np.ndarray:
    """Paste a square rendered crop (float in [0, 255], as the decoder gives it, or uint8) back into the photo
    (``matrix``: image -> crop) with the shared paste-back, Ditto's mask by default and Ditto's arithmetic
    (``putback.py``: the float render warped and blended, the blend truncated)."""
    return paste_back(image, render, matrix, paste_mask(render.shape[0]) if mask is None else mask, truncate=True)
