"""LatentSync's three-point face crop and its paste-back (StyleSync's ``AlignRestore``, 3 points).

Three points per frame, each the mean of some landmarks rounded to whole pixels and rounded again: the left and
the right eyebrow's centres and the nose's centre. With insightface's 106 landmarks these are LatentSync's own
(``ImageProcessor.affine_transform``); with dlib's 68, its own 106-to-68 table (``face_detector.py``) gives the
eyebrows exactly and the nose's points 74 and 86 as iBUG's 28 and 29, and the nostril wings 31 and 35 stand in for
its 77 and 83. A similarity maps them onto a template (scaled by ``resolution / 256 * 2.8``) fitted on the points
centred and divided by the standard deviation of all their coordinates (an SVD rotation, reflection removed);
the nose point's offset between the two normalised sets, averaged 0.2 / 0.8 with the previous frame's, is added
to the translation (the state one video's frames carry). The frame is sampled bilinearly into a ``75 x 100``
template-unit crop (kornia's ``warp_affine``, pixel centres on integers, gray 127 blended in outside the frame),
truncated to uint8 and resized to ``resolution`` (OpenCV Lanczos-4).

The paste-back (``AlignRestore.restore_img``): the generated face, resized to the crop (bicubic, antialiased), is
warped back into the frame (gray outside it), and so is an all-ones mask; the mask is eroded by a 2 x 2 square
(kornia), then by a square of ``2 * w`` (OpenCV), ``w = floor(sqrt(area)) // 20``, blurred by a Gaussian of
``2 * w + 1`` taps, and the face is blended in through it; the sum is truncated to uint8.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from genface.errors import InvalidArgumentError

#: (left eyebrow, right eyebrow, nose) landmark groups whose means are the three points, per landmark count.
POINT_GROUPS = {
    106: ((43, 48, 49, 51, 50), (101, 102, 103, 104, 105), (74, 77, 83, 86)),
    68: ((17, 18, 19, 20, 21), (22, 23, 24, 25, 26), (28, 29, 31, 35)),
}
#: The three points' template in ``AlignRestore``'s units, and its crop's size (width, height) in those units.
TEMPLATE = np.array([[17.0, 20.0], [58.0, 20.0], [37.5, 40.0]])
CROP_UNITS = (75, 100)
#: The gray the crop and the paste-back fill outside the frame with.
FILL = 127.0


def crop_geometry(resolution: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The template points and the crop's (width, height) in pixels before its resize to ``resolution``."""
    ratio = resolution / 256 * 2.8
    return TEMPLATE * ratio, (int(CROP_UNITS[0] * ratio), int(CROP_UNITS[1] * ratio))


def three_points(landmarks: np.ndarray) -> np.ndarray:
    """The three points (3 x 2) from 106 or 68 landmarks, rounded as LatentSync rounds them."""
    landmarks = np.round(np.asarray(landmarks, dtype=np.float64))
    if landmarks.shape not in ((106, 2), (68, 2)):
        raise InvalidArgumentError(f"The three-point crop needs 106 or 68 landmarks; got shape {landmarks.shape}.")
    return np.round([landmarks[list(group)].mean(0) for group in POINT_GROUPS[len(landmarks)]])


def affine_matrix(points: np.ndarray, resolution: int, bias: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The frame-to-crop matrix (2 x 3) for one frame's three points, and the smoothing state to pass to the next
    frame's call (``bias``: the previous frame's; None for a video's first frame)."""
    full, _ = crop_geometry(resolution)
    template = full - full.mean(0)
    template_scale = template.std(ddof=1)
    template = template / template_scale
    centre = points.mean(0)
    scale = (points - centre).std(ddof=1)
    normalised = (points - centre) / scale
    u, _, vt = np.linalg.svd(normalised.T @ template)
    rotation = vt.T @ u.T
    if np.linalg.det(rotation) < 0:
        vt[-1] *= -1
        rotation = vt.T @ u.T
    linear = template_scale / scale * rotation
    offset = template[2] - normalised[2]
    bias = offset if bias is None else 0.2 * bias + 0.8 * offset
    translation = full.mean(0) - linear @ centre + bias
    return np.concatenate([linear, translation[:, None]], axis=1), bias


def affine_matrices(landmarks: np.ndarray, resolution: int = 256) -> np.ndarray:
    """The matrices (T x 2 x 3) of a video's frames in order, from their landmarks (T x 106 or 68 x 2)."""
    matrices, bias = [], None
    for points in landmarks:
        matrix, bias = affine_matrix(three_points(points), resolution, bias)
        matrices.append(matrix)
    return np.stack(matrices)


def warp_affine(
    images: torch.Tensor, matrices: torch.Tensor, size: tuple[int, int], fill: float | None,
    origin: tuple[int, int] = (0, 0),
) -> torch.Tensor:  # fmt: skip
    """kornia's ``warp_affine`` (bilinear, ``align_corners=True``): images (N x C x H x W, float) mapped by
    ``matrices`` (N x 2 x 3, source to destination pixels) into ``size`` (height, width) with the destination's
    pixel (0, 0) at ``origin`` (x, y) of the full destination; ``fill`` blended in where the source runs out (None:
    zeros)."""
    height, width = size
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64) + origin[1],
        torch.arange(width, dtype=torch.float64) + origin[0],
        indexing="ij",
    )
    full = torch.cat([matrices.double().cpu(), torch.tensor([[[0.0, 0.0, 1.0]]]).expand(len(matrices), 1, 3)], 1)
    inverse = torch.linalg.inv(full)[:, :2]
    source_x = inverse[:, 0, 0, None, None] * xs + inverse[:, 0, 1, None, None] * ys + inverse[:, 0, 2, None, None]
    source_y = inverse[:, 1, 0, None, None] * xs + inverse[:, 1, 1, None, None] * ys + inverse[:, 1, 2, None, None]
    rows, cols = images.shape[-2:]
    grid = torch.stack([2 * source_x / (cols - 1) - 1, 2 * source_y / (rows - 1) - 1], dim=-1)
    grid = grid.to(images.device, images.dtype)
    warped = F.grid_sample(images, grid, "bilinear", "zeros", align_corners=True)
    if fill is None:
        return warped
    inside = F.grid_sample(torch.ones_like(images[:, :1]), grid, "bilinear", "zeros", align_corners=True)
    return warped + (1 - inside) * fill


def affine_crops(frames: np.ndarray, matrices: np.ndarray, resolution: int = 256) -> np.ndarray:
    """The aligned faces (T x resolution x resolution x 3 uint8) of RGB frames (T x H x W x 3) and their matrices."""
    _, (width, height) = crop_geometry(resolution)
    crops = []
    for frame, matrix in zip(frames, matrices, strict=True):
        pixels = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1).float()[None]
        warped = warp_affine(pixels, torch.from_numpy(matrix)[None], (height, width), FILL)
        face = warped[0].permute(1, 2, 0).numpy().astype(np.uint8)
        crops.append(cv2.resize(face, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4))
    return np.stack(crops)


def _erode(mask: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Grey erosion of a (1 x 1 x H x W) mask by a square reaching ``before`` pixels up / left and ``after`` down /
    right of each pixel; pixels outside the mask are ignored (kornia's "geodesic" border, OpenCV's default)."""
    padded = F.pad(mask, (before, after, before, after), value=float("inf"))
    rows = -F.max_pool2d(-padded, (1, before + after + 1), stride=1)
    return -F.max_pool2d(-rows, (before + after + 1, 1), stride=1)


def _gaussian_blur(mask: torch.Tensor, taps: int, sigma: float) -> torch.Tensor:
    """kornia's separable ``gaussian_blur2d`` (reflected borders) of a (1 x 1 x H x W) mask."""
    x = torch.arange(taps, dtype=torch.float64) - taps // 2
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(mask)
    half = taps // 2
    mask = F.conv2d(F.pad(mask, (half, half, 0, 0), mode="reflect"), kernel.view(1, 1, 1, taps))
    return F.conv2d(F.pad(mask, (0, 0, half, half), mode="reflect"), kernel.view(1, 1, taps, 1))


def restore_face(frame: np.ndarray, face: torch.Tensor, matrix: np.ndarray, resolution: int) -> np.ndarray:
    """``frame`` (H x W x 3 uint8 RGB) with a generated ``face`` (3 x resolution x resolution, float in [-1, 1], on
    any device) pasted back through the crop's ``matrix``; a new frame, identical outside the soft mask. The work
    is done on the part of the frame the face covers (plus the blur's reach), the same pixels as on the whole."""
    _, (width, height) = crop_geometry(resolution)
    face = F.interpolate(face[None].float(), size=(height, width), mode="bicubic", antialias=True)
    rows, cols = frame.shape[:2]
    corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], np.float64)
    inverse = cv2.invertAffineTransform(matrix)
    reach = corners @ inverse.T
    area = float(np.abs(np.linalg.det(inverse[:, :2]))) * width * height
    margin = 3 * (int(area**0.5) // 20) + 4  # the blur's and the erosions' reach, with room
    x1, y1 = (max(int(np.floor(reach[:, i].min())) - margin, 0) for i in (0, 1))
    x2, y2 = min(int(np.ceil(reach[:, 0].max())) + margin, cols), min(int(np.ceil(reach[:, 1].max())) + margin, rows)
    if x2 <= x1 or y2 <= y1:
        return frame.copy()
    region = (y2 - y1, x2 - x1)
    matrices = torch.from_numpy(inverse)[None]
    pasted = warp_affine(face, matrices, region, FILL, (x1, y1))
    pasted = (pasted / 2 + 0.5).clamp(0, 1) * 255
    mask = warp_affine(torch.ones(1, 1, height, width).to(face), matrices, region, None, (x1, y1))
    mask = _erode(mask, 1, 0)
    edge = int(float(mask.double().sum()) ** 0.5) // 20
    centre = _erode(mask, edge, edge - 1) if edge > 0 else mask
    soft = _gaussian_blur(centre, 2 * edge + 1, 0.3 * ((2 * edge) * 0.5 - 1) + 0.8) if edge > 0 else centre
    source = torch.from_numpy(np.ascontiguousarray(frame[y1:y2, x1:x2])).to(face.device).permute(2, 0, 1)[None]
    blended = soft * (mask * pasted) + (1 - soft) * source.float()
    out = frame.copy()
    out[y1:y2, x1:x2] = blended[0].permute(1, 2, 0).to(torch.uint8).cpu().numpy()
    return out
