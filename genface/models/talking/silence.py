"""Where the speech is silent, frame by frame: a speech weight from each video frame's loudness (1 speech, 0 silence).

A frame is quiet when its loudness (RMS over the frame's span, :func:`~genface.models.talking.metrics.
frame_loudness`) falls below :data:`SILENCE_DB`, and stays quiet until a frame rises above :data:`SPEECH_DB`
(hysteresis, so a noise floor between the two does not flicker). Quiet runs shorter than :data:`MIN_SILENCE_SECONDS`
are speech (the closures of stops between syllables); in a silence the weight falls to 0 over
:data:`FADE_SECONDS` from each speech frame around it. Measured on espeak-ng speech (the tests' voice): its speech
frames lie between -47 and -13 dBFS at 25 fps (the quietest are word onsets), its pauses are digital silence
(-100); a recording's room tone usually lies below -55.

The weight of a frame depends on the loudness of :attr:`SilenceGate.lookahead` later frames, never on how the frames
arrive: :class:`SilenceGate` gives the same weights for a stream as for the whole speech.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: A frame quieter than this starts (or continues) a silence; a silence ends at a frame louder than SPEECH_DB.
SILENCE_DB = -50.0
SPEECH_DB = -45.0
#: Quiet runs shorter than this are speech; the fade into and out of a silence.
MIN_SILENCE_SECONDS = 0.12
FADE_SECONDS = 0.12


class SilenceGate:
    """Speech weights of video frames at ``fps`` from their loudness (dBFS) pushed in order; :meth:`ready` gives
    each frame's weight once it is final."""

    def __init__(self, fps: float) -> None:
        self.fade = max(1, round(FADE_SECONDS * fps))
        self.min_run = max(1, round(MIN_SILENCE_SECONDS * fps))
        self.quiet: list[bool] = []
        self.done = 0
        self._silent = False

    @property
    def lookahead(self) -> int:
        """Frames after a frame whose loudness its weight depends on."""
        return self.fade + self.min_run - 1

    def push(self, loudness: Iterable[float]) -> None:
        for level in loudness:
            self._silent = level < (SPEECH_DB if self._silent else SILENCE_DB)
            self.quiet.append(self._silent)

    def ready(self, end: bool = False) -> np.ndarray:
        """Weights of the frames not yet given whose weight is final (all of them at the ``end`` of the speech)."""
        known = len(self.quiet)
        stop = known if end else max(known - self.lookahead, self.done)
        quiet = np.asarray(self.quiet[max(self.done - self.fade - self.min_run, 0) : min(stop + self.lookahead, known)])
        first = max(self.done - self.fade - self.min_run, 0)
        # a frame is silent when a run of min_run quiet frames covers it
        runs = np.lib.stride_tricks.sliding_window_view(quiet, self.min_run).all(axis=1) if len(quiet) >= self.min_run \
            else np.zeros(0, bool)  # fmt: skip
        silent = np.zeros(len(quiet), bool)
        for offset in range(self.min_run):
            silent[offset : offset + len(runs)] |= runs
        weights = np.ones(stop - self.done)
        for i in range(self.done, stop):
            local = i - first
            if silent[local]:
                around = silent[max(local - self.fade, 0) : local + self.fade + 1]
                speech = np.flatnonzero(~around) + max(local - self.fade, 0) - local
                distance = np.abs(speech).min() if speech.size else self.fade
                weights[i - self.done] = 1 - min(distance, self.fade) / self.fade
        self.done = stop
        return weights


def speech_weights(loudness: np.ndarray, fps: float) -> np.ndarray:
    """The speech weight of every frame of a whole speech, from its frames' loudness (dBFS)."""
    gate = SilenceGate(fps)
    gate.push(loudness)
    return gate.ready(end=True)
