"""Video read/write with PyAV: H.264 mp4 with an optional AAC audio track; frame rate preserved."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from genface.errors import InvalidMediaError
from genface.media._files import atomic_path

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")


def is_video_path(source: object) -> bool:
    """Whether ``source`` is a path naming a video file (by its suffix)."""
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() in VIDEO_SUFFIXES


def read_video(path: str | os.PathLike, *, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Read a video as ``(frames, fps)``: frames are TxHxWx3 uint8 RGB, rotation metadata applied.

    A variable-frame-rate video is resampled to a constant rate (its average) by timestamps, each output
    frame showing the frame on screen at that moment, so that frame ``i`` is at ``i / fps`` seconds.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidMediaError(f"Video file not found: {path}")
    frames: list[np.ndarray] = []
    times: list[float | None] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InvalidMediaError(f"{path} has no video stream.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            fps = float(rate) if rate else 25.0
            for frame in container.decode(stream):
                rgb = frame.to_ndarray(format="rgb24")
                turns = (-int(getattr(frame, "rotation", 0) or 0) // 90) % 4
                frames.append(np.ascontiguousarray(np.rot90(rgb, k=-turns)) if turns else rgb)
                times.append(frame.time)
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.FFmpegError as exc:
        raise InvalidMediaError(f"{path} could not be decoded as video: {exc}") from exc
    if not frames:
        raise InvalidMediaError(f"{path} contains no video frames.")
    return np.stack(_constant_rate(frames, times, fps)), fps


def _constant_rate(frames: list[np.ndarray], times: list[float | None], fps: float) -> list[np.ndarray]:
    """Frames at ``fps`` from frames at ``times`` (seconds); unchanged when the times are already regular."""
    if len(frames) < 3 or any(t is None for t in times):
        return frames
    stamps = np.asarray(times, dtype=np.float64)
    gaps = np.diff(stamps)
    if np.all(np.abs(gaps - 1 / fps) < 0.25 / fps):
        return frames
    count = max(1, round((stamps[-1] - stamps[0]) * fps) + 1)
    shown = np.searchsorted(stamps, stamps[0] + np.arange(count) / fps + 1e-6, side="right") - 1
    return [frames[i] for i in shown]


def _even_frames(frames: np.ndarray) -> np.ndarray:
    """H.264 with yuv420p needs even sizes: pad the last row/column by edge replication."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


class VideoWriter:
    """Stream RGB uint8 frames into an H.264 mp4 (optional mono AAC track), atomically.

    Frames go to a temporary file beside ``path`` as they are written, so memory stays bounded; the file
    appears at ``path`` only when the ``with`` block ends without an error (an interrupted run leaves nothing).
    Frame sizes must not change; odd sizes are padded to even by edge replication.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        *,
        audio: np.ndarray | None = None,
        audio_rate: int = 16000,
        crf: int = 18,
        metadata: dict[str, str] | None = None,
    ) -> None:
        if fps <= 0:
            raise InvalidMediaError(f"fps must be positive, got {fps}.")
        self.path = Path(path)
        self.fps, self.audio, self.audio_rate, self.crf = fps, audio, audio_rate, crf
        self.metadata = metadata or {}
        self.frames_written = 0
        self._stack = contextlib.ExitStack()
        self._container: av.container.OutputContainer | None = None
        self._video: av.video.stream.VideoStream | None = None
        self._audio: av.audio.stream.AudioStream | None = None

    def __enter__(self) -> VideoWriter:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._container = self._stack.enter_context(av.open(str(tmp), mode="w", format="mp4"))
        self._container.metadata.update(self.metadata)
        return self

    def write(self, frames: np.ndarray) -> None:
        """Append one frame (HxWx3) or several (TxHxWx3)."""
        if self._container is None:
            raise RuntimeError("VideoWriter.write is used inside its `with` block.")
        array = np.asarray(frames)
        array = array[None] if array.ndim == 3 else array
        if array.ndim != 4 or array.shape[-1] != 3:
            raise InvalidMediaError(f"Frames must be TxHxWx3 (or HxWx3); got shape {array.shape}.")
        if array.dtype != np.uint8:
            raise InvalidMediaError(f"Frames must be uint8 RGB; got {array.dtype}.")
        array = _even_frames(array)
        if self._video is None:
            self._video = self._container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self._video.width, self._video.height = array.shape[2], array.shape[1]
            self._video.pix_fmt = "yuv420p"
            self._video.options = {"crf": str(self.crf)}
            if self.audio is not None:  # every stream must exist before the first packet is written
                self._audio = self._container.add_stream("aac", rate=self.audio_rate, layout="mono")
        elif (array.shape[2], array.shape[1]) != (self._video.width, self._video.height):
            raise InvalidMediaError(
                f"Frame size changed from {self._video.width}x{self._video.height} to "
                f"{array.shape[2]}x{array.shape[1]} within one video."
            )
        for rgb in array:
            self._container.mux(self._video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        self.frames_written += len(array)

    def _finish(self) -> None:
        if self._video is None:
            raise InvalidMediaError("No frames were written; a video needs at least one frame.")
        self._container.mux(self._video.encode(None))
        if self._audio is not None:
            stream = self._audio
            samples = np.ascontiguousarray(np.asarray(self.audio, dtype=np.float32).reshape(1, -1))
            chunk = stream.codec_context.frame_size or 1024
            for start in range(0, samples.shape[1], chunk):
                frame = av.AudioFrame.from_ndarray(samples[:, start : start + chunk], format="fltp", layout="mono")
                frame.sample_rate = self.audio_rate
                frame.pts = start
                self._container.mux(stream.encode(frame))
            self._container.mux(stream.encode(None))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if exc_type is None:
            try:
                self._finish()
            except BaseException:
                self._stack.__exit__(*sys.exc_info())
                raise
        return bool(self._stack.__exit__(exc_type, exc, tb))


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Sequence[np.ndarray],
    fps: float = 8.0,
    *,
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
    crf: int = 18,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write RGB uint8 frames (TxHxWx3) to an H.264 mp4, atomically, with an optional mono audio track."""
    array = np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] != 3 or array.shape[0] == 0:
        raise InvalidMediaError(f"Frames must be a non-empty TxHxWx3 array; got shape {array.shape}.")
    with VideoWriter(path, fps, audio=audio, audio_rate=audio_rate, crf=crf, metadata=metadata) as writer:
        writer.write(array)
    return writer.path
