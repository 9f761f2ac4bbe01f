"""Whisper features per video frame, with MuseTalk v1.5's window, at any frame rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from genface.errors import InvalidArgumentError, InvalidMediaError
from genface.models.talking.audio import WhisperFrameFeatures, frame_count, is_silent, window_features


def _numbered(count: int, layers: int = 2) -> torch.Tensor:
    """Feature frame i holds the value i + 1 (so zero padding is recognisable)."""
    return (torch.arange(count, dtype=torch.float32) + 1)[:, None, None].expand(count, layers, 1).clone()


def _expected_window(count: int, first: int, size: int = 10) -> list[float]:
    return [float(i + 1) if 0 <= i < count else 0.0 for i in range(first, first + size)]


@pytest.mark.parametrize("fps", [25, 30, 24, 12.5, 29.97])
def test_windows_follow_musetalk_indexing(fps: float) -> None:
    count = 100  # 2 s of features
    frames = frame_count(2 * 16000, fps)
    windows = window_features(_numbered(count), frames, fps)
    assert windows.shape == (frames, 10 * 2, 1)
    step = 50 / fps
    pad = math.floor(step) * 2  # left padding: floor(50 / fps) * audio_padding_length_left
    for k in range(frames):
        first = math.floor(k * step) - pad  # index into the unpadded features
        per_feature = windows[k, ::2, 0].tolist()  # layer 0 of each of the 10 feature frames
        assert per_feature == _expected_window(count, first), (fps, k)


def test_frame_counts_cover_all_the_audio() -> None:
    assert frame_count(16000 * 2 + 11000, 25) == 67  # 2.6875 s; MuseTalk would floor to 2 s: 50 frames
    assert frame_count(16000, 30) == 30 and frame_count(16000, 29.97) == 29 and frame_count(0, 25) == 0


@pytest.fixture(scope="module")
def tiny_whisper() -> WhisperFrameFeatures:
    torch.manual_seed(0)
    config = WhisperConfig(
        vocab_size=100, d_model=16, encoder_layers=2, encoder_attention_heads=2, decoder_layers=1,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80, max_source_positions=1500,
        max_target_positions=64, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=0,
    )  # fmt: skip
    return WhisperFrameFeatures(WhisperModel(config).eval(), WhisperFeatureExtractor())


def test_hidden_states_stack_every_layer(tiny_whisper) -> None:
    audio = (0.2 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    hidden = tiny_whisper.hidden_states(audio)
    assert hidden.shape == (1500, 3, 16)  # one 30 s segment; embeddings + 2 layers
    mel = WhisperFeatureExtractor()(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        direct = tiny_whisper.encoder(mel, output_hidden_states=True).hidden_states
    for layer in range(3):
        torch.testing.assert_close(hidden[:, layer], direct[layer][0])


def test_long_audio_spans_segments(tiny_whisper) -> None:
    audio = np.random.default_rng(0).normal(0, 0.1, 16000 * 31).astype(np.float32)
    hidden = tiny_whisper.hidden_states(audio)
    assert hidden.shape[0] == 3000  # two 30 s segments
    features = tiny_whisper(audio, fps=25)
    assert features.shape == (775, 30, 16)
    second = WhisperFeatureExtractor()(audio[16000 * 30 :], sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        last = torch.stack(tiny_whisper.encoder(second, output_hidden_states=True).hidden_states, dim=2)[0]
    # frame 760 starts at feature 1520 - 4 = 1516, i.e. feature 16 of the second segment
    torch.testing.assert_close(features[760].view(10, 3, 16)[0], last[16])


def test_silence_and_bad_audio(tiny_whisper) -> None:
    tone = (0.3 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    assert is_silent(np.zeros(16000, np.float32)) and is_silent(tone * 1e-4) and not is_silent(tone)
    assert is_silent(np.zeros(0, np.float32))
    with pytest.raises(InvalidMediaError, match="non-empty mono"):
        tiny_whisper(np.zeros(0, np.float32))
    with pytest.raises(InvalidMediaError, match="non-empty mono"):
        tiny_whisper(np.zeros((2, 16000), np.float32))
    with pytest.raises(InvalidArgumentError, match="fps must be positive"):
        window_features(_numbered(10), 1, 0)
