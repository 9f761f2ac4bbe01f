"""LatentSync's pixel SyncNet (MuseTalk's lip-sync expert) in its published layout, and Wav2Lip's mel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from genface.models.talking.syncnet import MEL_WINDOW, SyncNet, mel_spectrogram, mel_window

#: A SyncNet with the published downsampling at toy widths (both embeddings 16-d).
TINY = dict(
    audio_block_out_channels=(8, 8, 8, 8, 8, 8, 16), visual_block_out_channels=(8, 8, 8, 8, 8, 8, 8, 16),
    norm_num_groups=4,
)  # fmt: skip


def test_published_sizes_embed_a_mel_window_and_16_frames_into_2048_unit_vectors() -> None:
    with torch.device("meta"):
        net = SyncNet()
        assert net.embed_audio(torch.zeros(2, 1, 80, MEL_WINDOW)).shape == (2, 2048)
        assert net.embed_frames(torch.zeros(2, 16, 3, 256, 256)).shape == (2, 2048)
    names = set(net.state_dict())
    # LatentSync's names: a block's shortcut only where widths change, a downsampling conv only where the factor
    # is not 1 (the audio encoder's fourth block keeps its size)
    assert "audio_encoder.down_blocks.3.downsample_conv.weight" not in names
    assert "audio_encoder.down_blocks.2.downsample_conv.weight" in names
    assert "visual_encoder.down_blocks.3.conv_shortcut.weight" not in names  # 256 -> 256
    assert {
        "visual_encoder.conv_in.weight",
        "visual_encoder.norm_out.bias",
        "audio_encoder.down_blocks.6.norm2.weight",
    } <= names


def test_a_checkpoint_in_the_published_form_loads_safely(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = SyncNet(**TINY).eval()
    torch.save({"state_dict": net.state_dict(), "global_step": 10}, tmp_path / "latentsync_syncnet.pt")
    loaded = SyncNet.from_checkpoint(tmp_path / "latentsync_syncnet.pt", **TINY)
    mel, frames = torch.randn(1, 1, 80, MEL_WINDOW), torch.rand(1, 16, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.embed_audio(mel), net.embed_audio(mel))
        embedding = loaded.embed_frames(frames)
        assert torch.allclose(embedding.norm(dim=1), torch.ones(1))
        # a crop of another size is resized to the 128 x 256 lower half the network was trained on
        smaller = torch.nn.functional.interpolate(frames[0], size=(128, 128), mode="bilinear")[None]
        assert loaded.embed_frames(smaller).shape == embedding.shape


def test_mel_spectrogram_by_hand() -> None:
    t = np.arange(16000) / 16000
    mel = mel_spectrogram((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    assert mel.shape == (80, 81)  # 80 frames per second, centred
    # 1 kHz is 15 on the Slaney scale; 80 bands span 55 Hz (0.825) to 7600 Hz (44.55): band 25 holds it
    assert set(mel[:, 10:70].argmax(axis=0)) == {25}
    assert mel.max() <= 4 and (mel_spectrogram(np.zeros(16000, np.float32)) == -4).all()  # silence is the floor
    window = mel_window(mel, 20, 25.0)  # frame 20 at 25 fps starts at mel frame 64
    assert window.shape == (1, 80, MEL_WINDOW) and torch.equal(window[0, :, :17], torch.from_numpy(mel[:, 64:]))
    assert (window[0, :, 17:] == -4).all()  # past the end: silence


def test_mel_spectrogram_matches_wav2lip_on_librosa() -> None:
    """Wav2Lip's audio.melspectrogram (its hparams), written with librosa as Wav2Lip and LatentSync do."""
    import librosa
    import scipy.signal

    rng = np.random.default_rng(0)
    t = np.arange(3 * 16000) / 16000
    speech = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.05 * rng.standard_normal(t.size)
    emphasised = scipy.signal.lfilter([1, -0.97], [1], speech)
    magnitude = np.abs(librosa.stft(y=emphasised, n_fft=800, hop_length=200, win_length=800))
    bands = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    decibels = 20 * np.log10(np.maximum(1e-5, bands @ magnitude)) - 20
    expected = np.clip(8 * (decibels + 100) / 100 - 4, -4, 4)
    mel = mel_spectrogram(speech.astype(np.float32))
    assert mel.shape == expected.shape == (80, 241)
    np.testing.assert_allclose(mel, expected, atol=1e-5)
