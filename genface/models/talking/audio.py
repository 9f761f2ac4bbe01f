"""Speech -> one Whisper feature window per video frame, as MuseTalk v1.5 conditions its UNet; pitch (f0).

Whisper's encoder runs over 30-second mel segments (transformers' ``WhisperFeatureExtractor`` and
``WhisperModel``); the hidden states of all its layers (embeddings included) are stacked, giving 50
feature frames per second, of which the ``floor(seconds * 50)`` the audio covers are kept. Video frame
``i`` takes ``2 * (left + right + 1)`` consecutive feature frames starting at ``floor(i * 50 / fps)`` of
that sequence zero-padded by ``left * ceil(50 / fps)`` in front (and zeros after the end), flattened to
``(window * layers, width)``: 50 x 384 for whisper-tiny with MuseTalk's ``left = right = 2``. The audio
covers ``floor(seconds * fps)`` frames. This is MuseTalk v1.5's ``AudioProcessor.get_whisper_chunk``; the one
difference is that MuseTalk truncates the frame rate to an integer (29.97 fps is indexed as 29), which
drifts by a frame every 34 s; genface uses the real rate.

The pitch contour (GeneFace++'s auxiliary audio feature) is Praat's autocorrelation f0 (praat-parselmouth),
sampled at the same 50 frames per second, 0 where unvoiced.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from genface.errors import InvalidArgumentError, InvalidMediaError

SAMPLE_RATE = 16000
#: Whisper's encoder emits one feature frame per 20 ms.
FEATURES_PER_SECOND = 50
SEGMENT_SECONDS = 30


def frame_count(num_samples: int, fps: float, sample_rate: int = SAMPLE_RATE) -> int:
    """Video frames covered by ``num_samples`` of audio at ``fps``: ``floor(num_samples / sample_rate * fps)`` in
    floating point, in that order, as MuseTalk's ``get_whisper_chunk`` counts them: 18560 samples (1.16 s) at
    25 fps are 28 frames there, and here (the product rounds to 28.999999999999996)."""
    return math.floor(num_samples / sample_rate * fps)


def window_positions(start: int, num_frames: int, fps: float, left: int = 2, right: int = 2) -> torch.Tensor:
    """Feature positions (num_frames, 2 * (left + right + 1)) of video frames ``start`` onwards: frame ``i``
    starts at ``floor(i * 50 / fps) - left * ceil(50 / fps)``; negative or past-the-end positions are padding."""
    if fps <= 0:
        raise InvalidArgumentError(f"fps must be positive, got {fps}.")
    step = FEATURES_PER_SECOND / fps
    window = 2 * (left + right + 1)
    if left and math.ceil(step) * left >= window:  # the padding grows with 50/fps, the window does not
        lowest = FEATURES_PER_SECOND / ((window - 1) // left)
        raise InvalidArgumentError(
            f"At {fps:g} fps MuseTalk's audio window for a frame ends before the frame's own audio starts; use "
            f"at least {lowest:g} fps (the model was trained at 25)."
        )
    firsts = torch.tensor([math.floor(i * step) for i in range(start, start + num_frames)], dtype=torch.long)
    return firsts[:, None] + torch.arange(window) - math.ceil(step) * left


def _gather(hidden: torch.Tensor, positions: torch.Tensor, offset: int, total: int) -> torch.Tensor:
    """Windows of features at ``positions`` of a sequence of ``total`` whose part from ``offset`` on is ``hidden``;
    zeros outside the sequence, flattened to (frames, window * rest[0], *rest[1:])."""
    inside = ((positions >= 0) & (positions < total)).to(hidden.device)
    local = (positions.to(hidden.device) - offset).clamp(0, max(hidden.shape[0] - 1, 0))
    if hidden.shape[0]:
        windows = hidden[local] * inside.view(*inside.shape, *([1] * (hidden.ndim - 1)))
    else:
        windows = hidden.new_zeros((*positions.shape, *hidden.shape[1:]))
    return windows.flatten(1, 2) if windows.ndim > 2 else windows


def window_features(
    hidden: torch.Tensor, num_frames: int, fps: float, left: int = 2, right: int = 2, *, start: int = 0
) -> torch.Tensor:
    """Per-frame windows of a feature sequence at 50 per second (stacked Whisper hidden states, or f0).

    ``hidden``: (features, *rest). Returns the windows of video frames ``start`` to ``start + num_frames - 1``,
    (num_frames, window * rest[0], *rest[1:]) with ``window = 2 * (left + right + 1)``; a 1-d ``hidden`` gives
    (num_frames, window). Positions before the first or past the last feature are zeros.
    """
    return _gather(hidden, window_positions(start, num_frames, fps, left, right), 0, hidden.shape[0])


def add_positional_encoding(features: torch.Tensor) -> torch.Tensor:
    """Add the fixed sinusoidal position code MuseTalk adds to each frame's window before its UNet:
    position ``p``, channel ``2i`` gets ``sin(p / 10000^(2i/D))`` and channel ``2i+1`` the cosine."""
    positions, width = features.shape[-2:]
    angle = torch.arange(positions, dtype=torch.float32)[:, None] * torch.exp(
        torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width)
    )
    code = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)[:, :width]
    return features + code.to(features)


def feature_count(num_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """Whisper feature frames (50 per second) covered by ``num_samples`` of audio, counted as MuseTalk's
    ``get_whisper_chunk`` counts them (``floor(num_samples / sample_rate * 50)``): the windows read zeros
    past it."""
    return math.floor(num_samples / sample_rate * FEATURES_PER_SECOND)


class WhisperFrameFeatures:
    """Audio (16 kHz mono float) -> per-frame Whisper windows, with a transformers ``WhisperModel``."""

    def __init__(self, model: object, feature_extractor: object, left: int = 2, right: int = 2) -> None:
        self.encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
        self.feature_extractor = feature_extractor
        self.left, self.right = left, right

    @classmethod
    def from_pretrained(cls, path_or_repo: str, **kwargs: object) -> WhisperFrameFeatures:
        """From a Whisper checkpoint folder or Hub id (MuseTalk uses ``openai/whisper-tiny``)."""
        from transformers import WhisperFeatureExtractor, WhisperModel

        return cls(
            WhisperModel.from_pretrained(path_or_repo).eval(),
            WhisperFeatureExtractor.from_pretrained(path_or_repo),
            **kwargs,
        )

    @torch.no_grad()
    def segment(self, audio: np.ndarray, index: int) -> torch.Tensor:
        """Stacked hidden states of every encoder layer for 30 s segment ``index``: (1500, layers, width)."""
        param = next(self.encoder.parameters())
        samples = SEGMENT_SECONDS * SAMPLE_RATE
        piece = audio[index * samples : (index + 1) * samples]
        mel = self.feature_extractor(piece, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
        states = self.encoder(mel.to(param.device, param.dtype), output_hidden_states=True).hidden_states
        return torch.stack(states, dim=2)[0]

    def hidden_states(self, audio: np.ndarray) -> torch.Tensor:
        """Stacked hidden states of every encoder layer, (features, layers, width), for the whole audio
        (whole 30 s segments; :class:`SpeechWindows` encodes them as needed instead)."""
        audio = _checked(audio)
        segments = math.ceil(audio.size / (SEGMENT_SECONDS * SAMPLE_RATE))
        return torch.cat([self.segment(audio, k) for k in range(segments)])

    def __call__(self, audio: np.ndarray, fps: float = 25.0) -> torch.Tensor:
        """(frames, window * layers, width) features, one row per video frame the audio covers."""
        windows = SpeechWindows(self, audio, fps)
        return windows(0, windows.num_frames)


def _checked(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise InvalidMediaError("Audio for the talking face must be non-empty mono samples at 16 kHz.")
    return audio


class SpeechWindows:
    """The per-frame Whisper windows of one speech (16 kHz mono), for any span of frames.

    Each 30 s segment is encoded when a window first needs it and the last two are kept, so memory does not
    grow with the speech's length (a minute of whisper-tiny hidden states is 23 MB); windows equal those of
    :func:`window_features` over the whole :meth:`WhisperFrameFeatures.hidden_states`.
    """

    def __init__(self, encoder: WhisperFrameFeatures, audio: np.ndarray, fps: float) -> None:
        self.encoder, self.audio, self.fps = encoder, _checked(audio), fps
        self.total = feature_count(self.audio.size)
        self.num_frames = frame_count(self.audio.size, fps)
        self._segments: dict[int, torch.Tensor] = {}

    def _segment(self, index: int) -> torch.Tensor:
        if index not in self._segments:
            if len(self._segments) == 2:
                del self._segments[min(self._segments)]
            self._segments[index] = self.encoder.segment(self.audio, index)
        return self._segments[index]

    def __call__(self, start: int, count: int) -> torch.Tensor:
        """Windows of frames ``start`` to ``start + count - 1``: (count, window * layers, width)."""
        positions = window_positions(start, count, self.fps, self.encoder.left, self.encoder.right)
        per_segment = SEGMENT_SECONDS * FEATURES_PER_SECOND
        last = max(self.total - 1, 0)
        first_segment = int(positions.min().clamp(0, last)) // per_segment
        last_segment = int(positions.max().clamp(0, last)) // per_segment
        hidden = torch.cat([self._segment(k) for k in range(first_segment, last_segment + 1)])
        return _gather(hidden, positions, first_segment * per_segment, self.total)


def is_silent(audio: np.ndarray, threshold_db: float = -50.0) -> bool:
    """True when the audio's RMS level is below ``threshold_db`` dBFS (nothing to lip-sync)."""
    rms = float(np.sqrt(np.mean(np.square(audio), dtype=np.float64))) if np.size(audio) else 0.0  # no float64 copy
    return rms == 0.0 or 20 * math.log10(rms) < threshold_db


def pitch_contour(
    audio: np.ndarray, sample_rate: int = SAMPLE_RATE, floor_hz: float = 80.0, ceiling_hz: float = 750.0
) -> np.ndarray:
    """Fundamental frequency (Hz) at 50 frames per second, aligned with the Whisper features (frame ``k`` is
    the pitch around ``(k + 0.5) * 20`` ms); 0 where unvoiced. Praat's autocorrelation method with
    GeneFace's range (80-750 Hz) and voicing threshold (0.6)."""
    import parselmouth

    audio = np.asarray(audio, dtype=np.float64)
    if audio.ndim != 1 or audio.size == 0:
        raise InvalidMediaError("Audio for the pitch contour must be non-empty mono samples.")
    count = feature_count(audio.size, sample_rate)
    seconds = audio.size / sample_rate
    if seconds < 3 / floor_hz:  # Praat needs three periods of the lowest pitch
        return np.zeros(count, dtype=np.float32)
    pitch = parselmouth.Sound(audio, sample_rate).to_pitch_ac(
        time_step=0.5 / FEATURES_PER_SECOND, voicing_threshold=0.6, pitch_floor=floor_hz, pitch_ceiling=ceiling_hz
    )
    times, values = pitch.xs(), pitch.selected_array["frequency"]
    centres = (np.arange(count) + 0.5) / FEATURES_PER_SECOND
    nearest = np.clip(np.rint((centres - times[0]) / pitch.time_step), 0, len(values) - 1).astype(int)
    return values[nearest].astype(np.float32)
