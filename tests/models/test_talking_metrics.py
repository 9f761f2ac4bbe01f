"""The lip-sync proxy: mouth opening from landmarks, loudness per frame, and their correlation."""

from __future__ import annotations

import math

import numpy as np

from genface.models.talking.metrics import frame_loudness, lip_sync_correlation, mouth_opening


def _landmarks(gap: float) -> np.ndarray:
    points = np.zeros((68, 2))
    points[27] = (50, 40)  # nose bridge
    points[8] = (50, 140)  # chin: scale 100
    points[[61, 62, 63], 1] = 100
    points[[67, 66, 65], 1] = 100 + gap
    return points


def test_mouth_opening_is_the_inner_lip_gap_over_face_height() -> None:
    assert mouth_opening(_landmarks(0)) == 0
    assert mouth_opening(_landmarks(12)) == 0.12
    assert math.isnan(mouth_opening(None)) and math.isnan(mouth_opening(np.zeros((106, 2))))


def test_loudness_per_frame_and_correlation() -> None:
    rate, fps = 16000, 25
    envelope = np.repeat([0.01, 0.3, 0.05, 0.2], rate // fps)  # four frames of different loudness
    audio = envelope * np.sin(np.arange(len(envelope)) / 3)
    loudness = frame_loudness(audio, fps, 5)
    assert loudness[1] > loudness[3] > loudness[2] > loudness[0] and loudness[4] == -100
    openings = np.array([0.0, 0.3, 0.05, 0.2, np.nan])
    assert lip_sync_correlation(openings, loudness) > 0.9
    assert lip_sync_correlation(-openings, loudness) < -0.9
    assert math.isnan(lip_sync_correlation(np.zeros(5), loudness))  # a still mouth: no evidence either way
