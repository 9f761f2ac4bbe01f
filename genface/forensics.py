"""Face-forgery scores for images and videos without genface's marks: FSFM / FS-VFM on the identity stack.

:class:`ForgeryDetector` finds every face in an image (or follows one face over sampled video frames with
:func:`genface.identity.track.track_face`), crops it as FSFM's data were cropped and returns P(fake) per face,
per frame and per video, with the frames that drove a video's score.

Preprocessing follows the published code: the face box grown to a square 1.3 times its longer side
(FaceForensics++'s rule, "30% margin"), clipped to the image, resized to 224 px (bicubic) and normalised with
the pre-training set's own mean and std (``pretrain_ds_mean_std.txt``), not ImageNet's; a video scores the
mean of its frames' probabilities over 32 evenly spaced frames. What differs: faces come from the shared
identity stack's detector (default: its offline dlib HOG engine, the detector FSFM used, run on the image
shrunk to at most 1280 px), every face of an image is scored rather than dlib's first, and a video's face
is the one tracked from the first frame that has one instead of each frame's first detection.

A score is the model's estimate, not proof: it is calibrated only on the benchmarks the checkpoint was
tested on, and compression, resizing, lighting or unseen generators move it either way. :func:`score_report`,
:func:`score_line` and :data:`FORGERY_CAUTION` word it so wherever genface reports one (``genface verify``,
the web demo); :func:`tiny_fsfm` is the tiny random model of tests and the offline demo.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from genface.errors import FaceTooSmallError, GenfaceError, MissingWeightsError, NoFaceError, OfflineError
from genface.identity.detect import FaceAnalyzer, describe_source
from genface.identity.track import track_face
from genface.identity.types import Face
from genface.media.image import ImageInput
from genface.media.video import VideoReader, is_video_path
from genface.models.fsfm import FSFMViT, load_fsfm

logger = logging.getLogger(__name__)

#: The published checkpoints' Hub repository (weights CC BY-NC 4.0).
FSFM_REPO = "Wolowolo/fsfm-3c"
#: Published fine-tuned checkpoints by use (subfolder, file) in :data:`FSFM_REPO`.
CHECKPOINTS = {
    "deepfake": (
        "finetuned_models/FS-VFM_extensions/cross_dataset_DFD_and_DiFF/ViT-B_VF2_600e/FT_on_FF++_c23_32frames",
        "checkpoint-min_val_loss.pth",
    ),
    "diffusion": (
        "finetuned_models/FS-VFM_extensions/cross_dataset_DFD_and_DiFF/ViT-B_VF2_600e/FT_on_FF++_DF_c23_32frames",
        "checkpoint-min_val_loss.pth",
    ),
}
#: FaceForensics++'s box multiplier, which FSFM's preprocessing uses.
FACE_SCALE = 1.3
#: Frames a video is scored on (FSFM's test sets: 32 evenly spaced frames per video).
VIDEO_FRAMES = 32
#: How every report qualifies a score.
FORGERY_CAUTION = (
    "an estimate by one model of how likely the face is fake (0 to 1), not proof: compression, resizing, lighting "
    "and unseen generators move it either way (docs/provenance.md: Forgery scores)"
)
#: The tiny random FSFM's sizes (224 px input as published; a toy ViT).
TINY_FSFM = {"width": 32, "layers": 1, "heads": 2}


@dataclass
class FaceScore:
    """One scored face: its detected ``box`` (x1, y1, x2, y2), the square ``crop`` (x, y, size) the model saw,
    and ``probability``, the model's P(fake)."""

    box: list[float]
    crop: list[int]
    probability: float


@dataclass
class ImageScore:
    """Every usable face of an image, largest first; ``probability`` is the highest face's P(fake)."""

    source: str
    faces: list[FaceScore]

    @property
    def probability(self) -> float:
        return max(f.probability for f in self.faces)

    def to_dict(self) -> dict:
        return {"kind": "image", "source": self.source, "probability": self.probability, **asdict(self)}


@dataclass
class FrameScore:
    """The tracked face in one sampled video frame (``index`` at the video's rate, ``time`` in seconds)."""

    index: int
    time: float
    box: list[float]
    crop: list[int]
    probability: float


@dataclass
class VideoScore:
    """One face followed over a video: ``probability`` is the mean P(fake) of its ``frames`` (as FSFM scores a
    video); ``driving`` are the indices of the frames that scored highest; ``lost`` the sampled frames where
    the face was not found (not scored)."""

    source: str
    probability: float
    frames: list[FrameScore]
    driving: list[int]
    lost: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"kind": "video", **asdict(self)}


def square_box(bbox: Sequence[float], width: int, height: int, scale: float = FACE_SCALE) -> tuple[int, int, int]:
    """FaceForensics++'s crop of a face box: a square ``scale`` times its longer side around its centre,
    moved inside the image at the top/left and cut at the bottom/right; returns (x, y, size)."""
    x1, y1, x2, y2 = (int(round(v)) for v in bbox)
    size = int(max(x2 - x1, y2 - y1) * scale)
    x = max(int((x1 + x2) // 2 - size // 2), 0)
    y = max(int((y1 + y2) // 2 - size // 2), 0)
    size = min(width - x, height - y, size)
    return x, y, size


class ForgeryDetector:
    """P(fake) of faces with an FSFM / FS-VFM classifier on the shared identity stack.

    Args:
        model: a fine-tuned :class:`FSFMViT` (with a classifier head).
        analyzer: the face detector (default: the offline dlib engine, FSFM's own detector).
        device, dtype: where the ViT runs.
        batch_size: face crops per forward pass.
    """

    def __init__(
        self,
        model: FSFMViT,
        analyzer: FaceAnalyzer | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 32,
    ) -> None:
        model.require_classifier()
        model = model.to(device)
        self.model = (model if model.dtype == dtype else model.to(dtype)).eval()
        self.analyzer = analyzer or FaceAnalyzer("dlib")
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | os.PathLike = FSFM_REPO,
        subfolder: str | None = None,
        *,
        task: str = "deepfake",
        filename: str | None = None,
        analyzer: FaceAnalyzer | None = None,
        device: str | torch.device = "cpu",
    ) -> ForgeryDetector:
        """From the Hub or a folder (see :func:`genface.models.fsfm.load_fsfm`). With the default repo and no
        ``subfolder``, ``task`` picks the published checkpoint: ``"deepfake"`` or ``"diffusion"``."""
        if os.fspath(path_or_repo) == FSFM_REPO and subfolder is None:
            if task not in CHECKPOINTS:
                raise ValueError(f"Unknown task {task!r}; choose from {sorted(CHECKPOINTS)} or pass a subfolder.")
            subfolder, filename = CHECKPOINTS[task][0], filename or CHECKPOINTS[task][1]
        return cls(load_fsfm(path_or_repo, subfolder, filename=filename), analyzer, device=device)

    def crop(self, image: np.ndarray, face: Face) -> tuple[np.ndarray, tuple[int, int, int]]:
        """The model's input crop of ``face`` (uint8, image_size square) and its (x, y, size) in ``image``."""
        from PIL import Image

        x, y, size = square_box(face.bbox, image.shape[1], image.shape[0])
        side = self.model.config.image_size
        crop = Image.fromarray(image[y : y + size, x : x + size]).resize((side, side), Image.BICUBIC)
        return np.asarray(crop), (x, y, size)

    @torch.inference_mode()
    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """P(fake) of N x S x S x 3 uint8 crops."""
        mean = torch.tensor(self.model.config.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.model.config.image_std).view(1, 3, 1, 1)
        out = []
        for start in range(0, len(crops), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[start : start + self.batch_size])).permute(0, 3, 1, 2)
            x = ((x.float() / 255.0 - mean) / std).to(self.device, self.dtype)
            out.append(self.model.fake_probability(x).cpu())
        return torch.cat(out).numpy()

    def _usable(self, faces: list[Face], what: str) -> list[Face]:
        if not faces:
            raise NoFaceError(f"No face found in {what}, so there is nothing to score.")
        usable = [f for f in faces if f.size >= self.analyzer.min_face_size]
        if not usable:
            raise FaceTooSmallError(
                f"The {len(faces)} face(s) in {what} are at most {max(f.size for f in faces):.0f} pixels wide; at "
                f"least {self.analyzer.min_face_size:.0f} are needed to score a face."
            )
        if len(usable) < len(faces):
            logger.warning("%d face(s) in %s are too small to score and were skipped.", len(faces) - len(usable), what)
        return usable

    def score_image(self, image: ImageInput) -> ImageScore:
        """Every face of an image large enough to score (NoFaceError / FaceTooSmallError otherwise)."""
        what = describe_source(image)
        pixels = self.analyzer.load(image)
        faces = self._usable(self.analyzer.detect(pixels), what)
        crops, boxes = zip(*(self.crop(pixels, f) for f in faces), strict=True)
        probs = self.probabilities(np.stack(crops))
        return ImageScore(
            what,
            [FaceScore(f.bbox.tolist(), list(b), float(p)) for f, b, p in zip(faces, boxes, probs, strict=True)],
        )

    def score_video(
        self,
        path: str | os.PathLike,
        *,
        num_frames: int = VIDEO_FRAMES,
        face_index: int | None = None,
        top_k: int = 3,
    ) -> VideoScore:
        """One face (the largest in the first frame with a face, or ``face_index``) over ``num_frames`` evenly
        spaced frames; ``top_k`` frames with the highest P(fake) are reported as driving the score."""
        reader = VideoReader(path)
        total = sum(1 for _ in reader)
        wanted = np.unique(np.linspace(0, total - 1, num=min(num_frames, total), dtype=int)).tolist()
        picked = set(wanted)
        frames = [frame for i, frame in enumerate(reader) if i in picked]
        track = track_face(frames, self.analyzer, face_index, progress=False)
        found = [
            (i, frame, face) for i, frame, face in zip(wanted, frames, track.faces, strict=True) if face is not None
        ]
        crops, boxes = zip(*(self.crop(frame, face) for _, frame, face in found), strict=True)
        probs = self.probabilities(np.stack(crops))
        scored = [
            FrameScore(i, i / reader.fps, face.bbox.tolist(), list(b), float(p))
            for (i, _, face), b, p in zip(found, boxes, probs, strict=True)
        ]
        driving = [s.index for s in sorted(scored, key=lambda s: -s.probability)[:top_k]]
        return VideoScore(os.fspath(path), float(np.mean(probs)), scored, driving, [wanted[i] for i in track.lost])

    def score(self, source: ImageInput) -> ImageScore | VideoScore:
        """A video path (by suffix) is scored as a video, anything else as an image."""
        return self.score_video(source) if is_video_path(source) else self.score_image(source)


def tiny_fsfm(seed: int = 0, **config: Any) -> FSFMViT:
    """A tiny random FSFM (tests, the offline demo; its scores are noise); ``config`` overrides the defaults."""
    torch.manual_seed(seed)
    return FSFMViT(**TINY_FSFM, **config).eval()


def load_detector(
    weights: str | os.PathLike = FSFM_REPO, task: str = "deepfake", *, device: str | torch.device = "cpu"
) -> tuple[ForgeryDetector | None, str | None]:
    """The detector (see :meth:`ForgeryDetector.from_pretrained`), or None and one line saying why its weights
    cannot be had (missing, or offline)."""
    try:
        return ForgeryDetector.from_pretrained(weights, task=task, device=device), None
    except (MissingWeightsError, OfflineError) as exc:
        return None, f"no forgery score: the FSFM {task} detector is not available ({' '.join(str(exc).split())})"


def score_report(detector: ForgeryDetector, source: ImageInput, name: str) -> dict[str, Any]:
    """The score of ``source`` by the detector called ``name``, with :data:`FORGERY_CAUTION`; or, when it has no
    usable face, ``error`` saying why."""
    about = {"detector": name, "caution": FORGERY_CAUTION}
    try:
        return about | detector.score(source).to_dict()
    except GenfaceError as exc:
        return about | {"error": " ".join(str(exc).split())}


def score_line(report: Mapping[str, Any]) -> str:
    """One line for a :func:`score_report`: the probability and what it was taken over, or none and why."""
    if "error" in report:
        return f"forgery score ({report['detector']}): none ({report['error']})"
    if report["kind"] == "video":
        driving = ", ".join(map(str, report["driving"]))
        where = f"the face followed over {len(report['frames'])} frame(s), highest at frame(s) {driving}"
    elif len(report["faces"]) == 1:
        where = "its face"
    else:
        where = f"the highest of its {len(report['faces'])} faces"
    return f"forgery score ({report['detector']}): {report['probability']:.2f} for {where}"
