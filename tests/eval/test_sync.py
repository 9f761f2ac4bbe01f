"""Sync-C / Sync-D equal syncnet_python's ``SyncNetInstance.evaluate`` (written their way here) on a tiny SyncNet,
its offset search finds a known shift, and the MFCCs equal python_speech_features'."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genface.eval import sync_offset, sync_scores, syncnet_mfcc
from genface.eval.sync import to_pcm16
from genface.models.talking.syncnet_v2 import SyncNetV2


def _their_pdist(feat1, feat2, vshift=15):
    win_size = vshift * 2 + 1
    feat2p = torch.nn.functional.pad(feat2, (0, 0, vshift, vshift))
    return [
        torch.nn.functional.pairwise_distance(feat1[[i], :].repeat(win_size, 1), feat2p[i : i + win_size, :])
        for i in range(len(feat1))
    ]


def _their_offset(im_feat, cc_feat, vshift=15):
    dists = _their_pdist(im_feat, cc_feat, vshift=vshift)
    mdist = torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    return int(vshift - minidx), float(minval), float(torch.median(mdist) - minval)


def test_offset_search_finds_a_known_shift_as_syncnet_python():
    rng = np.random.default_rng(0)
    audio = torch.from_numpy(rng.standard_normal((60, 32), dtype=np.float32))
    shift = 4  # the video shows at frame i what the audio says at frame i - 4: the audio leads by 4
    lips = torch.roll(audio, shift, 0) + 0.05 * torch.from_numpy(rng.standard_normal((60, 32), dtype=np.float32))
    result = sync_offset(lips, audio)
    their = _their_offset(lips, audio)
    assert result.offset == their[0] == shift
    assert result.min_dist == pytest.approx(their[1], rel=1e-6)
    assert result.confidence == pytest.approx(their[2], rel=1e-6)
    assert result.dists.shape == (60, 31)
    np.testing.assert_allclose(result.dists, torch.stack(_their_pdist(lips, audio)).numpy(), rtol=1e-6)


def test_mfcc_equals_python_speech_features():
    psf = pytest.importorskip("python_speech_features")
    pcm = (np.random.default_rng(1).standard_normal(16000 + 123) * 3000).astype(np.int16)
    their = np.stack([np.array(i) for i in zip(*psf.mfcc(pcm, 16000), strict=True)])
    np.testing.assert_array_equal(syncnet_mfcc(pcm), their)


def test_mfcc_front_end_by_hand():
    pcm = np.zeros(1600, dtype=np.int16)
    pcm[::50] = 1000
    mfcc = syncnet_mfcc(pcm)
    assert mfcc.shape == (13, 1 + math.ceil((1600 - 400) / 160))
    assert np.all(np.isfinite(mfcc))
    assert syncnet_mfcc(np.zeros(800, np.int16))[0, 0] == pytest.approx(np.log(np.finfo(float).eps))


def _tiny_syncnet() -> SyncNetV2:
    torch.manual_seed(0)
    model = SyncNetV2(audio_channels=(4, 6, 8, 8, 8, 8), lip_channels=(4, 6, 6, 6, 6, 8), embedding_size=16).eval()
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return model


def _their_mfcc(audio):
    """python_speech_features.mfcc when installed (tests/reference-requirements.txt), else genface's, which
    test_mfcc_equals_python_speech_features holds equal to it."""
    try:
        from python_speech_features import mfcc
    except ImportError:
        return syncnet_mfcc(audio)
    return np.stack([np.array(i) for i in zip(*mfcc(audio, 16000), strict=True)])


def _their_evaluate(model, images_bgr, audio, vshift=15, batch_size=20):
    im = np.expand_dims(np.stack(images_bgr, axis=3), axis=0)
    imtv = torch.from_numpy(np.transpose(im, (0, 3, 4, 1, 2)).astype(float)).float()
    mfcc = _their_mfcc(audio)
    cct = torch.from_numpy(np.expand_dims(np.expand_dims(mfcc, axis=0), axis=0).astype(float)).float()
    lastframe = min(len(images_bgr), math.floor(len(audio) / 640)) - 5
    im_feat, cc_feat = [], []
    with torch.no_grad():
        for i in range(0, lastframe, batch_size):
            frames = range(i, min(lastframe, i + batch_size))
            im_feat.append(
                model.netfclip(model.netcnnlip(torch.cat([imtv[:, :, v : v + 5] for v in frames])).flatten(1))
            )
            cc_in = torch.cat([cct[:, :, :, v * 4 : v * 4 + 20] for v in frames])
            cc_feat.append(model.netfcaud(model.netcnnaud(cc_in).flatten(1)))
    return _their_offset(torch.cat(im_feat), torch.cat(cc_feat), vshift)


def test_sync_scores_equal_syncnet_python_evaluate():
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, (30, 224, 224, 3), dtype=np.uint8)
    audio = (0.3 * rng.standard_normal(int(1.2 * 16000))).astype(np.float32)  # 1.2 s: 30 frames at 25 fps
    result = sync_scores(crops, audio, _tiny_syncnet(), batch_size=8)
    their = _their_evaluate(_tiny_syncnet(), list(crops[..., ::-1]), to_pcm16(audio), batch_size=8)
    assert result.offset == their[0]
    assert result.min_dist == pytest.approx(their[1], rel=1e-5)
    assert result.confidence == pytest.approx(their[2], rel=1e-4, abs=1e-6)
    assert result.dists.shape == (25, 31)


def test_published_syncnet_layout_loads_safely(tmp_path):
    model = SyncNetV2()
    state = model.state_dict()
    assert state["netcnnaud.0.weight"].shape == (64, 1, 3, 3)
    assert state["netcnnaud.18.weight"].shape == (512, 256, 5, 4)
    assert state["netcnnlip.0.weight"].shape == (96, 3, 5, 7, 7)
    assert state["netcnnlip.18.weight"].shape == (512, 256, 1, 6, 6)
    assert state["netfcaud.3.weight"].shape == state["netfclip.3.weight"].shape == (1024, 512)
    with torch.no_grad():
        assert model.eval().embed_lips(torch.zeros(1, 3, 5, 224, 224)).shape == (1, 1024)
        assert model.embed_audio(torch.zeros(1, 1, 13, 20)).shape == (1, 1024)
    path = tmp_path / "syncnet_v2.model"
    torch.save(state, path)
    from genface.eval import load_syncnet

    loaded = load_syncnet(tmp_path)
    assert torch.equal(loaded.state_dict()["netfclip.0.weight"], state["netfclip.0.weight"])
