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


def _their_matrix(landmarks3: np.ndarray, p_bias):
    """AlignRestore.transformation_from_points(landmarks3, face_template, smooth=True, p_bias) (3 points,
    resolution 256), in their float32 torch operations."""
    points2 = torch.tensor(np.array([[19 - 2, 30 - 10], [56 + 2, 30 - 10], [37.5, 45 - 5]]) * 2.8, dtype=torch.float32)
    points1 = torch.tensor(landmarks3, dtype=torch.float32)
    c1, c2 = points1.mean(0), points2.mean(0)
    s1, s2 = torch.std(points1 - c1), torch.std(points2 - c2)
    n1, n2 = (points1 - c1) / s1, (points2 - c2) / s2
    U, S, V = torch.svd(n1.T @ n2)
    R = V @ U.T
    if torch.det(R) < 0:
        V[:, -1] = -V[:, -1]
        R = V @ U.T
    M = torch.cat(((s2 / s1) * R, c2.reshape(2, 1) - (s2 / s1) * (R @ c1.reshape(2, 1))), dim=1)
    bias = n2[2] - n1[2]
    if p_bias is not None:
        bias = p_bias * 0.2 + bias * 0.8
    M[:, 2] = M[:, 2] + bias
    return M.numpy(), bias


def _their_warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """kornia's warp_affine(img, M, (280, 210), "bilinear", padding_mode="fill", fill_value=127), align_corners=True:
    M taken to normalised coordinates, inverted, affine_grid, and the fill blended in through a warped ones-mask;
    then astype(uint8) and cv2.resize(..., (256, 256), INTER_LANCZOS4)."""
    import cv2

    def normal(h: int, w: int) -> torch.Tensor:
        return torch.tensor([[2.0 / (w - 1), 0.0, -1.0], [0.0, 2.0 / (h - 1), -1.0], [0.0, 0.0, 1.0]])

    src = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    full = torch.cat((torch.from_numpy(matrix), torch.tensor([[0.0, 0.0, 1.0]])))
    dst_norm = normal(280, 210) @ full @ torch.linalg.inv(normal(*image.shape[:2]))
    grid = F.affine_grid(torch.linalg.inv(dst_norm)[None, :2], [1, 3, 280, 210], align_corners=True)
    mask = 1 - F.grid_sample(torch.ones_like(src), grid, align_corners=True, mode="bilinear", padding_mode="zeros")
    out = F.grid_sample(src, grid, align_corners=True, mode="bilinear", padding_mode="zeros") + mask * 127
    face = out[0].permute(1, 2, 0).numpy().astype(np.uint8)
    return cv2.resize(face, (256, 256), interpolation=cv2.INTER_LANCZOS4)


def _landmarks(frames: int) -> np.ndarray:
    """106 points per frame of a face that moves, turns and grows, last near the frame's corner (gray fill)."""
    rng = np.random.default_rng(0)
    base = rng.uniform(-40, 40, (106, 2))
    out = []
    for i in range(frames):
        angle = 0.1 * i - 0.15
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = (100 + 7.3 * i, 90 - 5.1 * i) if i < frames - 1 else (30, 25)
        out.append(base @ rotation.T * (1 + 0.05 * i) + centre + rng.normal(0, 0.7, (106, 2)))
    return np.stack(out)


def test_latentsync_three_point_crop_equals_their_affine_transform() -> None:
    """ImageProcessor.affine_transform on given 106 landmarks, frame after frame through one AlignRestore (its
    smoothing state carried): the three points, the fitted matrices and the 256-px crops."""
    from genface.eval.sync import latentsync_matrices, latentsync_warp

    landmarks = _landmarks(5)
    frames = np.random.default_rng(1).integers(0, 256, (5, 180, 200, 3), dtype=np.uint8)
    theirs, crops, p_bias = [], [], None
    for frame, lmk in zip(frames, np.round(landmarks).astype(np.int_), strict=True):
        left = np.mean(lmk[[43, 48, 49, 51, 50]], axis=0)
        right = np.mean(lmk[101:106], axis=0)
        nose = np.mean(lmk[[74, 77, 83, 86]], axis=0)
        matrix, p_bias = _their_matrix(np.round([left, right, nose]), p_bias)
        theirs.append(matrix)
        crops.append(_their_warp(frame, matrix))
    ours = latentsync_matrices(landmarks)
    np.testing.assert_allclose(ours, np.stack(theirs), rtol=1e-5, atol=1e-4)
    warped = latentsync_warp(frames, ours)
    assert warped.shape == (5, 256, 256, 3) and (warped[-1] == 127).any()  # the last face runs off the frame
    diff = np.abs(warped.astype(int) - np.stack(crops))
    # float32 rounding of the sampling grid flips the uint8 truncation by one level in 0.2% of values (their own
    # float16 run differs from either by more)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.005


def test_latentsync_crops_use_the_three_points_when_the_engine_gives_106_landmarks() -> None:
    from genface.eval.sync import latentsync_crops, latentsync_matrices, latentsync_warp
    from genface.identity import Face
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
    np.testing.assert_array_equal(crops, latentsync_warp(frames, latentsync_matrices(np.stack([landmarks] * 4))))
    five_points = latentsync_crops(frames, Analyzer(None), fps=25)  # no 106 landmarks: FFHQ on five keypoints
    np.testing.assert_array_equal(five_points[0], align_face(frames[0], kps, "ffhq", 256)[0])
