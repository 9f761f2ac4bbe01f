"""The FSFM / FS-VFM vision transformer (ViT-S/16, B/16, L/16) and its face-security classifier heads.

FSFM (CVPR 2025) and its extension FS-VFM pre-train a plain ViT on real faces, then fine-tune it for
cross-dataset deepfake detection and diffusion-face detection (a linear ``head`` on the mean of the patch
tokens) or for face anti-spoofing (a 512-d ``embedder`` and an L2-normalised ``classifier``). Parameter
names follow the published checkpoints (``Wolowolo/fsfm-3c``: timm 0.4 ViT names; the anti-spoofing files
prefix the ViT with ``backbone.vit.``), so they load unchanged; timm itself needs torchvision, which is why
genface carries this ~150-line model (parity with the published forward is tested).

Published files are pickled training checkpoints (weights, optimizer, and the run's ``argparse``
arguments); they are read with ``torch.load(weights_only=True)`` allowing only those plain-data classes.
Their classes are ordered as the training folders sort: **index 0 is fake**, 1 is real.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from genface.errors import InvalidArgumentError, MissingWeightsError

logger = logging.getLogger(__name__)

#: VGGFace2's pixel statistics, the published code's fallback when ``pretrain_ds_mean_std.txt`` is missing.
VF2_MEAN = (0.5482207536697388, 0.42340534925460815, 0.3654651641845703)
VF2_STD = (0.2789176106452942, 0.2438540756702423, 0.23493893444538116)
#: The file beside each published checkpoint holding the pre-training set's mean and std (one JSON line).
MEAN_STD_FILE = "pretrain_ds_mean_std.txt"
#: Attention heads of the published sizes (the weights do not show them): S 384, B 768, L 1024, H 1280.
HEADS_BY_WIDTH = {384: 12, 768: 12, 1024: 16, 1280: 16}
HEAD_TYPES = ("linear", "fas", "none")
_ENCODER_PREFIXES = ("cls_token", "pos_embed", "patch_embed.", "blocks.", "norm.", "fc_norm.")


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        q, k, v = self.qkv(x).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, width))


class _Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = _Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = _Mlp(width, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class _Embedder(nn.Module):
    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.bottleneck_layer_fc = nn.Linear(width, dim)


class _Classifier(nn.Module):
    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        self.classifier_layer = nn.Linear(dim, classes)


class FSFMViT(ModelMixin, ConfigMixin):
    """FSFM / FS-VFM ViT with its classifier (defaults: ViT-B/16 fine-tuned for deepfake detection).

    ``head_type``: ``"linear"`` (deepfake and diffusion checkpoints), ``"fas"`` (anti-spoofing checkpoints) or
    ``"none"`` (a pre-trained backbone: ``forward`` returns its features). ``image_mean``/``image_std`` are
    the pre-training set's statistics the inputs are normalised with; ``fake_class`` is the logit index of
    "fake". ``forward`` takes normalised ``image_size`` squares and returns logits.
    """

    _no_split_modules = ["_Block"]

    @register_to_config
    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        global_pool: bool = True,
        head_type: str = "linear",
        num_classes: int = 2,
        embedder_dim: int = 512,
        layer_norm_eps: float = 1e-6,
        image_mean: Sequence[float] = VF2_MEAN,
        image_std: Sequence[float] = VF2_STD,
        fake_class: int = 0,
    ) -> None:
        super().__init__()
        if head_type not in HEAD_TYPES or width % heads or image_size % patch_size:
            raise InvalidArgumentError(
                f"FSFM config: head_type must be one of {HEAD_TYPES} (got {head_type!r}), width {width} a multiple "
                f"of heads {heads}, image_size {image_size} a multiple of patch_size {patch_size}."
            )
        grid = image_size // patch_size
        self.patch_embed = _PatchEmbed(patch_size, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, width))
        hidden = int(width * mlp_ratio)
        self.blocks = nn.ModuleList(_Block(width, heads, hidden, layer_norm_eps) for _ in range(layers))
        if global_pool:
            self.fc_norm = nn.LayerNorm(width, eps=layer_norm_eps)
        else:
            self.norm = nn.LayerNorm(width, eps=layer_norm_eps)
        if head_type == "linear":
            self.head = nn.Linear(width, num_classes)
        elif head_type == "fas":
            self.embedder = _Embedder(width, embedder_dim)
            self.classifier = _Classifier(embedder_dim, num_classes)

    def tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Every token after the last block (B x 1+patches x width), before the final norm."""
        size = self.config.image_size
        if pixel_values.shape[-2:] != (size, size):
            raise InvalidArgumentError(f"FSFM expects {size}x{size} face crops, got {tuple(pixel_values.shape[-2:])}.")
        x = self.patch_embed(pixel_values.to(self.pos_embed.dtype))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return x

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """The image feature: the normed mean of the patch tokens (global pool), or the normed class token."""
        if self.config.global_pool:
            return self.fc_norm(tokens[:, 1:].mean(dim=1))
        return self.norm(tokens)[:, 0]

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(pixel_values)
        pooled = self.pooled(tokens)
        if self.config.head_type == "linear":
            return self.head(pooled)
        if self.config.head_type == "none":
            return pooled
        # Anti-spoofing head as published: the pooled feature replaces the class token, every token goes
        # through the bottleneck, features are scaled by their norm over the token axis, the classifier's
        # weight is L2-normalised per input feature, and the logits are read at the first token.
        tokens = torch.cat([pooled[:, None], tokens[:, 1:]], dim=1)
        feature = F.relu(self.embedder.bottleneck_layer_fc(tokens))
        feature = feature / (feature.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12) ** 0.5 * 2**0.5)
        layer = self.classifier.classifier_layer
        return F.linear(feature, F.normalize(layer.weight, dim=0, eps=0.0), layer.bias)[:, 0]

    def require_classifier(self) -> None:
        """Raise :class:`InvalidArgumentError` for a pre-trained backbone, which cannot score faces."""
        if self.config.head_type == "none":
            raise InvalidArgumentError(
                "This FSFM model is a pre-trained backbone without a classifier; load a fine-tuned checkpoint "
                "(finetuned_models/... in Wolowolo/fsfm-3c) to score faces."
            )

    def fake_probability(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """P(fake) per image, the softmax of the logits at ``fake_class``."""
        self.require_classifier()
        return self(pixel_values).float().softmax(dim=-1)[:, self.config.fake_class]

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, object]:
        """The config read off published weights' shapes (heads by width, as the published sizes have them)."""
        width = state["pos_embed"].shape[-1]
        patch_size = state["patch_embed.proj.weight"].shape[-1]
        grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)
        if "head.weight" in state:
            head, classes = "linear", state["head.weight"].shape[0]
        elif "classifier.classifier_layer.weight" in state:
            head, classes = "fas", state["classifier.classifier_layer.weight"].shape[0]
        else:
            head, classes = "none", 2
        config: dict[str, object] = {
            "image_size": grid * patch_size,
            "patch_size": patch_size,
            "width": width,
            "layers": 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks.")),
            "heads": HEADS_BY_WIDTH.get(width, max(1, width // 64)),
            "mlp_ratio": state["blocks.0.mlp.fc1.weight"].shape[0] / width,
            "global_pool": "fc_norm.weight" in state,
            "head_type": head,
            "num_classes": classes,
        }
        if head == "fas":
            config["embedder_dim"] = state["embedder.bottleneck_layer_fc.weight"].shape[0]
        return config

    @classmethod
    def from_fsfm_checkpoint(
        cls, path: str | os.PathLike, mean_std: str | os.PathLike | None = None, **config: object
    ) -> FSFMViT:
        """Load a published ``.pth`` (pre-trained, fine-tuned, or anti-spoofing ``.pth.tar``); sizes come from
        its tensors, ``config`` overrides them. ``mean_std`` is the ``pretrain_ds_mean_std.txt`` to normalise
        with (default: the one beside ``path``; VGGFace2's values, with a warning, when there is none)."""
        from genface.hub import load_checked

        path = Path(path).expanduser()
        state = published_state_dict(path)
        config = {**cls.config_from_state_dict(state), **config}
        stats = Path(mean_std).expanduser() if mean_std is not None else path.parent / MEAN_STD_FILE
        if mean_std is not None or stats.is_file():
            config.setdefault("image_mean", read_mean_std(stats)[0])
            config.setdefault("image_std", read_mean_std(stats)[1])
        else:
            logger.warning("No %s beside %s; normalising with VGGFace2's mean and std.", MEAN_STD_FILE, path)
        what = f"{path} does not match the FSFM ViT {config}"
        return load_checked(lambda: cls(**config), state, what)


def published_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The ViT and head weights of a published FSFM checkpoint, in this module's names.

    Read through :func:`genface.hub.load_state_dict` (``weights_only``), allowing the plain-data classes the
    training scripts saved beside the weights (``argparse.Namespace``; NumPy scalars in anti-spoofing files).
    The pre-training decoders and projectors are dropped; ``module.``/``backbone.vit.`` prefixes are removed.
    """
    import numpy as np

    from genface.hub import load_state_dict

    dtypes = {type(np.dtype(code)) for code in "?bBhHiIlLqQefdg"}
    with torch.serialization.safe_globals([argparse.Namespace, np.dtype, np._core.multiarray.scalar, *dtypes]):
        checkpoint = load_state_dict(path)
    state = next((checkpoint[k] for k in ("model", "state_dict") if isinstance(checkpoint.get(k), dict)), checkpoint)
    state = {k.removeprefix("module.").removeprefix("backbone.vit."): v for k, v in state.items()}
    keep = _ENCODER_PREFIXES + ("head.", "embedder.", "classifier.")
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor) and k.startswith(keep)}
    if "pos_embed" not in state or "patch_embed.proj.weight" not in state:
        raise MissingWeightsError(f"{path} holds no FSFM ViT weights (no pos_embed / patch_embed).")
    return _without_embedder_alias(state, path)


def _without_embedder_alias(state: dict[str, torch.Tensor], path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Drop ``embedder.bottleneck_layer.0.*``: the anti-spoofing embedder (cross_domain_FAS ``feature_embedder``)
    also holds ``bottleneck_layer_fc`` inside a Sequential, so its state dict names the same tensors twice.
    An alias alone is renamed; an alias that differs from the tensor it names is refused."""
    for name in ("weight", "bias"):
        alias, kept = f"embedder.bottleneck_layer.0.{name}", f"embedder.bottleneck_layer_fc.{name}"
        if alias not in state:
            continue
        tensor = state.pop(alias)
        if kept not in state:
            state[kept] = tensor
        elif not torch.equal(state[kept], tensor):
            raise MissingWeightsError(
                f"{path} holds two different tensors as {kept} and its alias {alias}; it is not a checkpoint "
                "saved by FSFM's anti-spoofing model."
            )
    return state


def read_mean_std(path: str | os.PathLike) -> tuple[list[float], list[float]]:
    """``(mean, std)`` from a published ``pretrain_ds_mean_std.txt`` (its first line is JSON)."""
    path = Path(path).expanduser()
    try:
        stats = json.loads(path.read_text().splitlines()[0])
        return [float(v) for v in stats["mean"]], [float(v) for v in stats["std"]]
    except (OSError, IndexError, KeyError, TypeError, ValueError) as exc:
        raise MissingWeightsError(
            f"{path} is not a readable {MEAN_STD_FILE} (a JSON line with 'mean' and 'std'): {exc}"
        ) from exc


def load_fsfm(
    path_or_repo: str | os.PathLike,
    subfolder: str | None = None,
    *,
    filename: str | None = None,
    revision: str | None = None,
) -> FSFMViT:
    """An FSFM model from a Hub repo or folder: a ``save_pretrained`` folder (``config.json`` + safetensors,
    as ``genface convert`` writes), or a published folder holding one ``.pth`` (or name it: ``filename``)
    and its ``pretrain_ds_mean_std.txt``; a path to the ``.pth`` itself also works."""
    from genface.hub import resolve_folder

    local = Path(path_or_repo).expanduser()
    if local.is_file():
        return FSFMViT.from_fsfm_checkpoint(local)
    patterns = [filename or "*.pth*", MEAN_STD_FILE, "config.json", "*.safetensors"]
    folder = resolve_folder(path_or_repo, subfolder, allow_patterns=patterns, revision=revision)
    if (folder / "config.json").is_file() and filename is None:
        return FSFMViT.from_pretrained(str(folder)).eval()
    if filename is not None:
        return FSFMViT.from_fsfm_checkpoint(folder / filename)
    found = sorted(p for p in folder.glob("*.pth*") if "checkpoint-te-" not in p.name)
    if len(found) != 1:
        raise MissingWeightsError(
            f"{folder} holds {len(found)} FSFM checkpoints ({[p.name for p in found]}); pass filename= to choose one."
        )
    return FSFMViT.from_fsfm_checkpoint(found[0])
