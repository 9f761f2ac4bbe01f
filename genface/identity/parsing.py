"""Face parsing with BiSeNet (CelebAMask-HQ, 19 classes) into named regions.

The network's parameter names follow the published checkpoints, so both load unchanged:
facexlib's ``parsing_bisenet.pth`` (used by ConsisID) and face-parsing.PyTorch's ``79999_iter.pth``
(used by FLUX-Makeup and MuseTalk). ``.pth`` files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from genface.errors import MissingWeightsError
from genface.identity.align import align_face, invert_affine
from genface.identity.types import Face

#: CelebAMask-HQ class names, by class index (left/right as labelled in the dataset).
LABELS = (
    "background", "skin", "left_brow", "right_brow", "left_eye", "right_eye", "eyeglasses",
    "left_ear", "right_ear", "earring", "nose", "mouth", "upper_lip", "lower_lip", "neck",
    "necklace", "cloth", "hair", "hat",
)  # fmt: skip
#: Named groups of classes.
REGIONS: dict[str, tuple[str, ...]] = {
    "brows": ("left_brow", "right_brow"),
    "eyes": ("left_eye", "right_eye"),
    "ears": ("left_ear", "right_ear"),
    "lips": ("upper_lip", "lower_lip"),
    "face": ("skin", "left_brow", "right_brow", "left_eye", "right_eye", "eyeglasses", "nose", "mouth",
             "upper_lip", "lower_lip"),
    # What ConsisID removes from the reference face (background, clothes, hat, ears, earrings, neck).
    "not_face": ("background", "cloth", "hat", "left_ear", "right_ear", "earring", "neck", "necklace"),
}  # fmt: skip
#: Checkpoint file names looked for in a weights folder, in order.
CHECKPOINT_NAMES = ("parsing_bisenet.pth", "79999_iter.pth")
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
INPUT_SIZE = 512


class _ConvBN(nn.Module):
    """Conv (no bias) + BatchNorm (+ ReLU in forward); named ``conv``/``bn`` as in the checkpoints."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + out)


class _ResNet18(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (cin, cout, stride) in enumerate(widths, start=1):
            self.add_module(f"layer{i}", nn.Sequential(_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        feat8 = self.layer2(x)
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class _AttentionRefinement(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = _ConvBN(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean((2, 3), keepdim=True))))


class _ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = _ResNet18()
        self.arm16 = _AttentionRefinement(256, 128)
        self.arm32 = _AttentionRefinement(512, 128)
        self.conv_head32 = _ConvBN(128, 128)
        self.conv_head16 = _ConvBN(128, 128)
        self.conv_avg = _ConvBN(512, 128, kernel=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        avg = self.conv_avg(feat32.mean((2, 3), keepdim=True))
        up32 = F.interpolate(self.arm32(feat32) + avg, feat16.shape[2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, feat8.shape[2:], mode="nearest")
        return feat8, self.conv_head16(up16), up32


class _FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.convblk = _ConvBN(cin, cout, kernel=1)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        atten = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean((2, 3), keepdim=True)))))
        return feat + feat * atten


class _Head(nn.Module):
    def __init__(self, cin: int, mid: int, classes: int) -> None:
        super().__init__()
        self.conv = _ConvBN(cin, mid)
        self.conv_out = nn.Conv2d(mid, classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(ModelMixin, ConfigMixin):
    """BiSeNet face parser (ResNet-18 context path; the spatial path replaced by 1/8 features)."""

    @register_to_config
    def __init__(self, num_classes: int = len(LABELS)) -> None:
        super().__init__()
        self.cp = _ContextPath()
        self.ffm = _FeatureFusion(256, 256)
        self.conv_out = _Head(256, 256, num_classes)
        self.conv_out16 = _Head(128, 64, num_classes)
        self.conv_out32 = _Head(128, 64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits at the input resolution (the main head; the auxiliary heads only train)."""
        feat8, cp8, _ = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, cp8))
        return F.interpolate(logits, x.shape[2:], mode="bilinear", align_corners=True)


def load_bisenet_checkpoint(path: str | os.PathLike) -> BiSeNet:
    """Load a published ``.pth`` checkpoint (either layout) safely into :class:`BiSeNet`.

    Handles both publishers' differences: a ``module.`` prefix (DataParallel saves) and present or
    absent BatchNorm ``num_batches_tracked`` buffers. Anything else missing or extra is an error.
    """
    from genface.hub import load_state_dict

    path = Path(path)
    state = load_state_dict(path)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "conv_out.conv_out.weight" not in state:
        raise MissingWeightsError(f"{path} is not a BiSeNet face-parsing checkpoint (no conv_out.conv_out.weight).")
    model = BiSeNet(num_classes=int(state["conv_out.conv_out.weight"].shape[0]))
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of the wrong shape
        raise MissingWeightsError(f"{path} is not a BiSeNet face-parsing checkpoint: {exc}") from exc
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise MissingWeightsError(
            f"{path} is not a BiSeNet face-parsing checkpoint: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    return model.eval()


@dataclass
class Parsing:
    """A parsed face: ``labels`` is an HxW uint8 map of :data:`LABELS` indices."""

    labels: np.ndarray

    def mask(self, *names: str) -> np.ndarray:
        """Boolean HxW mask of the union of the named classes or :data:`REGIONS`."""
        indices = set()
        for name in names:
            classes = REGIONS.get(name, (name,))
            unknown = [c for c in classes if c not in LABELS]
            if unknown:
                raise ValueError(f"Unknown face region {name!r}; choose from {sorted(REGIONS) + list(LABELS)}.")
            indices.update(LABELS.index(c) for c in classes)
        return np.isin(self.labels, sorted(indices))

    def masks(self, names: Iterable[str] = LABELS) -> dict[str, np.ndarray]:
        """Masks for several names at once."""
        return {name: self.mask(name) for name in names}


class FaceParser:
    """Parse face crops into named regions (skin, brows, eyes, nose, lips, hair, background, ...)."""

    def __init__(self, model: BiSeNet, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    def to(self, device: str | torch.device) -> FaceParser:
        """Parse on ``device`` from now on (the model moves there); returns the parser."""
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @classmethod
    def from_pretrained(
        cls, path_or_repo: str | os.PathLike, subfolder: str | None = None, device: str = "cpu"
    ) -> FaceParser:
        """Load from a ``.pth`` checkpoint, a folder holding one (see :data:`CHECKPOINT_NAMES`),
        a folder written by ``BiSeNet.save_pretrained``, or a Hub repo (+ subfolder)."""
        from genface.hub import resolve_folder

        path = Path(path_or_repo).expanduser()
        if path.is_file():
            return cls(load_bisenet_checkpoint(path), device)
        folder = resolve_folder(
            path_or_repo, subfolder, allow_patterns=[*CHECKPOINT_NAMES, "config.json", "*.safetensors"]
        )
        for name in CHECKPOINT_NAMES:
            if (folder / name).is_file():
                return cls(load_bisenet_checkpoint(folder / name), device)
        if (folder / "config.json").is_file():
            return cls(BiSeNet.from_pretrained(str(folder)), device)
        raise MissingWeightsError(
            f"No face-parsing weights in {folder}: expected one of {list(CHECKPOINT_NAMES)} or a saved BiSeNet "
            "(config.json + diffusion_pytorch_model.safetensors)."
        )

    @torch.inference_mode()
    def parse(
        self, images: np.ndarray, *, mean: Sequence[float] = _MEAN, std: Sequence[float] = _STD
    ) -> Parsing | list[Parsing]:
        """Parse one RGB uint8 face crop (HxWx3) or a batch (NxHxWx3); labels come at the input size. Pixels in
        [0, 1] are normalised with ``mean`` and ``std`` (ImageNet's, as ConsisID and face-parsing.PyTorch do;
        Stand-In uses 0.5 and 0.5)."""
        batch = np.asarray(images)
        single = batch.ndim == 3
        batch = batch[None] if single else batch
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        size = x.shape[2:]
        x = F.interpolate(x, (INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        dtype = next(self.model.parameters()).dtype
        logits = self.model(((x - mean) / std).to(dtype)).float()
        logits = F.interpolate(logits, size, mode="bilinear", align_corners=False)
        labels = logits.argmax(1).to(torch.uint8).cpu().numpy()
        parsed = [Parsing(lab) for lab in labels]
        return parsed[0] if single else parsed

    def image_masks(self, images: Sequence[np.ndarray], faces: Sequence[Face | None], *regions: str) -> np.ndarray:
        """Boolean masks (N x H x W) of the named regions of ``faces[i]`` in ``images[i]``, in image
        coordinates: each face is aligned (FFHQ template at the parser's input size), parsed, and its mask
        warped back. Images whose face is None get an empty mask."""
        import cv2

        masks = np.zeros((len(images), *images[0].shape[:2]), dtype=bool)
        found = [i for i, face in enumerate(faces) if face is not None]
        if not found:
            return masks
        aligned = [align_face(images[i], faces[i].kps, "ffhq", INPUT_SIZE) for i in found]
        parsed = self.parse(np.stack([crop for crop, _ in aligned]))
        for i, (_, matrix), parsing in zip(found, aligned, parsed, strict=True):
            height, width = images[i].shape[:2]
            crop_mask = parsing.mask(*regions).astype(np.uint8)
            masks[i] = cv2.warpAffine(crop_mask, invert_affine(matrix), (width, height), flags=cv2.INTER_NEAREST) > 0
        return masks
