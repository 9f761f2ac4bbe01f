"""Face engines. Each turns an RGB image into :class:`~genface.identity.types.Face` objects.

- ``insightface``: SCRFD detection + ArcFace recognition from antelopev2 / buffalo_l ONNX files.
- ``dlib``: HOG (or CNN) detection, 68 landmarks and a 128-d ResNet recognizer whose weights ship in
  the ``face_recognition_models`` wheel: works offline with no download.
"""

from __future__ import annotations

import abc

import numpy as np

from genface.identity.embed import Recognizer
from genface.identity.types import Face


class FaceBackend(abc.ABC):
    """One face engine: detection with keypoints, and (optionally) a recognizer."""

    name: str
    #: Detection threshold used when the caller gives none (its scale is the engine's own).
    default_threshold: float

    @abc.abstractmethod
    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        """Faces in an RGB uint8 image, in any order."""

    @property
    @abc.abstractmethod
    def recognizer(self) -> Recognizer | None:
        """The engine's recognition model, if it has one."""


BACKEND_NAMES = ("insightface", "dlib")
