"""Face tracking over frames: consistent choice, lost frames held, smoothing without lag."""

from __future__ import annotations

import numpy as np
import pytest

from genface.errors import NoFaceError
from genface.identity.track import box_iou, fill_and_smooth, track_face


def test_lost_frames_hold_the_nearest_found_box() -> None:
    boxes = np.array([[0, 0, 0, 0], [10, 10, 50, 50], [0, 0, 0, 0], [0, 0, 0, 0], [20, 10, 60, 50]], float)
    found = np.array([False, True, False, False, True])
    held = fill_and_smooth(boxes, found, sigma=0)
    assert held[:4].tolist() == [[10, 10, 50, 50]] * 4 and held[4].tolist() == [20, 10, 60, 50]
    with pytest.raises(NoFaceError):
        fill_and_smooth(boxes, np.zeros(5, bool))


def test_smoothing_removes_jitter_without_lag() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(200)
    truth = np.stack([100 + 0.5 * t, 80 + 0 * t, 200 + 0.5 * t, 180 + 0 * t], axis=1).astype(float)
    noisy = truth + rng.normal(0, 3, truth.shape)
    smooth = fill_and_smooth(noisy, np.ones(200, bool), sigma=3)
    inner = slice(10, -10)
    assert np.abs(smooth - truth)[inner].std() < 0.4 * np.abs(noisy - truth)[inner].std()
    assert abs((smooth - truth)[inner, 0].mean()) < 0.3  # zero phase: a moving face is not trailed
    constant = np.tile([5.0, 6.0, 7.0, 8.0], (7, 1))
    assert np.allclose(fill_and_smooth(constant, np.ones(7, bool)), constant)


def test_track_follows_one_person_and_marks_lost_frames(dlib_analyzer, group, astronaut) -> None:
    faces = dlib_analyzer.detect(group)
    black = np.zeros_like(group)
    track = track_face([group, black, group], dlib_analyzer, face_index=2, progress=False)
    assert track.lost == [1]
    assert box_iou(track.faces[0].bbox, faces[2].bbox) > 0.9 and box_iou(track.faces[2].bbox, faces[2].bbox) > 0.9
    # a different person appearing where the tracked one was lost does not take over
    other = track_face([astronaut, np.roll(astronaut, 300, axis=1)], dlib_analyzer, progress=False)
    assert other.lost == [1]
    with pytest.raises(NoFaceError, match="any of the 2 frame"):
        track_face([black, black], dlib_analyzer, progress=False)
