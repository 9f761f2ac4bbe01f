"""Tiny random judges, built offline: ``genface eval --judges tiny`` runs every stage of an evaluation with no
download (the scores are noise; what it shows is that the items, the run and its summary work)."""

from __future__ import annotations

import torch

from genface.models.curricularface import CurricularFaceIR
from genface.models.talking.syncnet import SyncNet
from genface.models.talking.syncnet_v2 import SyncNetV2


def tiny_curricularface(seed: int = 0) -> CurricularFaceIR:
    """A tiny random CurricularFace (FaceSim-Cur's judge)."""
    torch.manual_seed(seed)
    return CurricularFaceIR(units=(1, 1, 1, 1), channels=(8, 12, 16, 20), embedding_size=16).eval()


def tiny_syncnet(seed: int = 0) -> SyncNetV2:
    """A tiny random syncnet_python SyncNet (Sync-C / Sync-D's judge)."""
    torch.manual_seed(seed)
    return SyncNetV2(audio_channels=(4, 6, 8, 8, 8, 8), lip_channels=(4, 6, 6, 6, 6, 8), embedding_size=16).eval()


def tiny_latentsync_syncnet(seed: int = 0) -> SyncNet:
    """A tiny random LatentSync SyncNet."""
    torch.manual_seed(seed)
    return SyncNet(
        audio_block_out_channels=(8, 8, 8, 8, 8, 8, 16),
        visual_block_out_channels=(8, 8, 8, 8, 8, 8, 8, 16),
        norm_num_groups=4,
    ).eval()
