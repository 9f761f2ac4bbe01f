"""EVA02-CLIP vision tower: parity with the reference implementation ConsisID uses, checkpoint loading."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from genface.errors import MissingWeightsError
from genface.identity.eva_clip import ClipVisionEncoder, EvaClipVisionModel

TINY = dict(
    image_size=28, patch_size=7, width=32, layers=9, head_width=8, mlp_ratio=2.6667, embed_dim=24, pt_hw_seq_len=16
)


def _reference_module():
    """consisid_eva_clip's vision tower, loaded without its package __init__ (which needs timm and torchvision).

    Only helpers that do not enter the forward pass are stubbed: timm's init/drop-path helpers and
    torchvision's FrozenBatchNorm2d import.
    """
    spec = importlib.util.find_spec("consisid_eva_clip")
    if spec is None:
        pytest.skip("reference package consisid-eva-clip not installed (tests/reference-requirements.txt)")
    root = Path(next(iter(spec.submodule_search_locations)))
    stubs = {
        "timm": types.ModuleType("timm"),
        "timm.layers": types.ModuleType("timm.layers"),
        "torchvision": types.ModuleType("torchvision"),
        "torchvision.ops": types.ModuleType("torchvision.ops"),
        "torchvision.ops.misc": types.ModuleType("torchvision.ops.misc"),
    }
    stubs["timm.layers"].drop_path = lambda x, *args, **kwargs: x
    stubs["timm.layers"].to_2tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    stubs["timm.layers"].trunc_normal_ = lambda tensor, std=1.0, **kwargs: torch.nn.init.trunc_normal_(tensor, std=std)
    stubs["torchvision.ops.misc"].FrozenBatchNorm2d = torch.nn.BatchNorm2d
    package = types.ModuleType("consisid_eva_clip")
    package.__path__ = [str(root)]
    saved = {name: sys.modules.get(name) for name in [*stubs, "consisid_eva_clip"]}
    sys.modules.update(stubs)
    sys.modules["consisid_eva_clip"] = package
    try:
        for name in ("utils", "rope", "transformer", "eva_vit_model"):
            full = f"consisid_eva_clip.{name}"
            module_spec = importlib.util.spec_from_file_location(full, root / f"{name}.py")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[full] = module
            module_spec.loader.exec_module(module)
        return sys.modules["consisid_eva_clip.eva_vit_model"]
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value


def _reference_tower(eva, config: dict) -> torch.nn.Module:
    # The arguments consisid_eva_clip's model.py passes for EVA02-CLIP-L-14-336 (without xformers/apex).
    return eva.EVAVisionTransformer(
        img_size=config["image_size"], patch_size=config["patch_size"], num_classes=config["embed_dim"],
        use_mean_pooling=False, init_values=None, patch_dropout=0.0, embed_dim=config["width"],
        depth=config["layers"], num_heads=config["width"] // config["head_width"], mlp_ratio=config["mlp_ratio"],
        qkv_bias=True, drop_path_rate=0.0, norm_layer=lambda dim: torch.nn.LayerNorm(dim, eps=1e-6),
        xattn=True, rope=True, postnorm=False, pt_hw_seq_len=config["pt_hw_seq_len"], intp_freq=True,
        naiveswiglu=True, subln=True,
    ).eval()  # fmt: skip


@pytest.fixture(scope="module")
def reference_and_checkpoint(tmp_path_factory):
    eva = _reference_module()
    torch.manual_seed(0)
    reference = _reference_tower(eva, TINY)
    with torch.no_grad():
        for name, param in reference.named_parameters():  # no zero biases/embeddings: every weight must matter
            if name.endswith(("bias", "cls_token", "pos_embed")):
                param.normal_(0, 0.2)
    # Published checkpoints are whole CLIP models: the tower under "visual.", rope tables as buffers.
    path = tmp_path_factory.mktemp("eva") / "EVA02_CLIP_L_336_psz14_s6B.pt"
    state = {f"visual.{k}": v for k, v in reference.state_dict().items()}
    state["text.token_embedding.weight"] = torch.zeros(4, 4)
    torch.save(state, path)
    assert any(k.endswith("rope.freqs_cos") for k in state)
    return reference, path


def test_parity_with_reference_implementation(reference_and_checkpoint) -> None:
    reference, path = reference_and_checkpoint
    ours = EvaClipVisionModel.from_eva_checkpoint(path, **TINY, hidden_state_layers=[4, 8])
    x = torch.randn(2, 3, 28, 28)
    with torch.no_grad():
        ref_embed, ref_hidden = reference(x, return_all_features=False, return_hidden=True, shuffle=False)
        embed, hidden = ours(x)
    torch.testing.assert_close(embed, ref_embed, rtol=1e-4, atol=1e-5)
    assert len(hidden) == len(ref_hidden) == 2
    for a, b in zip(hidden, ref_hidden, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_rope_tables_match_reference(reference_and_checkpoint) -> None:
    reference, _ = reference_and_checkpoint
    ours = EvaClipVisionModel(**TINY)
    torch.testing.assert_close(ours.rope_cos, reference.rope.freqs_cos)
    torch.testing.assert_close(ours.rope_sin, reference.rope.freqs_sin)


def test_default_config_is_eva02_l14_336() -> None:
    with torch.device("meta"):
        model = EvaClipVisionModel()
    assert model.pos_embed.shape == (1, 577, 1024) and len(model.blocks) == 24
    assert model.blocks[0].mlp.w1.out_features == 2730 and model.head.out_features == 768
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(304e6, rel=0.01)


def test_wrong_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save({"visual.unknown": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(MissingWeightsError, match="does not match"):
        EvaClipVisionModel.from_eva_checkpoint(tmp_path / "x.pt", **TINY)
    with pytest.raises(MissingWeightsError, match="face_encoder"):
        ClipVisionEncoder.from_pretrained(tmp_path)


def test_encoder_preprocess_and_outputs(reference_and_checkpoint, tmp_path: Path) -> None:
    _, path = reference_and_checkpoint
    encoder = ClipVisionEncoder.from_pretrained(path, **TINY, hidden_state_layers=[4, 8])
    crops = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    not_face = np.zeros((2, 64, 64), dtype=bool)
    not_face[:, :, :32] = True
    pixels = encoder.preprocess(crops, not_face)
    assert pixels.shape == (2, 3, 28, 28)
    white = (1.0 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor(
        [0.26862954, 0.26130258, 0.27577711]
    )
    torch.testing.assert_close(pixels[0, :, 5, 3], white, atol=1e-4, rtol=0)  # masked half is white
    assert torch.allclose(
        pixels[0, 0, 5, 20] * 0.26862954 + 0.48145466, pixels[0, 1, 5, 20] * 0.26130258 + 0.4578275, atol=1e-5
    )  # gray
    embeds, hidden = encoder.encode(crops, not_face)
    assert embeds.shape == (2, 24) and np.allclose(np.linalg.norm(embeds, axis=1), 1, atol=1e-5)
    assert hidden.shape == (2, 2, 17, 32)
    encoder.model.save_pretrained(tmp_path / "saved")
    again = ClipVisionEncoder.from_pretrained(tmp_path / "saved")
    np.testing.assert_allclose(again.encode(crops, not_face)[0], embeds, atol=1e-6)
