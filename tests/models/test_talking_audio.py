"""Whisper features per video frame, with MuseTalk v1.5's window, at any frame rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from genface.errors import InvalidArgumentError, InvalidMediaError
from genface.models.talking.audio import (
    SpeechWindows,
    WhisperFrameFeatures,
    add_positional_encoding,
    feature_count,
    frame_count,
    is_silent,
    pitch_contour,
    window_features,
)


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
    pad = math.ceil(step) * 2  # left padding: ceil(50 / fps) * audio_padding_length_left
    for k in range(frames):
        first = math.floor(k * step) - pad  # index into the unpadded features
        per_feature = windows[k, ::2, 0].tolist()  # layer 0 of each of the 10 feature frames
        assert per_feature == _expected_window(count, first), (fps, k)


def test_padding_at_the_edges_at_25_fps() -> None:
    """MuseTalk at 25 fps: 4 zero features in front, so frame 0 is [0, 0, 0, 0, f0 .. f5] and the last frame
    of 2 s (frame 49, start 98) reaches 4 features past the end."""
    windows = window_features(_numbered(100, layers=1), 50, 25)
    assert windows[0, :, 0].tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6]
    assert windows[1, :, 0].tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert windows[49, :, 0].tolist() == [95, 96, 97, 98, 99, 100, 0, 0, 0, 0]


def test_windows_of_a_range_of_frames_equal_the_whole() -> None:
    hidden = torch.randn(173, 3, 4)
    whole = window_features(hidden, 80, 29.97)
    torch.testing.assert_close(window_features(hidden, 25, 29.97, start=40), whole[40:65])


def test_frame_counts_cover_all_the_audio() -> None:
    assert frame_count(16000 * 2 + 11000, 25) == 67  # 2.6875 s
    assert feature_count(16000 * 2 + 11000) == 134
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


def _musetalk_chunks(hidden: torch.Tensor, librosa_length: int, fps: int = 25, left: int = 2, right: int = 2):
    """MuseTalk's ``AudioProcessor.get_whisper_chunk`` (``musetalk/utils/audio_processor.py``) after the encoder,
    written their way: ``hidden`` is the encoder's stacked hidden states of every 30 s segment, (1, T, layers,
    width)."""
    audio_feature_length_per_frame = 2 * (left + right + 1)
    sr, audio_fps = 16000, 50
    whisper_idx_multiplier = audio_fps / fps
    num_frames = math.floor((librosa_length / sr) * fps)
    actual_length = math.floor((librosa_length / sr) * audio_fps)
    whisper_feature = hidden[:, :actual_length, ...]
    padding_nums = math.ceil(whisper_idx_multiplier)
    whisper_feature = torch.cat(
        [
            torch.zeros_like(whisper_feature[:, : padding_nums * left]),
            whisper_feature,
            torch.zeros_like(whisper_feature[:, : padding_nums * 3 * right]),
        ],
        1,
    )
    audio_prompts = []
    for frame_index in range(num_frames):
        audio_index = math.floor(frame_index * whisper_idx_multiplier)
        audio_clip = whisper_feature[:, audio_index : audio_index + audio_feature_length_per_frame]
        assert audio_clip.shape[1] == audio_feature_length_per_frame
        audio_prompts.append(audio_clip)
    audio_prompts = torch.cat(audio_prompts, dim=0)  # T, 10, layers, width
    return audio_prompts.flatten(1, 2)  # einops: 'b c h w -> b (c h) w'


@pytest.mark.parametrize("samples", [18560, 9280, 36480, 16000 * 2 + 11000])
def test_frames_and_last_windows_are_musetalks_at_exact_lengths(tiny_whisper, samples) -> None:
    """At lengths where ``samples / 16000 * fps`` rounds just below a whole number (18560 samples: 28.999999999999996
    frames, 57.99999999999999 features), MuseTalk counts one frame and one feature fewer; genface's former
    ``+ 1e-9`` counted them (one more frame, and a last window holding a feature MuseTalk zeroes)."""
    audio = np.random.default_rng(samples).normal(0, 0.1, samples).astype(np.float32)
    expected = _musetalk_chunks(tiny_whisper.hidden_states(audio)[None], samples)
    ours = tiny_whisper(audio, fps=25)
    assert ours.shape == expected.shape and frame_count(samples, 25) == len(expected)
    assert torch.equal(ours, expected)


def test_hidden_states_stack_every_layer(tiny_whisper) -> None:
    audio = (0.2 * np.sin(2 * np.pi * 220 * np.arange(16000) / 16000)).astype(np.float32)
    hidden = tiny_whisper.hidden_states(audio)
    assert hidden.shape == (1500, 3, 16)  # one 30 s segment; embeddings + 2 layers
    mel = WhisperFeatureExtractor()(audio, sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        direct = tiny_whisper.encoder(mel, output_hidden_states=True).hidden_states
    for layer in range(3):
        torch.testing.assert_close(hidden[:, layer], direct[layer][0])


def test_features_past_the_audio_are_zero(tiny_whisper) -> None:
    """As MuseTalk: the encoder's outputs over Whisper's padding (after the audio ends) are cut, so the last
    frames' windows end in zeros, not in features of silence."""
    audio = np.random.default_rng(1).normal(0, 0.1, 16000).astype(np.float32)  # 1 s: 50 features, 25 frames
    features = tiny_whisper(audio, fps=25).view(25, 10, 3, 16)
    hidden = tiny_whisper.hidden_states(audio)
    torch.testing.assert_close(features[24, 5], hidden[49])  # start 48 - 4 padding = feature 44; +5 = 49
    assert features[24, 6:].abs().sum() == 0 and hidden[50:54].abs().sum() > 0


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


def test_speech_windows_encode_each_segment_once_and_keep_two(tiny_whisper, monkeypatch) -> None:
    """Frame windows taken batch by batch over 65 s equal those of the whole sequence, while at most two 30 s
    segments are held and each is encoded once."""
    audio = np.random.default_rng(2).normal(0, 0.1, 16000 * 65).astype(np.float32)
    whole = window_features(tiny_whisper.hidden_states(audio)[: feature_count(audio.size)], 1948, 29.97)
    encoded = []
    segment = tiny_whisper.segment
    monkeypatch.setattr(tiny_whisper, "segment", lambda a, k: encoded.append(k) or segment(a, k))
    windows = SpeechWindows(tiny_whisper, audio, 29.97)
    assert windows.num_frames == 1948 and windows.total == 3250
    for start in range(0, windows.num_frames, 37):
        count = min(37, windows.num_frames - start)
        torch.testing.assert_close(windows(start, count), whole[start : start + count])
        assert len(windows._segments) <= 2
    assert encoded == [0, 1, 2]


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


def test_pitch_contour_of_a_tone_and_of_silence() -> None:
    rate = 16000
    t = np.arange(rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32)
    silence = np.zeros(rate // 2, np.float32)
    f0 = pitch_contour(np.concatenate([tone, silence]))
    assert f0.shape == (75,)  # 1.5 s at 50 per second, as the Whisper features
    assert np.allclose(f0[5:45], 180, atol=1)  # voiced: the tone's pitch
    assert (f0[55:] == 0).all()  # unvoiced
    assert pitch_contour(np.zeros(200, np.float32)).shape == (0,)  # too short to have any feature frame
    with pytest.raises(InvalidMediaError, match="non-empty mono"):
        pitch_contour(np.zeros(0, np.float32))


def test_pitch_windows_per_video_frame() -> None:
    f0 = torch.arange(1, 101, dtype=torch.float32)  # 2 s of f0 at 50 per second
    windows = window_features(f0, 50, 25)
    assert windows.shape == (50, 10) and windows[2].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_positional_encoding_is_musetalks() -> None:
    features = torch.zeros(2, 50, 384)
    coded = add_positional_encoding(features)
    position, channel = 7, 10  # an even channel: sine; the next: cosine, same frequency
    frequency = 10000 ** (-channel / 384)
    assert coded[1, position, channel].item() == pytest.approx(math.sin(position * frequency), abs=1e-6)
    assert coded[1, position, channel + 1].item() == pytest.approx(math.cos(position * frequency), abs=1e-6)
    assert coded[0, 0, 0::2].abs().max() == 0 and (coded[0, 0, 1::2] == 1).all()
    assert add_positional_encoding(torch.ones(1, 3, 4, dtype=torch.float16)).dtype == torch.float16
