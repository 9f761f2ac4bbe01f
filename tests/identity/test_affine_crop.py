"""LatentSync's three-point crop and paste-back (genface.identity.affine_crop) against their computation, written
their way here: ``AlignRestore.transformation_from_points`` in float32 torch, kornia's ``warp_affine`` through
``affine_grid`` on normalised coordinates, and ``restore_img`` (kornia's 2 x 2 erosion, OpenCV's square erosion,
kornia's Gaussian blur) for LatentSync's ``latentsync/utils/affine_transform.py``, at 256 px (v1.5) and 512 px (v1.6).
First checked against their own code (kornia 0.8.2, float32 on the CPU): the same differences as below."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genface.errors import InvalidArgumentError
from genface.identity.affine_crop import affine_crops, affine_matrices, restore_face, three_points


def _their_template(resolution: int) -> tuple[np.ndarray, tuple[int, int]]:
    ratio = resolution / 256 * 2.8
    face_template = np.array([[19 - 2, 30 - 10], [56 + 2, 30 - 10], [37.5, 45 - 5]]) * ratio
    return face_template, (int(75 * ratio), int(100 * ratio))


def _their_matrix(landmarks3: np.ndarray, p_bias, resolution: int):
    """AlignRestore.transformation_from_points(landmarks3, face_template, smooth=True, p_bias) in their float32
    torch operations."""
    points2 = torch.tensor(_their_template(resolution)[0], dtype=torch.float32)
    points1 = torch.tensor(landmarks3, dtype=torch.float32)
    c1, c2 = points1.mean(0), points2.mean(0)
    s1, s2 = torch.std(points1 - c1), torch.std(points2 - c2)
    n1, n2 = (points1 - c1) / s1, (points2 - c2) / s2
    U, S, V = torch.svd(n1.T @ n2)
    R = V @ U.T
    if torch.det(R) < 0:
        V[:, -1] = -V[:, -1]
        R = V @ U.T
    M = torch.cat(((s2 / s1) * R, c2.reshape(2, 1) - (s2 / s1) * (R @ c1.reshape(2, 1))), dim=1)
    bias = n2[2] - n1[2]
    if p_bias is not None:
        bias = p_bias * 0.2 + bias * 0.8
    M[:, 2] = M[:, 2] + bias
    return M.numpy(), bias


def _normal(h: int, w: int) -> torch.Tensor:
    return torch.tensor([[2.0 / (w - 1), 0.0, -1.0], [0.0, 2.0 / (h - 1), -1.0], [0.0, 0.0, 1.0]])


def _kornia_warp(src: torch.Tensor, matrix: np.ndarray, size: tuple[int, int], fill: float | None) -> torch.Tensor:
    """kornia's warp_affine(src, M, size, "bilinear", padding_mode="fill" or "zeros"), align_corners=True: M taken to
    normalised coordinates, inverted, affine_grid; the fill blended in through a warped ones-mask."""
    full = torch.cat((torch.from_numpy(matrix).float(), torch.tensor([[0.0, 0.0, 1.0]])))
    dst_norm = _normal(*size) @ full @ torch.linalg.inv(_normal(*src.shape[-2:]))
    grid = F.affine_grid(torch.linalg.inv(dst_norm)[None, :2], [1, src.shape[1], *size], align_corners=True)
    out = F.grid_sample(src, grid, align_corners=True, mode="bilinear", padding_mode="zeros")
    if fill is None:
        return out
    mask = 1 - F.grid_sample(torch.ones_like(src), grid, align_corners=True, mode="bilinear", padding_mode="zeros")
    return out + mask * fill


def _their_crop(image: np.ndarray, matrix: np.ndarray, resolution: int) -> np.ndarray:
    """align_warp_face's warp, astype(uint8), then ImageProcessor's cv2.resize(..., INTER_LANCZOS4)."""
    width, height = _their_template(resolution)[1]
    src = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    face = _kornia_warp(src, matrix, (height, width), 127)[0].permute(1, 2, 0).numpy().astype(np.uint8)
    return cv2.resize(face, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)


def _their_restore(image: np.ndarray, face: torch.Tensor, matrix: np.ndarray, resolution: int) -> np.ndarray:
    """LipsyncPipeline.restore_video's resize (torchvision bicubic, antialiased) and AlignRestore.restore_img."""
    width, height = _their_template(resolution)[1]
    face = F.interpolate(face[None], size=(height, width), mode="bicubic", antialias=True)
    h, w = image.shape[:2]
    inv = cv2.invertAffineTransform(matrix)
    inv_face = _kornia_warp(face, inv, (h, w), 127)[0]
    inv_face = (inv_face / 2 + 0.5).clamp(0, 1) * 255
    input_img = torch.from_numpy(image).permute(2, 0, 1).float()
    inv_mask = _kornia_warp(torch.ones(1, 1, height, width), inv, (h, w), None)
    # kornia.morphology.erosion with a 2x2 kernel: origin (1, 1), geodesic border (padding at the maximum)
    padded = F.pad(inv_mask, (1, 0, 1, 0), value=1e4)
    inv_mask_erosion = torch.minimum(
        torch.minimum(padded[..., :-1, :-1], padded[..., :-1, 1:]),
        torch.minimum(padded[..., 1:, :-1], padded[..., 1:, 1:]),
    )
    pasted_face = inv_mask_erosion[0] * inv_face
    total_face_area = torch.sum(inv_mask_erosion.float())
    w_edge = int(total_face_area**0.5) // 20
    erosion_radius = w_edge * 2
    eroded = cv2.erode(inv_mask_erosion.squeeze().numpy().astype(np.float32), np.ones((erosion_radius,) * 2, np.uint8))
    inv_mask_center = torch.from_numpy(eroded)[None, None]
    blur_size = w_edge * 2 + 1
    sigma = 0.3 * ((blur_size - 1) * 0.5 - 1) + 0.8
    x = torch.arange(blur_size).float() - blur_size // 2  # kornia's get_gaussian_kernel1d
    kernel = torch.exp(-x.pow(2.0) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    half = blur_size // 2
    blurred = F.conv2d(
        F.pad(inv_mask_center, (half, half, half, half), mode="reflect"), torch.outer(kernel, kernel)[None, None]
    )
    inv_soft_mask = blurred[0]
    img_back = inv_soft_mask * pasted_face + (1 - inv_soft_mask) * input_img
    return img_back.permute(1, 2, 0).contiguous().to(dtype=torch.uint8).numpy()


def _landmarks(frames: int, scale: float = 1.0) -> np.ndarray:
    """106 points per frame of a face that moves, turns and grows, last near the frame's corner (gray fill)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(-40, 40, (106, 2))
    out = []
    for i in range(frames):
        angle = 0.1 * i - 0.15
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = (100 + 7.3 * i, 90 - 5.1 * i) if i < frames - 1 else (30, 25)
        out.append((base @ rotation.T * (1 + 0.05 * i) + centre + rng.normal(0, 0.7, (106, 2))) * scale)
    return np.stack(out)


@pytest.mark.parametrize("resolution", [256, 512])
def test_three_point_crop_equals_their_affine_transform(resolution: int) -> None:
    """ImageProcessor.affine_transform on given 106 landmarks, frame after frame through one AlignRestore (its
    smoothing state carried): the three points, the fitted matrices and the crops."""
    scale = resolution / 256
    landmarks = _landmarks(5, scale)
    frames = np.random.default_rng(1).integers(0, 256, (5, int(180 * scale), int(200 * scale), 3), dtype=np.uint8)
    theirs, crops, p_bias = [], [], None
    for frame, lmk in zip(frames, np.round(landmarks).astype(np.int_), strict=True):
        left = np.mean(lmk[[43, 48, 49, 51, 50]], axis=0)
        right = np.mean(lmk[101:106], axis=0)
        nose = np.mean(lmk[[74, 77, 83, 86]], axis=0)
        matrix, p_bias = _their_matrix(np.round([left, right, nose]), p_bias, resolution)
        theirs.append(matrix)
        crops.append(_their_crop(frame, matrix, resolution))
    ours = affine_matrices(landmarks, resolution)
    np.testing.assert_allclose(ours, np.stack(theirs), rtol=1e-5, atol=2e-4)
    warped = affine_crops(frames, ours, resolution)
    assert warped.shape == (5, resolution, resolution, 3) and (warped[-1] == 127).any()  # the last runs off the frame
    diff = np.abs(warped.astype(int) - np.stack(crops))
    # float32 rounding of the sampling grid flips the uint8 truncation by one level in 0.2-0.5% of values, which
    # the Lanczos resize can carry to two (their own float16 run differs from either by more)
    assert diff.max() <= 2 and (diff > 0).mean() < 0.006


@pytest.mark.parametrize("resolution", [256, 512])
def test_paste_back_equals_their_restore_img(resolution: int) -> None:
    scale = resolution / 256
    landmarks = _landmarks(5, scale)[[0, 4]]  # one inside the frame, one off its corner
    frames = np.random.default_rng(2).integers(0, 256, (2, int(180 * scale), int(200 * scale), 3), dtype=np.uint8)
    matrices = affine_matrices(landmarks, resolution)
    faces = torch.rand(2, 3, resolution, resolution, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for frame, face, matrix in zip(frames, faces, matrices, strict=True):
        ours = restore_face(frame, face, matrix, resolution)
        theirs = _their_restore(frame, face, matrix, resolution)
        changed = (theirs != frame).any(-1)
        assert changed.mean() > 0.05
        diff = np.abs(ours.astype(int) - theirs)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.002  # uint8 truncation flips on float rounding


def test_68_landmarks_give_the_same_eyebrows_and_nose_bridge_as_their_106_to_68_table() -> None:
    """LatentSync's face_detector.py maps 106 points onto iBUG's 68 (LMK_ADAPT_ORIGIN_ORDER): its eyebrows are the
    crop's eyebrow points, so a face given both ways gets the same two eyebrow centres."""
    order = [1, 10, 12, 14, 16, 3, 5, 7, 0, 23, 21, 19, 32, 30, 28, 26, 17, 43, 48, 49, 51, 50, 102, 103, 104, 105, 101,
             73, 74, 86]  # fmt: skip
    dense = np.random.default_rng(3).uniform(0, 300, (106, 2))
    ibug = np.zeros((68, 2))
    ibug[: len(order)] = dense[order]
    ibug[[31, 35]] = dense[[77, 83]]
    np.testing.assert_array_equal(three_points(ibug), three_points(dense))
    with pytest.raises(InvalidArgumentError, match="106 or 68 landmarks"):
        three_points(dense[:5])
