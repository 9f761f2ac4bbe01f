"""The training losses on values computed by hand."""

from __future__ import annotations

import torch

from genface.training import masked_mean, sync_loss, temporal_difference_loss, v_prediction_loss, weighted_l1


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


def test_masked_mean_averages_over_the_mask() -> None:
    values = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    assert masked_mean(values).item() == 3.0
    assert masked_mean(values, torch.tensor([[0.0, 1.0], [0.0, 1.0]])).item() == 4.0  # (2 + 6) / 2


def test_v_prediction_loss_by_hand() -> None:
    from diffusers import CogVideoXDPMScheduler

    scheduler = CogVideoXDPMScheduler(timestep_spacing="trailing")
    clean = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 900])  # very different noise levels
    noisy = scheduler.add_noise(clean, noise, t)
    a = scheduler.alphas_cumprod[t].view(-1, 1, 1)
    velocity = a.sqrt() * noise - (1 - a).sqrt() * clean  # the exact answer
    assert v_prediction_loss(scheduler, velocity, noisy, clean, t).item() < 1e-10
    # an error d in the velocity moves the implied clean sample by sqrt(1 - a) d; the 1 / (1 - a) weight
    # makes it cost d**2 at any timestep
    assert torch.isclose(v_prediction_loss(scheduler, velocity + 0.5, noisy, clean, t), torch.tensor(0.25))
    off = torch.full_like(clean, 3.0)
    off[:, :, :2] = 0.5  # the mask covers the elements off by 0.5; those off by 3 are outside it
    mask = torch.zeros(1, 1, 4)
    mask[..., :2] = 1
    assert torch.isclose(v_prediction_loss(scheduler, velocity + off, noisy, clean, t, mask), torch.tensor(0.25))
    assert torch.isclose(v_prediction_loss(scheduler, velocity + off, noisy, clean, t), torch.tensor((0.25 + 9) / 2))


def test_sync_loss_by_hand() -> None:
    import math

    audio = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    frames = torch.tensor([[2.0, 0.0], [1.0, math.sqrt(3)]])  # cosine 1 and 0.5
    assert torch.isclose(sync_loss(audio, frames), torch.tensor(math.log(2) / 2))  # (0 + ln 2) / 2
    assert sync_loss(audio, -audio).item() == 100.0  # opposite: clamped to 0, the cross-entropy's ceiling
