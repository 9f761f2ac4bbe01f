"""Shared fixtures: real sample photos, the offline engine, and tiny models built on the fly."""

from __future__ import annotations

import os
from pathlib import Path

# `pytest -n N`: the N workers share the machine's cores. Each computes on its share, set before torch starts (and
# inherited by the commands tests run), where torch's default of every core per worker would oversubscribe them.
if "PYTEST_XDIST_WORKER_COUNT" in os.environ:
    os.environ.setdefault(
        "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    )

import numpy as np
import pytest

from genface.media import load_image
from genface.samples import sample_path


@pytest.fixture(scope="session")
def portrait() -> np.ndarray:
    return load_image(sample_path("portrait"))


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return load_image(sample_path("astronaut"))


@pytest.fixture(scope="session")
def group() -> np.ndarray:
    return load_image(sample_path("group"))


@pytest.fixture(scope="session")
def dlib_analyzer():
    from genface.identity import FaceAnalyzer

    return FaceAnalyzer("dlib")


@pytest.fixture(scope="session")
def tiny_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An insightface root holding ``models/antelopev2`` with tiny SCRFD + ArcFace ONNX files."""
    from tests.tiny_models import save_tiny_insightface_pack

    root = tmp_path_factory.mktemp("face_encoder")
    save_tiny_insightface_pack(root / "models" / "antelopev2")
    return root
