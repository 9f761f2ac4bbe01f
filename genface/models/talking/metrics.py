"""A simple, honest lip-sync proxy: does the mouth open when the speech is loud?

``lip_sync_correlation`` is Pearson's r between the per-frame mouth opening (inner-lip gap over face
height, from 68 landmarks) and the per-frame loudness of the audio (RMS in dB over the frame's span). It
needs no learned model, so it runs offline; it does not judge which mouth shape fits which sound (a SyncNet
does that), and a face that opens its mouth on every loud frame scores well whatever it says. A mouth
unrelated to the audio scores about 0; a still one has no variation and gives NaN.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from genface.models.talking.audio import SAMPLE_RATE

if TYPE_CHECKING:
    from genface.identity import Face, FaceSimResult, Recognizer

#: iBUG-68 inner-lip points: top (61-63) and bottom (65-67), and the chin / nose-bridge points for scale.
_INNER_TOP, _INNER_BOTTOM = (61, 62, 63), (67, 66, 65)
_CHIN, _BRIDGE = 8, 27


def mouth_opening(landmarks: np.ndarray | None) -> float:
    """Inner-lip gap divided by the nose-bridge-to-chin distance (68 landmarks); NaN without them."""
    if landmarks is None or len(landmarks) != 68:
        return float("nan")
    gap = np.linalg.norm(landmarks[list(_INNER_TOP)] - landmarks[list(_INNER_BOTTOM)], axis=1).mean()
    scale = np.linalg.norm(landmarks[_CHIN] - landmarks[_BRIDGE])
    return float(gap / scale) if scale > 0 else float("nan")


def frame_loudness(
    audio: np.ndarray, fps: float, num_frames: int, sample_rate: int = SAMPLE_RATE, *, first: int = 0, offset: int = 0
) -> np.ndarray:
    """RMS level (dBFS, floored at -100) of the audio samples spanned by each video frame: frames ``first`` onwards,
    of a speech whose sample ``offset`` is ``audio[0]``."""
    audio = np.asarray(audio, dtype=np.float64)
    levels = np.full(num_frames, -100.0)
    for k, i in enumerate(range(first, first + num_frames)):
        span = audio[int(i * sample_rate / fps) - offset : int((i + 1) * sample_rate / fps) - offset]
        if span.size:
            levels[k] = max(20 * np.log10(np.sqrt(np.mean(span**2)) + 1e-12), -100.0)
    return levels


def lip_sync_correlation(openings: np.ndarray, loudness: np.ndarray) -> float:
    """Pearson's r over frames where the opening is known; NaN when fewer than 3 such frames or no variation."""
    openings, loudness = np.asarray(openings, dtype=np.float64), np.asarray(loudness, dtype=np.float64)
    known = ~np.isnan(openings)
    if known.sum() < 3 or np.std(openings[known]) == 0 or np.std(loudness[known]) == 0:
        return float("nan")
    return float(np.corrcoef(openings[known], loudness[known])[0, 1])


class FrameMeter:
    """FaceSim to a reference face and the mouth opening of generated frames, measured as they stream past. Each
    frame's face is found again by the caller (its mouth has changed), where the caller knows to look."""

    def __init__(self, recognizer: Recognizer | None, reference: np.ndarray, face: Face, every: int) -> None:
        self.recognizer, self.every = recognizer, max(1, every)
        self.reference = None if recognizer is None else recognizer.embed(reference, face)
        self.scores: list[float] = []
        self.mouth: list[float] = []

    def measure(self, image: np.ndarray, face: Face | None) -> None:
        """Record the next frame: ``face`` found in ``image`` (a frame or a cut of it), or None where none was."""
        index = len(self.mouth)
        self.mouth.append(mouth_opening(face.landmarks) if face is not None else float("nan"))
        if self.reference is not None and index % self.every == 0:
            self.scores.append(
                float(self.recognizer.embed(image, face) @ self.reference) if face is not None else np.nan
            )

    def facesim(self) -> FaceSimResult | None:
        """FaceSim of every ``every``-th frame to the reference (None without a recognizer)."""
        from genface.identity import FaceSimResult

        if self.reference is None:
            return None
        return FaceSimResult(np.asarray(self.scores), self.recognizer.name, self.recognizer.match_threshold)

    def openings(self) -> np.ndarray:
        return np.asarray(self.mouth)
