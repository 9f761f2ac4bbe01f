"""Identity embeddings: the face-recognition interface and its ArcFace (insightface ONNX) implementation."""

from __future__ import annotations

import abc
import os
from pathlib import Path

import numpy as np

from genface.identity.align import align_face
from genface.identity.onnx_models import load_onnx_model
from genface.identity.types import Face


def l2_normalize(vector: np.ndarray) -> np.ndarray:
    """Unit-length float32 copy of ``vector`` (along its last axis)."""
    vector = np.asarray(vector, dtype=np.float32)
    norm = np.linalg.norm(vector, axis=-1, keepdims=True)
    return vector / np.maximum(norm, 1e-12)


class Recognizer(abc.ABC):
    """A face-recognition model: a face in an image becomes a unit-length embedding.

    ``match_threshold`` is the cosine similarity above which two faces are usually the same person
    for this model (model-specific: about 0.3 for ArcFace, 0.92 for dlib's ResNet).
    """

    name: str
    dim: int
    match_threshold: float

    @abc.abstractmethod
    def embed(self, image: np.ndarray, face: Face, normalize: bool = True) -> np.ndarray:
        """Embedding of ``face`` found in the RGB uint8 ``image``, float32: unit length, or the network's
        raw output when ``normalize`` is False (ConsisID conditions on the raw ArcFace embedding)."""


class ArcFaceRecognizer(Recognizer):
    """ArcFace embedding from an insightface ONNX model (antelopev2 ``glintr100``, buffalo_l ``w600k_r50``).

    The face is aligned to the ArcFace 112x112 template from its five keypoints, exactly as
    insightface does, then passed through the network.
    """

    match_threshold = 0.3

    def __init__(self, model: object, name: str) -> None:
        self._model = model  # insightface.model_zoo.ArcFaceONNX
        self.name = name
        self.input_size = int(model.input_size[0])
        self.dim = int(model.session.get_outputs()[0].shape[-1])

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, providers: list[str] | None = None) -> ArcFaceRecognizer:
        """Load a recognition ONNX file (e.g. ``glintr100.onnx``) directly."""
        model = load_onnx_model(Path(path), providers)
        if model.taskname != "recognition":
            raise ValueError(f"{path} is an insightface {model.taskname!r} model, not a recognition model.")
        return cls(model, Path(path).stem)

    def embed_aligned(self, crops: np.ndarray, normalize: bool = True) -> np.ndarray:
        """Embeddings of already aligned RGB crops (N x S x S x 3, S = input size)."""
        bgr = [np.ascontiguousarray(c[..., ::-1]) for c in np.asarray(crops).reshape(-1, *crops.shape[-3:])]
        features = np.asarray(self._model.get_feat(bgr), dtype=np.float32)
        return l2_normalize(features) if normalize else features

    def embed(self, image: np.ndarray, face: Face, normalize: bool = True) -> np.ndarray:
        crop, _ = align_face(image, face.kps, "arcface", self.input_size)
        return self.embed_aligned(crop[None], normalize)[0]
