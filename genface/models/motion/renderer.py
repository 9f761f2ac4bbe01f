"""LivePortrait's renderer as Ditto runs it: appearance feature extractor (F), warping network (W) and SPADE
decoder (G).

A 256 x 256 RGB crop in [0, 1] becomes a 3-D appearance feature (B, 32, 16, 64, 64); the warping network moves it
from the source keypoints to the driving keypoints (B, 21, 3 each) and flattens it to (B, 256, 64, 64); the decoder
paints that as a 512 x 512 RGB image in [0, 1] (sigmoid). Parameter names and defaults are those of Ditto's
``appearance_extractor.pth``, ``warp_network.pth`` and ``decoder.pth`` (no key prefix; LivePortrait's
``src/config/models.yaml`` gives the same sizes), so the published state dicts load with ``from_state_dict``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from genface.errors import InvalidArgumentError
from genface.models.motion.blocks import (
    DownBlock2d,
    FromStateDictMixin,
    Hourglass,
    ResBlock3d,
    SameBlock2d,
    SPADEResnetBlock,
    kp2gaussian,
    make_coordinate_grid,
)

#: Ditto's dense-motion sizes (fixed inside its WarpingNetwork; ``dense_motion_params`` in LivePortrait's yaml).
DENSE_MOTION_PARAMS = {"block_expansion": 32, "max_features": 1024, "num_blocks": 5, "reshape_depth": 16, "compress": 4}


def _check_shape(name: str, tensor: torch.Tensor, expected: Sequence[int | None]) -> None:
    """One-line error unless ``tensor`` has ``len(expected)`` dims matching ``expected`` (None: any size)."""
    shape = tuple(tensor.shape)
    if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected, strict=True)):
        wanted = "x".join("*" if e is None else str(e) for e in expected)
        raise InvalidArgumentError(f"{name} must have shape {wanted}, got {'x'.join(map(str, shape))}.")


def _count(state: dict[str, torch.Tensor], prefix: str) -> int:
    """How many numbered children ``prefix<i>.`` the state dict holds."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for key in state if (m := pattern.match(key))})


def _split_width(width: int, num_down_blocks: int = 2) -> dict[str, int]:
    """``block_expansion`` and ``max_features`` giving ``min(max_features, block_expansion * 2**num_down_blocks)
    == width`` (the published max_features 512 kept where the width allows)."""
    if width % 2**num_down_blocks:
        raise ValueError(f"a width divisible by {2**num_down_blocks}, got {width}")
    return {"block_expansion": width // 2**num_down_blocks, "max_features": max(width, 512)}


class AppearanceFeatureExtractor(FromStateDictMixin, ModelMixin, ConfigMixin):
    """LivePortrait's F: RGB image (B, 3, H, W) in [0, 1] -> appearance feature volume
    (B, reshape_channel, reshape_depth, H / 2**num_down_blocks, W / 2**num_down_blocks); (B, 32, 16, 64, 64) for a
    256 x 256 image at the published size."""

    @register_to_config
    def __init__(
        self,
        image_channel: int = 3,
        block_expansion: int = 64,
        num_down_blocks: int = 2,
        max_features: int = 512,
        reshape_channel: int = 32,
        reshape_depth: int = 16,
        num_resblocks: int = 6,
    ) -> None:
        super().__init__()
        if reshape_channel * reshape_depth != max_features:
            raise InvalidArgumentError(
                f"reshape_channel x reshape_depth must equal max_features, got {reshape_channel} x {reshape_depth} "
                f"!= {max_features}."
            )
        widths = [min(max_features, block_expansion * 2**i) for i in range(num_down_blocks + 1)]
        self.first = SameBlock2d(image_channel, block_expansion)
        self.down_blocks = nn.ModuleList(DownBlock2d(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.second = nn.Conv2d(widths[-1], max_features, 1)
        self.resblocks_3d = nn.Sequential()
        for i in range(num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(reshape_channel))

    @staticmethod
    def tiny_config() -> dict[str, int]:
        """A few-kilobyte model for tests: (B, 3, 32, 32) -> (B, 4, 4, 8, 8)."""
        return {"block_expansion": 4, "max_features": 16, "reshape_channel": 4, "reshape_depth": 4, "num_resblocks": 2}

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, int]:
        max_features = state["second.weight"].shape[0]
        reshape_channel = state["resblocks_3d.3dr0.conv1.weight"].shape[0]
        return {
            "image_channel": state["first.conv.weight"].shape[1],
            "block_expansion": state["first.conv.weight"].shape[0],
            "num_down_blocks": _count(state, "down_blocks."),
            "max_features": max_features,
            "reshape_channel": reshape_channel,
            "reshape_depth": max_features // reshape_channel,
            "num_resblocks": _count(state, "resblocks_3d.3dr"),
        }

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Appearance feature of RGB images (B, 3, H, W) in [0, 1]."""
        _check_shape("image", image, (None, self.config.image_channel, None, None))
        out = self.first(image)
        for block in self.down_blocks:
            out = block(out)
        out = self.second(out)
        bs, _, h, w = out.shape
        return self.resblocks_3d(out.view(bs, self.config.reshape_channel, self.config.reshape_depth, h, w))


class DenseMotionNetwork(nn.Module):
    """Predicts the dense backward flow (B, d, h, w, 3) from sparse keypoint motion, and an occlusion map
    (B, 1, h, w) when ``estimate_occlusion_map``."""

    def __init__(
        self,
        block_expansion: int,
        num_blocks: int,
        max_features: int,
        num_kp: int,
        feature_channel: int,
        reshape_depth: int,
        compress: int,
        estimate_occlusion_map: bool = True,
    ) -> None:
        super().__init__()
        self.num_kp = num_kp
        self.hourglass = Hourglass(block_expansion, (num_kp + 1) * (compress + 1), num_blocks, max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, num_kp + 1, 7, padding=3)
        self.compress = nn.Conv3d(feature_channel, compress, 1)
        self.norm = nn.BatchNorm3d(compress)
        self.occlusion = (
            nn.Conv2d(self.hourglass.out_filters * reshape_depth, 1, 7, padding=3) if estimate_occlusion_map else None
        )

    def forward(
        self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(deformation, occlusion map or None) for a feature volume (B, C, d, h, w) and keypoints (B, K, 3)."""
        feature = F.relu(self.norm(self.compress(feature)))
        bs, c, d, h, w = feature.shape
        k = self.num_kp + 1
        # Sparse motions: the identity grid (background) and, per keypoint, the grid moved from driving to source.
        grid = make_coordinate_grid((d, h, w), kp_source)[None, None]
        moved = grid - kp_driving.view(bs, -1, 1, 1, 1, 3) + kp_source.view(bs, -1, 1, 1, 1, 3)
        sparse_motion = torch.cat([grid.expand(bs, 1, d, h, w, 3), moved], dim=1)  # (B, K+1, d, h, w, 3)
        deformed = F.grid_sample(
            feature[:, None].expand(bs, k, c, d, h, w).reshape(bs * k, c, d, h, w),
            sparse_motion.view(bs * k, d, h, w, 3),
            align_corners=False,
        ).view(bs, k, c, d, h, w)
        heatmap = kp2gaussian(kp_driving, (d, h, w), 0.01) - kp2gaussian(kp_source, (d, h, w), 0.01)
        heatmap = torch.cat([heatmap.new_zeros(bs, 1, d, h, w), heatmap], dim=1)
        prediction = self.hourglass(torch.cat([heatmap[:, :, None], deformed], dim=2).view(bs, -1, d, h, w))
        mask = F.softmax(self.mask(prediction), dim=1)
        deformation = (sparse_motion * mask[..., None]).sum(dim=1)
        if self.occlusion is None:
            return deformation, None
        return deformation, torch.sigmoid(self.occlusion(prediction.view(bs, -1, h, w)))


class WarpingNetwork(FromStateDictMixin, ModelMixin, ConfigMixin):
    """LivePortrait's W as Ditto calls it: ``(feature_3d, kp_source, kp_driving)`` -> the warped feature flattened
    to 2-D, (B, block_expansion * 2**num_down_blocks, h, w) = (B, 256, 64, 64) at the published size, multiplied by
    the occlusion map."""

    @register_to_config
    def __init__(
        self,
        num_kp: int = 21,
        block_expansion: int = 64,
        max_features: int = 512,
        num_down_blocks: int = 2,
        reshape_channel: int = 32,
        estimate_occlusion_map: bool = True,
        dense_motion_params: dict[str, int] | None = None,
    ) -> None:
        super().__init__()
        params = {**DENSE_MOTION_PARAMS, **(dense_motion_params or {})}
        self.register_to_config(dense_motion_params=params)
        if reshape_channel * params["reshape_depth"] != max_features:
            raise InvalidArgumentError(
                f"reshape_channel x dense_motion_params['reshape_depth'] must equal max_features, got "
                f"{reshape_channel} x {params['reshape_depth']} != {max_features}."
            )
        self.dense_motion_network = DenseMotionNetwork(
            num_kp=num_kp, feature_channel=reshape_channel, estimate_occlusion_map=estimate_occlusion_map, **params
        )
        width = block_expansion * 2**num_down_blocks
        self.third = SameBlock2d(max_features, width, lrelu=True)
        self.fourth = nn.Conv2d(width, width, 1)

    @staticmethod
    def tiny_config() -> dict[str, object]:
        """A few-kilobyte model matching AppearanceFeatureExtractor's tiny config: (B, 4, 4, 8, 8) and 3 keypoints
        -> (B, 16, 8, 8)."""
        return {
            "num_kp": 3,
            "block_expansion": 4,
            "max_features": 16,
            "reshape_channel": 4,
            "dense_motion_params": {
                "block_expansion": 4,
                "max_features": 16,
                "num_blocks": 2,
                "reshape_depth": 4,
                "compress": 2,
            },
        }

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, object]:
        dm = "dense_motion_network."
        num_kp = state[f"{dm}mask.weight"].shape[0] - 1
        compress, reshape_channel = state[f"{dm}compress.weight"].shape[:2]
        num_blocks = _count(state, f"{dm}hourglass.encoder.down_blocks.")
        width, max_features = state["third.conv.weight"].shape[:2]
        return {
            "num_kp": num_kp,
            "block_expansion": _split_width(width)["block_expansion"],
            "max_features": max_features,
            "reshape_channel": reshape_channel,
            "estimate_occlusion_map": f"{dm}occlusion.weight" in state,
            "dense_motion_params": {
                "block_expansion": state[f"{dm}hourglass.decoder.conv.weight"].shape[0] - (num_kp + 1) * (compress + 1),
                "max_features": state[f"{dm}hourglass.encoder.down_blocks.{num_blocks - 1}.conv.weight"].shape[0],
                "num_blocks": num_blocks,
                "reshape_depth": max_features // reshape_channel,
                "compress": compress,
            },
        }

    def forward(self, feature_3d: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        """Warp the source feature (B, C, d, h, w) from ``kp_source`` to ``kp_driving`` (B, num_kp, 3 each)."""
        cfg = self.config
        depth = cfg.max_features // cfg.reshape_channel
        _check_shape("feature_3d", feature_3d, (None, cfg.reshape_channel, depth, None, None))
        for name, kp in (("kp_source", kp_source), ("kp_driving", kp_driving)):
            _check_shape(name, kp, (feature_3d.shape[0], cfg.num_kp, 3))
        deformation, occlusion = self.dense_motion_network(feature_3d, kp_driving=kp_driving, kp_source=kp_source)
        out = F.grid_sample(feature_3d, deformation, align_corners=False)
        out = self.fourth(self.third(out.flatten(1, 2)))
        return out if occlusion is None else out * occlusion


class SPADEDecoder(FromStateDictMixin, ModelMixin, ConfigMixin):
    """LivePortrait's G: warped feature (B, C, h, w) -> RGB image (B, 3, 4h, 4w) in [0, 1] (sigmoid; 8h x 8w with
    ``upscale=2``, the published 512 x 512 from 64 x 64). C = min(max_features, block_expansion * 2**num_down_blocks)
    = 256."""

    @register_to_config
    def __init__(
        self,
        upscale: int = 2,
        max_features: int = 512,
        block_expansion: int = 64,
        out_channels: int = 64,
        num_down_blocks: int = 2,
        hidden_channels: int = 128,
    ) -> None:
        super().__init__()
        if upscale not in (1, 2):
            raise InvalidArgumentError(f"upscale must be 1 or 2 (the published pixel shuffle), got {upscale}.")
        width = min(max_features, block_expansion * 2**num_down_blocks)
        self.fc = nn.Conv2d(width, 2 * width, 3, padding=1)
        for i in range(6):
            self.add_module(f"G_middle_{i}", SPADEResnetBlock(2 * width, 2 * width, width, hidden_channels))
        self.up_0 = SPADEResnetBlock(2 * width, width, width, hidden_channels)
        self.up_1 = SPADEResnetBlock(width, out_channels, width, hidden_channels)
        conv = nn.Conv2d(out_channels, 3 * upscale**2, 3, padding=1)
        self.conv_img = conv if upscale == 1 else nn.Sequential(conv, nn.PixelShuffle(upscale))

    @staticmethod
    def tiny_config() -> dict[str, int]:
        """A few-kilobyte model matching WarpingNetwork's tiny config: (B, 16, 8, 8) -> (B, 3, 64, 64)."""
        return {"max_features": 16, "block_expansion": 4, "out_channels": 4, "hidden_channels": 8}

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, int]:
        return {
            "upscale": 2 if "conv_img.0.weight" in state else 1,
            **_split_width(state["fc.weight"].shape[1]),
            "out_channels": state["up_1.conv_1.weight_orig"].shape[0],
            "hidden_channels": state["up_1.norm_0.mlp_shared.0.weight"].shape[0],
        }

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] from warped features (B, C, h, w)."""
        _check_shape("feature", feature, (None, self.fc.in_channels, None, None))
        x = self.fc(feature)
        for i in range(6):
            x = getattr(self, f"G_middle_{i}")(x, feature)
        x = self.up_0(F.interpolate(x, scale_factor=2), feature)
        x = self.up_1(F.interpolate(x, scale_factor=2), feature)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, 0.2)))
