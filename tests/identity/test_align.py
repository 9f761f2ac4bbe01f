"""Alignment geometry: parity with insightface, exact template landing, paste-back round trips."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genface.identity.align import (
    ARCFACE_TEMPLATE,
    align_face,
    alignment_matrix,
    paste_back,
    similarity_transform,
    template_points,
)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_matches_insightface_estimate_norm() -> None:
    from insightface.utils import face_align

    rng = np.random.default_rng(1)
    for _ in range(5):
        kps = ARCFACE_TEMPLATE * rng.uniform(1, 4) + rng.uniform(0, 300, 2) + rng.normal(0, 2, (5, 2))
        kps = kps.astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # scikit-image's deprecation inside insightface
            reference = face_align.estimate_norm(kps, 112)
        np.testing.assert_allclose(alignment_matrix(kps, "arcface", 112), reference, atol=1e-4)


def test_crop_is_the_warped_image(portrait: np.ndarray) -> None:
    kps = ARCFACE_TEMPLATE * 2 + 20  # the face at twice the template size, shifted
    big = np.zeros((300, 300, 3), dtype=np.uint8)
    big[20:244, 20:244] = np.kron(portrait, np.ones((2, 2, 1), dtype=np.uint8))
    crop, matrix = align_face(big, kps, "arcface")
    assert crop.shape == (112, 112, 3)
    np.testing.assert_allclose(matrix[:, :2], np.eye(2) * 0.5, atol=1e-9)
    assert np.abs(crop.astype(int) - portrait.astype(int)).mean() < 6


@settings(max_examples=60, deadline=None)
@given(
    scale=st.floats(0.3, 5.0),
    angle=st.floats(-np.pi, np.pi),
    shift=st.tuples(st.floats(-500, 500), st.floats(-500, 500)),
    size=st.sampled_from([112, 224, 512]),
    template=st.sampled_from(["arcface", "ffhq"]),
)
def test_keypoints_land_on_the_template(scale, angle, shift, size, template) -> None:
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    target = template_points(template, size)
    kps = (target @ rot.T) * scale + np.array(shift)  # an exact similarity image of the template
    matrix = alignment_matrix(kps, template, size)
    np.testing.assert_allclose(_apply(matrix, kps), target, atol=1e-6 * size)


@settings(max_examples=40, deadline=None)
@given(
    points=st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=5, max_size=5),
    scale=st.floats(0.1, 10),
)
def test_similarity_transform_inverts(points, scale) -> None:
    src = np.array(points)
    if np.ptp(src, axis=0).max() < 1.0:
        return  # degenerate (all points together)
    dst = src * scale + 3.0
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(_apply(matrix, src), dst, atol=1e-6 * max(1.0, np.abs(dst).max()))


@settings(max_examples=25, deadline=None)
@given(angle=st.floats(-0.5, 0.5), scale=st.floats(1.5, 3.0))
def test_paste_back_round_trip(angle, scale) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (200, 220, 3), dtype=np.uint8)
    center = np.array([110.0, 100.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    kps = ((ARCFACE_TEMPLATE - 56) @ rot.T) / scale * 2 + center
    crop, matrix = align_face(image, kps, "arcface", 112)
    mask = np.zeros((112, 112), dtype=np.float32)
    mask[30:80, 30:80] = 1.0
    edited = np.full_like(crop, 7)
    out = paste_back(image, edited, matrix, mask)
    inverse_mask = _apply(np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2], np.array([[55.0, 55.0]]))
    x, y = np.round(inverse_mask[0]).astype(int)
    assert (out[y, x] == 7).all()  # inside the mask: the edit
    untouched = np.ones(image.shape[:2], bool)
    untouched[int(center[1]) - 70 : int(center[1]) + 70, int(center[0]) - 70 : int(center[0]) + 70] = False
    np.testing.assert_array_equal(out[untouched], image[untouched])  # outside: exactly the original


def test_borders_follow_each_reference(portrait: np.ndarray) -> None:
    # A face at the image corner: part of each crop lies outside the image.
    kps = ARCFACE_TEMPLATE - 40
    arcface, _ = align_face(portrait, kps, "arcface")
    ffhq, _ = align_face(portrait, kps, "ffhq")
    assert (arcface[0, 0] == 0).all()  # insightface's norm_crop: black
    assert tuple(ffhq[0, 0]) == (135, 133, 132)  # facexlib's align_warp_face: gray


def test_unknown_template() -> None:
    with pytest.raises(ValueError, match="Unknown alignment template"):
        alignment_matrix(ARCFACE_TEMPLATE, "nope")
