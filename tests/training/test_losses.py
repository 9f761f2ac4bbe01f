"""The training losses on values computed by hand."""

from __future__ import annotations

import torch

from genface.training import temporal_difference_loss, weighted_l1


def test_weighted_l1_by_hand() -> None:
    prediction = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    target = torch.tensor([[0.0, 2.0], [5.0, 3.0]])  # errors 1, 0, 2, 1
    assert weighted_l1(prediction, target).item() == 1.0  # (1 + 0 + 2 + 1) / 4
    weight = torch.tensor([[1.0], [3.0]])  # rows weighted 1 and 3
    assert weighted_l1(prediction, target, weight).item() == (1 + 0 + 3 * (2 + 1)) / (1 + 1 + 3 + 3)  # 10 / 8


def test_temporal_difference_loss_by_hand() -> None:
    target = torch.tensor([[0.0], [1.0], [3.0]])  # changes +1, +2
    prediction = torch.tensor([[5.0], [6.0], [6.0]])  # changes +1, 0: off by 0 and 2
    assert temporal_difference_loss(prediction, target).item() == 1.0  # (0 + 2) / 2
    assert temporal_difference_loss(target + 7, target).item() == 0.0  # a constant offset is not motion
    assert temporal_difference_loss(prediction[:1], target[:1]).item() == 0.0  # one frame: no motion to compare
