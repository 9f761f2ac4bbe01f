"""What the dubbing pipelines (MuseTalk's and LatentSync's) share around their models: the frame rate and memory
checks made before any model work, the pitch per frame, the silence mode, and where the frames go (kept, or written
to a marked mp4 with the speech while rendering) with FaceSim and the lip-sync proxy measured on the way.

Silence mode (``silence=``): where the speech is silent (:mod:`genface.models.talking.silence`: a threshold on each
frame's loudness with hysteresis, quiet runs of at least 0.12 s, a 0.12 s fade), ``"source"`` keeps the source
frame (faded in and out, so a pause is the source's still mouth), ``"closed"`` conditions the model on the windows
of digital silence instead of the speech's (the mouth the model draws for silence: closed), and ``"animate"`` (the
default, the published behaviour) lets the model follow the speech's quiet parts like any other."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genface.errors import InsufficientMemoryError, InvalidArgumentError
from genface.identity import FaceSimResult
from genface.media import load_audio
from genface.models.talking.audio import FEATURES_PER_SECOND, SAMPLE_RATE, pitch_contour
from genface.models.talking.metrics import frame_loudness, lip_sync_correlation
from genface.models.talking.silence import speech_weights
from genface.pipelines.talking_face.prepared import FaceTrackBoxes, Frames

#: The most bytes of output frames a call keeps in memory when it is not writing a file (about 100 s of 1080p):
#: beyond it, give ``output_path`` (written while rendering, nothing kept) or stream the speech.
IN_MEMORY_BYTES = 16 * 2**30
#: The frame rates a dub is made at.
MIN_FPS, MAX_FPS = 1.0, 120.0
SILENCE_MODES = ("animate", "source", "closed")


def checked_fps(fps: float) -> float:
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
        raise InvalidArgumentError(f"fps must be between {MIN_FPS:g} and {MAX_FPS:g}, got {fps}.")
    return float(fps)


def check_in_memory(num_frames: int, frame_shape: tuple[int, ...], output_path: str | os.PathLike | None) -> None:
    """Refuse, before any model work, a run whose output frames would not fit :data:`IN_MEMORY_BYTES`."""
    needed = num_frames * int(np.prod(frame_shape))
    if output_path is None and needed > IN_MEMORY_BYTES:
        raise InsufficientMemoryError(
            f"The speech makes {num_frames} frames of {frame_shape[1]}x{frame_shape[0]} ({needed / 2**30:.1f} GiB), "
            f"more than the {IN_MEMORY_BYTES / 2**30:.0f} GiB kept in memory: pass output_path= (written while "
            "rendering, nothing kept) or feed the speech to pipe.stream()."
        )


def check_silence(silence: str) -> str:
    if silence not in SILENCE_MODES:
        raise InvalidArgumentError(f"silence must be one of {', '.join(SILENCE_MODES)}; got {silence!r}.")
    return silence


def silence_weights(speech: np.ndarray, fps: float, num_frames: int, silence: str) -> np.ndarray | None:
    """Each frame's speech weight (1 speech, 0 silence) for ``silence`` ``"source"`` or ``"closed"``; None for
    ``"animate"``."""
    if check_silence(silence) == "animate":
        return None
    return speech_weights(frame_loudness(speech, fps, num_frames), fps)


def mix_windows(speech: torch.Tensor, silent: torch.Tensor, weights: np.ndarray) -> torch.Tensor:
    """Audio windows for ``silence="closed"``: the speech's where the weight is 1, silence's where it is 0, mixed
    in the fades."""
    if (weights == 1).all():
        return speech
    w = torch.from_numpy(weights).to(speech)[:, None, None]
    return w * speech + (1 - w) * silent.to(speech)


def keep_source(frames: np.ndarray, sources: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Frames for ``silence="source"``: the generated frame where the weight is 1, the source frame where it is 0,
    mixed (rounded) in the fades."""
    out = frames.copy()
    for i, (source, w) in enumerate(zip(sources, weights, strict=True)):
        if w < 1:
            out[i] = np.rint(w * frames[i].astype(np.float32) + (1 - w) * source.astype(np.float32)).astype(np.uint8)
    return out


class ClosedInSilence:
    """Audio windows for ``silence="closed"``: ``speech(start, count)``'s mixed with ``silent(start, count)``'s (the
    windows of digital silence) by the frames' ``weights`` (given for every frame asked for)."""

    def __init__(self, speech: Any, silent: Any, weights: np.ndarray) -> None:
        self.speech, self.silent, self.weights = speech, silent, weights
        self.num_frames = getattr(speech, "num_frames", len(weights))

    def __call__(self, start: int, count: int) -> torch.Tensor:
        return mix_windows(self.speech(start, count), self.silent(start, count), self.weights[start : start + count])


class SourceInSilence:
    """Output frames, batch after batch, for ``silence="source"``: source frame ``pingpong(i)`` of ``frames`` kept
    where output frame ``i``'s weight is 0."""

    def __init__(self, frames: Frames, count: int, weights: np.ndarray) -> None:
        self.frames, self.count, self.weights, self.done = frames, count, weights, 0

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        from genface.pipelines.talking_face.pipeline import pingpong

        span = range(self.done, self.done + len(batch))
        self.done += len(batch)
        if (self.weights[span.start : span.stop] == 1).all():
            return batch
        sources = [self.frames[pingpong(i, self.count)] for i in span]
        return keep_source(batch, sources, self.weights[span.start : span.stop])


def frame_pitch(speech: np.ndarray, fps: float, num_frames: int) -> np.ndarray:
    """f0 (Hz, 0 unvoiced) at the middle of each of ``num_frames`` video frames."""
    f0 = pitch_contour(speech)
    centres = np.minimum(((np.arange(num_frames) + 0.5) * FEATURES_PER_SECOND / fps).astype(int), len(f0) - 1)
    return f0[centres] if len(f0) else np.zeros(num_frames, np.float32)


@dataclass
class DubResult:
    frames: np.ndarray | None
    path: Path | None
    facesim: FaceSimResult | None
    mouth_opening: np.ndarray | None
    lip_sync: float | None


class DubSink:
    """Output frames, a batch at a time, to memory or a marked mp4 with the speech; measured as they pass and
    counted on the pipeline's progress bar."""

    def __init__(
        self,
        pipe: Any,
        frames: Frames,
        track: FaceTrackBoxes,
        speech: np.ndarray,
        fps: float,
        num_frames: int,
        measure: bool,
        facesim_every: int,
    ) -> None:
        from genface.pipelines.talking_face.pipeline import _Meter

        self.pipe, self.speech, self.fps, self.num_frames = pipe, speech, fps, num_frames
        self.meter = _Meter(pipe._analyzer(), frames, track, facesim_every) if measure else None

    def run(
        self,
        batches: Iterable[np.ndarray],
        audio: str | os.PathLike | np.ndarray,
        audio_rate: int | None,
        output_path: str | os.PathLike | None,
    ) -> DubResult:
        collected: list[np.ndarray] = []
        path = None
        if output_path is None:
            self._drain(batches, collected.append)
        else:
            from genface.provenance import marked_video_writer

            track = (
                audio
                if isinstance(audio, (str, os.PathLike))
                else load_audio(audio, audio_rate, source_rate=audio_rate)
            )
            name = self.pipe.name_or_path
            with marked_video_writer(
                output_path, self.fps, "talking_face", name, audio=track, audio_rate=audio_rate or SAMPLE_RATE
            ) as writer:
                self._drain(batches, writer.write)
            path = writer.path
        result = DubResult(np.concatenate(collected) if collected else None, path, None, None, None)
        if self.meter is not None:
            result.facesim, result.mouth_opening = self.meter.facesim(), self.meter.openings()
            loudness = frame_loudness(self.speech, self.fps, self.num_frames)
            result.lip_sync = lip_sync_correlation(result.mouth_opening, loudness)
        return result

    def _drain(self, batches: Iterable[np.ndarray], write: Any) -> None:
        with self.pipe.progress_bar(total=self.num_frames) as bar:
            for batch in batches:
                write(batch)
                if self.meter is not None:
                    self.meter.add(batch)
                bar.update(len(batch))
