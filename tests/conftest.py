"""Shared fixtures: real sample photos, the offline engine, and tiny models built on the fly."""

from __future__ import annotations

from pathlib import Path

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
