"""LivePortrait's motion extractor (ConvNeXtV2 backbone and heads) and stitching network, as Ditto runs them.

Parameter names follow Ditto's ``motion_extractor.pth`` (``detector.`` prefix) and the ``retarget_shoulder`` part
of ``stitch_network.pth`` (``mlp.`` Linear layers), which are LivePortrait's ``motion_extractor.pth`` and
``stitching_retargeting_module.pth`` as well, so the published tensors load unchanged with :meth:`from_state_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from genface.errors import InvalidArgumentError


class MotionExtractorOutput(NamedTuple):
    """The motion of a source image, in Ditto's order: head-pose logits over ``num_bins`` bins of 3 degrees
    (pitch, yaw, roll; unnormalised), translation (B x 3), expression offsets (B x 3·num_kp), scale (B x 1) and
    canonical keypoints (B x 3·num_kp)."""

    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    t: torch.Tensor
    exp: torch.Tensor
    scale: torch.Tensor
    kp: torch.Tensor


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of an N x C x H x W tensor (ConvNeXt's ``data_format="channels_first"``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GRN(nn.Module):
    """ConvNeXtV2's global response normalisation over the H, W axes of an N x H x W x C tensor."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    """Depthwise 7x7 conv, LayerNorm, 4x MLP with GELU and GRN, residual (no stochastic depth: inference)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        y = self.pwconv2(self.grn(self.act(self.pwconv1(y))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2(nn.Module):
    """The ``detector``: ConvNeXtV2 stages, global average pool, LayerNorm, and the seven linear heads."""

    def __init__(self, in_chans: int, depths: Sequence[int], dims: Sequence[int], num_kp: int, num_bins: int) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_chans, dims[0], 4, stride=4), ChannelsFirstLayerNorm(dims[0], eps=1e-6))]
        )
        for cin, cout in zip(dims[:-1], dims[1:], strict=True):
            self.downsample_layers.append(
                nn.Sequential(ChannelsFirstLayerNorm(cin, eps=1e-6), nn.Conv2d(cin, cout, 2, stride=2))
            )
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtV2Block(dim) for _ in range(depth)))
            for depth, dim in zip(depths, dims, strict=True)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        width = dims[-1]
        self.fc_kp = nn.Linear(width, 3 * num_kp)
        self.fc_scale = nn.Linear(width, 1)
        self.fc_pitch = nn.Linear(width, num_bins)
        self.fc_yaw = nn.Linear(width, num_bins)
        self.fc_roll = nn.Linear(width, num_bins)
        self.fc_t = nn.Linear(width, 3)
        self.fc_exp = nn.Linear(width, 3 * num_kp)

    def forward(self, x: torch.Tensor) -> MotionExtractorOutput:
        for downsample, stage in zip(self.downsample_layers, self.stages, strict=True):
            x = stage(downsample(x))
        x = self.norm(x.mean((-2, -1)))
        heads = (self.fc_pitch, self.fc_yaw, self.fc_roll, self.fc_t, self.fc_exp, self.fc_scale, self.fc_kp)
        return MotionExtractorOutput(*(head(x) for head in heads))


def _check_config(what: str, **sizes: int | Sequence[int]) -> None:
    bad = {k: v for k, v in sizes.items() if (min(v, default=0) if isinstance(v, Sequence) else v) < 1}
    if bad:
        raise InvalidArgumentError(f"{what}: sizes must be positive integers, got {bad}.")


class MotionExtractor(ModelMixin, ConfigMixin):
    """LivePortrait's motion extractor (ConvNeXtV2-tiny by default): an RGB image (B x 3 x H x W, values in
    [0, 1], 256 x 256 as published; no normalisation inside) -> :class:`MotionExtractorOutput`."""

    @register_to_config
    def __init__(
        self,
        in_chans: int = 3,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        num_kp: int = 21,
        num_bins: int = 66,
    ) -> None:
        super().__init__()
        _check_config("MotionExtractor", in_chans=in_chans, depths=depths, dims=dims, num_kp=num_kp, num_bins=num_bins)
        if len(depths) != len(dims):
            raise InvalidArgumentError(
                f"MotionExtractor: depths {list(depths)} and dims {list(dims)} differ in length."
            )
        self.detector = ConvNeXtV2(in_chans, depths, dims, num_kp, num_bins)

    @staticmethod
    def tiny_config() -> dict[str, object]:
        """A milliseconds-on-CPU model of the same layout and output sizes (21 keypoints, 66 bins)."""
        return {"depths": (1, 1, 1, 1), "dims": (8, 8, 16, 16)}

    @staticmethod
    def config_from_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, object]:
        """Depths, widths, keypoint and bin counts read off the tensors."""
        depths = _stage_depths(state)
        return {
            "in_chans": state["detector.downsample_layers.0.0.weight"].shape[1],
            "depths": depths,
            "dims": [state[f"detector.stages.{i}.0.dwconv.weight"].shape[0] for i in range(len(depths))],
            "num_kp": state["detector.fc_kp.weight"].shape[0] // 3,
            "num_bins": state["detector.fc_pitch.weight"].shape[0],
        }

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, torch.Tensor], **config: object) -> MotionExtractor:
        """The model of Ditto's/LivePortrait's ``motion_extractor.pth`` tensors (sizes read from them unless
        ``config`` gives them), loaded strictly; a state dict of another model is refused in one message."""
        from genface.hub import load_checked

        state = dict(state_dict)
        if not any(k.startswith("detector.stages.") for k in state):
            raise InvalidArgumentError("Not a motion-extractor state dict: no 'detector.stages.*' tensors.")
        config = {**cls.config_from_state_dict(state), **config}
        return load_checked(lambda: cls(**config), state, f"The state dict does not match MotionExtractor {config}")

    def forward(self, image: torch.Tensor) -> MotionExtractorOutput:
        """``(pitch, yaw, roll, t, exp, scale, kp)`` of ``image`` (B x in_chans x H x W, values in [0, 1])."""
        if image.ndim != 4 or image.shape[1] != self.config.in_chans:
            raise InvalidArgumentError(
                f"MotionExtractor takes B x {self.config.in_chans} x H x W images, got {tuple(image.shape)}."
            )
        return self.detector(image)


def _stage_depths(state: Mapping[str, torch.Tensor]) -> list[int]:
    """Blocks per stage, counted from the ``detector.stages.{i}.{j}.dwconv.weight`` names."""
    blocks: dict[int, int] = {}
    for key in state:
        parts = key.split(".")
        if key.startswith("detector.stages.") and key.endswith(".dwconv.weight"):
            blocks[int(parts[2])] = max(blocks.get(int(parts[2]), 0), int(parts[3]) + 1)
    return [blocks[i] for i in range(len(blocks))]


class StitchingNetwork(ModelMixin, ConfigMixin):
    """LivePortrait's stitching MLP (Linear-ReLU ... Linear; ``mlp.{0,2,4,6}``), called as Ditto's
    ``StitchingNetwork.forward``: source and driving keypoints -> driving keypoints with the predicted
    offsets added (the first 3·N outputs to every coordinate, the last two to x and y of every keypoint)."""

    @register_to_config
    def __init__(
        self, input_size: int = 126, hidden_sizes: Sequence[int] = (128, 128, 64), output_size: int = 65
    ) -> None:
        super().__init__()
        _check_config("StitchingNetwork", input_size=input_size, hidden_sizes=hidden_sizes, output_size=output_size)
        layers: list[nn.Module] = []
        for cin, cout in zip((input_size, *hidden_sizes[:-1]), hidden_sizes, strict=True):
            layers += [nn.Linear(cin, cout), nn.ReLU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(hidden_sizes[-1], output_size))

    @staticmethod
    def tiny_config() -> dict[str, object]:
        """The published input and output sizes (21 keypoints) with narrow hidden layers."""
        return {"hidden_sizes": (16, 8)}

    @staticmethod
    def config_from_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, object]:
        """Input, hidden and output sizes read off the Linear weights."""
        weights = sorted((int(k.split(".")[1]), v) for k, v in state.items() if k.endswith(".weight"))
        return {
            "input_size": weights[0][1].shape[1],
            "hidden_sizes": [w.shape[0] for _, w in weights[:-1]],
            "output_size": weights[-1][1].shape[0],
        }

    @classmethod
    def from_state_dict(cls, state_dict: Mapping[str, object], **config: object) -> StitchingNetwork:
        """The model of a stitching state dict (``mlp.*``), or of the published ``stitch_network.pth`` /
        ``stitching_retargeting_module.pth`` checkpoint whose ``retarget_shoulder`` entry it takes with the
        DDP ``module.`` prefix removed, as Ditto's ``load_model`` does; loaded strictly."""
        from genface.hub import load_checked

        state = state_dict.get("retarget_shoulder", state_dict)
        if not isinstance(state, Mapping) or not any(str(k).startswith(("mlp.", "module.mlp.")) for k in state):
            raise InvalidArgumentError("Not a stitching-network state dict: no 'mlp.*' or 'retarget_shoulder' entry.")
        state = {k.replace("module.", ""): v for k, v in state.items()}
        config = {**cls.config_from_state_dict(state), **config}
        return load_checked(lambda: cls(**config), state, f"The state dict does not match StitchingNetwork {config}")

    def delta(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        """The MLP's output (B x output_size) on the flattened source and driving keypoints (B x N x 3 each)."""
        if kp_source.ndim != 3 or kp_source.shape != kp_driving.shape or kp_source.shape[-1] != 3:
            raise InvalidArgumentError(
                f"StitchingNetwork takes two B x N x 3 keypoint tensors, got {tuple(kp_source.shape)} and "
                f"{tuple(kp_driving.shape)}."
            )
        num_kp = kp_source.shape[1]
        if 6 * num_kp != self.config.input_size or self.config.output_size < 3 * num_kp + 2:
            raise InvalidArgumentError(
                f"StitchingNetwork of sizes {self.config.input_size} -> {self.config.output_size} cannot stitch "
                f"{num_kp} keypoints (it needs 6N inputs and at least 3N + 2 outputs)."
            )
        return self.mlp(torch.cat([kp_source.flatten(1), kp_driving.flatten(1)], dim=1))

    def forward(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        """Stitched driving keypoints (B x N x 3): ``kp_driving`` plus the expression offsets ``delta[:, :3N]``,
        and plus the shift ``delta[:, 3N:3N+2]`` on x and y."""
        batch, num_kp = kp_source.shape[:2]
        delta = self.delta(kp_source, kp_driving)
        offsets = delta[:, : 3 * num_kp].reshape(batch, num_kp, 3)
        shift = F.pad(delta[:, 3 * num_kp : 3 * num_kp + 2], (0, 1)).unsqueeze(1)
        return kp_driving + offsets + shift
