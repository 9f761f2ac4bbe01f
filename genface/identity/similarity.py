"""FaceSim: cosine similarity of recognition embeddings between a reference face and frames."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genface.errors import MissingWeightsError
from genface.identity.detect import FaceAnalyzer, describe_source
from genface.identity.types import FaceIdentity
from genface.media.image import ImageInput

logger = logging.getLogger(__name__)


@dataclass
class FaceSimResult:
    """Per-frame cosine similarity to the reference (NaN where no face was found) and its summary."""

    per_frame: np.ndarray
    model: str
    match_threshold: float

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.per_frame)

    @property
    def mean(self) -> float:
        return float(np.nanmean(self.per_frame)) if self.found.any() else float("nan")

    @property
    def min(self) -> float:
        return float(np.nanmin(self.per_frame)) if self.found.any() else float("nan")

    @property
    def missing_frames(self) -> list[int]:
        return np.flatnonzero(~self.found).tolist()

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "match_threshold": self.match_threshold,
            "mean": self.mean,
            "min": self.min,
            "frames": len(self.per_frame),
            "missing_frames": self.missing_frames,
            "per_frame": [None if np.isnan(v) else round(float(v), 6) for v in self.per_frame],
        }


def _frames(target: ImageInput | Sequence[ImageInput] | np.ndarray) -> Sequence[ImageInput] | np.ndarray:
    from genface.media.video import is_video_path, read_video

    if is_video_path(target):
        return read_video(target)[0]
    if isinstance(target, np.ndarray) and target.ndim == 4:
        return target
    if isinstance(target, (list, tuple)):
        return target
    return [target]


def face_similarity(
    reference: ImageInput | FaceIdentity | np.ndarray,
    frames: ImageInput | Sequence[ImageInput] | np.ndarray,
    *,
    analyzer: FaceAnalyzer | None = None,
    face_index: int | None = None,
) -> FaceSimResult:
    """FaceSim of ``frames`` (an image, a list of images, a TxHxWx3 array or a video file) against
    ``reference`` (an image, a saved :class:`FaceIdentity`, or an embedding).

    In each frame the largest face is compared; frames without a face score NaN and are listed in
    ``missing_frames``. Embeddings from different recognition models are never compared.
    """
    analyzer = analyzer or FaceAnalyzer("auto")
    recognizer = analyzer.recognizer
    if recognizer is None:
        raise MissingWeightsError(
            f"FaceSim needs a recognition model and the {analyzer.backend.name} engine has none loaded."
        )
    if isinstance(reference, FaceIdentity):
        if reference.recognition is None or reference.recognition_model != recognizer.name:
            raise ValueError(
                f"The identity was embedded with {reference.recognition_model!r} but this analyzer uses "
                f"{recognizer.name!r}; embeddings of different models cannot be compared. Re-encode the identity "
                "with the same face backend."
            )
        ref = reference.recognition
    elif isinstance(reference, np.ndarray) and reference.ndim == 1:
        if reference.shape[0] != recognizer.dim:
            raise ValueError(
                f"Reference embedding has {reference.shape[0]} dims; {recognizer.name} gives {recognizer.dim}."
            )
        ref = reference / np.linalg.norm(reference)
    else:
        rgb = analyzer.load(reference)
        face = analyzer.get(rgb, face_index, what=describe_source(reference, "the reference image"))
        ref = recognizer.embed(rgb, face)
    scores = []
    for frame in _frames(frames):
        rgb = analyzer.load(frame)
        faces = analyzer.detect(rgb)
        scores.append(float(recognizer.embed(rgb, faces[0]) @ ref) if faces else float("nan"))
    result = FaceSimResult(np.asarray(scores, dtype=np.float64), recognizer.name, recognizer.match_threshold)
    if result.missing_frames:
        logger.warning(
            "No face in %d of %d frame(s): %s", len(result.missing_frames), len(scores), result.missing_frames[:20]
        )
    return result
