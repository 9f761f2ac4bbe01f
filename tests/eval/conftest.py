"""Fixtures of the evaluation protocols' parity tests: the tiny CurricularFace and insightface's own engine."""

from __future__ import annotations

import pytest
import torch

from genface.models.curricularface import CurricularFaceIR


@pytest.fixture(scope="module")
def curricularface() -> CurricularFaceIR:
    torch.manual_seed(0)
    model = CurricularFaceIR(units=(1, 2, 1, 1), channels=(8, 8, 16, 16), embedding_size=32).eval()
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.BatchNorm1d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def their_app(tiny_pack):
    from insightface.app import FaceAnalysis

    app = FaceAnalysis(name="antelopev2", root=str(tiny_pack), providers=["CPUExecutionProvider"])
    app.prepare(ctx_id=-1, det_size=(320, 320))
    return app
