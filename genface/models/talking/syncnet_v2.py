"""joonson/syncnet_python's SyncNet (``syncnet_v2.model``), the judge behind Sync-C / Sync-D (LSE-C / LSE-D).

Parameter names follow ``SyncNetModel.S`` so the published file (a plain state dict) loads unchanged and safely
(``weights_only``) with :meth:`SyncNetV2.from_checkpoint`. The lip stream takes 5 consecutive 224 x 224 BGR face
crops (B x 3 x 5 x 224 x 224, pixel values 0-255, not normalised); the audio stream 20 MFCC frames (B x 1 x 13 x 20,
100 per second, 4 per video frame at 25 fps). Both give 1024-d embeddings compared by Euclidean distance.
``audio_channels`` / ``lip_channels`` / ``embedding_size`` shrink the widths for tiny test models.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


def _head(width: int, embedding_size: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, embedding_size))


class SyncNetV2(ModelMixin, ConfigMixin):
    """syncnet_python's ``S`` (defaults: the published sizes)."""

    @register_to_config
    def __init__(
        self,
        audio_channels: Sequence[int] = (64, 192, 384, 256, 256, 512),
        lip_channels: Sequence[int] = (96, 256, 256, 256, 256, 512),
        embedding_size: int = 1024,
    ) -> None:
        super().__init__()
        a, v = audio_channels, lip_channels
        self.netcnnaud = nn.Sequential(
            nn.Conv2d(1, a[0], 3, 1, 1), nn.BatchNorm2d(a[0]), nn.ReLU(), nn.MaxPool2d(1, 1),
            nn.Conv2d(a[0], a[1], 3, 1, 1), nn.BatchNorm2d(a[1]), nn.ReLU(), nn.MaxPool2d(3, (1, 2)),
            nn.Conv2d(a[1], a[2], 3, padding=1), nn.BatchNorm2d(a[2]), nn.ReLU(),
            nn.Conv2d(a[2], a[3], 3, padding=1), nn.BatchNorm2d(a[3]), nn.ReLU(),
            nn.Conv2d(a[3], a[4], 3, padding=1), nn.BatchNorm2d(a[4]), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(a[4], a[5], (5, 4)), nn.BatchNorm2d(a[5]), nn.ReLU(),
        )  # fmt: skip
        self.netfcaud = _head(a[5], embedding_size)
        self.netfclip = _head(v[5], embedding_size)
        self.netcnnlip = nn.Sequential(
            nn.Conv3d(3, v[0], (5, 7, 7), (1, 2, 2)), nn.BatchNorm3d(v[0]), nn.ReLU(),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(v[0], v[1], (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(v[1]), nn.ReLU(),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            nn.Conv3d(v[1], v[2], (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(v[2]), nn.ReLU(),
            nn.Conv3d(v[2], v[3], (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(v[3]), nn.ReLU(),
            nn.Conv3d(v[3], v[4], (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(v[4]), nn.ReLU(),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            nn.Conv3d(v[4], v[5], (1, 6, 6)), nn.BatchNorm3d(v[5]), nn.ReLU(),
        )  # fmt: skip

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **config: object) -> SyncNetV2:
        """Load ``syncnet_v2.model`` (a pickled state dict, read with ``weights_only``) or a ``.safetensors``; the
        widths are read from its convolutions unless ``config`` gives them."""
        from genface.hub import load_checked, load_state_dict

        state = load_state_dict(path)
        config = config or cls.config_from_state_dict(state)
        return load_checked(lambda: cls(**config), state, f"{path} does not match the syncnet_python SyncNet {config}")

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, object]:
        """The widths read off the weights: each stream's convolutions, and the embedding size."""

        def widths(stream: str) -> list[int]:
            return [v.shape[0] for k, v in state.items() if k.startswith(f"{stream}.") and v.ndim >= 4]

        return {
            "audio_channels": widths("netcnnaud"),
            "lip_channels": widths("netcnnlip"),
            "embedding_size": state["netfcaud.3.weight"].shape[0],
        }

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """Embeddings of MFCC windows (B x 1 x 13 x 20)."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def embed_lips(self, frames: torch.Tensor) -> torch.Tensor:
        """Embeddings of 5-frame windows of BGR face crops (B x 3 x 5 x 224 x 224, values 0-255)."""
        return self.netfclip(self.netcnnlip(frames).flatten(1))
