"""LatentSync's audio features: Whisper's encoder states of every layer, in one window per video frame.

As their ``Audio2Feature`` computes them on their copy of OpenAI's Whisper (``latentsync/whisper``): the log-mel
spectrogram of the whole speech (80 bands, 25 ms Hann windows every 10 ms, the last frame dropped, log10 floored
8 below the speech's loudest value, then ``(x + 4) / 4``); 30 s pieces of it (3000 mel frames) zero-padded in that
normalised log domain; for each piece the encoder's input embeddings and each block's output, before the final
layer norm (5 x 384 for whisper-tiny, stacked per position), of which the first ``int(frames / 2)`` are kept. Video
frame ``i`` at ``fps`` takes the 10 features from ``int(i * 50 / fps) - 4``, clamped to the first and last there
are, flattened to ``(50, 384)``. The encoder is transformers' ``WhisperModel`` (weights from OpenAI's ``tiny.pt``
or ``openai/whisper-tiny``), its states read by forward hooks; the mel filters are the feature extractor's (the
same Slaney filters as OpenAI's ``mel_filters.npz``, to float32 rounding).

Their loop makes ``k + 1`` windows, ``k`` the first frame whose feature index passes the features' count, so the
video they write is about two frames longer than the speech; genface ends the video with the speech
(:func:`genface.models.talking.audio.frame_count`) but runs the last 16-frame clip with all of their frames in it,
so the frames it keeps are theirs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from genface.models.talking.audio import FEATURES_PER_SECOND

N_FFT, HOP = 400, 160
#: Mel frames per 30 s piece the encoder takes, and features it gives for them.
PIECE_FRAMES = 3000
#: The window of a frame: ``LEFT`` features before its own and ``WINDOW`` in all (audio_feat_length [2, 2]).
LEFT, WINDOW = 4, 10


class LatentSyncWhisper:
    """Speech -> LatentSync's Whisper features, with transformers' ``WhisperModel`` and ``WhisperFeatureExtractor``."""

    def __init__(self, model: Any, feature_extractor: Any) -> None:
        self.encoder = model.get_encoder() if hasattr(model, "get_encoder") else model
        self.filters = torch.from_numpy(np.asarray(feature_extractor.mel_filters, dtype=np.float32).T)

    def mel(self, audio: np.ndarray) -> torch.Tensor:
        """OpenAI Whisper's ``log_mel_spectrogram`` of 16 kHz mono float samples: (80, samples // 160)."""
        samples = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        stft = torch.stft(samples, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
        power = stft[:, :-1].abs() ** 2
        log_spec = (self.filters @ power).clamp(min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0

    @torch.no_grad()
    def encode(self, mel: torch.Tensor) -> torch.Tensor:
        """The stacked states (features, layers + 1, width) of up to 3000 mel frames: the piece zero-padded to 30 s,
        ``int(frames / 2)`` features kept."""
        param = next(self.encoder.parameters())
        frames = mel.shape[-1]
        piece = torch.nn.functional.pad(mel, (0, PIECE_FRAMES - frames))[None].to(param.device, param.dtype)
        states: list[torch.Tensor] = []
        layers = self.encoder.layers
        hooks = [layers[0].register_forward_pre_hook(lambda module, args: states.append(args[0]))]
        hooks += [
            layer.register_forward_hook(lambda m, a, out: states.append(out[0] if isinstance(out, tuple) else out))
            for layer in layers
        ]
        try:
            self.encoder(piece)
        finally:
            for hook in hooks:
                hook.remove()
        return torch.stack(states, dim=2)[0, : frames // 2]


def feature_total(mel_frames: int) -> int:
    """Features their transcription keeps for ``mel_frames``: ``int(frames / 2)`` of each 3000-frame piece."""
    full, rest = divmod(mel_frames, PIECE_FRAMES)
    return full * (PIECE_FRAMES // 2) + rest // 2


def their_frame_count(features: int, fps: float) -> int:
    """How many windows ``feature2chunks`` makes: one more than the first frame ``k`` with
    ``int(k * 50 / fps) > features``."""
    k = math.floor(features * fps / FEATURES_PER_SECOND)
    while int(k * (FEATURES_PER_SECOND / fps)) <= features:
        k += 1
    while k > 0 and int((k - 1) * (FEATURES_PER_SECOND / fps)) > features:
        k -= 1
    return k + 1


def window_positions(start: int, count: int, fps: float, total: int) -> torch.Tensor:
    """Feature indices (count, 10) of frames ``start`` onwards: from ``int(i * 50 / fps) - 4``, clamped to
    ``[0, total - 1]``."""
    firsts = torch.tensor([int(i * FEATURES_PER_SECOND / fps) for i in range(start, start + count)])
    return (firsts[:, None] + torch.arange(WINDOW) - LEFT).clamp(0, max(total - 1, 0))


class LatentSyncSpeech:
    """One speech's windows as LatentSync computes them, for any span of frames: the mel of the whole speech is
    made once (its floor depends on the loudest moment), each 30 s piece is encoded when a window first needs it and
    the last two are kept, so memory does not grow with the speech's length."""

    def __init__(self, whisper: LatentSyncWhisper, audio: np.ndarray, fps: float) -> None:
        self.whisper, self.fps = whisper, fps
        self.mel = whisper.mel(audio)
        self.total = feature_total(self.mel.shape[-1])
        self.their_frames = their_frame_count(self.total, fps)
        self._pieces: dict[int, torch.Tensor] = {}

    def _piece(self, index: int) -> torch.Tensor:
        if index not in self._pieces:
            if len(self._pieces) == 2:
                del self._pieces[min(self._pieces)]
            self._pieces[index] = self.whisper.encode(self.mel[:, index * PIECE_FRAMES : (index + 1) * PIECE_FRAMES])
        return self._pieces[index]

    def __call__(self, start: int, count: int) -> torch.Tensor:
        """Windows of frames ``start`` to ``start + count - 1``: (count, 10 * layers, width)."""
        positions = window_positions(start, count, self.fps, self.total)
        per_piece = PIECE_FRAMES // 2
        first, last = int(positions.min()) // per_piece, int(positions.max()) // per_piece
        features = torch.cat([self._piece(k) for k in range(first, last + 1)])
        return features[positions - first * per_piece].flatten(1, 2)
