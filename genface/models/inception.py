"""Inception-v3 for FID, with torchvision's parameter names so both published weight files load unchanged.

- torchvision's ImageNet weights (``inception_v3_google-0cc3c7bd.pth``: 1000 classes, ``AuxLogits``), which
  ConsisID's evaluation uses with ``fc`` removed and ``transform_input`` on (torchvision's default with weights);
- pytorch-fid's FID weights (``pt_inception-2015-12-05-6726825d.pth``: 1008 classes, no ``AuxLogits``), the
  TensorFlow FID network ported: ``fid_blocks=True`` switches the pooling of the Mixed blocks to TensorFlow's
  (average pools that leave the padding out, a max pool in ``Mixed_7c``).

:meth:`InceptionV3.features` returns the 2048 pooled features (what the network gives with ``fc`` removed).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

#: ImageNet mean and std that ``transform_input`` undoes (torchvision's).
_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: pytorch-fid's FID Inception: 1008 classes, no auxiliary head, TensorFlow pooling, inputs in [-1, 1].
FID_CONFIG = {"num_classes": 1008, "aux_logits": False, "transform_input": False, "fid_blocks": True}


class BasicConv2d(nn.Module):
    def __init__(self, cin: int, cout: int, **kwargs: object) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x: torch.Tensor, tf_pool: bool) -> torch.Tensor:
    """3x3 average pool, stride 1; TensorFlow's (``tf_pool``) divides by the pixels inside the image only."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=not tf_pool)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool_features: int, tf_pool: bool = False) -> None:
        super().__init__()
        self.tf_pool = tf_pool
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg_pool(x, self.tf_pool)),
            ],
            1,
        )


class InceptionB(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), dbl, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, channels_7x7: int, tf_pool: bool = False) -> None:
        super().__init__()
        c7 = channels_7x7
        self.tf_pool = tf_pool
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg_pool(x, self.tf_pool))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """``pool``: ``"avg"`` (torchvision), ``"tf_avg"`` (FID's Mixed_7b) or ``"max"`` (FID's Mixed_7c)."""

    def __init__(self, cin: int, pool: str = "avg") -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool == "max":
            pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            pooled = _avg_pool(x, self.pool == "tf_avg")
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(b3),
                self.branch3x3_2b(b3),
                self.branch3x3dbl_3a(d3),
                self.branch3x3dbl_3b(d3),
                self.branch_pool(pooled),
            ],
            1,
        )


class InceptionAux(nn.Module):
    """The auxiliary classifier; kept only so that torchvision's weight file loads whole (unused in eval)."""

    def __init__(self, cin: int, num_classes: int) -> None:
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)


class InceptionV3(ModelMixin, ConfigMixin):
    """torchvision's ``Inception3`` layout. Defaults: torchvision's ImageNet model as built with weights;
    :meth:`for_fid` gives pytorch-fid's FID network."""

    @register_to_config
    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = True,
        transform_input: bool = True,
        fid_blocks: bool = False,
    ) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, 32, fid_blocks)
        self.Mixed_5c = InceptionA(256, 64, fid_blocks)
        self.Mixed_5d = InceptionA(288, 64, fid_blocks)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128, fid_blocks)
        self.Mixed_6c = InceptionC(768, 160, fid_blocks)
        self.Mixed_6d = InceptionC(768, 160, fid_blocks)
        self.Mixed_6e = InceptionC(768, 192, fid_blocks)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, "tf_avg" if fid_blocks else "avg")
        self.Mixed_7c = InceptionE(2048, "max" if fid_blocks else "avg")
        self.fc = nn.Linear(2048, num_classes)

    @classmethod
    def for_fid(cls) -> InceptionV3:
        """pytorch-fid's FID Inception (:data:`FID_CONFIG`)."""
        return cls(**FID_CONFIG)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **config: object) -> InceptionV3:
        """Load a published ``.pth`` state dict safely (``weights_only``); ``config`` picks the layout."""
        from genface.hub import load_state_dict

        model = cls(**config)
        model.load_state_dict(load_state_dict(path))
        return model.eval()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 2048-d features of images ``x`` (B x 3 x 299 x 299). With ``transform_input`` (torchvision's
        default for its weights) ``x`` is expected ImageNet-normalised and is mapped to [-1, 1] first; without it
        ``x`` must already be in [-1, 1]."""
        if self.config.transform_input:
            scale = x.new_tensor([s / 0.5 for s in _STD]).view(1, 3, 1, 1)
            shift = x.new_tensor([(m - 0.5) / 0.5 for m in _MEAN]).view(1, 3, 1, 1)
            x = x * scale + shift
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
