"""The FID formulas: pytorch-fid's (scipy sqrtm, float64) and ConsisID's (eigh, single rows doubled), written
their way here, on random features; and pytorch-fid's preprocessing of images for the FID Inception."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg

from genface.eval import consisid_frechet_distance, fid_statistics, frechet_distance
from genface.models.inception import InceptionV3


def _pytorch_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def test_frechet_distance_equals_pytorch_fid():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((200, 16)), rng.standard_normal((150, 16)) * 1.5 + 0.3
    stats = [(x.mean(0), np.cov(x, rowvar=False)) for x in (a, b)]
    got = frechet_distance(*stats[0], *stats[1])
    assert got == pytest.approx(_pytorch_fid(*stats[0], *stats[1]), rel=1e-9)
    assert frechet_distance(*stats[0], *stats[0]) == pytest.approx(0, abs=1e-6)
    few = rng.standard_normal((5, 16))  # rank-deficient covariances: the singular-product path
    low = (few.mean(0), np.cov(few, rowvar=False))
    assert frechet_distance(*low, *stats[1]) == pytest.approx(_pytorch_fid(*low, *stats[1]), rel=1e-6)


def _consisid_fid(real, fake):
    real, fake = (np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x for x in (real, fake))
    real, fake = torch.tensor(real), torch.tensor(fake)
    mu1, sigma1 = real.mean(dim=0), torch.cov(real.T)
    mu2, sigma2 = fake.mean(dim=0), torch.cov(fake.T)
    values, vectors = torch.linalg.eigh(sigma1.mm(sigma2))
    covmean = (vectors * torch.sqrt(torch.clamp(values, min=0))).mm(vectors.T)
    return (torch.sum((mu1 - mu2) ** 2) + torch.trace(sigma1 + sigma2 - 2 * covmean)).item()


def test_consisid_frechet_distance_equals_their_calculate_fid():
    rng = np.random.default_rng(1)
    one, other = rng.standard_normal((1, 64), dtype=np.float32), rng.standard_normal((1, 64), dtype=np.float32)
    assert consisid_frechet_distance(one, other) == _consisid_fid(one, other)
    assert consisid_frechet_distance(one, other) == pytest.approx(float(((one - other) ** 2).sum()), rel=1e-6)
    many, more = rng.standard_normal((40, 8), dtype=np.float32), rng.standard_normal((30, 8), dtype=np.float32)
    assert consisid_frechet_distance(many, more) == pytest.approx(_consisid_fid(many, more), rel=1e-6)


def test_fid_statistics_use_pytorch_fids_preprocessing():
    torch.manual_seed(0)
    model = InceptionV3.for_fid().eval()
    images = np.random.default_rng(2).integers(0, 256, (3, 80, 96, 3), dtype=np.uint8)
    mu, sigma = fid_statistics(images, model, batch_size=2)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # ToTensor
    x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        features = model.features(2 * x - 1).double().numpy()
    np.testing.assert_allclose(mu, features.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sigma, np.cov(features, rowvar=False), rtol=1e-4, atol=1e-9)
