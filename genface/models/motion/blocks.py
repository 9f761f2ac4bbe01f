"""Building blocks of LivePortrait's renderer (shared by Ditto): coordinate grids, keypoint heatmaps, 2-D/3-D
convolution blocks, the 3-D hourglass and SPADE blocks.

Attribute names follow the published ``modules/util.py`` so the checkpoints' state dicts load unchanged. The
blocks are written for inference; batch norms follow the usual ``train()`` / ``eval()`` switch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def make_coordinate_grid(spatial_size: tuple[int, int, int], ref: torch.Tensor) -> torch.Tensor:
    """A (d, h, w, 3) grid of (x, y, z) coordinates in [-1, 1] (x right, y down, z inward), in ``ref``'s dtype
    and device."""
    d, h, w = spatial_size

    def axis(n: int) -> torch.Tensor:
        return 2 * (torch.arange(n, dtype=ref.dtype, device=ref.device) / (n - 1)) - 1

    z, y, x = torch.meshgrid(axis(d), axis(h), axis(w), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def kp2gaussian(kp: torch.Tensor, spatial_size: tuple[int, int, int], kp_variance: float) -> torch.Tensor:
    """Gaussian heatmaps (B, K, d, h, w) centred on keypoints (B, K, 3) given as (x, y, z) grid coordinates."""
    grid = make_coordinate_grid(spatial_size, kp)
    diff = grid - kp[:, :, None, None, None, :]
    return torch.exp(-0.5 * (diff**2).sum(-1) / kp_variance)


class SameBlock2d(nn.Module):
    """Convolution, batch norm and ReLU (leaky with ``lrelu``), keeping the resolution."""

    def __init__(
        self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1, lrelu: bool = False
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features)
        self.ac = nn.LeakyReLU() if lrelu else nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ac(self.norm(self.conv(x)))


class DownBlock2d(nn.Module):
    """Convolution, batch norm, ReLU and 2x2 average pooling."""

    def __init__(self, in_features: int, out_features: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(F.relu(self.norm(self.conv(x))), 2)


class DownBlock3d(nn.Module):
    """3-D convolution, batch norm, ReLU and (1, 2, 2) average pooling (depth kept)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, 3, padding=1)
        self.norm = nn.BatchNorm3d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool3d(F.relu(self.norm(self.conv(x))), (1, 2, 2))


class UpBlock3d(nn.Module):
    """Nearest (1, 2, 2) upsampling, 3-D convolution, batch norm and ReLU."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_features, out_features, 3, padding=1)
        self.norm = nn.BatchNorm3d(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(F.interpolate(x, scale_factor=(1, 2, 2)))))


class ResBlock3d(nn.Module):
    """Pre-activation 3-D residual block (norm, ReLU, conv, twice), keeping channels and resolution."""

    def __init__(self, in_features: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_features, in_features, kernel_size, padding=padding)
        self.conv2 = nn.Conv3d(in_features, in_features, kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm3d(in_features)
        self.norm2 = nn.BatchNorm3d(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        return self.conv2(F.relu(self.norm2(out))) + x


def _hourglass_width(block_expansion: int, max_features: int, level: int) -> int:
    return min(max_features, block_expansion * 2**level)


class HourglassEncoder(nn.Module):
    """The hourglass's way down: ``num_blocks`` 3-D down blocks; returns every level, input first."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        widths = [in_features] + [_hourglass_width(block_expansion, max_features, i + 1) for i in range(num_blocks)]
        self.down_blocks = nn.ModuleList(DownBlock3d(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class HourglassDecoder(nn.Module):
    """The hourglass's way up: up blocks concatenating the skips, then convolution, batch norm and ReLU."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        self.up_blocks = nn.ModuleList(
            UpBlock3d(
                (1 if i == num_blocks - 1 else 2) * _hourglass_width(block_expansion, max_features, i + 1),
                _hourglass_width(block_expansion, max_features, i),
            )
            for i in reversed(range(num_blocks))
        )
        self.out_filters = block_expansion + in_features
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, 3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        out = levels[-1]
        for block, skip in zip(self.up_blocks, reversed(levels[:-1]), strict=True):
            out = torch.cat([block(out), skip], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass(nn.Module):
    """3-D U-Net whose output has ``block_expansion + in_features`` channels (``out_filters``)."""

    def __init__(self, block_expansion: int, in_features: int, num_blocks: int = 3, max_features: int = 256) -> None:
        super().__init__()
        self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = HourglassDecoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class SPADE(nn.Module):
    """Spatially-adaptive normalization: instance norm modulated by (1 + gamma, beta) predicted from ``segmap``
    resized (nearest) to the input."""

    def __init__(self, norm_nc: int, label_nc: int, hidden_channels: int = 128) -> None:
        super().__init__()
        self.param_free_norm = nn.InstanceNorm2d(norm_nc, affine=False)
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden_channels, 3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden_channels, norm_nc, 3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden_channels, norm_nc, 3, padding=1)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        actv = self.mlp_shared(F.interpolate(segmap, size=x.shape[2:], mode="nearest"))
        return self.param_free_norm(x) * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    """SPADE residual block with spectral-normed convolutions (``norm_G = "spadespectralinstance"``); a learned
    1x1 shortcut when the channel count changes."""

    def __init__(self, fin: int, fout: int, label_nc: int, hidden_channels: int = 128) -> None:
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        spectral_norm = nn.utils.spectral_norm
        self.conv_0 = spectral_norm(nn.Conv2d(fin, fmiddle, 3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(fmiddle, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(fin, fout, 1, bias=False))
        self.norm_0 = SPADE(fin, label_nc, hidden_channels)
        self.norm_1 = SPADE(fmiddle, label_nc, hidden_channels)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc, hidden_channels)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class FromStateDictMixin:
    """``from_state_dict``: a ModelMixin + ConfigMixin module built from the sizes its published state dict
    reveals (``config_from_state_dict``) and loaded strictly, in eval mode."""

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], **config: Any) -> Any:
        """The module holding ``state`` (e.g. ``genface.hub.load_state_dict("warp_network.pth")``); ``config``
        overrides the sizes read from the tensors. A state dict of another model is refused in one message."""
        from genface.errors import MissingWeightsError
        from genface.hub import load_checked

        try:
            config = {**cls.config_from_state_dict(state), **config}
        except (KeyError, ValueError) as exc:
            detail = f"no tensor {exc}" if isinstance(exc, KeyError) else str(exc)
            raise MissingWeightsError(f"The state dict is not one of {cls.__name__}: {detail}.") from exc
        return load_checked(lambda: cls(**config), state, f"The state dict does not match {cls.__name__}({config})")
