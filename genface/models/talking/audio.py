"""Speech -> one Whisper feature window per video frame, as MuseTalk v1.5 conditions its UNet.

Whisper's encoder runs over 30-second mel segments (transformers' ``WhisperFeatureExtractor`` and
``WhisperModel``); the hidden states of all its layers (embeddings included) are stacked, giving 50
feature frames per second. Video frame ``i`` takes ``2 * (left + right + 1)`` consecutive feature frames
starting at ``floor(i * 50 / fps)`` of the sequence zero-padded by ``left * floor(50 / fps)`` in front, and
flattens them to ``(window * layers, width)``: 50 x 384 for whisper-tiny with MuseTalk's ``left = right = 2``.

One deliberate difference from MuseTalk: it floors the audio to whole seconds before counting frames, which
drops up to a second of speech; genface keeps every frame the audio covers (``floor(seconds * fps)``).
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


def window_features(hidden: torch.Tensor, num_frames: int, fps: float, left: int = 2, right: int = 2) -> torch.Tensor:
    """Per-frame windows of stacked Whisper hidden states.

    ``hidden``: (features, layers, width) at 50 per second. Returns (num_frames, window * layers, width)
    with ``window = 2 * (left + right + 1)``.
    """
    if fps <= 0:
        raise InvalidArgumentError(f"fps must be positive, got {fps}.")
    step = FEATURES_PER_SECOND / fps
    pad = math.floor(step)
    window = 2 * (left + right + 1)
    needed = math.floor((num_frames - 1) * step) + window if num_frames else 0
    front = hidden.new_zeros((pad * left, *hidden.shape[1:]))
    back_length = max(needed - pad * left - hidden.shape[0], 0)
    padded = torch.cat([front, hidden, hidden.new_zeros((back_length, *hidden.shape[1:]))])
    starts = [math.floor(i * step) for i in range(num_frames)]
    windows = (
        torch.stack([padded[s : s + window] for s in starts])
        if starts
        else padded.new_zeros((0, window, *hidden.shape[1:]))
    )
    return windows.flatten(1, 2)


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
        hidden = self.hidden_states(audio)
        return window_features(hidden, frame_count(len(audio), fps), fps, self.left, self.right)


def is_silent(audio: np.ndarray, threshold_db: float = -50.0) -> bool:
    """True when the audio's RMS level is below ``threshold_db`` dBFS (nothing to lip-sync)."""
    rms = float(np.sqrt(np.mean(np.square(np.asarray(audio, dtype=np.float64))))) if np.size(audio) else 0.0
    return rms == 0.0 or 20 * math.log10(rms) < threshold_db
