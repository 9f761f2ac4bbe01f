"""FaceAnalyzer: detection, keypoints, alignment and the rule for choosing one face."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from genface.errors import FaceTooSmallError, MissingWeightsError, MultipleFacesError, NoFaceError
from genface.identity.align import align_face
from genface.identity.backends import BACKEND_NAMES, FaceBackend
from genface.identity.embed import Recognizer
from genface.identity.types import MIN_FACE_SIZE, Face
from genface.media.image import DEFAULT_MAX_PIXELS, ImageInput, load_image

logger = logging.getLogger(__name__)


def describe_source(image: object, default: str = "the image") -> str:
    """How an image is named in messages: its path, or ``default``."""
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else default


def _describe(faces: Sequence[Face]) -> str:
    return "; ".join(f"#{i}: box {np.round(f.bbox).astype(int).tolist()}" for i, f in enumerate(faces))


def choose_face(
    faces: Sequence[Face],
    face_index: int | None = None,
    *,
    require_single: bool = False,
    min_face_size: float = MIN_FACE_SIZE,
    what: str = "the image",
) -> Face:
    """Pick one face from ``faces`` (sorted largest first, as :meth:`FaceAnalyzer.detect` returns them).

    Default: the largest face, with a warning when there are several. ``face_index`` picks another;
    ``require_single`` turns several faces into an error. Faces are never mixed.
    """
    if not faces:
        raise NoFaceError(
            f"No face found in {what}. Use a photo where one face is clearly visible, roughly frontal, "
            "and at least 80 pixels wide."
        )
    if face_index is not None:
        if not 0 <= face_index < len(faces):
            raise NoFaceError(
                f"face_index={face_index}, but {what} has {len(faces)} face(s), indexed 0 to {len(faces) - 1} "
                f"from largest to smallest: {_describe(faces)}."
            )
        face = faces[face_index]
    elif len(faces) > 1 and require_single:
        raise MultipleFacesError(
            f"{len(faces)} faces found in {what} ({_describe(faces)}); pass face_index to choose one "
            "(0 is the largest)."
        )
    else:
        face = faces[0]
        if len(faces) > 1:
            logger.warning(
                "%d faces found in %s; using the largest (face_index=0). Pass face_index to choose another: %s",
                len(faces),
                what,
                _describe(faces),
            )
    if face.size < min_face_size:
        raise FaceTooSmallError(
            f"The chosen face in {what} is only {face.width:.0f}x{face.height:.0f} pixels; at least "
            f"{min_face_size:.0f} pixels are needed. Use a larger or closer photo of the face."
        )
    return face


def make_backend(
    backend: str,
    *,
    model_root: str | os.PathLike | None = None,
    model_name: str | None = None,
    providers: list[str] | None = None,
) -> FaceBackend:
    """Build a face engine by name; ``"auto"`` is insightface when its weights are present, else dlib."""
    if backend == "auto":
        from genface.identity.backends.insightface import find_model_dir

        try:
            find_model_dir(model_root, model_name or "antelopev2")
            backend = "insightface"
        except MissingWeightsError:
            if model_root is not None:
                raise
            backend = "dlib"
        logger.info("Face backend 'auto' resolved to %r.", backend)
    if backend == "insightface":
        from genface.identity.backends.insightface import DEFAULT_MODEL_NAME, InsightFaceBackend

        return InsightFaceBackend(model_root, model_name or DEFAULT_MODEL_NAME, providers)
    if backend == "dlib":
        from genface.identity.backends.dlib import DlibBackend

        return DlibBackend(model_root, detector=model_name or "hog")
    raise ValueError(f"Unknown face backend {backend!r}; choose 'auto' or one of {BACKEND_NAMES}.")


class FaceAnalyzer:
    """Detect faces with keypoints, choose one, align it, and embed it for recognition.

    Args:
        backend: ``"auto"`` (insightface when its ONNX weights are found, else the offline dlib
            engine), ``"insightface"`` or ``"dlib"``; or a ready :class:`FaceBackend`.
        model_root: folder of the backend's weights (insightface: a model-pack folder or an
            insightface root holding ``models/<model_name>``; dlib: a folder of ``.dat`` files).
        model_name: insightface model pack (``antelopev2`` default, ``buffalo_l``), or the dlib
            detector (``hog`` default, ``cnn``).
        det_thresh: detection threshold on the backend's own score scale (default: the backend's).
        min_face_size: smallest usable face, in pixels, when choosing a face.
    """

    def __init__(
        self,
        backend: str | FaceBackend = "auto",
        *,
        model_root: str | os.PathLike | None = None,
        model_name: str | None = None,
        det_thresh: float | None = None,
        min_face_size: float = MIN_FACE_SIZE,
        providers: list[str] | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        if isinstance(backend, FaceBackend):
            self.backend = backend
        else:
            self.backend = make_backend(backend, model_root=model_root, model_name=model_name, providers=providers)
        self.det_thresh = self.backend.default_threshold if det_thresh is None else det_thresh
        self.min_face_size = min_face_size
        self.max_pixels = max_pixels

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | os.PathLike,
        subfolder: str | None = None,
        *,
        model_name: str = "antelopev2",
        **kwargs: Any,
    ) -> FaceAnalyzer:
        """insightface engine from a local folder or a Hub repo (e.g. ConsisID's ``face_encoder``)."""
        from genface.hub import resolve_folder

        folder = resolve_folder(path_or_repo, subfolder, allow_patterns=[f"*{model_name}/*.onnx"])
        return cls("insightface", model_root=folder, model_name=model_name, **kwargs)

    @property
    def recognizer(self) -> Recognizer | None:
        return self.backend.recognizer

    def load(self, image: ImageInput) -> np.ndarray:
        """The image as RGB uint8, with this analyzer's size guard."""
        return load_image(image, max_pixels=self.max_pixels)

    def detect(self, image: ImageInput) -> list[Face]:
        """All faces in ``image``, largest first."""
        faces = self.backend.detect(self.load(image), self.det_thresh)
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def get(
        self,
        image: ImageInput,
        face_index: int | None = None,
        *,
        require_single: bool = False,
        what: str | None = None,
    ) -> Face:
        """Detect and choose one face (see :func:`choose_face`); ``what`` names the image in errors."""
        return choose_face(
            self.detect(image),
            face_index,
            require_single=require_single,
            min_face_size=self.min_face_size,
            what=what or describe_source(image),
        )

    @staticmethod
    def align(image: np.ndarray, face: Face, template: str = "arcface", size: int | None = None) -> np.ndarray:
        """Aligned crop of ``face`` (``arcface``: 112x112 recognition crop; ``ffhq``: 512x512 portrait)."""
        return align_face(image, face.kps, template, size)[0]

    def embed(self, image: ImageInput, face: Face) -> np.ndarray:
        """Recognition embedding (unit length) of ``face`` in ``image``."""
        if self.recognizer is None:
            raise MissingWeightsError(
                f"The {self.backend.name} engine loaded no recognition model; add the pack's recognition ONNX "
                "file (glintr100.onnx for antelopev2) to its folder, or use backend='dlib' offline."
            )
        return self.recognizer.embed(self.load(image), face)
