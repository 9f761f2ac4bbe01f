"""LivePortrait's renderer as Ditto runs it (core/models/modules/{appearance_feature_extractor,warping_network,
dense_motion,spade_generator,util}.py), against a functional restatement of the published computation.

The published parameter names and shapes are listed here from the reference definitions (``*_shapes``); random
tensors in those shapes load strictly into genface's modules, and the same state dict drives the restatement
(F.conv*, F.batch_norm, their tensor order: repeated grids, ``view``s, permutes) in eval mode.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from genface.errors import InvalidArgumentError, MissingWeightsError
from genface.models.motion.renderer import AppearanceFeatureExtractor, SPADEDecoder, WarpingNetwork

Shapes = dict[str, tuple[int, ...]]
State = dict[str, torch.Tensor]


# The published names and shapes, from the reference constructors.


def _conv(out: Shapes, name: str, cin: int, cout: int, k: int, dims: int = 2, bias: bool = True) -> None:
    out[f"{name}.weight"] = (cout, cin) + (k,) * dims
    if bias:
        out[f"{name}.bias"] = (cout,)


def _sn_conv(out: Shapes, name: str, cin: int, cout: int, k: int, bias: bool = True) -> None:
    """torch.nn.utils.spectral_norm's names."""
    if bias:
        out[f"{name}.bias"] = (cout,)
    out[f"{name}.weight_orig"] = (cout, cin, k, k)
    out[f"{name}.weight_u"], out[f"{name}.weight_v"] = (cout,), (cin * k * k,)


def _bn(out: Shapes, name: str, c: int) -> None:
    for p in ("weight", "bias", "running_mean", "running_var"):
        out[f"{name}.{p}"] = (c,)
    out[f"{name}.num_batches_tracked"] = ()


def _conv_bn(out: Shapes, name: str, cin: int, cout: int, k: int = 3, dims: int = 2) -> None:
    _conv(out, f"{name}.conv", cin, cout, k, dims)
    _bn(out, f"{name}.norm", cout)


def extractor_shapes(image_channel=3, block_expansion=64, num_down_blocks=2, max_features=512, reshape_channel=32,
                     num_resblocks=6, **_) -> Shapes:  # fmt: skip
    out: Shapes = {}
    _conv_bn(out, "first", image_channel, block_expansion)
    for i in range(num_down_blocks):
        cin, cout = (min(max_features, block_expansion * 2**j) for j in (i, i + 1))
        _conv_bn(out, f"down_blocks.{i}", cin, cout)
    _conv(out, "second", cout, max_features, 1)
    for i in range(num_resblocks):
        for j in (1, 2):
            _conv(out, f"resblocks_3d.3dr{i}.conv{j}", reshape_channel, reshape_channel, 3, 3)
            _bn(out, f"resblocks_3d.3dr{i}.norm{j}", reshape_channel)
    return out


def warp_shapes(num_kp=21, block_expansion=64, max_features=512, num_down_blocks=2, reshape_channel=32,
                estimate_occlusion_map=True, dense_motion_params=None) -> Shapes:  # fmt: skip
    dm = dense_motion_params or {"block_expansion": 32, "max_features": 1024, "num_blocks": 5, "reshape_depth": 16,
                                 "compress": 4}  # fmt: skip
    be, mf, nb = dm["block_expansion"], dm["max_features"], dm["num_blocks"]
    out: Shapes = {}
    p = "dense_motion_network."
    in_features = (num_kp + 1) * (dm["compress"] + 1)
    for i in range(nb):
        cin = in_features if i == 0 else min(mf, be * 2**i)
        _conv_bn(out, f"{p}hourglass.encoder.down_blocks.{i}", cin, min(mf, be * 2 ** (i + 1)), dims=3)
    for n, i in enumerate(range(nb)[::-1]):
        cin = (1 if i == nb - 1 else 2) * min(mf, be * 2 ** (i + 1))
        _conv_bn(out, f"{p}hourglass.decoder.up_blocks.{n}", cin, min(mf, be * 2**i), dims=3)
    out_filters = be + in_features
    _conv(out, f"{p}hourglass.decoder.conv", out_filters, out_filters, 3, 3)
    _bn(out, f"{p}hourglass.decoder.norm", out_filters)
    _conv(out, f"{p}mask", out_filters, num_kp + 1, 7, 3)
    _conv(out, f"{p}compress", reshape_channel, dm["compress"], 1, 3)
    _bn(out, f"{p}norm", dm["compress"])
    if estimate_occlusion_map:
        _conv(out, f"{p}occlusion", out_filters * dm["reshape_depth"], 1, 7)
    width = block_expansion * 2**num_down_blocks
    _conv_bn(out, "third", max_features, width)
    _conv(out, "fourth", width, width, 1)
    return out


def _spade(out: Shapes, name: str, norm_nc: int, label_nc: int, hidden: int) -> None:
    _conv(out, f"{name}.mlp_shared.0", label_nc, hidden, 3)
    _conv(out, f"{name}.mlp_gamma", hidden, norm_nc, 3)
    _conv(out, f"{name}.mlp_beta", hidden, norm_nc, 3)


def decoder_shapes(upscale=2, max_features=512, block_expansion=64, out_channels=64, num_down_blocks=2,
                   hidden_channels=128) -> Shapes:  # fmt: skip
    c = min(max_features, block_expansion * 2**num_down_blocks)
    out: Shapes = {}
    _conv(out, "fc", c, 2 * c, 3)
    blocks = [(f"G_middle_{i}", 2 * c, 2 * c) for i in range(6)] + [("up_0", 2 * c, c), ("up_1", c, out_channels)]
    for name, fin, fout in blocks:
        mid = min(fin, fout)
        _sn_conv(out, f"{name}.conv_0", fin, mid, 3)
        _sn_conv(out, f"{name}.conv_1", mid, fout, 3)
        _spade(out, f"{name}.norm_0", fin, c, hidden_channels)
        _spade(out, f"{name}.norm_1", mid, c, hidden_channels)
        if fin != fout:
            _sn_conv(out, f"{name}.conv_s", fin, fout, 1, bias=False)
            _spade(out, f"{name}.norm_s", fin, c, hidden_channels)
    _conv(out, "conv_img.0" if upscale > 1 else "conv_img", out_channels, 3 * (4 if upscale > 1 else 1), 3)
    return out


def random_state(shapes: Shapes, seed: int = 0) -> State:
    """Well-scaled random tensors: fan-in scaled weights, non-trivial batch-norm statistics, and spectral-norm
    vectors from a power iteration (as trained checkpoints hold)."""
    g = torch.Generator().manual_seed(seed)
    state: State = {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(0)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) == 1 and name.endswith(".weight"):  # batch-norm scales
            state[name] = 1 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) > 1:
            state[name] = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        else:
            state[name] = 0.1 * torch.randn(shape, generator=g)
    for name in [n for n in state if n.endswith("weight_orig")]:
        base = name.removesuffix("_orig")
        w = state[name].flatten(1)
        v = F.normalize(torch.randn(w.shape[1], generator=g), dim=0)
        for _ in range(3):
            u = F.normalize(w @ v, dim=0)
            v = F.normalize(w.t() @ u, dim=0)
        state[f"{base}_u"], state[f"{base}_v"] = F.normalize(w @ v, dim=0), v
    return state


# The published computation, restated functionally (eval mode).


def _bn_ref(x: torch.Tensor, p: State, name: str) -> torch.Tensor:
    return F.batch_norm(x, p[f"{name}.running_mean"], p[f"{name}.running_var"], p[f"{name}.weight"],
                        p[f"{name}.bias"], False, 0.1, 1e-5)  # fmt: skip


def _conv_ref(x: torch.Tensor, p: State, name: str, padding: int = 0) -> torch.Tensor:
    conv = F.conv3d if x.ndim == 5 else F.conv2d
    return conv(x, p[f"{name}.weight"], p.get(f"{name}.bias"), padding=padding)


def extractor_ref(p: State, image: torch.Tensor, reshape_channel: int, reshape_depth: int) -> torch.Tensor:
    out = F.relu(_bn_ref(_conv_ref(image, p, "first.conv", 1), p, "first.norm"))
    i = 0
    while f"down_blocks.{i}.conv.weight" in p:
        out = F.relu(_bn_ref(_conv_ref(out, p, f"down_blocks.{i}.conv", 1), p, f"down_blocks.{i}.norm"))
        out = F.avg_pool2d(out, (2, 2))
        i += 1
    out = _conv_ref(out, p, "second")
    bs, c, h, w = out.shape
    f_s = out.view(bs, reshape_channel, reshape_depth, h, w)
    i = 0
    while f"resblocks_3d.3dr{i}.conv1.weight" in p:
        r = f"resblocks_3d.3dr{i}."
        x = _conv_ref(F.relu(_bn_ref(f_s, p, r + "norm1")), p, r + "conv1", 1)
        f_s = _conv_ref(F.relu(_bn_ref(x, p, r + "norm2")), p, r + "conv2", 1) + f_s
        i += 1
    return f_s


def _grid_ref(d: int, h: int, w: int, ref: torch.Tensor) -> torch.Tensor:
    x = 2 * (torch.arange(w).type(ref.dtype) / (w - 1)) - 1
    y = 2 * (torch.arange(h).type(ref.dtype) / (h - 1)) - 1
    z = 2 * (torch.arange(d).type(ref.dtype) / (d - 1)) - 1
    yy = y.view(1, -1, 1).repeat(d, 1, w)
    xx = x.view(1, 1, -1).repeat(d, h, 1)
    zz = z.view(-1, 1, 1).repeat(1, h, w)
    return torch.cat([xx.unsqueeze(3), yy.unsqueeze(3), zz.unsqueeze(3)], 3)


def _gaussian_ref(kp: torch.Tensor, d: int, h: int, w: int) -> torch.Tensor:
    grid = _grid_ref(d, h, w, kp).view(1, 1, d, h, w, 3).repeat(kp.shape[0], kp.shape[1], 1, 1, 1, 1)
    return torch.exp(-0.5 * ((grid - kp.view(*kp.shape[:2], 1, 1, 1, 3)) ** 2).sum(-1) / 0.01)


def warp_ref(p: State, feature_3d: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
    q = "dense_motion_network."
    num_kp = kp_source.shape[1]
    feature = F.relu(_bn_ref(_conv_ref(feature_3d, p, q + "compress"), p, q + "norm"))
    bs, _, d, h, w = feature.shape
    identity = _grid_ref(d, h, w, kp_source).view(1, 1, d, h, w, 3)
    driving_to_source = identity - kp_driving.view(bs, num_kp, 1, 1, 1, 3) + kp_source.view(bs, num_kp, 1, 1, 1, 3)
    sparse = torch.cat([identity.repeat(bs, 1, 1, 1, 1, 1), driving_to_source], dim=1)
    repeated = feature.unsqueeze(1).unsqueeze(1).repeat(1, num_kp + 1, 1, 1, 1, 1, 1)
    repeated = repeated.view(bs * (num_kp + 1), -1, d, h, w)
    deformed = F.grid_sample(repeated, sparse.view(bs * (num_kp + 1), d, h, w, -1), align_corners=False)
    deformed = deformed.view(bs, num_kp + 1, -1, d, h, w)
    heatmap = _gaussian_ref(kp_driving, d, h, w) - _gaussian_ref(kp_source, d, h, w)
    heatmap = torch.cat([torch.zeros(bs, 1, d, h, w), heatmap], dim=1).unsqueeze(2)
    x = torch.cat([heatmap, deformed], dim=2).view(bs, -1, d, h, w)
    # hourglass
    levels, i = [x], 0
    while f"{q}hourglass.encoder.down_blocks.{i}.conv.weight" in p:
        b = f"{q}hourglass.encoder.down_blocks.{i}."
        levels.append(F.avg_pool3d(F.relu(_bn_ref(_conv_ref(levels[-1], p, b + "conv", 1), p, b + "norm")), (1, 2, 2)))
        i += 1
    out = levels.pop()
    for j in range(i):
        b = f"{q}hourglass.decoder.up_blocks.{j}."
        out = F.relu(_bn_ref(_conv_ref(F.interpolate(out, scale_factor=(1, 2, 2)), p, b + "conv", 1), p, b + "norm"))
        out = torch.cat([out, levels.pop()], dim=1)
    prediction = F.relu(_bn_ref(_conv_ref(out, p, q + "hourglass.decoder.conv", 1), p, q + "hourglass.decoder.norm"))
    mask = F.softmax(_conv_ref(prediction, p, q + "mask", 3), dim=1).unsqueeze(2)
    deformation = (sparse.permute(0, 1, 5, 2, 3, 4) * mask).sum(dim=1).permute(0, 2, 3, 4, 1)
    out = F.grid_sample(feature_3d, deformation, align_corners=False)
    bs, c, d, h, w = out.shape
    out = F.leaky_relu(_bn_ref(_conv_ref(out.view(bs, c * d, h, w), p, "third.conv", 1), p, "third.norm"))
    out = _conv_ref(out, p, "fourth")
    if q + "occlusion.weight" in p:
        out = out * torch.sigmoid(_conv_ref(prediction.view(bs, -1, h, w), p, q + "occlusion", 3))
    return out


def _spade_ref(x: torch.Tensor, seg: torch.Tensor, p: State, name: str) -> torch.Tensor:
    seg = F.interpolate(seg, size=x.size()[2:], mode="nearest")
    actv = F.relu(_conv_ref(seg, p, f"{name}.mlp_shared.0", 1))
    gamma, beta = _conv_ref(actv, p, f"{name}.mlp_gamma", 1), _conv_ref(actv, p, f"{name}.mlp_beta", 1)
    return F.instance_norm(x) * (1 + gamma) + beta


def _sn_conv_ref(x: torch.Tensor, p: State, name: str, padding: int) -> torch.Tensor:
    w = p[f"{name}.weight_orig"]
    sigma = torch.dot(p[f"{name}.weight_u"], torch.mv(w.view(w.shape[0], -1), p[f"{name}.weight_v"]))
    return F.conv2d(x, w / sigma, p.get(f"{name}.bias"), padding=padding)


def _spade_block_ref(x: torch.Tensor, seg: torch.Tensor, p: State, name: str) -> torch.Tensor:
    x_s = x
    if f"{name}.conv_s.weight_orig" in p:
        x_s = _sn_conv_ref(_spade_ref(x, seg, p, f"{name}.norm_s"), p, f"{name}.conv_s", 0)
    dx = _sn_conv_ref(F.leaky_relu(_spade_ref(x, seg, p, f"{name}.norm_0"), 2e-1), p, f"{name}.conv_0", 1)
    dx = _sn_conv_ref(F.leaky_relu(_spade_ref(dx, seg, p, f"{name}.norm_1"), 2e-1), p, f"{name}.conv_1", 1)
    return x_s + dx


def decoder_ref(p: State, feature: torch.Tensor) -> torch.Tensor:
    x = _conv_ref(feature, p, "fc", 1)
    for i in range(6):
        x = _spade_block_ref(x, feature, p, f"G_middle_{i}")
    x = _spade_block_ref(F.interpolate(x, scale_factor=2), feature, p, "up_0")
    x = _spade_block_ref(F.interpolate(x, scale_factor=2), feature, p, "up_1")
    x = F.leaky_relu(x, 2e-1)
    if "conv_img.0.weight" in p:
        return torch.sigmoid(F.pixel_shuffle(_conv_ref(x, p, "conv_img.0", 1), 2))
    x = _conv_ref(x, p, "conv_img", 1)
    return torch.sigmoid(x)


# Tests.

MODULES = [
    (AppearanceFeatureExtractor, extractor_shapes, 107),
    (WarpingNetwork, warp_shapes, 97),
    (SPADEDecoder, decoder_shapes, 182),
]


@pytest.mark.parametrize(("cls", "shapes", "count"), MODULES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_published_names_and_sizes(cls, shapes, count) -> None:
    """Defaults are the published sizes: the state dict's names and shapes are the checkpoint's (no prefix), and
    the sizes read back from those shapes are the defaults."""
    expected = shapes()
    with torch.device("meta"):
        module = cls()
        got = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        inferred = cls.config_from_state_dict({k: torch.empty(s) for k, s in expected.items()})
    assert len(expected) == count
    assert got == expected
    assert all(module.config[k] == v for k, v in inferred.items())


def test_published_output_shapes() -> None:
    """256 x 256 crop -> (1, 32, 16, 64, 64) -> warped (1, 256, 64, 64) -> 512 x 512 image (meta device)."""
    with torch.device("meta"):
        feature = AppearanceFeatureExtractor()(torch.empty(1, 3, 256, 256))
        warped = WarpingNetwork()(feature, torch.empty(1, 21, 3), torch.empty(1, 21, 3))
        image = SPADEDecoder()(warped)
    assert (feature.shape, warped.shape, image.shape) == ((1, 32, 16, 64, 64), (1, 256, 64, 64), (1, 3, 512, 512))


@torch.no_grad()
def test_extractor_parity() -> None:
    config = AppearanceFeatureExtractor.tiny_config()
    state = random_state(extractor_shapes(**config), seed=1)
    model = AppearanceFeatureExtractor.from_state_dict(state)
    assert not model.training and dict(model.config) | config == dict(model.config)
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = model(image)
    assert out.shape == (2, 4, 4, 8, 8)
    torch.testing.assert_close(out, extractor_ref(state, image, 4, 4), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("occlusion", [True, False])
@torch.no_grad()
def test_warp_parity(occlusion: bool) -> None:
    config = {**WarpingNetwork.tiny_config(), "estimate_occlusion_map": occlusion}
    state = random_state(warp_shapes(**config), seed=2)
    model = WarpingNetwork.from_state_dict(state)
    assert model.config.estimate_occlusion_map is occlusion
    assert model.config.dense_motion_params == config["dense_motion_params"]
    g = torch.Generator().manual_seed(0)
    feature = torch.randn(2, 4, 4, 8, 8, generator=g)
    kp_source, kp_driving = (torch.rand(2, 3, 3, generator=g) * 1.6 - 0.8 for _ in range(2))
    out = model(feature, kp_source, kp_driving)
    assert out.shape == (2, 16, 8, 8)
    expected = warp_ref(state, feature, kp_source, kp_driving)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    # the keypoints matter, and in Ditto's order (source, then driving)
    assert not torch.allclose(model(feature, kp_driving, kp_source), expected, atol=1e-3)


@pytest.mark.parametrize("upscale", [2, 1])
@torch.no_grad()
def test_decoder_parity(upscale: int) -> None:
    config = {**SPADEDecoder.tiny_config(), "upscale": upscale}
    state = random_state(decoder_shapes(**config), seed=3)
    model = SPADEDecoder.from_state_dict(state)
    feature = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    out = model(feature)
    assert out.shape == (2, 3, 8 * 4 * upscale, 8 * 4 * upscale)
    assert 0 < out.min() and out.max() < 1 and out.std() > 0.01  # sigmoid, not saturated
    torch.testing.assert_close(out, decoder_ref(state, feature), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_tiny_chain_is_deterministic() -> None:
    """extractor -> warp -> decoder on the tiny configs; same seed, same image."""

    def render(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        extractor = AppearanceFeatureExtractor(**AppearanceFeatureExtractor.tiny_config()).eval()
        warp = WarpingNetwork(**WarpingNetwork.tiny_config()).eval()
        decoder = SPADEDecoder(**SPADEDecoder.tiny_config()).eval()
        kp = torch.rand(1, 3, 3) - 0.5
        return decoder(warp(extractor(torch.rand(1, 3, 32, 32)), kp, kp * 0.9))

    first = render(0)
    assert first.shape == (1, 3, 64, 64) and torch.isfinite(first).all()
    assert torch.equal(first, render(0))


def test_wrong_state_dict_is_refused() -> None:
    state = random_state(extractor_shapes(**AppearanceFeatureExtractor.tiny_config()))
    with pytest.raises(MissingWeightsError, match="WarpingNetwork: no tensor"):
        WarpingNetwork.from_state_dict(state)
    with pytest.raises(MissingWeightsError, match="unexpected"):
        AppearanceFeatureExtractor.from_state_dict({**state, "extra.weight": torch.zeros(1)})
    with pytest.raises(MissingWeightsError, match="wrong shapes"):
        AppearanceFeatureExtractor.from_state_dict(state, reshape_channel=8, reshape_depth=2)


def test_clear_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="max_features"):
        AppearanceFeatureExtractor(reshape_depth=8)
    with pytest.raises(InvalidArgumentError, match="upscale"):
        SPADEDecoder(upscale=4)
    warp = WarpingNetwork(**WarpingNetwork.tiny_config())
    with pytest.raises(InvalidArgumentError, match=r"kp_driving must have shape 1x3x3, got 1x4x3"):
        warp(torch.zeros(1, 4, 4, 8, 8), torch.zeros(1, 3, 3), torch.zeros(1, 4, 3))
    with pytest.raises(InvalidArgumentError, match="image must have shape"):
        AppearanceFeatureExtractor(**AppearanceFeatureExtractor.tiny_config())(torch.zeros(3, 32, 32))
