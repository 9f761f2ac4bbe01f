"""Losses and loop pieces shared by genface's training scripts (``examples/train_*.py``, on accelerate).

May import: genface.errors, genface.hub, genface.media, genface.identity, genface.models.
"""

from genface.training.losses import (
    masked_mean,
    sync_loss,
    temporal_difference_loss,
    v_prediction_loss,
    weighted_l1,
)

__all__ = ["masked_mean", "sync_loss", "temporal_difference_loss", "v_prediction_loss", "weighted_l1"]
