"""LatentSync's SyncNet as a lip-sync judge: its score equals LatentSync's ``eval/eval_syncnet_acc.py`` computation
on in-sync samples (written their way here: uint8 frames resized to 256 as torchvision's bicubic Resize, ``Normalize
(0.5, 0.5)``, the 52 mel frames from ``int(80.0 * (start / 25))``, ``b f c h w -> b (f c) h w``, the lower half,
cosine similarity, > 0.5), on a tiny SyncNet; too short a clip is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genface.errors import InvalidMediaError
from genface.eval.sync import latentsync_scores, load_latentsync_syncnet
from genface.models.talking.syncnet import SyncNet, mel_spectrogram
from tests.identity.test_affine_crop import _landmarks
from tests.models.test_talking_syncnet import TINY


def _their_resize(images: torch.Tensor) -> torch.Tensor:
    """torchvision's Resize((256, 256), BICUBIC, antialias=True) on a uint8 tensor: float, clamp, round, uint8."""
    out = F.interpolate(images.float(), size=(256, 256), mode="bicubic", antialias=True)
    return out.clamp_(0, 255).round_().to(torch.uint8)


def _their_similarities(video: np.ndarray, speech: np.ndarray, syncnet: SyncNet) -> list[float]:
    original_mel = torch.from_numpy(mel_spectrogram(speech))  # Wav2Lip's melspectrogram (tests/models)
    sims = []
    for start_idx in range(len(video) - 16 + 1):
        start = int(80.0 * (start_idx / float(25)))
        mel = original_mel[:, start : start + 52].unsqueeze(0)
        if mel.shape[-1] != 52:
            continue
        images = torch.from_numpy(video[start_idx : start_idx + 16]).permute(0, 3, 1, 2)  # f h w c -> f c h w
        pixel_values = (_their_resize(images) / 255.0 - 0.5) / 0.5
        frames = pixel_values[None].flatten(1, 2)  # b f c h w -> b (f c) h w
        frames = frames[:, :, frames.shape[2] // 2 :, :]
        with torch.no_grad():
            vision_embeds = F.normalize(syncnet.visual_encoder(frames), p=2, dim=1)
            audio_embeds = F.normalize(syncnet.audio_encoder(mel[None]), p=2, dim=1)
        sims.append(F.cosine_similarity(vision_embeds, audio_embeds).item())
    return sims


def test_latentsync_scores_equal_their_eval_computation(tmp_path) -> None:
    torch.manual_seed(0)
    SyncNet(**TINY).save_pretrained(tmp_path / "syncnet")
    syncnet = load_latentsync_syncnet(tmp_path / "syncnet")
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (24, 96, 96, 3), dtype=np.uint8)
    speech = (rng.standard_normal(16000 * 23 // 25) * 0.1).astype(np.float32)  # runs out before the last windows
    result = latentsync_scores(video, speech, syncnet, batch_size=3)
    theirs = _their_similarities(video, speech, syncnet)
    assert 1 < len(theirs) < 24 - 16 + 1
    np.testing.assert_allclose(result.similarities, theirs, rtol=1e-5, atol=1e-6)
    assert result.confidence == pytest.approx(np.mean(theirs), rel=1e-5)
    assert result.accuracy == np.mean(np.array(theirs) > 0.5)
    with pytest.raises(InvalidMediaError, match="16 frames"):
        latentsync_scores(video[:15], speech, syncnet)


def test_latentsync_crops_use_the_three_points_when_the_engine_gives_106_landmarks() -> None:
    from genface.eval.sync import latentsync_crops
    from genface.identity import Face
    from genface.identity.affine_crop import affine_crops, affine_matrices
    from genface.identity.align import align_face

    landmarks = _landmarks(1)[0]
    frames = np.random.default_rng(2).integers(0, 256, (4, 180, 200, 3), dtype=np.uint8)
    kps = landmarks[[38, 88, 86, 52, 61]].astype(np.float32)

    class Analyzer:  # an engine that finds the same face in every frame
        min_face_size = 0

        def __init__(self, dense: np.ndarray | None) -> None:
            self.dense = dense

        def detect(self, image: np.ndarray) -> list[Face]:
            return [Face([40, 40, 160, 150], 0.9, kps, self.dense)]

    crops = latentsync_crops(frames, Analyzer(landmarks), fps=25)
    np.testing.assert_array_equal(crops, affine_crops(frames, affine_matrices(np.stack([landmarks] * 4))))
    five_points = latentsync_crops(frames, Analyzer(None), fps=25)  # no 106 landmarks: FFHQ on five keypoints
    np.testing.assert_array_equal(five_points[0], align_face(frames[0], kps, "ffhq", 256)[0])
