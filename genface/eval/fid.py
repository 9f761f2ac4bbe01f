"""FID two ways: ConsisID's per-frame "FID" against the one reference face, and the standard set-level FID.

ConsisID (``eval/get_facesim_fid.py``): torchvision's ImageNet Inception-v3 with ``fc`` removed, on each 224-px face
crop resized to 299 (PIL bilinear) as [0, 1] pixels; torchvision's ``transform_input`` then treats those as
ImageNet-normalised. One image's features are repeated to two rows, so both covariances are zero and each frame's
"FID" is the squared distance between its features and the reference's; the video's score is the mean over frames.
The covariance square root is an eigendecomposition of ``sigma1 @ sigma2`` (exact only when that product is
symmetric), in float32.

Standard (pytorch-fid): the FID Inception (TensorFlow's weights, ``InceptionV3.for_fid``) on images resized to 299
(bilinear, ``align_corners=False``) and scaled to [-1, 1]; mean and covariance of each set in float64; ``scipy``'s
``sqrtm`` with a 1e-6 diagonal offset when the product is singular.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from genface.eval.facesim import ConsisIDFaces, FrameScores
from genface.models.inception import FID_CONFIG, InceptionV3

#: torchvision's ImageNet Inception-v3 file, and pytorch-fid's FID Inception file.
TORCHVISION_FILE = "inception_v3_google-0cc3c7bd.pth"
FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SIZE = 299


def load_inception(path_or_repo: str | os.PathLike, *, fid: bool = False, subfolder: str | None = None) -> InceptionV3:
    """An Inception-v3 weight file (a file, a folder or a Hub repo holding it): torchvision's ImageNet weights
    (ConsisID's protocol), or with ``fid`` pytorch-fid's FID weights (the standard FID)."""
    from genface.eval.weights import weights_file

    path = weights_file(path_or_repo, FID_FILE if fid else TORCHVISION_FILE, subfolder)
    return InceptionV3.from_checkpoint(path, **(FID_CONFIG if fid else {}))


def _eigh_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def consisid_frechet_distance(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor) -> float:
    """ConsisID's ``calculate_fid`` on two feature sets (N x D; a single row counts twice), in their dtype."""
    real, fake = (torch.as_tensor(np.asarray(a)) for a in (real, fake))
    real, fake = (a.repeat(2, 1) if a.shape[0] == 1 else a for a in (real, fake))
    mu1, mu2 = real.mean(0), fake.mean(0)
    sigma1, sigma2 = torch.cov(real.T), torch.cov(fake.T)
    product = sigma1 @ sigma2
    # eigh of a zero matrix (one image against one image) is exactly zero: skip the D x D decomposition.
    covmean = _eigh_sqrt(product) if product.any() else product
    return (((mu1 - mu2) ** 2).sum() + torch.trace(sigma1 + sigma2 - 2 * covmean)).item()


@torch.no_grad()
def _consisid_features(model: InceptionV3, crop: np.ndarray) -> torch.Tensor:
    resized = np.asarray(Image.fromarray(crop).resize((INCEPTION_SIZE, INCEPTION_SIZE), Image.BILINEAR))
    pixels = torch.from_numpy(resized.transpose(2, 0, 1).copy())[None].float().div(255)
    return model.features(pixels.to(model.device)).cpu()


def consisid_frame_fid(reference: ConsisIDFaces, frames: ConsisIDFaces, model: InceptionV3) -> FrameScores:
    """ConsisID's FID: per frame with a face, :func:`consisid_frechet_distance` of its crop's Inception features
    against the reference crop's (``model``: torchvision's ImageNet Inception-v3, see :func:`load_inception`)."""
    real = _consisid_features(model, reference.single()[0])
    scores = [
        np.nan if c is None else consisid_frechet_distance(real, _consisid_features(model, c)) for c in frames.crops
    ]
    return FrameScores(np.asarray(scores, dtype=np.float64))


@torch.no_grad()
def fid_features(images: Sequence[np.ndarray] | np.ndarray, model: InceptionV3, batch_size: int = 50) -> np.ndarray:
    """N x 2048 float64 pool features of the FID Inception for RGB uint8 images (pytorch-fid's preprocessing;
    ``model`` from ``load_inception(..., fid=True)``)."""
    features = [np.empty((0, model.fc.in_features))]
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.stack(images[start : start + batch_size]).transpose(0, 3, 1, 2).copy())
        size = (INCEPTION_SIZE, INCEPTION_SIZE)
        pixels = F.interpolate(batch.float().div(255), size=size, mode="bilinear", align_corners=False)
        features.append(model.features((2 * pixels - 1).to(model.device)).cpu().double().numpy())
    return np.concatenate(features)


def fid_statistics(
    images: Sequence[np.ndarray] | np.ndarray, model: InceptionV3, batch_size: int = 50
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) in float64 of :func:`fid_features` of RGB uint8 images."""
    features = fid_features(images, model, batch_size)
    return features.mean(0), np.cov(features, rowvar=False)


def set_fid(real: np.ndarray, fake: np.ndarray) -> float | None:
    """The standard FID of two feature sets (N x D, from :func:`fid_features`); None when either set has fewer
    than two rows (no covariance)."""
    if len(real) < 2 or len(fake) < 2:
        return None
    return frechet_distance(real.mean(0), np.cov(real, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """The Fréchet distance of two Gaussians, as pytorch-fid computes it (``scipy.linalg.sqrtm``)."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))} in the covariance square root.")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
