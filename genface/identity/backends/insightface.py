"""insightface engine: SCRFD detection, ArcFace recognition, optional 106-point landmarks.

Model packs (antelopev2, buffalo_l) are read from a local folder; genface never lets insightface
download. ConsisID's Hub repository keeps antelopev2 under ``face_encoder/models/antelopev2``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from genface.errors import MissingWeightsError
from genface.identity.backends import FaceBackend
from genface.identity.embed import ArcFaceRecognizer, Recognizer
from genface.identity.onnx_models import import_insightface, onnx_errors, onnx_providers
from genface.identity.types import Face

DEFAULT_MODEL_NAME = "antelopev2"
_TASKS = ("detection", "recognition", "landmark_2d_106")
_DET_SIZE = (640, 640)


def default_root() -> Path:
    """Where insightface model packs are looked for when no folder is given."""
    return Path(os.environ.get("GENFACE_INSIGHTFACE_ROOT", "~/.insightface")).expanduser()


def find_model_dir(root: str | os.PathLike | None = None, name: str = DEFAULT_MODEL_NAME) -> Path:
    """The folder of ONNX files for model pack ``name`` under ``root``.

    Accepts the folder itself, an insightface root (``root/models/name``) or ``root/name``.
    """
    base = Path(root).expanduser() if root is not None else default_root()
    candidates = [base, base / "models" / name, base / name]
    for folder in candidates:
        if folder.is_dir() and any(folder.glob("*.onnx")):
            return folder
    looked = ", ".join(str(c) for c in candidates)
    raise MissingWeightsError(
        f"No insightface ONNX models ({name}) found; looked in: {looked}. Put the {name} files there, "
        "set GENFACE_INSIGHTFACE_ROOT, or load them from the Hub with "
        "FaceAnalyzer.from_pretrained('BestWishYsh/ConsisID-preview', subfolder='face_encoder')."
    )


class InsightFaceBackend(FaceBackend):
    """insightface model pack: detection + keypoints, ArcFace embeddings, 106 landmarks when present."""

    name = "insightface"
    default_threshold = 0.5

    def __init__(
        self,
        model_root: str | os.PathLike | None = None,
        model_name: str = DEFAULT_MODEL_NAME,
        providers: list[str] | None = None,
    ) -> None:
        insightface = import_insightface()
        self.model_dir = find_model_dir(model_root, model_name)
        self.model_name = model_name
        providers = onnx_providers(providers)
        try:
            app = insightface.app.FaceAnalysis(
                name=str(self.model_dir), allowed_modules=list(_TASKS), providers=providers
            )
        except onnx_errors() as exc:
            raise MissingWeightsError(
                f"An ONNX file in {self.model_dir} is not a valid model ({str(exc).splitlines()[0]}); replace it."
            ) from exc
        except AssertionError as exc:  # insightface's way of saying that no detection model was found
            raise MissingWeightsError(
                f"{self.model_dir} has no face-detection ONNX model (antelopev2: scrfd_10g_bnkps.onnx; "
                "buffalo_l: det_10g.onnx)."
            ) from exc
        app.prepare(ctx_id=0 if "CUDAExecutionProvider" in providers else -1, det_size=_DET_SIZE)
        self._detector = app.models["detection"]
        self._landmarks = app.models.get("landmark_2d_106")
        recognition = app.models.get("recognition")
        self._recognizer = (
            ArcFaceRecognizer(recognition, Path(recognition.model_file).stem) if recognition is not None else None
        )

    @property
    def recognizer(self) -> Recognizer | None:
        return self._recognizer

    def set_detection_size(self, size: int) -> None:
        """Detect at ``size`` x ``size`` (insightface's ``det_size``; 640 by default)."""
        self._detector.prepare(0, input_size=(size, size))

    def detect(self, image: np.ndarray, threshold: float) -> list[Face]:
        from insightface.app.common import Face as InsightFace

        bgr = np.ascontiguousarray(image[..., ::-1])
        self._detector.det_thresh = threshold
        boxes, kpss = self._detector.detect(bgr, max_num=0, metric="default")
        faces = []
        for i in range(boxes.shape[0]):
            landmarks = None
            if self._landmarks is not None:
                raw = InsightFace(bbox=boxes[i, :4], kps=kpss[i], det_score=boxes[i, 4])
                landmarks = self._landmarks.get(bgr, raw)
            faces.append(Face(boxes[i, :4], boxes[i, 4], kpss[i], landmarks))
        return faces
