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
    """Video frames covered by ``num_samples`` of audio at ``fps``."""
    return math.floor(num_samples / sample_rate * fps + 1e-9)


def window_features(
    hidden: torch.Tensor, num_frames: int, fps: float, left: int = 2, right: int = 2, *, start: int = 0
) -> torch.Tensor:
    """Per-frame windows of a feature sequence at 50 per second (stacked Whisper hidden states, or f0).

    ``hidden``: (features, *rest). Returns the windows of video frames ``start`` to ``start + num_frames - 1``,
    (num_frames, window * rest[0], *rest[1:]) with ``window = 2 * (left + right + 1)``; a 1-d ``hidden`` gives
    (num_frames, window). Positions before the first or past the last feature are zeros.
    """
    if fps <= 0:
        raise InvalidArgumentError(f"fps must be positive, got {fps}.")
    step = FEATURES_PER_SECOND / fps
    window = 2 * (left + right + 1)
    firsts = torch.tensor([math.floor(i * step) for i in range(start, start + num_frames)], dtype=torch.long)
    positions = (firsts[:, None] + torch.arange(window) - math.ceil(step) * left).to(hidden.device)
    inside = (positions >= 0) & (positions < hidden.shape[0])
    gathered = hidden[positions.clamp(0, max(hidden.shape[0] - 1, 0))] if hidden.shape[0] else None
    if gathered is None:
        gathered = hidden.new_zeros((num_frames, window, *hidden.shape[1:]))
    windows = gathered * inside.view(*inside.shape, *([1] * (hidden.ndim - 1)))
    return windows.flatten(1, 2) if windows.ndim > 2 else windows


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
    """Whisper feature frames (50 per second) covered by ``num_samples`` of audio."""
    return math.floor(num_samples / sample_rate * FEATURES_PER_SECOND + 1e-9)


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
    def hidden_states(self, audio: np.ndarray) -> torch.Tensor:
        """Stacked hidden states of every encoder layer, (features, layers, width), for the whole audio."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1 or audio.size == 0:
            raise InvalidMediaError("Audio for the talking face must be non-empty mono samples at 16 kHz.")
        param = next(self.encoder.parameters())
        parts = []
        segment = SEGMENT_SECONDS * SAMPLE_RATE
        for start in range(0, audio.size, segment):
            mel = self.feature_extractor(audio[start : start + segment], sampling_rate=SAMPLE_RATE, return_tensors="pt")
            states = self.encoder(
                mel.input_features.to(param.device, param.dtype), output_hidden_states=True
            ).hidden_states
            parts.append(torch.stack(states, dim=2)[0])  # (1500, layers, width) per 30 s segment
        return torch.cat(parts)

    def __call__(self, audio: np.ndarray, fps: float = 25.0) -> torch.Tensor:
        """(frames, window * layers, width) features, one row per video frame the audio covers."""
        hidden = self.hidden_states(audio)[: feature_count(len(audio))]
        return window_features(hidden, frame_count(len(audio), fps), fps, self.left, self.right)


def is_silent(audio: np.ndarray, threshold_db: float = -50.0) -> bool:
    """True when the audio's RMS level is below ``threshold_db`` dBFS (nothing to lip-sync)."""
    rms = float(np.sqrt(np.mean(np.square(np.asarray(audio, dtype=np.float64))))) if np.size(audio) else 0.0
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
