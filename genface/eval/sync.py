"""Sync-C / Sync-D (LSE-C / LSE-D) as joonson/syncnet_python's ``SyncNetInstance.evaluate`` computes them.

Speech at 16 kHz as 16-bit integers (what its ffmpeg call writes) becomes MFCCs (``python_speech_features.mfcc``'s
defaults: 25 ms rectangular frames every 10 ms, 512-point power spectrum, 26 mel bands, 13 liftered cepstra with
the log frame energy first). Video at 25 fps as 224 x 224 BGR face crops. For each of the first ``min_length - 5``
frames (one window fewer than fit) SyncNet embeds 5 frames and the 20 MFCC frames from ``4 * frame``; every lip
embedding is compared with the audio embeddings shifted by -15 to +15 frames (zero vectors past the ends). The mean
distance per shift gives the offset (at the minimum), Sync-D (the minimum) and Sync-C (median - minimum).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genface.errors import InvalidMediaError
from genface.identity.detect import FaceAnalyzer
from genface.models.talking.syncnet import MEL_PER_SECOND, MEL_WINDOW, SYNC_FRAMES, SyncNet, mel_spectrogram, mel_window
from genface.models.talking.syncnet_v2 import SyncNetV2

SAMPLE_RATE = 16000
VSHIFT = 15
SYNCNET_FILE = "syncnet_v2.model"
_WINDOW, _HOP, _NFFT, _BANDS, _CEPSTRA, _LIFTER = 400, 160, 512, 26, 13, 22


def _mel_filterbank() -> np.ndarray:
    """python_speech_features' triangular filters (26 x 257) on bins rounded down, 0 Hz to Nyquist."""
    high = 2595 * np.log10(1 + (SAMPLE_RATE / 2) / 700)
    hz = 700 * (10 ** (np.linspace(0, high, _BANDS + 2) / 2595) - 1)
    edges = np.floor((_NFFT + 1) * hz / SAMPLE_RATE)
    bins = np.arange(_NFFT // 2 + 1)[None]
    low, mid, top = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = np.where((bins >= low) & (bins < mid), (bins - low) / np.maximum(mid - low, 1), 0)
    falling = np.where((bins >= mid) & (bins < top), (top - bins) / np.maximum(top - mid, 1), 0)
    return rising + falling


def syncnet_mfcc(pcm: np.ndarray) -> np.ndarray:
    """13 x N MFCCs of 16 kHz speech given as 16-bit sample values (their scale matters: the log energies)."""
    from scipy.fft import dct

    signal = np.asarray(pcm, dtype=np.float64)
    signal = np.concatenate([signal[:1], signal[1:] - 0.97 * signal[:-1]])
    count = 1 if len(signal) <= _WINDOW else 1 + math.ceil((len(signal) - _WINDOW) / _HOP)
    signal = np.pad(signal, (0, (count - 1) * _HOP + _WINDOW - len(signal)))
    frames = signal[np.arange(count)[:, None] * _HOP + np.arange(_WINDOW)]
    power = np.abs(np.fft.rfft(frames, _NFFT)) ** 2 / _NFFT
    eps = np.finfo(float).eps
    energy = power.sum(1)
    bands = power @ _mel_filterbank().T
    cepstra = dct(np.log(np.where(bands == 0, eps, bands)), type=2, axis=1, norm="ortho")[:, :_CEPSTRA]
    cepstra *= 1 + (_LIFTER / 2) * np.sin(np.pi * np.arange(_CEPSTRA) / _LIFTER)
    cepstra[:, 0] = np.log(np.where(energy == 0, eps, energy))
    return cepstra.T


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] as 16-bit values, rounded and clipped as ffmpeg's ``pcm_s16le`` encoder does."""
    return np.clip(np.rint(np.asarray(audio, dtype=np.float64) * 32768), -32768, 32767).astype(np.int16)


@dataclass
class SyncResult:
    """``offset`` (frames the audio leads the video by), ``min_dist`` (Sync-D / LSE-D, lower is better),
    ``confidence`` (Sync-C / LSE-C, higher is better), and ``dists`` (windows x shifts, shift -vshift first)."""

    offset: int
    min_dist: float
    confidence: float
    dists: np.ndarray


def sync_offset(lip_features: torch.Tensor, audio_features: torch.Tensor, vshift: int = VSHIFT) -> SyncResult:
    """syncnet_python's offset search over +-``vshift`` frames on per-window embeddings (N x D each)."""
    padded = torch.nn.functional.pad(audio_features, (0, 0, vshift, vshift))
    shifts = 2 * vshift + 1
    windows = padded.unfold(0, shifts, 1)[: len(lip_features)]  # N x D x shifts
    dists = torch.nn.functional.pairwise_distance(
        lip_features[:, None, :].expand(-1, shifts, -1), windows.transpose(1, 2)
    )
    mean = dists.mean(0)
    min_dist, index = torch.min(mean, 0)
    return SyncResult(vshift - int(index), float(min_dist), float(torch.median(mean) - min_dist), dists.numpy())


def load_syncnet(path_or_repo: str | os.PathLike, subfolder: str | None = None) -> SyncNetV2:
    """SyncNet from ``syncnet_v2.model`` (a file, or a folder or Hub repo holding it)."""
    from genface.eval.weights import weights_file

    return SyncNetV2.from_checkpoint(weights_file(path_or_repo, SYNCNET_FILE, subfolder))


@torch.no_grad()
def sync_scores(
    crops: np.ndarray,
    audio: np.ndarray,
    model: SyncNetV2,
    *,
    vshift: int = VSHIFT,
    batch_size: int = 20,
) -> SyncResult:
    """Sync-C / Sync-D of 224 x 224 RGB face crops at 25 fps (T x 224 x 224 x 3 uint8) and their speech (16 kHz
    mono: float in [-1, 1], or int16)."""
    pcm = audio if audio.dtype == np.int16 else to_pcm16(audio)
    mfcc = torch.from_numpy(syncnet_mfcc(pcm)).float()[None, None]
    video = torch.from_numpy(np.ascontiguousarray(crops[..., ::-1]).transpose(3, 0, 1, 2).copy()).float()[None]
    last = min(len(crops), len(pcm) // 640) - 5
    if last < 1:
        raise InvalidMediaError(
            f"Sync-C/D need at least 6 frames (0.24 s) of video and speech at 25 fps; got {len(crops)} frame(s) and "
            f"{len(pcm) / SAMPLE_RATE:.2f} s of speech."
        )
    lips, sounds = [], []
    for start in range(0, last, batch_size):
        frames = range(start, min(last, start + batch_size))
        lips.append(model.embed_lips(torch.cat([video[:, :, f : f + 5] for f in frames]).to(model.device)).cpu())
        windows = torch.cat([mfcc[..., 4 * f : 4 * f + 20] for f in frames])
        sounds.append(model.embed_audio(windows.to(model.device)).cpu())
    return sync_offset(torch.cat(lips), torch.cat(sounds), vshift)


#: syncnet_python's ``crop_scale``, the gray its padding uses, and the 25 fps its pipeline resamples video to.
CROP_SCALE = 0.4
CROP_PAD = 110
CROP_SIZE = 224
SYNCNET_FPS = 25.0


def resample_indices(total: int, fps: float, target_fps: float = SYNCNET_FPS) -> np.ndarray:
    """Indices of the source frames shown at ``target_fps`` (for each output time ``k / target_fps`` the nearest
    source frame, as ffmpeg's ``-r 25``); every frame at equal rates."""
    count = max(1, round(total * target_fps / fps))
    return np.minimum(np.floor(np.arange(count) * fps / target_fps + 0.5).astype(int), total - 1)


def syncnet_crop(frame: np.ndarray, box: np.ndarray, crop_scale: float = CROP_SCALE) -> np.ndarray:
    """syncnet_python's ``crop_video`` crop of one frame: half the box's longer side ``bs`` around its centre,
    ``bs`` above and ``bs * (1 + 2 * crop_scale)`` below the centre, ``bs * (1 + crop_scale)`` to each side, on the
    frame padded with gray 110, resized to 224 x 224 (OpenCV bilinear)."""
    import cv2

    x1, y1, x2, y2 = (float(v) for v in box)
    bs = max(y2 - y1, x2 - x1) / 2
    bsi = int(bs * (1 + 2 * crop_scale))
    padded = np.pad(frame, ((bsi, bsi), (bsi, bsi), (0, 0)), constant_values=CROP_PAD)
    my, mx = (y1 + y2) / 2 + bsi, (x1 + x2) / 2 + bsi
    top, bottom = int(my - bs), int(my + bs * (1 + 2 * crop_scale))
    left, right = int(mx - bs * (1 + crop_scale)), int(mx + bs * (1 + crop_scale))
    face = padded[top:bottom, left:right]
    return cv2.resize(face, (CROP_SIZE, CROP_SIZE))


def syncnet_crops(frames: np.ndarray, analyzer: FaceAnalyzer, fps: float, *, sigma: float = 1.5) -> np.ndarray:
    """SyncNet's input from a video's RGB frames: the frames at 25 fps, one face followed by the shared identity
    stack (:func:`~genface.identity.track.track_face`; lost frames hold the nearest box, boxes smoothed with a
    zero-phase Gaussian of ``sigma`` frames), each cropped as :func:`syncnet_crop` (T x 224 x 224 x 3 uint8)."""
    from genface.identity.track import track_boxes, track_face

    frames = frames[resample_indices(len(frames), fps)]
    boxes = track_boxes(track_face(frames, analyzer, progress=False), lambda face: face.bbox, sigma)
    return np.stack([syncnet_crop(frame, box) for frame, box in zip(frames, boxes, strict=True)])


#: LatentSync's SyncNet checkpoint, the side of its face crops, its decision threshold on the cosine similarity.
LATENTSYNC_FILE = "latentsync_syncnet.pt"
LATENTSYNC_SIZE = 256
LATENTSYNC_THRESHOLD = 0.5


@dataclass
class LatentSyncResult:
    """LatentSync's SyncNet on every 16-frame window: ``similarities`` (cosine per window), ``confidence`` (their
    mean) and ``accuracy`` (the share above 0.5, LatentSync's decision that a window is in sync)."""

    similarities: np.ndarray

    @property
    def confidence(self) -> float:
        return float(self.similarities.mean())

    @property
    def accuracy(self) -> float:
        return float((self.similarities > LATENTSYNC_THRESHOLD).mean())


def load_latentsync_syncnet(path_or_repo: str | os.PathLike, subfolder: str | None = None) -> SyncNet:
    """LatentSync's SyncNet from ``latentsync_syncnet.pt`` (a file, or a folder or Hub repo holding it), or from a
    folder written by ``SyncNet.save_pretrained``."""
    from genface.eval.weights import weights_file

    path = Path(path_or_repo).expanduser() / (subfolder or "")
    if (path / "config.json").is_file():
        return SyncNet.from_checkpoint(path)
    return SyncNet.from_checkpoint(weights_file(path_or_repo, LATENTSYNC_FILE, subfolder))


@torch.no_grad()
def latentsync_scores(
    crops: np.ndarray, audio: np.ndarray, model: SyncNet, *, batch_size: int = 16
) -> LatentSyncResult:
    """LatentSync's SyncNet score of face crops at 25 fps (T x H x W x 3 uint8 RGB) and their 16 kHz speech (float
    in [-1, 1]), as its ``eval_syncnet_acc`` scores an in-sync sample: crops resized to 256 (bicubic, antialiased)
    and mapped to [-1, 1]; for each window of 16 frames the 52 mel frames from ``int(80 * start / 25)`` (windows
    whose speech runs out are skipped); the cosine similarity of the lower halves' and the mel's embeddings. Every
    start is scored, so the mean is what their random choice of windows averages to."""
    mel = torch.from_numpy(mel_spectrogram(np.asarray(audio, dtype=np.float32)))
    starts = [s for s in range(len(crops) - SYNC_FRAMES + 1) if int(MEL_PER_SECOND * s / SYNCNET_FPS) + MEL_WINDOW
              <= mel.shape[1]]  # fmt: skip
    if not starts:
        raise InvalidMediaError(
            f"LatentSync's SyncNet needs {SYNC_FRAMES} frames ({SYNC_FRAMES / SYNCNET_FPS:.2f} s) of video and speech "
            f"at 25 fps; got {len(crops)} frame(s) and {len(audio) / SAMPLE_RATE:.2f} s of speech."
        )
    pixels = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
    if pixels.shape[-2:] != (LATENTSYNC_SIZE, LATENTSYNC_SIZE):
        size = (LATENTSYNC_SIZE, LATENTSYNC_SIZE)
        pixels = F.interpolate(pixels, size=size, mode="bicubic", antialias=True).clamp(0, 255).round()
    pixels = pixels / 127.5 - 1
    similarities = []
    for first in range(0, len(starts), batch_size):
        batch = starts[first : first + batch_size]
        frames = torch.stack([pixels[s : s + SYNC_FRAMES] for s in batch]).to(model.device, model.dtype)
        windows = torch.stack([mel_window(mel, s, SYNCNET_FPS) for s in batch]).to(model.device, model.dtype)
        sims = F.cosine_similarity(model.embed_frames(frames), model.embed_audio(windows))
        similarities.append(sims.float().cpu().numpy())
    return LatentSyncResult(np.concatenate(similarities).astype(np.float64))


def latentsync_crops(frames: np.ndarray, analyzer: FaceAnalyzer, fps: float, *, sigma: float = 1.5) -> np.ndarray:
    """LatentSync SyncNet's input from a video's RGB frames: the frames at 25 fps, one face followed by the shared
    identity stack (lost frames hold the nearest face's points), each aligned to 256 x 256 (T x 256 x 256 x 3 uint8).

    With an engine that gives insightface's 106 landmarks (a pack with ``2d106det.onnx``, as LatentSync uses), the
    crops are LatentSync's own (:mod:`genface.identity.affine_crop` at 256 px; landmarks unsmoothed, as theirs).
    Otherwise the five keypoints, smoothed as :func:`syncnet_crops` smooths boxes, are aligned on the FFHQ template,
    which frames the face close to, not as, LatentSync does."""
    from genface.identity.affine_crop import affine_crops, affine_matrices
    from genface.identity.align import align_face
    from genface.identity.track import track_boxes, track_face

    frames = frames[resample_indices(len(frames), fps)]
    track = track_face(frames, analyzer, progress=False)
    if all(face.landmarks is not None and len(face.landmarks) == 106 for face in track.faces if face is not None):
        landmarks = track_boxes(track, lambda face: face.landmarks, sigma=0).reshape(-1, 106, 2)
        return affine_crops(frames, affine_matrices(landmarks, LATENTSYNC_SIZE), LATENTSYNC_SIZE)
    points = track_boxes(track, lambda face: face.kps, sigma).reshape(-1, 5, 2)
    return np.stack([align_face(f, k, "ffhq", LATENTSYNC_SIZE)[0] for f, k in zip(frames, points, strict=True)])
