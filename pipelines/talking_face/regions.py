"""Where the talking face is cut from a frame and how it is blended back (MuseTalk v1.5's geometry).

Crop: the box spans the face landmarks horizontally and, vertically, from the bottom of the chin up to as
far above the lower nose bridge (iBUG-68 point 29) as the chin is below it; v1.5 then adds 10 pixels at the
bottom. As in MuseTalk's ``preprocessing.py`` the landmarks are truncated to whole pixels first. Blend: the face
is parsed inside a square 1.5 times the box (resized to 512 px with PIL's bilinear filter, as MuseTalk's
``FaceParsing``); the mask is the skin dilated by MuseTalk's 33x33 cone-shaped element (at 512x512: 6 pixels
down, up to 16 up and 10 sideways), narrowed at the cheeks by an elliptic erosion, plus mouth and lips, minus the
nose, resized back with PIL's bicubic filter (``blending.face_seg``), kept only in the lower half of the square
and feathered with a Gaussian 5% of its width (``scripts/inference.py``) or 10% (``scripts/realtime_inference.py``,
the "avatar"). Pixels where the mask is zero are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from genface.identity import Face, FaceParser
from genface.identity.parsing import LABELS

#: Pixels added below the chin (MuseTalk v1.5's ``extra_margin``).
EXTRA_MARGIN = 10
#: Side of the parsing square in face-box sizes, and where its kept lower part starts (fraction of height).
EXPAND = 1.5
UPPER_BOUNDARY = 0.5
#: Width (in pixels at 512) kept from erosion left and right of the centre (v1.5 inference: 90).
CHEEK_WIDTH = 90
PARSE_SIZE = 512
_NOSE_BRIDGE_68 = 29
#: MuseTalk's two blends, by the script that makes them: the Gaussian feather's width as a fraction of the
#: parsing square (``blending.get_image``: 0.05; ``blending.get_image_prepare_material``: 0.1).
Blend = Literal["inference", "realtime"]
FEATHER: dict[str, float] = {"inference": 0.05, "realtime": 0.1}


def crop_box(face: Face, frame_shape: tuple[int, ...], extra_margin: int = EXTRA_MARGIN) -> np.ndarray:
    """The lower-face-centred crop box (x1, y1, x2, y2) MuseTalk v1.5 feeds its UNet, in whole pixels (float64,
    so that boxes can be smoothed over frames).

    The landmarks are truncated to integers first, as MuseTalk's ``preprocessing.py`` does. With 68 landmarks
    (dlib), point 29 is the nose bridge as in MuseTalk; with other layouts (insightface's 106) it is taken two
    thirds of the way from the eyes to the nose tip, where point 29 lies, truncated the same way. Without
    landmarks, or where they give no box, the detector's box is used (clipped at 0 and truncated, as MuseTalk's
    face detector gives it).
    """
    height = frame_shape[0]
    x1, y1, x2, y2 = np.clip(face.bbox, 0, None).astype(np.int64)
    if face.landmarks is not None:
        points = np.asarray(face.landmarks).astype(np.int32)
        if len(points) == 68:
            bridge_y = int(points[_NOSE_BRIDGE_68, 1])
        else:
            eyes_y = (face.kps[0, 1] + face.kps[1, 1]) / 2
            bridge_y = int(eyes_y + 2 / 3 * (face.kps[2, 1] - eyes_y))
        top = max(0, bridge_y - (int(points[:, 1].max()) - bridge_y))
        box = points[:, 0].min(), top, points[:, 0].max(), points[:, 1].max()
        if box[3] > box[1] and box[2] > box[0] and box[0] >= 0:
            x1, y1, x2, y2 = box
    return np.array([x1, y1, x2, min(y2 + extra_margin, height)], dtype=np.float64)


def integer_box(box: np.ndarray, frame_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """A box rounded to whole pixels, clipped to the frame, at least 2 pixels each way."""
    height, width = frame_shape[:2]
    x1, y1 = int(np.clip(round(box[0]), 0, width - 2)), int(np.clip(round(box[1]), 0, height - 2))
    x2, y2 = int(np.clip(round(box[2]), x1 + 2, width)), int(np.clip(round(box[3]), y1 + 2, height))
    return x1, y1, x2, y2


def _cone_kernel() -> np.ndarray:
    """MuseTalk's 33x33 cone element: rows 10-20 widen 1, 3, ..., 21 around the centre column; rows 21-32 stay
    21 wide (rows 0-9 empty)."""
    kernel = np.zeros((33, 33), dtype=np.uint8)
    centre = 16
    for row in range(10, 33):
        half = min(row - 10, 10)
        kernel[row, centre - half : centre + half + 1] = 1
    return kernel


_CONE = _cone_kernel()
_CHEEK = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (35, 3))


def jaw_mask(labels: np.ndarray, cheek_width: int = CHEEK_WIDTH) -> np.ndarray:
    """0/255 mask of the region that may change, from a 512x512 CelebAMask-HQ label map (MuseTalk's "jaw")."""
    skin = np.where(labels == LABELS.index("skin"), 255, 0).astype(np.uint8)
    grown = cv2.dilate(skin, _CONE, iterations=1)
    narrowed = cv2.erode(grown, _CHEEK, iterations=2)
    sides = np.zeros_like(skin)
    centre = labels.shape[1] // 2
    sides[:, : centre - cheek_width + 1] = 255
    sides[:, centre + cheek_width :] = 255
    region = (narrowed & sides) | (grown & ~sides)
    mouth = np.isin(labels, [LABELS.index(n) for n in ("mouth", "upper_lip", "lower_lip")])
    keep = ((region == 255) & (labels != LABELS.index("nose"))) | mouth
    return np.where(keep, 255, 0).astype(np.uint8)


@dataclass
class BlendMask:
    """A soft mask (float32 in [0, 1]) over ``square`` (x1, y1, x2, y2 in frame pixels, may extend past it)."""

    alpha: np.ndarray
    square: tuple[int, int, int, int]


def _square(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    half = int(max(x2 - x1, y2 - y1) // 2 * EXPAND)
    return cx - half, cy - half, cx + half, cy + half


def _cut(frame: np.ndarray, square: tuple[int, int, int, int]) -> np.ndarray:
    """The square's pixels, black where it leaves the frame."""
    x1, y1, x2, y2 = square
    out = np.zeros((y2 - y1, x2 - x1, 3), dtype=frame.dtype)
    fx1, fy1 = max(x1, 0), max(y1, 0)
    fx2, fy2 = min(x2, frame.shape[1]), min(y2, frame.shape[0])
    if fx2 > fx1 and fy2 > fy1:
        out[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1] = frame[fy1:fy2, fx1:fx2]
    return out


def parsing_patch(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The 512x512 RGB patch the face parser sees for ``box``: the square 1.5 times the box, black where it
    leaves the frame."""
    patch = Image.fromarray(_cut(frame, _square(box)))
    return np.array(patch.resize((PARSE_SIZE, PARSE_SIZE), Image.Resampling.BILINEAR))


def box_alpha(box: tuple[int, int, int, int], labels: np.ndarray | None, blend: Blend = "inference") -> np.ndarray:
    """Blend weights over ``box`` (uint8, 255 = the generated face; divide by 255 for the mask) from the parse
    ``labels`` of its :func:`parsing_patch`, feathered as MuseTalk's ``blend`` script does (see :data:`FEATHER`).
    Without labels (no face parser), the whole lower half of the box is used, feathered; pixels outside the box
    are never touched either way."""
    square = _square(box)
    side = square[2] - square[0]
    x1, y1, x2, y2 = box
    inner = (slice(y1 - square[1], y2 - square[1]), slice(x1 - square[0], x2 - square[0]))
    mask = np.zeros((side, side), dtype=np.uint8)
    if labels is not None:
        jaw = Image.fromarray(jaw_mask(labels)).resize((side, side), Image.Resampling.BICUBIC)  # PIL's default
        mask[inner] = np.asarray(jaw)[inner]
    else:
        mask[inner] = 255
    mask[: int(side * UPPER_BOUNDARY)] = 0
    kernel = int(FEATHER[blend] * side // 2 * 2) + 1
    return np.ascontiguousarray(cv2.GaussianBlur(mask, (kernel, kernel), 0)[inner])


def blend_mask(
    frame: np.ndarray, box: tuple[int, int, int, int], parser: FaceParser | None, blend: Blend = "inference"
) -> BlendMask:
    """The mask that blends a generated face crop for ``box`` back into ``frame``, for one frame (the pipeline
    parses a batch of :func:`parsing_patch` es at once and keeps :func:`box_alpha`)."""
    labels = None if parser is None else parser.parse(parsing_patch(frame, box)).labels
    return alpha_mask(box, box_alpha(box, labels, blend))


def alpha_mask(box: tuple[int, int, int, int], alpha: np.ndarray) -> BlendMask:
    """The :class:`BlendMask` of :func:`box_alpha`'s weights over ``box``."""
    return BlendMask(alpha.astype(np.float32) / 255.0, box)


def blend(frame: np.ndarray, crop: np.ndarray, box: tuple[int, int, int, int], mask: BlendMask) -> np.ndarray:
    """``frame`` with the generated ``crop`` (resized to ``box``) blended in through ``mask``; a new array,
    identical to ``frame`` wherever the mask is zero."""
    x1, y1, x2, y2 = box
    sx, sy = mask.square[:2]
    alpha = mask.alpha[y1 - sy : y2 - sy, x1 - sx : x2 - sx, None]
    face = cv2.resize(crop, (x2 - x1, y2 - y1), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    out = frame.copy()
    region = out[y1:y2, x1:x2]
    mixed = np.rint(region.astype(np.float32) * (1 - alpha) + face * alpha).astype(np.uint8)
    region[...] = np.where(alpha > 0, mixed, region)
    return out
