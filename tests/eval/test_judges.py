"""The judges' layouts are the published files' (so they load unchanged), and CurricularFace computes TFace's
IR backbone (written here as functions over the state dict)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genface.models.curricularface import CurricularFaceIR
from genface.models.inception import InceptionV3


def test_curricularface_ir101_layout():
    with torch.device("meta"):
        state = CurricularFaceIR().state_dict()
    assert {int(k.split(".")[1]) for k in state if k.startswith("body.")} == set(range(49))  # 3 + 13 + 30 + 3
    assert state["input_layer.0.weight"].shape == (64, 3, 3, 3)
    assert "body.0.shortcut_layer.0.weight" not in state  # 64 -> 64: a strided max pool
    assert state["body.3.shortcut_layer.0.weight"].shape == (128, 64, 1, 1)
    assert state["body.48.res_layer.4.weight"].shape == (512, 512, 3, 3)
    assert state["output_layer.3.weight"].shape == (512, 512 * 7 * 7)
    assert "output_layer.4.running_var" in state and "output_layer.4.weight" not in state


def _tface_forward(state, x, units):
    def bn(x, p):
        w, b = state.get(p + ".weight"), state.get(p + ".bias")
        return F.batch_norm(x, state[p + ".running_mean"], state[p + ".running_var"], w, b, False, 0.0, 1e-5)

    x = bn(F.conv2d(x, state["input_layer.0.weight"], padding=1), "input_layer.1")
    x = F.prelu(x, state["input_layer.2.weight"])
    index = 0
    for count in units:
        for i in range(count):
            p, stride = f"body.{index}", 2 if i == 0 else 1
            if p + ".shortcut_layer.0.weight" in state:
                shortcut = F.conv2d(x, state[p + ".shortcut_layer.0.weight"], stride=stride)
                shortcut = bn(shortcut, p + ".shortcut_layer.1")
            else:
                shortcut = x[:, :, ::stride, ::stride]
            r = F.conv2d(bn(x, p + ".res_layer.0"), state[p + ".res_layer.1.weight"], padding=1)
            r = F.prelu(bn(r, p + ".res_layer.2"), state[p + ".res_layer.3.weight"])
            r = bn(F.conv2d(r, state[p + ".res_layer.4.weight"], stride=stride, padding=1), p + ".res_layer.5")
            x, index = r + shortcut, index + 1
    x = F.linear(bn(x, "output_layer.0").flatten(1), state["output_layer.3.weight"], state["output_layer.3.bias"])
    return bn(x, "output_layer.4")


def test_curricularface_equals_tface_backbone_and_loads_the_bin(tmp_path):
    torch.manual_seed(0)
    units = (1, 2, 1, 1)
    model = CurricularFaceIR(units=units, channels=(8, 8, 16, 16), embedding_size=32)
    state = {k: (v.uniform_(0.5, 1.5) if "running_var" in k else v.normal_() * 0.3) if v.is_floating_point() else v
             for k, v in model.state_dict().items()}  # fmt: skip
    torch.save(state, tmp_path / "glint360k_curricular_face_r101_backbone.bin")
    config = {"units": units, "channels": (8, 8, 16, 16), "embedding_size": 32}
    loaded = CurricularFaceIR.from_checkpoint(tmp_path / "glint360k_curricular_face_r101_backbone.bin", **config)
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), _tface_forward(state, x, units), rtol=1e-4, atol=1e-4)


def test_inception_layouts():
    with torch.device("meta"):
        imagenet, fid = InceptionV3().state_dict(), InceptionV3.for_fid().state_dict()
    # torchvision's inception_v3(aux_logits=True) has 580 entries; pytorch-fid's FID Inception 566
    assert (len(imagenet), len(fid)) == (580, 566)
    assert imagenet["AuxLogits.fc.weight"].shape == (1000, 768)
    assert fid["fc.weight"].shape == (1008, 2048) and not any(k.startswith("AuxLogits") for k in fid)
    assert imagenet["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert imagenet["Conv2d_1a_3x3.bn.running_var"].shape == (32,)


def test_published_sizes_are_read_from_the_weights():
    from genface.models.talking.syncnet_v2 import SyncNetV2

    with torch.device("meta"):
        ir101, syncnet = CurricularFaceIR().state_dict(), SyncNetV2().state_dict()
    assert CurricularFaceIR.config_from_state_dict(ir101) == {
        "units": [3, 13, 30, 3], "channels": [64, 128, 256, 512], "embedding_size": 512
    }  # fmt: skip
    assert SyncNetV2.config_from_state_dict(syncnet) == {
        "audio_channels": [64, 192, 384, 256, 256, 512], "lip_channels": [96, 256, 256, 256, 256, 512],
        "embedding_size": 1024,
    }  # fmt: skip
