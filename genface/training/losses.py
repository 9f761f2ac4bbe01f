"""Losses shared by genface's training scripts."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``values``, each element weighted (``weight`` broadcasts; e.g. a face mask); normalised by the
    total weight, so a mask averages over the region it covers."""
    if weight is None:
        return values.mean()
    weight = weight.to(values.dtype).expand_as(values)
    return (values * weight).sum() / weight.sum().clamp_min(1e-8)


def weighted_l1(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error under :func:`masked_mean`'s weighting (e.g. raised on the mouth for lip-sync
    fine-tuning)."""
    return masked_mean((prediction - target).abs(), weight)


def temporal_difference_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the frame-to-frame changes of ``prediction`` and of ``target`` ((frames, ...) in time
    order): smooth, accurate motion, as GeneFace++'s temporal term asks. Zero for a single frame."""
    if prediction.shape[0] < 2:
        return prediction.new_zeros(())
    return ((prediction[1:] - prediction[:-1]) - (target[1:] - target[:-1])).abs().mean()


def v_prediction_loss(
    scheduler: Any,
    model_output: torch.Tensor,
    noisy: torch.Tensor,
    clean: torch.Tensor,
    timesteps: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """CogVideoX's objective, which ConsisID trains with: the model predicts the velocity; the clean sample
    it implies (``scheduler.get_velocity(output, noisy, t)`` = sqrt(a) x_t - sqrt(1 - a) v) is compared with
    ``clean`` by squared error scaled by 1 / (1 - a_t) per sample (a: the scheduler's ``alphas_cumprod``),
    then averaged under ``weight`` (ConsisID's dynamic mask loss passes the face mask). An error ``d`` in the
    velocity costs ``d**2`` at every timestep."""
    predicted = scheduler.get_velocity(model_output.float(), noisy.float(), timesteps)
    alphas = scheduler.alphas_cumprod.to(clean.device)[timesteps.to(clean.device)].float()
    scale = (1 / (1 - alphas)).view(-1, *[1] * (clean.ndim - 1))
    return masked_mean(scale * (predicted - clean.float()) ** 2, weight)


def sync_loss(audio_embeds: torch.Tensor, frame_embeds: torch.Tensor) -> torch.Tensor:
    """MuseTalk's SyncNet loss: binary cross-entropy of the (clamped to [0, 1]) cosine similarity of speech and
    mouth embeddings against "in sync": -log(cos), 0 when they agree, ln 2 at 0.5, 100 at or below 0."""
    similarity = F.cosine_similarity(audio_embeds.float(), frame_embeds.float(), dim=1).clamp(0, 1)
    return F.binary_cross_entropy(similarity, torch.ones_like(similarity))
