"""IdentityEncoder: a photo becomes a :class:`FaceIdentity` (face, aligned crop, parsing, embeddings)."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from genface.identity.align import TEMPLATES, align_face
from genface.identity.detect import FaceAnalyzer, describe_source
from genface.identity.embed import l2_normalize
from genface.identity.eva_clip import CHECKPOINT_NAME as CLIP_CHECKPOINT
from genface.identity.eva_clip import ClipVisionEncoder
from genface.identity.parsing import CHECKPOINT_NAMES, FaceParser, Parsing
from genface.identity.types import Face, FaceIdentity
from genface.media.image import ImageInput

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch


def shrink_long_side(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``image`` shrunk so its long side is ``max_side`` (Lanczos, sides truncated to integers, as ConsisID's
    ``resize_numpy_image_long``) and the factor applied; a small enough image comes back as it is, with 1."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image, 1.0
    scale = max_side / max(height, width)
    size = (int(width * scale), int(height * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_LANCZOS4), scale


class IdentityEncoder:
    """Encode a face photo once into a reusable :class:`FaceIdentity`.

    Args:
        analyzer: detection + recognition engine (default: ``FaceAnalyzer("auto")``).
        parser: optional face parser; when given, the identity carries a parsing map of its crop.
        clip: optional CLIP-vision encoder; when given, the identity carries its embedding and hidden
            states (computed with the non-face regions painted white when a parser is given).
        crop_template: alignment template of the stored crop (``ffhq`` 512 px by default, as ConsisID).
        crop_size: side of the stored crop in pixels (default: the template's own).
        max_side: photos with a longer side are shrunk to it before detection, alignment and embedding,
            as ConsisID's reference does (1024 px); ``None`` keeps every photo at its own size.
    """

    def __init__(
        self,
        analyzer: FaceAnalyzer | None = None,
        parser: FaceParser | None = None,
        clip: ClipVisionEncoder | None = None,
        *,
        crop_template: str = "ffhq",
        crop_size: int | None = None,
        max_side: int | None = 1024,
    ) -> None:
        if crop_template not in TEMPLATES:
            raise ValueError(f"Unknown crop_template {crop_template!r}; choose from {sorted(TEMPLATES)}.")
        self.analyzer = analyzer or FaceAnalyzer("auto")
        self.parser = parser
        self.clip = clip
        self.crop_template = crop_template
        self.crop_size = crop_size or TEMPLATES[crop_template][1]
        self.max_side = max_side

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | os.PathLike,
        subfolder: str | None = None,
        *,
        model_name: str = "antelopev2",
        device: str = "cpu",
        **kwargs: Any,
    ) -> IdentityEncoder:
        """Load the face encoders from a folder or Hub repo laid out as ConsisID's ``face_encoder``:
        ``models/<model_name>/*.onnx`` (insightface) and, when present, a BiSeNet parsing checkpoint and
        the EVA02-CLIP checkpoint."""
        from genface.hub import resolve_folder

        folder = resolve_folder(
            path_or_repo, subfolder, allow_patterns=[f"*{model_name}/*.onnx", *CHECKPOINT_NAMES, CLIP_CHECKPOINT]
        )
        analyzer = FaceAnalyzer("insightface", model_root=folder, model_name=model_name)
        has_parser = any((folder / name).is_file() for name in CHECKPOINT_NAMES)
        parser = FaceParser.from_pretrained(folder, device=device) if has_parser else None
        clip = ClipVisionEncoder.from_pretrained(folder, device) if (folder / CLIP_CHECKPOINT).is_file() else None
        return cls(analyzer, parser, clip, **kwargs)

    def save_pretrained(self, folder: str | os.PathLike) -> Path:
        """Write the encoders in ConsisID's ``face_encoder`` layout (loadable by :meth:`from_pretrained`)."""
        import shutil

        import torch

        from genface.identity.backends.insightface import InsightFaceBackend

        backend = self.analyzer.backend
        if not isinstance(backend, InsightFaceBackend):
            raise ValueError(
                f"Only insightface-based encoders have a published layout to save; this one uses {backend.name}."
            )
        folder = Path(folder)
        pack = folder / "models" / backend.model_name
        pack.mkdir(parents=True, exist_ok=True)
        for onnx_file in backend.model_dir.glob("*.onnx"):
            shutil.copy2(onnx_file, pack / onnx_file.name)
        if self.parser is not None:
            torch.save(self.parser.model.state_dict(), folder / CHECKPOINT_NAMES[0])
        if self.clip is not None:
            torch.save(self.clip.model.eva_state_dict(), folder / CLIP_CHECKPOINT)
        return folder

    def to(self, device: str | torch.device) -> IdentityEncoder:
        """Move the torch parts (parser, CLIP-vision) to ``device``; the ONNX engines choose their own."""
        if self.parser is not None:
            self.parser = FaceParser(self.parser.model, device)
        if self.clip is not None:
            self.clip = ClipVisionEncoder(self.clip.model, device, self.clip.dtype)
        return self

    def encode(self, image: ImageInput, face_index: int | None = None, *, require_single: bool = False) -> FaceIdentity:
        """Detect, choose, align, parse and embed the face in ``image``, shrunk first to ``max_side``
        (``face_index`` counts the faces of the shrunk photo, largest first)."""
        rgb = self.analyzer.load(image)
        small, scale = (rgb, 1.0) if self.max_side is None else shrink_long_side(rgb, self.max_side)
        what = describe_source(image) + ("" if scale == 1.0 else f" (shrunk to {small.shape[1]}x{small.shape[0]})")
        face = self.analyzer.get(small, face_index, require_single=require_single, what=what)
        crop, matrix = align_face(small, face.kps, self.crop_template, self.crop_size)
        identity = FaceIdentity(
            face=face.scaled(1.0 / scale),
            image_size=rgb.shape[:2],
            crop=crop,
            crop_matrix=(matrix * np.array([scale, scale, 1.0])).astype("float32"),
            crop_template=self.crop_template,
        )
        changes = {} if self.analyzer.recognizer is None else self._recognition(small, face)
        return dataclasses.replace(identity, **changes, **self._crop_features(identity))

    __call__ = encode

    def complete(self, identity: FaceIdentity) -> FaceIdentity:
        """``identity`` with what this encoder adds, computed from its stored crop where it is missing or came
        from other models: the recognition embedding (embeddings of two recognition models are never mixed), the
        parsing map and the CLIP features. A complete identity comes back as it is (a copy); one no pipeline can
        use is refused (see :meth:`FaceIdentity.check`)."""
        identity.check()
        recognizer, changes = self.analyzer.recognizer, {}
        if recognizer is not None and (identity.recognition is None or identity.recognition_model != recognizer.name):
            changes = self._recognition(identity.crop, identity.face_in_crop())
        changes |= self._crop_features(identity)
        if changes:
            logger.info("Computed %s of the identity from its stored crop.", sorted(changes))
        return dataclasses.replace(identity, **changes)

    def _recognition(self, image: np.ndarray, face: Face) -> dict[str, Any]:
        """The normalised embedding of ``face`` in ``image``, its raw norm and the recognizer's name."""
        raw = self.analyzer.recognizer.embed(image, face, normalize=False)
        return {
            "recognition": l2_normalize(raw),
            "recognition_norm": float(np.linalg.norm(raw)),
            "recognition_model": self.analyzer.recognizer.name,
        }

    def _crop_features(self, identity: FaceIdentity) -> dict[str, Any]:
        """The crop's parsing where the identity has none, and CLIP features (of the crop, its non-face regions
        painted white) where they are missing or from another model."""
        changes: dict[str, Any] = {}
        if identity.parsing is None and self.parser is not None:
            changes["parsing"] = self.parser.parse(identity.crop).labels
        parsing = changes.get("parsing", identity.parsing)
        clip = self.clip
        if clip is not None and (
            identity.clip_embeds is None or identity.clip_hidden is None or identity.clip_model != clip.name
        ):
            not_face = None if parsing is None else Parsing(parsing).mask("not_face")[None]
            embeds, hidden = (out[0] for out in clip.encode(identity.crop[None], not_face))
            changes.update(clip_embeds=embeds, clip_hidden=hidden, clip_model=clip.name)
        return changes
