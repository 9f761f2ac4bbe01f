"""Video read/write with PyAV: H.264 mp4 with an optional AAC audio track; frame rate preserved."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import itertools
import math
import os
import platform
import sys
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from genface.errors import InvalidMediaError
from genface.media._files import atomic_path, not_found

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".gif")


def is_video_path(source: object) -> bool:
    """Whether ``source`` is a path naming a video file (by its suffix)."""
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() in VIDEO_SUFFIXES


def frame_index(seconds: float, fps: float) -> int:
    """The first constant-rate output frame a frame shown from ``seconds`` (after the first frame) is on
    screen for: output frame ``k`` is at ``k / fps``; a quarter frame of timestamp jitter is allowed, so a
    regular video maps frame ``i`` to ``i``."""
    return math.floor(seconds * fps + 0.75)


def _reason(exc: av.FFmpegError) -> str:
    """FFmpeg's reason for an error, without the error number and the file name it repeats."""
    return exc.strerror or str(exc)


class VideoReader:
    """Frames of a video file at a constant rate, decoded as they are needed (bounded memory).

    Iterating yields one HxWx3 uint8 RGB frame at a time, rotation metadata applied. A variable-frame-rate
    video is resampled to its average rate by timestamps: output frame ``k`` (at ``k / fps`` s after the first
    frame) shows the frame on screen then, allowing a quarter frame of timestamp jitter, so a regular video
    comes back frame for frame. :meth:`read` returns any span of frames by seeking; indexing (``reader[i]``)
    keeps a buffer of at most ``buffer_bytes`` of frames around the last one asked for, filled forwards or
    backwards in the direction of travel, so playing through in either direction decodes each frame about once.
    """

    def __init__(self, path: str | os.PathLike, *, buffer_bytes: int = 256 * 2**20) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise InvalidMediaError(not_found("Video", self.path))
        with self._open() as container:
            if not container.streams.video:
                raise InvalidMediaError(f"{self.path} has no video stream.")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            self.fps = float(rate) if rate else 25.0
            first = next(self._decoded(container), None)
        if first is None:
            raise InvalidMediaError(f"{self.path} contains no video frames.")
        self._start = first[1]
        self.frame_shape: tuple[int, ...] = first[0].shape
        self._cursor: Iterator[np.ndarray] | None = None
        self._cursor_at = 0
        self._buffer_frames = max(1, buffer_bytes // first[0].nbytes)
        self._buffer: dict[int, np.ndarray] = {}
        self._last = -1

    def _open(self) -> av.container.InputContainer:
        try:
            return av.open(str(self.path))
        except av.FFmpegError as exc:
            raise InvalidMediaError(f"{self.path} could not be decoded as video ({_reason(exc)}).") from exc

    def _decoded(self, container: av.container.InputContainer) -> Iterator[tuple[np.ndarray, float | None]]:
        """(frame, seconds) as decoded, rotated upright."""
        try:
            for frame in container.decode(container.streams.video[0]):
                rgb = frame.to_ndarray(format="rgb24")  # a view of the decoder's buffer: copied, so it is not pinned
                turns = (-int(getattr(frame, "rotation", 0) or 0) // 90) % 4
                yield np.ascontiguousarray(np.rot90(rgb, k=-turns)) if turns else rgb.copy(), frame.time
        except av.FFmpegError as exc:
            raise InvalidMediaError(f"{self.path} could not be decoded as video ({_reason(exc)}).") from exc

    def _frames_from(self, seconds: float | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(index, frame) at the constant rate, from the keyframe before ``seconds`` (the start if None)."""
        with self._open() as container:
            stream = container.streams.video[0]
            if seconds is not None and stream.time_base:
                container.seek(int(seconds / stream.time_base), stream=stream, backward=True)
            shown: tuple[int, np.ndarray] | None = None  # the next index to emit and the frame on screen
            for count, (frame, time) in enumerate(self._decoded(container)):
                first = count if time is None else frame_index(time - self._start, self.fps)
                if shown is None:
                    shown = (first, frame)
                    continue
                for index in range(shown[0], first):
                    yield index, shown[1]
                shown = (max(first, shown[0]), frame)
            if shown is not None:
                yield shown

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, frame in self._frames_from():
            yield frame

    def read(self, start: int, stop: int) -> list[np.ndarray]:
        """Frames ``start`` to ``stop - 1`` (fewer at the end of the video); reading on from where the last
        call stopped continues the same decoder, anything else seeks."""
        if start != self._cursor_at or self._cursor is None:
            frames = self._frames_from(self._start + (start - 1) / self.fps)
            first = next(frames, None)
            if first is None or first[0] > start:  # the container could not seek exactly: decode from the start
                frames = self._frames_from()
            else:
                frames = itertools.chain([first], frames)
            self._cursor = (frame for index, frame in frames if index >= start)
            self._cursor_at = start
        frames = list(itertools.islice(self._cursor, stop - start))
        self._cursor_at = start + len(frames)
        return frames

    def __getitem__(self, index: int) -> np.ndarray:
        if index < 0:
            raise IndexError("VideoReader does not take negative indices (the length is known only at the end).")
        if index not in self._buffer:
            size = self._buffer_frames
            start = index if index >= self._last else max(0, index - size + 1)
            self._buffer = dict(enumerate(self.read(start, start + size), start))
            if index not in self._buffer:
                raise IndexError(f"{self.path} has no frame {index}.")
        self._last = index
        return self._buffer[index]


def read_video(path: str | os.PathLike, *, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Read a whole video as ``(frames, fps)``: frames are TxHxWx3 uint8 RGB at a constant rate
    (see :class:`VideoReader`, which streams them instead)."""
    reader = VideoReader(path)
    return np.stack(list(itertools.islice(reader, max_frames))), reader.fps


def _even_frames(frames: np.ndarray) -> np.ndarray:
    """H.264 with yuv420p needs even sizes: pad the last row/column by edge replication."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


_X264_CPU_AVX512 = 1 << 16  # x264.h


@functools.cache
def x264_params() -> dict[str, str]:
    """libx264 options that make its stream a function of the frames and settings alone.

    x264's AVX-512 macroblock-tree code reads memory outside its buffers: on a CPU with AVX-512 the same frames
    gave different streams depending on what the process had allocated before (decoded frames up to 46 levels
    apart). There x264 is told to use the instructions it detects less AVX-512 (its AVX2 code, same output
    format and quality). Where the bundled libx264 cannot be asked, macroblock-tree rate control is turned off
    instead, which is deterministic but makes files of still scenes about twice as large at equal quality.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    package = Path(av.__file__).resolve().parent
    candidates = [*package.parent.glob("av.libs/libx264*"), *package.glob(".dylibs/libx264*")]
    found = ctypes.util.find_library("x264")
    try:
        library = ctypes.CDLL(str(candidates[0]) if candidates else found or "")
        library.x264_cpu_detect.restype = ctypes.c_uint32
        flags = int(library.x264_cpu_detect())
    except (OSError, AttributeError):
        return {"x264-params": "mbtree=0"}
    return {"x264-params": f"asm={flags & ~_X264_CPU_AVX512}"} if flags & _X264_CPU_AVX512 else {}


#: Sample rates the AAC encoder takes, and those a track at another rate is resampled to (the next one up, at most
#: 48 kHz: speech recorded at 192 kHz or more loses nothing audible).
AAC_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_AAC_RESAMPLED = (8000, 16000, 24000, 32000, 44100, 48000)
_AUDIO_CHUNK = 16384  # samples per frame handed to the encoder


def aac_rate(rate: int) -> int:
    """The sample rate a track at ``rate`` is written at in AAC: its own when AAC takes it, else the next of
    8, 16, 24, 32, 44.1 and 48 kHz above it (48 kHz above that)."""
    if rate in AAC_RATES:
        return rate
    return next((common for common in _AAC_RESAMPLED if common >= rate), _AAC_RESAMPLED[-1])


class VideoWriter:
    """Stream RGB uint8 frames into an H.264 mp4 (optional mono AAC track), atomically.

    Frames go to a temporary file beside ``path`` as they are written, so memory stays bounded; the file
    appears at ``path`` only when the ``with`` block ends without an error (an interrupted run leaves nothing).
    Frame sizes must not change; odd sizes are padded to even by edge replication. The same frames and settings
    give a byte-identical video stream, whatever the array layout (see :func:`x264_params`). ``audio`` is mono
    samples at ``audio_rate``, or a file whose first audio track is carried over as it is: AAC packets are copied,
    other codecs re-encoded to AAC with their channels, streamed either way. A rate AAC does not take (192 kHz, say)
    is resampled to one it does (see :func:`aac_rate`)."""

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float,
        *,
        audio: np.ndarray | str | os.PathLike | None = None,
        audio_rate: int = 16000,
        crf: int = 18,
        metadata: dict[str, str] | None = None,
    ) -> None:
        if not (math.isfinite(fps) and fps > 0):
            raise InvalidMediaError(f"fps must be a positive number, got {fps}.")
        self.path = Path(path)
        self.fps, self.audio, self.audio_rate, self.crf = fps, audio, audio_rate, crf
        self.metadata = metadata or {}
        self.frames_written = 0
        self._stack = contextlib.ExitStack()
        self._container: av.container.OutputContainer | None = None
        self._video: av.video.stream.VideoStream | None = None
        self._audio: av.audio.stream.AudioStream | None = None
        self._audio_source: av.audio.stream.AudioStream | None = None

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
            self._video.options = {"crf": str(self.crf), **x264_params()}
            if self.audio is not None:  # every stream must exist before the first packet is written
                self._add_audio_stream()
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
        if self._audio_source is not None:
            self._carry_audio()
        elif self._audio is not None:
            stream = self._audio  # PyAV's encoder resamples its frames to the stream's rate (and frame size)
            samples = np.ascontiguousarray(np.asarray(self.audio, dtype=np.float32).reshape(1, -1))
            for start in range(0, samples.shape[1], _AUDIO_CHUNK):
                piece = samples[:, start : start + _AUDIO_CHUNK]
                frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="mono")
                frame.sample_rate, frame.time_base, frame.pts = self.audio_rate, Fraction(1, self.audio_rate), start
                self._container.mux(stream.encode(frame))
            self._container.mux(stream.encode(None))

    def _add_audio_stream(self) -> None:
        if isinstance(self.audio, np.ndarray):
            self._audio = self._container.add_stream("aac", rate=aac_rate(self.audio_rate), layout="mono")
            return
        source = Path(self.audio).expanduser()
        try:
            container = self._stack.enter_context(av.open(str(source)))
        except av.FFmpegError as exc:
            raise InvalidMediaError(f"{source} could not be opened for its audio ({_reason(exc)}).") from exc
        if not container.streams.audio:
            raise InvalidMediaError(f"{source} has no audio stream.")
        self._audio_source = container.streams.audio[0]
        if self._audio_source.codec_context.name == "aac":
            self._audio = self._container.add_stream_from_template(self._audio_source)
        else:
            layout = "mono" if self._audio_source.channels == 1 else "stereo"
            self._audio = self._container.add_stream("aac", rate=aac_rate(self._audio_source.rate), layout=layout)

    def _carry_audio(self) -> None:
        """Copy (AAC) or re-encode the source file's audio track into the output, packet by packet."""
        source, stream = self._audio_source, self._audio
        try:
            if stream.codec_context.is_encoder:
                resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=stream.rate)
                for frame in source.container.decode(source):
                    for out in resampler.resample(frame):
                        self._container.mux(stream.encode(out))
                for out in resampler.resample(None):
                    self._container.mux(stream.encode(out))
                self._container.mux(stream.encode(None))
            else:
                for packet in source.container.demux(source):
                    if packet.dts is not None:
                        packet.stream = stream
                        self._container.mux(packet)
        except av.FFmpegError as exc:
            raise InvalidMediaError(f"The audio of {self.audio} could not be decoded ({_reason(exc)}).") from exc

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
