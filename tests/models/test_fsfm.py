"""The FSFM / FS-VFM ViT against the published computation (timm 0.4's ViT, FSFM's global pool and heads,
written out as the reference code has them) on tiny random weights saved in the published checkpoint forms."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from genface.errors import InvalidArgumentError, MissingWeightsError
from genface.models.fsfm import VF2_MEAN, FSFMViT, load_fsfm, published_state_dict

WIDTH, HEADS, LAYERS = 32, 4, 2


# --- the published computation (timm 0.4.5 VisionTransformer as FSFM subclasses it) -------------------------
class RefAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class RefMlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class RefBlock(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim, eps=1e-6), RefAttention(dim, num_heads)
        self.norm2, self.mlp = nn.LayerNorm(dim, eps=1e-6), RefMlp(dim, dim * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class RefPatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=16, stride=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class RefViT(nn.Module):
    """models_vit.VisionTransformer: ``global_pool`` swaps ``norm`` for ``fc_norm`` on the patch-token mean."""

    def __init__(self, global_pool: bool = True, num_classes: int = 2, for_fas: bool = False) -> None:
        super().__init__()
        self.global_pool, self.for_fas = global_pool, for_fas
        self.patch_embed = RefPatchEmbed(WIDTH)
        self.cls_token = nn.Parameter(torch.randn(1, 1, WIDTH) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 197, WIDTH) * 0.02)
        self.blocks = nn.ModuleList([RefBlock(WIDTH, HEADS) for _ in range(LAYERS)])
        if global_pool:
            self.fc_norm = nn.LayerNorm(WIDTH, eps=1e-6)
        else:
            self.norm = nn.LayerNorm(WIDTH, eps=1e-6)
        self.head = nn.Identity() if for_fas else nn.Linear(WIDTH, num_classes)
        for norm in (m for m in self.modules() if isinstance(m, nn.LayerNorm)):  # not the identity LayerNorm
            nn.init.normal_(norm.weight, 1.0, 0.1)
            nn.init.normal_(norm.bias, 0.0, 0.1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        if self.for_fas:  # cross_domain_FAS/models_vit.py: all tokens, the first replaced by the pooled one
            x_new = torch.zeros_like(x)
            x_new[:, 0, :] = self.fc_norm(x[:, 1:, :].mean(dim=1))
            x_new[:, 1:, :] = x[:, 1:, :]
            return x_new
        if self.global_pool:
            return self.fc_norm(x[:, 1:, :].mean(dim=1))
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


class RefFAS(nn.Module):
    """cross_domain_FAS/fas.py fas_model_fix: backbone.vit -> embedder -> classifier (norm_flag=True)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.vit = RefViT(for_fas=True)
        self.embedder = nn.Module()
        self.embedder.bottleneck_layer_fc = nn.Linear(WIDTH, 512)
        # fas.py's feature_embedder also holds the layer in a Sequential: its state dict names it twice
        self.embedder.bottleneck_layer = nn.Sequential(self.embedder.bottleneck_layer_fc, nn.ReLU(), nn.Dropout(0.5))
        self.classifier = nn.Module()
        self.classifier.classifier_layer = nn.Linear(512, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feature = self.embedder.bottleneck_layer(self.backbone.vit.forward_features(x))
        feature_norm = torch.norm(feature, p=2, dim=1, keepdim=True).clamp(min=1e-12) ** 0.5 * (2) ** 0.5
        feature = torch.div(feature, feature_norm)
        weight = self.classifier.classifier_layer.weight
        weight = torch.div(weight, torch.norm(weight, 2, 0, True))
        cls_out = nn.functional.linear(feature, weight, self.classifier.classifier_layer.bias)
        return cls_out[:, 0, :]  # train_vit.py / evaluate.py read the first token's logits


def _finetune_checkpoint(model: nn.Module, path: Path) -> Path:
    """main_finetune_DfD.py's misc.save_model form: weights, optimizer, epoch, scaler and the run's args."""
    args = argparse.Namespace(model="vit_small_patch16", nb_classes=2, global_pool=True, blr=5e-4, data=["a", "b"])
    torch.save({"model": model.state_dict(), "optimizer": {"state": {}}, "epoch": 9, "scaler": {}, "args": args}, path)
    return path


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("global_pool", [True, False])
def test_fine_tuned_checkpoint_loads_and_matches_the_published_forward(tmp_path, pixels, global_pool) -> None:
    torch.manual_seed(0)
    ref = RefViT(global_pool=global_pool).eval()
    path = _finetune_checkpoint(ref, tmp_path / "checkpoint-min_val_loss.pth")
    (tmp_path / "pretrain_ds_mean_std.txt").write_text(json.dumps({"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.2, 0.2]}))

    model = FSFMViT.from_fsfm_checkpoint(path, heads=HEADS)

    assert (model.config.width, model.config.layers, model.config.head_type) == (WIDTH, LAYERS, "linear")
    assert model.config.global_pool is global_pool
    assert list(model.config.image_mean) == [0.5, 0.4, 0.3]
    with torch.no_grad():
        torch.testing.assert_close(model(pixels), ref(pixels), atol=1e-5, rtol=1e-5)
        # class 0 is "fake": the training folders sort fake_* before real_*
        torch.testing.assert_close(model.fake_probability(pixels), ref(pixels).softmax(-1)[:, 0])


def test_anti_spoofing_checkpoint_matches_the_published_fas_model(tmp_path, pixels) -> None:
    torch.manual_seed(0)
    ref = RefFAS().eval()
    path = tmp_path / "casia_vit_0_shot_checkpoint_run_0.pth.tar"
    torch.save(
        {"epoch": 3, "state_dict": ref.state_dict(), "valid_arg": [np.float64(0.1), 0.9], "threshold": np.float64(0.4)},
        path,
    )

    model = FSFMViT.from_fsfm_checkpoint(path, heads=HEADS)

    assert "embedder.bottleneck_layer.0.weight" in ref.state_dict()  # the published file names it twice
    assert model.config.head_type == "fas" and model.config.embedder_dim == 512
    with torch.no_grad():
        torch.testing.assert_close(model(pixels), ref(pixels), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("alias", ["only", "different"])
def test_anti_spoofing_alias_alone_is_read_and_a_different_one_refused(tmp_path, pixels, alias) -> None:
    torch.manual_seed(0)
    ref = RefFAS().eval()
    state = ref.state_dict()
    if alias == "only":
        del state["embedder.bottleneck_layer_fc.weight"], state["embedder.bottleneck_layer_fc.bias"]
    else:
        state["embedder.bottleneck_layer.0.weight"] = state["embedder.bottleneck_layer.0.weight"] + 1
    path = tmp_path / "fas.pth.tar"
    torch.save({"state_dict": state}, path)
    if alias == "different":
        with pytest.raises(MissingWeightsError, match="two different tensors as embedder.bottleneck_layer_fc.weight"):
            FSFMViT.from_fsfm_checkpoint(path, heads=HEADS)
        return
    model = FSFMViT.from_fsfm_checkpoint(path, heads=HEADS)
    with torch.no_grad():
        torch.testing.assert_close(model(pixels), ref(pixels), atol=1e-5, rtol=1e-5)


def test_pretrained_backbone_keeps_the_encoder_and_cannot_score(tmp_path, pixels, caplog) -> None:
    torch.manual_seed(0)
    ref = RefViT(global_pool=False, for_fas=True)
    ref.for_fas = False  # the pre-training encoder: class token through ``norm``
    state = {k: v for k, v in ref.state_dict().items()}
    # the pre-training model's other parts, which the backbone does not use
    state |= {
        "mask_token": torch.zeros(1, 1, 8),
        "decoder_pred.weight": torch.zeros(4, 8),
        "projector.net.0.weight": torch.zeros(2),
    }
    torch.save(
        {"model": state, "epoch": 599, "args": argparse.Namespace(model="fsfm_vit_small_patch16")},
        tmp_path / "checkpoint-599.pth",
    )

    model = FSFMViT.from_fsfm_checkpoint(tmp_path / "checkpoint-599.pth", heads=HEADS)

    assert model.config.head_type == "none" and list(model.config.image_mean) == pytest.approx(VF2_MEAN)
    assert "VGGFace2" in caplog.text  # no pretrain_ds_mean_std.txt beside it: the published fallback, said aloud
    with torch.no_grad():
        torch.testing.assert_close(model(pixels), ref.forward_features(pixels), atol=1e-5, rtol=1e-5)
    with pytest.raises(InvalidArgumentError, match="fine-tuned"):
        model.fake_probability(pixels)


def test_published_sizes_are_read_from_the_tensors() -> None:
    with torch.device("meta"):
        for width, layers, heads in [(384, 12, 12), (768, 12, 12), (1024, 24, 16)]:  # S, B, L
            state = FSFMViT(width=width, layers=layers, heads=heads).state_dict()
            config = FSFMViT.config_from_state_dict(state)
            sizes = (config["width"], config["layers"], config["heads"], config["mlp_ratio"])
            assert sizes == (width, layers, heads, 4.0)
            assert config["image_size"] == 224 and config["patch_size"] == 16


def test_pickled_code_and_foreign_weights_are_refused(tmp_path) -> None:
    from genface.errors import UnsafeWeightsError

    torch.save({"model": {"w": torch.zeros(1)}, "args": Path("x")}, tmp_path / "code.pth")  # an object it cannot build
    with pytest.raises(UnsafeWeightsError):
        published_state_dict(tmp_path / "code.pth")
    torch.save({"model": {"w": torch.zeros(1)}}, tmp_path / "other.pth")
    with pytest.raises(MissingWeightsError, match="no FSFM ViT"):
        published_state_dict(tmp_path / "other.pth")


def test_folders_published_or_converted_load(tmp_path, pixels) -> None:
    torch.manual_seed(0)
    ref = RefViT().eval()
    published = tmp_path / "FT_on_FF++_c23_32frames"
    published.mkdir()
    _finetune_checkpoint(ref, published / "checkpoint-min_val_loss.pth")
    model = load_fsfm(published)
    assert model.config.heads == 1  # width 32 is no published size: one head per 64 channels, at least one
    model = FSFMViT.from_fsfm_checkpoint(published / "checkpoint-min_val_loss.pth", heads=HEADS)

    model.save_pretrained(tmp_path / "converted")  # what `genface convert` writes: safetensors + config.json
    assert (tmp_path / "converted" / "diffusion_pytorch_model.safetensors").is_file()
    again = load_fsfm(tmp_path / "converted")
    with torch.no_grad():
        torch.testing.assert_close(again(pixels), ref(pixels), atol=1e-5, rtol=1e-5)

    _finetune_checkpoint(ref, published / "checkpoint-9.pth")
    with pytest.raises(MissingWeightsError, match="filename="):
        load_fsfm(published)
    assert load_fsfm(published, filename="checkpoint-9.pth").config.head_type == "linear"
