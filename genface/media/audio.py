"""Audio loading: any container FFmpeg reads, resampled to mono float32 at a chosen rate."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from genface.errors import InvalidMediaError


def _resample(frames: list[av.AudioFrame], resampler: av.AudioResampler) -> np.ndarray:
    chunks = [out.to_ndarray() for frame in frames for out in resampler.resample(frame)]
    chunks += [out.to_ndarray() for out in resampler.resample(None)]
    if not chunks:
        return np.zeros((1, 0), dtype=np.float32)
    return np.concatenate(chunks, axis=1)


def load_audio(
    source: str | os.PathLike | np.ndarray,
    sample_rate: int = 16000,
    *,
    mono: bool = True,
    source_rate: int | None = None,
) -> np.ndarray:
    """Load audio as float32 in [-1, 1], resampled to ``sample_rate``.

    ``source`` is a file (wav, mp3, m4a, the audio track of a video...) or an array of samples
    (``(n,)`` or ``(channels, n)``) with its ``source_rate``. Returns ``(n,)`` when ``mono`` else
    ``(channels, n)``; mono is the average of the channels.
    """
    if sample_rate <= 0:
        raise InvalidMediaError(f"sample_rate must be positive, got {sample_rate}.")
    # Channels are kept through resampling and averaged afterwards (as librosa does, and so the
    # speech front ends that expect it), rather than FFmpeg's -3 dB downmix.
    resampler = av.AudioResampler(format="fltp", rate=sample_rate)
    if isinstance(source, np.ndarray):
        if source_rate is None or source_rate <= 0:
            raise InvalidMediaError("An audio array needs its source_rate (samples per second).")
        data = np.atleast_2d(np.asarray(source, dtype=np.float32))
        if not np.isfinite(data).all():
            raise InvalidMediaError("Audio contains NaN or infinite samples.")
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(data), format="fltp", layout="mono" if data.shape[0] == 1 else "stereo"
        )
        frame.sample_rate = source_rate
        samples = _resample([frame], resampler)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise InvalidMediaError(f"Audio file not found: {path}")
        if path.stat().st_size == 0:
            raise InvalidMediaError(f"Audio file is empty: {path}")
        try:
            with av.open(str(path)) as container:
                if not container.streams.audio:
                    raise InvalidMediaError(f"{path} has no audio stream.")
                stream = container.streams.audio[0]
                samples = _resample(list(container.decode(stream)), resampler)
        except av.FFmpegError as exc:
            raise InvalidMediaError(f"{path} could not be decoded as audio: {exc}") from exc
    if samples.shape[1] == 0:
        raise InvalidMediaError(f"{source if not isinstance(source, np.ndarray) else 'Audio array'} holds no samples.")
    if not np.isfinite(samples).all():
        raise InvalidMediaError("Audio contains NaN or infinite samples.")
    samples = samples.astype(np.float32, copy=False)
    return samples.mean(axis=0) if mono else samples


def audio_sample_rate(path: str | os.PathLike) -> int:
    """Sample rate of the first audio stream of a file (to keep its quality when muxing it back)."""
    try:
        with av.open(str(Path(path).expanduser())) as container:
            if not container.streams.audio:
                raise InvalidMediaError(f"{path} has no audio stream.")
            return int(container.streams.audio[0].rate)
    except av.FFmpegError as exc:
        raise InvalidMediaError(f"{path} could not be decoded as audio: {exc}") from exc
