"""Losses shared by genface's training scripts."""

from __future__ import annotations

import torch


def weighted_l1(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error, each element weighted (``weight`` broadcasts; e.g. a face mask raised on the face
    region, as ConsisID's dynamic mask loss and lip-sync fine-tuning use); normalised by the total weight."""
    error = (prediction - target).abs()
    if weight is None:
        return error.mean()
    weight = weight.to(error.dtype).expand_as(error)
    return (error * weight).sum() / weight.sum().clamp_min(1e-8)


def temporal_difference_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the frame-to-frame changes of ``prediction`` and of ``target`` ((frames, ...) in time
    order): smooth, accurate motion, as GeneFace++'s temporal term asks. Zero for a single frame."""
    if prediction.shape[0] < 2:
        return prediction.new_zeros(())
    return ((prediction[1:] - prediction[:-1]) - (target[1:] - target[:-1])).abs().mean()
