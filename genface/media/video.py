"""Video read/write with PyAV: H.264 mp4 with an optional AAC audio track; frame rate preserved."""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from genface.errors import InvalidMediaError
from genface.media._files import atomic_path


def read_video(path: str | os.PathLike, *, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Read a video as ``(frames, fps)``: frames are TxHxWx3 uint8 RGB, rotation metadata applied."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InvalidMediaError(f"Video file not found: {path}")
    frames: list[np.ndarray] = []
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
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except av.FFmpegError as exc:
        raise InvalidMediaError(f"{path} could not be decoded as video: {exc}") from exc
    if not frames:
        raise InvalidMediaError(f"{path} contains no video frames.")
    return np.stack(frames), fps


def _even_frames(frames: np.ndarray) -> np.ndarray:
    """H.264 with yuv420p needs even sizes: pad the last row/column by edge replication."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


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
    if array.dtype != np.uint8:
        raise InvalidMediaError(f"Frames must be uint8 RGB; got {array.dtype}.")
    if fps <= 0:
        raise InvalidMediaError(f"fps must be positive, got {fps}.")
    array = _even_frames(array)
    out = Path(path)
    with atomic_path(out) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        container.metadata.update(metadata or {})
        video = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        video.width, video.height = array.shape[2], array.shape[1]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": str(crf)}
        audio_stream = container.add_stream("aac", rate=audio_rate, layout="mono") if audio is not None else None
        for rgb in array:
            container.mux(video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(video.encode(None))
        if audio_stream is not None:
            samples = np.ascontiguousarray(np.asarray(audio, dtype=np.float32).reshape(1, -1))
            chunk = audio_stream.codec_context.frame_size or 1024
            for start in range(0, samples.shape[1], chunk):
                frame = av.AudioFrame.from_ndarray(samples[:, start : start + chunk], format="fltp", layout="mono")
                frame.sample_rate = audio_rate
                frame.pts = start
                container.mux(audio_stream.encode(frame))
            container.mux(audio_stream.encode(None))
    return out
