"""Property-based tests (hypothesis) of audio/video alignment and of the talking-face geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genface.errors import InvalidArgumentError
from genface.media.video import frame_index
from genface.models.talking.audio import FEATURES_PER_SECOND, feature_count, frame_count, window_features
from genface.pipelines.talking_face.pipeline import pingpong
from genface.pipelines.talking_face.regions import BlendMask, blend

FPS = st.floats(min_value=5, max_value=60, allow_nan=False)


@given(samples=st.integers(0, 16000 * 600), fps=FPS)
def test_the_frames_cover_the_audio_to_within_one_frame(samples: int, fps: float) -> None:
    frames, seconds = frame_count(samples, fps), samples / 16000
    # MuseTalk's floor(seconds * fps) in floating point: a whole count can round to one below it (18560 samples)
    assert frames / fps <= seconds + 1e-6 < (frames + 1) / fps + 2e-6
    assert feature_count(samples) == math.floor(seconds * FEATURES_PER_SECOND)


@given(fps=FPS, start=st.integers(0, 300), count=st.integers(1, 40), left=st.integers(0, 3), right=st.integers(0, 3))
@settings(max_examples=60, deadline=None)
def test_any_span_of_windows_equals_the_whole_and_sits_on_its_frame(fps, start, count, left, right) -> None:
    features = int((start + count) * 50 / fps) + 5
    hidden = torch.arange(1, features + 1, dtype=torch.float32)  # feature k holds k + 1; padding holds 0
    offset = math.ceil(50 / fps) * left  # where frame i's own feature sits in its window
    if offset >= 2 * (left + right + 1):
        with pytest.raises(InvalidArgumentError, match="ends before the frame's own audio"):
            window_features(hidden, count, fps, left, right, start=start)
        return
    whole = window_features(hidden, start + count, fps, left, right)
    span = window_features(hidden, count, fps, left, right, start=start)
    torch.testing.assert_close(span, whole[start:])
    for i in range(start, start + count):  # the window's own position is frame i's moment, to within 20 ms
        own = int(whole[i, offset]) - 1
        assert abs(own - i * 50 / fps) < 1


@given(count=st.integers(1, 50), length=st.integers(1, 400))
def test_pingpong_never_jumps(count: int, length: int) -> None:
    indices = [pingpong(i, count) for i in range(length)]
    assert all(0 <= k < count for k in indices) and indices[0] == 0
    assert all(abs(a - b) <= 1 for a, b in zip(indices, indices[1:], strict=False))


@given(fps=FPS, frames=st.integers(2, 200), jitter=st.floats(-0.24, 0.24), seed=st.integers(0, 99))
def test_regular_timestamps_map_frame_for_frame(fps: float, frames: int, jitter: float, seed: int) -> None:
    """Timestamps off by up to a quarter frame (rounding in containers) still give frame i -> output i."""
    shake = np.random.default_rng(seed).uniform(-abs(jitter), abs(jitter), frames)
    assert [frame_index((i + shake[i]) / fps, fps) for i in range(frames)] == list(range(frames))


@given(height=st.integers(40, 120), width=st.integers(40, 120), data=st.data(), seed=st.integers(0, 99))
@settings(max_examples=40, deadline=None)
def test_blending_leaves_every_pixel_outside_the_mask_unchanged(height, width, data, seed) -> None:
    x1 = data.draw(st.integers(0, width - 10))
    y1 = data.draw(st.integers(0, height - 10))
    x2, y2 = data.draw(st.integers(x1 + 8, width)), data.draw(st.integers(y1 + 8, height))
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    side = max(x2 - x1, y2 - y1) + 6
    alpha = rng.random((side, side)).astype(np.float32) * (rng.random((side, side)) < 0.5)
    mask = BlendMask(alpha, (x1 - 3, y1 - 3, x1 - 3 + side, y1 - 3 + side))
    out = blend(frame, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), (x1, y1, x2, y2), mask)
    touched = np.zeros((height, width), bool)
    touched[y1:y2, x1:x2] = alpha[3 : 3 + y2 - y1, 3 : 3 + x2 - x1] > 0
    assert np.array_equal(out[~touched], frame[~touched]) and out.dtype == np.uint8
