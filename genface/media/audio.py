"""Audio loading: any container FFmpeg reads, mixed to mono and resampled to a chosen rate as librosa does.

Every pipeline that reads speech gets it from :func:`load_audio`: decoded by FFmpeg at the file's own rate,
channels averaged (``mono=True``) before resampling, then resampled by :func:`resample_audio` (soxr, "HQ"
quality, length ``ceil(n * rate / source_rate)``): the samples ``librosa.load(path, sr=rate)`` gives, which is
how MuseTalk and Ditto read their speech. ``resampler="ffmpeg"`` reads as openai-whisper's ``load_audio`` does
instead (FFmpeg's own mix to mono, resampling and 16-bit samples), which is how LatentSync reads its speech.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

import av
import numpy as np

from genface.errors import InvalidMediaError
from genface.media._files import not_found

#: Most channels FFmpeg's format conversion takes; more are refused with advice to mix down first (an array
#: with more is most likely (samples, channels)).
MAX_CHANNELS = 64
#: soxr's quality as librosa names it (``librosa.load``'s default ``res_type``).
SOXR_QUALITY = "soxr_hq"
#: How :func:`load_audio` resamples: as ``librosa.load`` (soxr) or as openai-whisper's ``ffmpeg -ac 1 -ar RATE``.
RESAMPLERS = ("soxr", "ffmpeg")


def _decoded(frames: Iterable[av.AudioFrame]) -> tuple[np.ndarray, int | None]:
    """``(channels, n)`` float32 samples at the frames' own rate, and that rate. They are converted to packed
    (interleaved) floats first: PyAV's conversion of planar frames with 8 or more channels to arrays crashes the
    process."""
    converter = av.AudioResampler(format="flt")
    outs = [out for frame in frames for out in converter.resample(frame)] + converter.resample(None)
    if not outs:
        return np.zeros((1, 0), dtype=np.float32), None
    channels = len(outs[0].layout.channels)
    samples = np.concatenate([out.to_ndarray() for out in outs], axis=1).reshape(-1, channels).T
    return samples, outs[0].sample_rate


def resample_audio(samples: np.ndarray, source_rate: int, rate: int) -> np.ndarray:
    """Samples (``(n,)`` or ``(channels, n)``, float32) resampled from ``source_rate`` to ``rate`` as
    ``librosa.resample(..., res_type="soxr_hq")`` does: soxr at HQ quality along the last axis, cut or
    zero-padded to ``ceil(n * rate / source_rate)`` samples; unchanged when the rates are equal."""
    import soxr

    if source_rate == rate:
        return samples
    length = math.ceil(samples.shape[-1] * float(rate) / source_rate)
    rows = [soxr.resample(row, source_rate, rate, quality=SOXR_QUALITY)[:length] for row in np.atleast_2d(samples)]
    out = np.zeros((len(rows), length), dtype=np.float32)
    for row, resampled in zip(out, rows, strict=True):
        row[: len(resampled)] = resampled
    return out if samples.ndim == 2 else out[0]


def _ffmpeg_mono(frames: Iterable[av.AudioFrame], rate: int) -> np.ndarray:
    """What ``ffmpeg -i FILE -f s16le -ac 1 -acodec pcm_s16le -ar RATE -`` writes (openai-whisper's
    ``load_audio``), as float32 divided by 32768: FFmpeg's own mix to mono, resampler and 16-bit samples."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    outs = [out for frame in frames for out in resampler.resample(frame)] + resampler.resample(None)
    if not outs:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([out.to_ndarray().reshape(-1) for out in outs]).astype(np.float32) / 32768.0


def _array_frames(samples: np.ndarray, rate: int) -> list[av.AudioFrame]:
    """``(channels, n)`` float32 samples as one planar FFmpeg frame (for FFmpeg's resampler)."""
    layout = {1: "mono", 2: "stereo"}.get(len(samples), f"{len(samples)}c")
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout=layout)
    frame.sample_rate = rate
    return [frame]


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
    resampler: str = "soxr",
) -> np.ndarray:
    """Load audio as float32 in [-1, 1], resampled to ``sample_rate``.

    ``source`` is a file (wav, mp3, m4a, the audio track of a video...) or an array of samples
    (``(n,)`` or ``(channels, n)``) with its ``source_rate``. Returns ``(n,)`` when ``mono`` (the average of the
    channels, taken before resampling, as ``librosa.load`` does) else ``(channels, n)``; resampled by
    :func:`resample_audio`. ``resampler="ffmpeg"`` (mono only) gives what openai-whisper's ``load_audio``
    gives instead: FFmpeg's mix to mono, its resampler and 16-bit samples.
    """
    if isinstance(source, np.ndarray) and source_rate is not None and 0 < source_rate < MIN_SAMPLE_RATE:
        raise _too_slow(source_rate, "The audio array")
    if sample_rate <= 0:
        raise InvalidMediaError(f"sample_rate must be positive, got {sample_rate}.")
    if resampler not in RESAMPLERS or (resampler == "ffmpeg" and not mono):
        raise InvalidMediaError(f"resampler must be one of {RESAMPLERS} ('ffmpeg' mono only), got {resampler!r}.")
    if isinstance(source, np.ndarray):
        if source_rate is None or source_rate <= 0:
            raise InvalidMediaError("An audio array needs its source_rate (samples per second).")
        samples = np.atleast_2d(np.asarray(source, dtype=np.float32))
        if samples.ndim != 2:
            raise InvalidMediaError(f"An audio array is (samples,) or (channels, samples); got shape {samples.shape}.")
        if samples.shape[1] == 0:
            raise InvalidMediaError("Audio array holds no samples.")
        if samples.shape[0] > MAX_CHANNELS:
            raise _too_many(samples.shape[0], f"The audio array of shape {samples.shape} (channels, samples)")
        rate = source_rate
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise InvalidMediaError(not_found("Audio", path))
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
                if resampler == "ffmpeg":
                    speech = _ffmpeg_mono(container.decode(stream), sample_rate)
                    if not len(speech):
                        raise InvalidMediaError(f"{path} holds no samples.")
                    return speech
                samples, rate = _decoded(container.decode(stream))
        except av.FFmpegError as exc:
            raise InvalidMediaError(f"{path} could not be decoded as audio: {exc}") from exc
        if rate is None:
            raise InvalidMediaError(f"{path} holds no samples.")
    if not np.isfinite(samples).all():
        raise InvalidMediaError("Audio contains NaN or infinite samples.")
    if resampler == "ffmpeg":
        return _ffmpeg_mono(_array_frames(samples, rate), sample_rate)
    if mono:
        samples = samples.mean(axis=0)
    return resample_audio(samples, rate, sample_rate)


def audio_sample_rate(path: str | os.PathLike) -> int:
    """Sample rate of the first audio stream of a file (to keep its quality when muxing it back)."""
    try:
        with av.open(str(Path(path).expanduser())) as container:
            if not container.streams.audio:
                raise InvalidMediaError(f"{path} has no audio stream.")
            return int(container.streams.audio[0].rate)
    except av.FFmpegError as exc:
        raise InvalidMediaError(f"{path} could not be decoded as audio: {exc}") from exc
