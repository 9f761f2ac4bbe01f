"""CurricularFace's IR backbone (TFace ``model_irse``), the FaceSim-Cur judge of ConsisID's evaluation.

Parameter names follow the published ``glint360k_curricular_face_r101_backbone.bin`` (ConsisID's
``face_encoder/``), so it loads unchanged and safely (``weights_only``) with :meth:`CurricularFaceIR.from_checkpoint`.
IR-101 is the default: four stages of 3, 13, 30 and 3 residual units (64, 128, 256, 512 channels), each stage
starting with a stride-2 unit, on 112 x 112 RGB crops scaled to [-1, 1]; a 512-d embedding (not normalised).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class BasicBlockIR(nn.Module):
    """BN-conv-BN-PReLU-conv-BN residual unit; the shortcut is a strided identity (1x1 max pool) or a 1x1 conv."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        if cin == cout:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class CurricularFaceIR(ModelMixin, ConfigMixin):
    """TFace's ``Backbone(input_size, 100, "ir")`` (IR-101) by default; smaller ``units`` / ``channels`` give
    tiny test models of the same layout."""

    @register_to_config
    def __init__(
        self,
        units: Sequence[int] = (3, 13, 30, 3),
        channels: Sequence[int] = (64, 128, 256, 512),
        embedding_size: int = 512,
        input_size: int = 112,
    ) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, 1, 1, bias=False), nn.BatchNorm2d(channels[0]), nn.PReLU(channels[0])
        )
        blocks, cin = [], channels[0]
        for count, cout in zip(units, channels, strict=True):
            blocks += [BasicBlockIR(cin if i == 0 else cout, cout, 2 if i == 0 else 1) for i in range(count)]
            cin = cout
        self.body = nn.Sequential(*blocks)
        side = input_size // 2 ** len(units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(channels[-1]),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(channels[-1] * side * side, embedding_size),
            nn.BatchNorm1d(embedding_size, affine=False),
        )

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **config: object) -> CurricularFaceIR:
        """Load the published ``.bin`` state dict (``torch.load(weights_only=True)``) or a ``.safetensors``; sizes
        are read from its tensors (:meth:`config_from_state_dict`) unless ``config`` gives them."""
        from genface.hub import load_checked, load_state_dict

        state = load_state_dict(path)
        config = config or cls.config_from_state_dict(state)
        return load_checked(lambda: cls(**config), state, f"{path} does not match the CurricularFace IR {config}")

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, object]:
        """``units``, ``channels`` and ``embedding_size`` read off the weights: a stage starts at the first unit
        and at each unit that changes the width (so stages must differ in width, as every published IR does)."""
        blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("body.")})
        units, channels = [], []
        for index in blocks:
            cout, cin = state[f"body.{index}.res_layer.1.weight"].shape[:2]
            if not channels or cout != cin:
                units.append(0)
                channels.append(int(cout))
            units[-1] += 1
        return {"units": units, "channels": channels, "embedding_size": state["output_layer.3.weight"].shape[0]}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw embeddings of B x 3 x S x S crops in [-1, 1] (S = ``input_size``)."""
        return self.output_layer(self.body(self.input_layer(x)))
