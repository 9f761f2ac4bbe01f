"""Losses and loop pieces shared by genface's training scripts (``examples/train_*.py``, on accelerate)."""

from genface.training.losses import temporal_difference_loss, weighted_l1

__all__ = ["temporal_difference_loss", "weighted_l1"]
