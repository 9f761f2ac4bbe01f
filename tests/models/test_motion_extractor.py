"""MotionExtractor and StitchingNetwork against Ditto's / LivePortrait's computation, restated their way.

The references below follow ``core/models/modules/{convnextv2,util,stitching_network}.py`` of
antgroup/ditto-talkinghead (same as LivePortrait's ``src/modules``): functional ops on the same state dict, in
their operation order (ConvNeXtV2 block with GRN, channels-first LayerNorm written out, seven heads).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from genface.errors import InvalidArgumentError, MissingWeightsError
from genface.models.motion.extractor import MotionExtractor, StitchingNetwork

PUBLISHED_DEPTHS, PUBLISHED_DIMS = (3, 3, 9, 3), (96, 192, 384, 768)


def _randomize(module: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values in every tensor (GRN's zeros and LayerNorm's ones would hide mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return {k: v.clone() for k, v in module.state_dict().items()}


# --- their computation -------------------------------------------------------------------------------------------


def _ref_layernorm_channels_first(x, weight, bias, eps=1e-6):
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    return weight[:, None, None] * x + bias[:, None, None]


def _ref_block(x, sd, p):
    inp = x
    dim = x.shape[1]
    x = F.conv2d(x, sd[p + "dwconv.weight"], sd[p + "dwconv.bias"], padding=3, groups=dim)
    x = x.permute(0, 2, 3, 1)
    x = F.layer_norm(x, (dim,), sd[p + "norm.weight"], sd[p + "norm.bias"], 1e-6)
    x = F.linear(x, sd[p + "pwconv1.weight"], sd[p + "pwconv1.bias"])
    x = F.gelu(x)
    gx = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
    nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
    x = sd[p + "grn.gamma"] * (x * nx) + sd[p + "grn.beta"] + x
    x = F.linear(x, sd[p + "pwconv2.weight"], sd[p + "pwconv2.bias"])
    x = x.permute(0, 3, 1, 2)
    return inp + x


def _ref_motion_extractor(x, sd, depths):
    d = "detector."
    for i in range(4):
        p = f"{d}downsample_layers.{i}."
        if i == 0:
            x = F.conv2d(x, sd[p + "0.weight"], sd[p + "0.bias"], stride=4)
            x = _ref_layernorm_channels_first(x, sd[p + "1.weight"], sd[p + "1.bias"])
        else:
            x = _ref_layernorm_channels_first(x, sd[p + "0.weight"], sd[p + "0.bias"])
            x = F.conv2d(x, sd[p + "1.weight"], sd[p + "1.bias"], stride=2)
        for j in range(depths[i]):
            x = _ref_block(x, sd, f"{d}stages.{i}.{j}.")
    x = x.mean([-2, -1])
    x = F.layer_norm(x, (x.shape[-1],), sd[d + "norm.weight"], sd[d + "norm.bias"], 1e-6)

    def head(name):
        return F.linear(x, sd[f"{d}fc_{name}.weight"], sd[f"{d}fc_{name}.bias"])

    kp = head("kp")
    pitch, yaw, roll, t, exp, scale = (head(n) for n in ("pitch", "yaw", "roll", "t", "exp", "scale"))
    return pitch, yaw, roll, t, exp, scale, kp


def _ref_stitching(kp_source, kp_driving, sd):
    bs, num_kp = kp_source.shape[:2]
    kp_driving_new = kp_driving.clone()
    x = torch.cat([kp_source.view(bs, -1), kp_driving_new.view(bs, -1)], dim=1)
    layers = sorted({int(k.split(".")[1]) for k in sd})
    for n, i in enumerate(layers):
        x = F.linear(x, sd[f"mlp.{i}.weight"], sd[f"mlp.{i}.bias"])
        if n < len(layers) - 1:
            x = F.relu(x)
    delta_exp = x[..., : 3 * num_kp].reshape(bs, num_kp, 3)
    delta_tx_ty = x[..., 3 * num_kp : 3 * num_kp + 2].reshape(bs, 1, 2)
    kp_driving_new += delta_exp
    kp_driving_new[..., :2] += delta_tx_ty
    return kp_driving_new


# --- the published layout, listed from the reference definitions ---------------------------------------------------


def _published_motion_extractor_shapes(num_kp=21, num_bins=66, depths=PUBLISHED_DEPTHS, dims=PUBLISHED_DIMS):
    d, shapes = "detector.", {}
    shapes[d + "downsample_layers.0.0.weight"] = (dims[0], 3, 4, 4)
    shapes[d + "downsample_layers.0.0.bias"] = (dims[0],)
    shapes[d + "downsample_layers.0.1.weight"] = shapes[d + "downsample_layers.0.1.bias"] = (dims[0],)
    for i in range(1, 4):
        shapes[f"{d}downsample_layers.{i}.0.weight"] = shapes[f"{d}downsample_layers.{i}.0.bias"] = (dims[i - 1],)
        shapes[f"{d}downsample_layers.{i}.1.weight"] = (dims[i], dims[i - 1], 2, 2)
        shapes[f"{d}downsample_layers.{i}.1.bias"] = (dims[i],)
    for i in range(4):
        c = dims[i]
        for j in range(depths[i]):
            p = f"{d}stages.{i}.{j}."
            shapes.update({
                p + "dwconv.weight": (c, 1, 7, 7), p + "dwconv.bias": (c,),
                p + "norm.weight": (c,), p + "norm.bias": (c,),
                p + "pwconv1.weight": (4 * c, c), p + "pwconv1.bias": (4 * c,),
                p + "grn.gamma": (1, 1, 1, 4 * c), p + "grn.beta": (1, 1, 1, 4 * c),
                p + "pwconv2.weight": (c, 4 * c), p + "pwconv2.bias": (c,),
            })  # fmt: skip
    shapes[d + "norm.weight"] = shapes[d + "norm.bias"] = (dims[-1],)
    outs = {"kp": 3 * num_kp, "scale": 1, "pitch": num_bins, "yaw": num_bins, "roll": num_bins, "t": 3}
    for name, size in {**outs, "exp": 3 * num_kp}.items():
        shapes[f"{d}fc_{name}.weight"], shapes[f"{d}fc_{name}.bias"] = (size, dims[-1]), (size,)
    return shapes


def test_motion_extractor_published_layout_and_output_shapes():
    with torch.device("meta"):
        model = MotionExtractor()
        out = model(torch.zeros(1, 3, 256, 256))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == _published_motion_extractor_shapes()
    assert out._fields == ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")
    assert [tuple(o.shape) for o in out] == [(1, 66), (1, 66), (1, 66), (1, 3), (1, 63), (1, 1), (1, 63)]


def test_stitching_network_published_layout():
    with torch.device("meta"):
        model = StitchingNetwork()
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "mlp.0.weight": (128, 126), "mlp.0.bias": (128,), "mlp.2.weight": (128, 128), "mlp.2.bias": (128,),
        "mlp.4.weight": (64, 128), "mlp.4.bias": (64,), "mlp.6.weight": (65, 64), "mlp.6.bias": (65,),
    }  # fmt: skip


def test_motion_extractor_matches_published_computation():
    config = MotionExtractor.tiny_config()
    state = _randomize(MotionExtractor(**config))
    model = MotionExtractor.from_state_dict(state).eval()
    assert list(model.config.depths) == list(config["depths"]) and list(model.config.dims) == list(config["dims"])
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(image)
        ref = _ref_motion_extractor(image, state, config["depths"])
    for name, a, b in zip(ours._fields, ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


def test_stitching_network_matches_published_computation():
    state = _randomize(StitchingNetwork(**StitchingNetwork.tiny_config()), seed=2)
    checkpoint = {"retarget_shoulder": {f"module.{k}": v for k, v in state.items()}, "retarget_eye": {}}
    model = StitchingNetwork.from_state_dict(checkpoint).eval()
    assert model.config.input_size == 126 and list(model.config.hidden_sizes) == [16, 8]
    gen = torch.Generator().manual_seed(3)
    kp_source, kp_driving = torch.randn(2, 21, 3, generator=gen), torch.randn(2, 21, 3, generator=gen)
    with torch.no_grad():
        stitched = model(kp_source, kp_driving)
        torch.testing.assert_close(stitched, _ref_stitching(kp_source, kp_driving, state), rtol=1e-5, atol=1e-6)
        assert model.delta(kp_source, kp_driving).shape == (2, 65)
    assert not torch.equal(stitched, kp_driving)


def test_motion_extractor_keeps_dtype():
    model = MotionExtractor(**MotionExtractor.tiny_config()).to(torch.bfloat16)
    out = model(torch.rand(1, 3, 32, 32, dtype=torch.bfloat16))
    assert all(o.dtype == torch.bfloat16 for o in out)


def test_clear_errors():
    tiny = MotionExtractor(**MotionExtractor.tiny_config())
    with pytest.raises(InvalidArgumentError, match="B x 3 x H x W"):
        tiny(torch.rand(3, 32, 32))
    with pytest.raises(InvalidArgumentError, match="differ in length"):
        MotionExtractor(depths=(1, 1), dims=(8, 8, 8))
    with pytest.raises(InvalidArgumentError, match="positive"):
        StitchingNetwork(hidden_sizes=())
    with pytest.raises(InvalidArgumentError, match="Not a motion-extractor"):
        MotionExtractor.from_state_dict(StitchingNetwork().state_dict())
    with pytest.raises(InvalidArgumentError, match="Not a stitching-network"):
        StitchingNetwork.from_state_dict(tiny.state_dict())
    state = tiny.state_dict()
    state.pop("detector.fc_t.bias")
    with pytest.raises(MissingWeightsError, match="fc_t.bias"):
        MotionExtractor.from_state_dict(state)
    stitch = StitchingNetwork(**StitchingNetwork.tiny_config())
    with pytest.raises(InvalidArgumentError, match="cannot stitch 20 keypoints"):
        stitch(torch.zeros(1, 20, 3), torch.zeros(1, 20, 3))
    with pytest.raises(InvalidArgumentError, match="two B x N x 3"):
        stitch(torch.zeros(1, 21, 3), torch.zeros(2, 21, 3))
