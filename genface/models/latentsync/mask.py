"""LatentSync's fixed mouth mask (``latentsync/utils/mask.png``, 256 x 256, Apache-2.0), row by row.

White (kept) everywhere but a black U: rows 95-127 black at columns 9-77 and 178-246 (the cheeks beside the
nose), rows 128-242 black from ``_LEFT[r - 128]`` to ``_RIGHT[r - 128] - 1`` (the mouth, chin and jaw).
:func:`mask_image` is their ``load_fixed_mask``: resized to the resolution with OpenCV's Lanczos-4, divided by 255.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

_LEFT = (
    [9] * 8 + [10] * 14 + [11] * 14 + [12] * 7
    + [13, 13, 14, 14, 15, 15, 16, 16, 17, 18, 18, 19, 19, 20, 21, 21, 22, 22, 23, 24, 25, 26, 26, 27, 28, 29, 30, 31,
       32, 33, 34, 34, 35, 36, 37, 38, 39, 40, 42, 43, 44, 45, 47, 48, 49, 51, 52, 54, 56, 57, 59, 60, 62, 64, 66, 68,
       70, 72, 74, 76, 78, 80, 82, 85, 87, 90, 93, 95, 99, 104, 108, 131]
)  # fmt: skip
_RIGHT = (
    [248] * 7 + [247] * 14 + [246] * 14 + [245] * 7
    + [244, 244, 243, 243, 242, 242, 241, 241, 240, 239, 239, 238, 237, 237, 236, 235, 235, 234, 233, 233, 232, 231,
       231, 230, 229, 229, 228, 227, 226, 225, 224, 224, 223, 222, 221, 220, 219, 218, 217, 216, 215, 214, 213, 212,
       211, 209, 208, 207, 205, 204, 203, 201, 200, 198, 197, 195, 193, 192, 190, 188, 186, 184, 181, 179, 176, 174,
       172, 169, 167, 165, 161, 157, 153]
)  # fmt: skip


def mask_png() -> np.ndarray:
    """The 256 x 256 mask as its PNG holds it (one channel of three equal ones; uint8, 0 or 255)."""
    mask = np.full((256, 256), 255, np.uint8)
    mask[95:128, 9:78] = mask[95:128, 178:247] = 0
    for row, (left, right) in enumerate(zip(_LEFT, _RIGHT, strict=True), start=128):
        mask[row, left:right] = 0
    return mask


@functools.lru_cache(maxsize=4)
def mask_image(resolution: int) -> np.ndarray:
    """``load_fixed_mask(resolution)``'s mask (resolution x resolution, float64 in [0, 1], 1 = kept), read-only."""
    mask = cv2.resize(mask_png(), (resolution, resolution), interpolation=cv2.INTER_LANCZOS4) / 255.0
    mask.setflags(write=False)
    return mask
