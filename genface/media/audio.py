"""Audio loading: any container FFmpeg reads, resampled to mono float32 at a chosen rate."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np

from genface.errors import InvalidMediaError

#: Most channels FFmpeg's resampler takes; more are refused with advice to mix down first.
MAX_CHANNELS = 64


def _resample(frames: Iterable[av.AudioFrame], rate: int) -> np.ndarray:
    """``(channels, n)`` float32 samples at ``rate``. The resampler's output is packed (interleaved): PyAV's
    conversion of planar frames with 8 or more channels to arrays crashes the process."""
    resampler = av.AudioResampler(format="flt", rate=rate)
    outs = [out for frame in frames for out in resampler.resample(frame)] + resampler.resample(None)
    if not outs:
        return np.zeros((1, 0), dtype=np.float32)
    channels = len(outs[0].layout.channels)
    return np.concatenate([out.to_ndarray() for out in outs], axis=1).reshape(-1, channels).T


#: Slowest sample rate read (Hz): slower audio cannot hold speech (a 1 Hz file once became 30 s of noise).
MIN_SAMPLE_RATE = 4000


def _too_slow(rate: float, what: str) -> InvalidMediaError:
    return InvalidMediaError(
        f"{what} is sampled at {rate:g} Hz, too slowly to hold speech; genface reads audio sampled at "
        f"{MIN_SAMPLE_RATE} Hz or more."
    )


def _too_many(channels: int, what: str) -> InvalidMediaError:
    return InvalidMediaError(
        f"{what} has {channels} channels; genface reads at most {MAX_CHANNELS}. Mix it down first (for example "
        "`ffmpeg -i in.wav -ac 1 out.wav`)."
    )


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
    if isinstance(source, np.ndarray) and source_rate is not None and 0 < source_rate < MIN_SAMPLE_RATE:
        raise _too_slow(source_rate, "The audio array")
    if sample_rate <= 0:
        raise InvalidMediaError(f"sample_rate must be positive, got {sample_rate}.")
    # Channels are kept through resampling and averaged afterwards (as librosa does, and so the
    # speech front ends that expect it), rather than FFmpeg's -3 dB downmix.
    if isinstance(source, np.ndarray):
        if source_rate is None or source_rate <= 0:
            raise InvalidMediaError("An audio array needs its source_rate (samples per second).")
        data = np.atleast_2d(np.asarray(source, dtype=np.float32))
        if data.ndim != 2:
            raise InvalidMediaError(f"An audio array is (samples,) or (channels, samples); got shape {data.shape}.")
        if data.shape[1] == 0:
            raise InvalidMediaError("Audio array holds no samples.")
        if data.shape[0] > MAX_CHANNELS:
            raise _too_many(data.shape[0], f"The audio array of shape {data.shape} (channels, samples)")
        if not np.isfinite(data).all():
            raise InvalidMediaError("Audio contains NaN or infinite samples.")
        rows = []
        for row in data:  # one mono frame per channel: any channel count, no layout guessing
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(row[None]), format="flt", layout="mono")
            frame.sample_rate = source_rate
            rows.append(_resample([frame], sample_rate))
        samples = np.concatenate(rows)
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
                if stream.rate and stream.rate < MIN_SAMPLE_RATE:
                    raise _too_slow(stream.rate, str(path))
                if stream.codec_context.channels > MAX_CHANNELS:
                    raise _too_many(stream.codec_context.channels, str(path))
                samples = _resample(container.decode(stream), sample_rate)
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
