"""Data types of the identity stack: a detected :class:`Face` and an encoded :class:`FaceIdentity`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from genface.errors import FaceTooSmallError, InvalidIdentityFileError, MissingWeightsError

#: Names of the five keypoints, in insightface order (left/right as seen in the image).
KPS_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")
#: Faces whose box is narrower than this (pixels) carry too little identity to use.
MIN_FACE_SIZE = 32


@dataclass(frozen=True)
class Face:
    """One detected face, in the pixel coordinates of the image it was found in.

    ``score`` is the backend's detection confidence (higher is surer; its scale depends on the
    backend). ``kps`` holds the five keypoints in :data:`KPS_NAMES` order; ``landmarks`` the
    backend's dense landmarks when it has them (68 points for dlib, 106 for insightface).
    """

    bbox: np.ndarray
    score: float
    kps: np.ndarray
    landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "bbox", np.asarray(self.bbox, dtype=np.float32).reshape(4))
        object.__setattr__(self, "kps", np.asarray(self.kps, dtype=np.float32).reshape(5, 2))
        if self.landmarks is not None:
            object.__setattr__(self, "landmarks", np.asarray(self.landmarks, dtype=np.float32).reshape(-1, 2))
        object.__setattr__(self, "score", float(self.score))

    @property
    def width(self) -> float:
        return float(self.bbox[2] - self.bbox[0])

    @property
    def height(self) -> float:
        return float(self.bbox[3] - self.bbox[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def size(self) -> float:
        """Shorter side of the box, in pixels."""
        return min(self.width, self.height)

    def scaled(self, factor: float) -> Face:
        """The same face in an image resized by ``factor``."""
        lm = None if self.landmarks is None else self.landmarks * factor
        return Face(self.bbox * factor, self.score, self.kps * factor, lm)


_ARRAY_FIELDS = ("crop", "crop_matrix", "parsing", "recognition", "clip_embeds", "clip_hidden")
_FORMAT = "genface.FaceIdentity"
_FORMAT_VERSION = "1"


@dataclass
class FaceIdentity:
    """Everything the pipelines need about one person's face, encoded once and reusable.

    Attributes:
        face: the chosen face in the source image.
        image_size: (height, width) of the source image.
        crop: aligned face crop, SxSx3 uint8 RGB (see ``crop_template``).
        crop_matrix: 2x3 affine matrix mapping source-image pixels into ``crop``.
        crop_template: name of the alignment template of ``crop``.
        recognition: L2-normalised recognition embedding (ArcFace 512-d, or dlib 128-d offline).
        recognition_norm: L2 norm of the raw embedding (``recognition * recognition_norm`` is the
            network's output, which ConsisID conditions on).
        recognition_model: name of the model that produced ``recognition``.
        parsing: SxS uint8 CelebAMask-HQ class map of ``crop``, when a face parser was used.
        clip_embeds / clip_hidden: CLIP-vision features, when a CLIP-vision encoder was used.
    """

    face: Face
    image_size: tuple[int, int]
    crop: np.ndarray
    crop_matrix: np.ndarray
    crop_template: str
    recognition: np.ndarray | None = None
    recognition_norm: float | None = None
    recognition_model: str | None = None
    parsing: np.ndarray | None = None
    clip_embeds: np.ndarray | None = None
    clip_hidden: np.ndarray | None = None
    clip_model: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def face_in_crop(self) -> Face:
        """The face in the pixel coordinates of the stored crop."""
        matrix = self.crop_matrix

        def move(points: np.ndarray) -> np.ndarray:
            return points @ matrix[:, :2].T + matrix[:, 2]

        x1, y1, x2, y2 = self.face.bbox
        corners = move(np.array([[x1, y1], [x2, y1], [x1, y2], [x2, y2]], np.float32))
        landmarks = None if self.face.landmarks is None else move(self.face.landmarks)
        return Face([*corners.min(0), *corners.max(0)], self.face.score, move(self.face.kps), landmarks)

    def check(self, what: str = "The identity") -> None:
        """Refuse an identity no pipeline can use, as a photo with such a face is refused: damaged arrays
        (:class:`InvalidIdentityFileError`; a crop that is not SxSx3 uint8 or holds one colour, a crop matrix
        that is not 2x3, NaN or infinite features) or a face too small to identify (:class:`FaceTooSmallError`;
        its box in the photo or its crop under :data:`MIN_FACE_SIZE` pixels)."""
        crop, size = self.crop, self.face.size
        arrays = [getattr(self, name) for name in _ARRAY_FIELDS if getattr(self, name) is not None]
        if (
            crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8 or self.crop_matrix.shape != (2, 3)
            or not all(np.isfinite(a).all() for a in arrays if a.dtype.kind == "f") or not np.isfinite(size)
            or len(self.image_size) != 2
        ):  # fmt: skip
            raise InvalidIdentityFileError(f"{what} is a damaged FaceIdentity (bad crop or values); save it again.")
        if min(size, *crop.shape[:2]) < MIN_FACE_SIZE:
            raise FaceTooSmallError(
                f"{what} holds a face of only {min(size, *crop.shape[:2]):.0f} pixels (box {self.face.width:.0f}x"
                f"{self.face.height:.0f}, crop {crop.shape[1]}x{crop.shape[0]}); at least {MIN_FACE_SIZE} are needed "
                "to identify a face. Encode it again from a larger or closer photo of the face."
            )
        if crop.min() == crop.max():
            raise InvalidIdentityFileError(f"{what}'s face crop is blank (one colour); encode the face again.")

    def save(self, path: str | os.PathLike) -> Path:
        """Save as one ``.safetensors`` file (arrays as tensors, the rest as JSON metadata), whole or not at all;
        the path is checked first (:func:`~genface.media.check_output_path`)."""
        from safetensors.numpy import save_file

        from genface.media._files import atomic_path, check_output_path

        out = check_output_path(path, (".safetensors",), name="path")

        tensors = {"bbox": self.face.bbox, "kps": self.face.kps}
        if self.face.landmarks is not None:
            tensors["landmarks"] = self.face.landmarks
        for name in _ARRAY_FIELDS:
            value = getattr(self, name)
            if value is not None:
                tensors[name] = np.ascontiguousarray(value)
        meta = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "score": self.face.score,
            "image_size": list(self.image_size),
            "crop_template": self.crop_template,
            "recognition_model": self.recognition_model,
            "recognition_norm": self.recognition_norm,
            "clip_model": self.clip_model,
            "extra": self.extra,
        }
        with atomic_path(out) as tmp:
            save_file(tensors, str(tmp), metadata={"genface": json.dumps(meta)})
        return out

    @classmethod
    def load(cls, path: str | os.PathLike) -> FaceIdentity:
        """Load an identity written by :meth:`save`; a file that is not one, or is damaged or hand-edited into one no
        pipeline can use, is refused in one line (see :meth:`check`)."""
        from safetensors import SafetensorError, safe_open

        path = Path(path).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"Identity file not found: {path}")
        try:
            with safe_open(str(path), framework="numpy") as handle:
                header = (handle.metadata() or {}).get("genface")
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except (SafetensorError, OSError) as exc:
            raise InvalidIdentityFileError(f"{path} is not a safetensors file: {exc}") from exc
        try:
            meta = json.loads(header) if header else {}
        except json.JSONDecodeError:
            meta = None
        if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
            raise InvalidIdentityFileError(f"{path} is a safetensors file but not a saved FaceIdentity.")
        if meta.get("format_version") != _FORMAT_VERSION:
            raise InvalidIdentityFileError(
                f"{path} has FaceIdentity format version {meta.get('format_version')}; this genface reads "
                f"{_FORMAT_VERSION}. Re-encode the face with `genface identity --save`."
            )
        known = {f.name for f in fields(cls)}
        arrays = {k: v for k, v in tensors.items() if k in known}
        try:
            identity = cls(
                face=Face(tensors.pop("bbox"), meta["score"], tensors.pop("kps"), tensors.pop("landmarks", None)),
                image_size=tuple(meta["image_size"]),
                crop_template=meta["crop_template"],
                recognition_model=meta.get("recognition_model"),
                recognition_norm=meta.get("recognition_norm"),
                clip_model=meta.get("clip_model"),
                extra=meta.get("extra", {}),
                **arrays,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidIdentityFileError(f"{path} is a damaged FaceIdentity file ({exc!r}); save it again.") from exc
        identity.check(f"{path}")
        return identity
