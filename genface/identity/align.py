"""Face alignment: similarity transforms onto keypoint templates, crops, and pasting back."""

from __future__ import annotations

import cv2
import numpy as np

#: ArcFace 112x112 template (insightface ``arcface_dst``), in KPS_NAMES order.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
#: FFHQ-style 512x512 template (facexlib's face restoration helper, used by ConsisID).
FFHQ_TEMPLATE = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float64,
)
#: name -> (points, native size, how the transform is fitted, border colour) as each reference does it:
#: insightface fits ArcFace crops by least squares with a black border; facexlib (ConsisID) fits FFHQ
#: crops with LMedS and a gray border.
TEMPLATES = {
    "arcface": (ARCFACE_TEMPLATE, 112, "lstsq", (0, 0, 0)),
    "ffhq": (FFHQ_TEMPLATE, 512, "lmeds", (135, 133, 132)),
}


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Umeyama's closed form; returns a 2x3 matrix. Equals insightface's ``estimate_norm``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(cov) < 0:
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    var = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / var if var > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix


def template_points(template: str = "arcface", size: int | None = None) -> np.ndarray:
    """Keypoint template scaled to a ``size`` x ``size`` crop."""
    if template not in TEMPLATES:
        raise ValueError(f"Unknown alignment template {template!r}; choose from {sorted(TEMPLATES)}.")
    points, native = TEMPLATES[template][:2]
    return points * ((size or native) / native)


def alignment_matrix(kps: np.ndarray, template: str = "arcface", size: int | None = None) -> np.ndarray:
    """2x3 matrix mapping image pixels to the aligned crop of the face with keypoints ``kps``."""
    src, dst = np.asarray(kps, dtype=np.float64).reshape(5, 2), template_points(template, size)
    if TEMPLATES[template][2] == "lmeds":
        matrix = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)[0]
        if matrix is not None:
            return matrix
    return similarity_transform(src, dst)


def align_face(
    image: np.ndarray, kps: np.ndarray, template: str = "arcface", size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``image`` so the face's keypoints land on ``template``; returns ``(crop, matrix)``.

    Outside the image the crop takes the template's border colour (as its reference implementation).
    """
    matrix = alignment_matrix(kps, template, size)
    size = size or TEMPLATES[template][1]
    border = TEMPLATES[template][3]
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=border)
    return crop, matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def paste_back(
    image: np.ndarray, crop: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None = None, *, truncate: bool = False
) -> np.ndarray:
    """Warp an edited ``crop`` (uint8, or float in [0, 255]) back into ``image`` (inverse of ``matrix``), blending
    with ``mask``.

    ``mask`` is in crop coordinates, float in [0, 1] (default: the whole crop). Pixels outside the
    mask keep their original values exactly. The blend is rounded to whole levels; ``truncate`` follows Ditto's
    ``putback.py`` instead: the warped mask clipped to [0, 1] and the blend truncated.
    """
    height, width = image.shape[:2]
    inverse = invert_affine(matrix)
    if mask is None:
        mask = np.ones(crop.shape[:2], dtype=np.float32)
    warped = cv2.warpAffine(crop, inverse, (width, height), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(mask.astype(np.float32), inverse, (width, height), flags=cv2.INTER_LINEAR)[..., None]
    if truncate:
        alpha = alpha.clip(0, 1)
    blended = image.astype(np.float32) * (1.0 - alpha) + warped.astype(np.float32) * alpha
    return np.where(alpha > 0, np.clip(blended if truncate else blended + 0.5, 0, 255), image).astype(np.uint8)
