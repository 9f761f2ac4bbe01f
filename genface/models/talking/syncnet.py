"""The lip-sync expert MuseTalk v1.5 trains with: LatentSync's 16-frame pixel SyncNet, and its mel front end.

The network embeds a speech mel window (1 x 80 x 52: 16 video frames at 25 fps) and the lower halves of the
16 face crops they cover (48 x 128 x 256: 16 RGB frames stacked, values in [-1, 1]) into unit vectors; their
cosine similarity scores how well the mouth follows the speech. Both encoders are stacks of GroupNorm/SiLU
residual blocks, each followed by a strided convolution, as LatentSync's ``DownEncoder2D`` (no attention
blocks, as in the published ``syncnet_16_pixel`` configuration). Parameter names follow the published
``latentsync_syncnet.pt`` so it loads unchanged (:meth:`SyncNet.from_checkpoint`, ``weights_only``).

The mel spectrogram is Wav2Lip's (MuseTalk's ``audio.melspectrogram``): 16 kHz speech pre-emphasised (0.97),
an 800-sample Hann STFT every 200 samples (80 mel frames per second), 80 Slaney mel bands from 55 to 7600 Hz,
20 log10 of the magnitude floored at 1e-5, minus 20 dB, mapped from [-100, 0] dB onto [-4, 4] and clipped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

#: Mel frames per second of speech (16 kHz, hop 200) and per SyncNet window (16 frames at 25 fps, rounded up).
MEL_PER_SECOND = 80
MEL_WINDOW = 52
SYNC_FRAMES = 16


def _factor(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


class _DownBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a residual, then (unless the factor is 1) a padded strided 3x3 conv."""

    def __init__(self, cin: int, cout: int, factor: tuple[int, int], groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None
        self.downsample_conv = None if factor == (1, 1) else nn.Conv2d(cout, cout, 3, stride=factor)
        # (left, right, top, bottom): a unit stride keeps its size with padding 1 on both sides
        self.pad = (1 if factor[1] == 1 else 0, 1, 1 if factor[0] == 1 else 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        h = h + (x if self.conv_shortcut is None else self.conv_shortcut(x))
        return h if self.downsample_conv is None else self.downsample_conv(F.pad(h, self.pad))


class _Encoder(nn.Module):
    def __init__(self, cin: int, channels: Sequence[int], factors: Sequence, groups: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cin, channels[0], 3, padding=1)
        widths = [channels[0], *channels]
        self.down_blocks = nn.ModuleList(
            _DownBlock(widths[i], widths[i + 1], _factor(factors[i]), groups) for i in range(len(channels))
        )
        self.norm_out = nn.GroupNorm(groups, channels[-1], eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return F.normalize(F.relu(self.norm_out(x)).flatten(1), dim=1)


class SyncNet(ModelMixin, ConfigMixin):
    """LatentSync's pixel SyncNet (defaults: the published ``syncnet_16_pixel`` sizes)."""

    @register_to_config
    def __init__(
        self,
        audio_block_out_channels: Sequence[int] = (32, 64, 128, 256, 512, 1024, 2048),
        audio_downsample_factors: Sequence = ((2, 1), 2, 2, 1, 2, 2, (2, 3)),
        visual_in_channels: int = 3 * SYNC_FRAMES,
        visual_block_out_channels: Sequence[int] = (64, 128, 256, 256, 512, 1024, 2048, 2048),
        visual_downsample_factors: Sequence = ((1, 2), 2, 2, 2, 2, 2, 2, 2),
        norm_num_groups: int = 32,
        frame_size: Sequence[int] = (128, 256),
    ) -> None:
        super().__init__()
        self.audio_encoder = _Encoder(1, audio_block_out_channels, audio_downsample_factors, norm_num_groups)
        self.visual_encoder = _Encoder(
            visual_in_channels, visual_block_out_channels, visual_downsample_factors, norm_num_groups
        )

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **config: object) -> SyncNet:
        """Load a LatentSync/MuseTalk checkpoint (``{"state_dict": ...}`` or a bare state dict, read with
        ``torch.load(weights_only=True)``; ``config`` overrides the published sizes), or a folder written by
        ``save_pretrained``."""
        if Path(path).is_dir():
            return cls.from_pretrained(path).eval()
        state = torch.load(path, map_location="cpu", weights_only=True)
        model = cls(**config)
        model.load_state_dict(state.get("state_dict", state))
        return model.eval()

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """Unit embeddings of mel windows (B x 1 x 80 x 52)."""
        return self.audio_encoder(mel)

    def embed_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Unit embeddings of 16-frame windows (B x 16 x 3 x H x W crops in [-1, 1]): their lower halves,
        resized to ``frame_size`` if they are not that size already, stacked frame by frame."""
        lower = frames[..., frames.shape[-2] // 2 :, :].flatten(1, 2)
        size = tuple(self.config.frame_size)
        if lower.shape[-2:] != size:
            lower = F.interpolate(lower, size=size, mode="bilinear", align_corners=False)
        return self.visual_encoder(lower)


def mel_spectrogram(speech: np.ndarray) -> np.ndarray:
    """Wav2Lip's normalised mel spectrogram of 16 kHz mono speech: 80 x (1 + len // 200), in [-4, 4]."""
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

    speech = np.asarray(speech, dtype=np.float64)
    emphasised = np.concatenate([speech[:1], speech[1:] - 0.97 * speech[:-1]])
    magnitude = spectrogram(
        emphasised, window_function(800, "hann"), frame_length=800, hop_length=200, power=1.0,
        pad_mode="constant", dtype=np.float64,
    )  # fmt: skip
    bands = mel_filter_bank(401, 80, 55.0, 7600.0, 16000, norm="slaney", mel_scale="slaney")
    decibels = 20 * np.log10(np.maximum(1e-5, bands.T @ magnitude)) - 20
    return np.clip(8 * (decibels + 100) / 100 - 4, -4, 4).astype(np.float32)


def mel_window(mel: np.ndarray | torch.Tensor, frame: int, fps: float) -> torch.Tensor:
    """The SyncNet window (1 x 80 x 52) of the 16 frames from ``frame``: mel frames from
    ``int(80 * frame / fps)``, padded with silence (-4) past the end."""
    mel = torch.as_tensor(mel)
    start = int(MEL_PER_SECOND * frame / fps)
    window = mel[:, start : start + MEL_WINDOW]
    return F.pad(window, (0, MEL_WINDOW - window.shape[1]), value=-4.0)[None]
