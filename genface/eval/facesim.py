"""ConsisID's FaceSim-Arc and FaceSim-Cur (``eval/get_facesim_fid.py``), on genface's identity stack.

Each image's largest face is found by the insightface engine with a 320 x 320 detection size; when none is found,
the image is padded by a quarter of its size on every side with gray (128) and searched again. The face gives its
raw ArcFace embedding (FaceSim-Arc) and its 224-px ArcFace-template crop (``norm_crop``) of the unpadded image, which
CurricularFace sees resized to 112 (FaceSim-Cur) and Inception sees for ConsisID's FID. Scores are cosines clipped
at 0, averaged over the frames with a face; frames without one are left out (0.0 when none has one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from genface.errors import NoFaceError
from genface.eval.frames import NUM_FRAMES, even_indices, load_frames
from genface.identity.align import align_face
from genface.identity.detect import FaceAnalyzer
from genface.media.image import ImageInput
from genface.media.video import is_video_path
from genface.models.curricularface import CurricularFaceIR

CONSISID_REPO = "BestWishYsh/ConsisID-preview"
DETECTION_SIZE = 320
PAD_SCALE = 1.25
PAD_GRAY = (128, 128, 128)
CROP_SIZE = 224
CURRICULARFACE_FILE = "glint360k_curricular_face_r101_backbone.bin"


def consisid_analyzer(
    path_or_repo: str | os.PathLike = CONSISID_REPO,
    subfolder: str | None = "face_encoder",
    *,
    model_name: str = "buffalo_l",
    **kwargs: object,
) -> FaceAnalyzer:
    """The insightface analyzer of ConsisID's evaluation, detecting at 320 x 320.

    The script builds ``FaceAnalysis(root=face_encoder)`` without a name, which is insightface's default pack,
    ``buffalo_l`` (``face_encoder/models/buffalo_l``), not the ``antelopev2`` pack ConsisID generates with; pass
    ``model_name="antelopev2"`` for that one.
    """
    analyzer = FaceAnalyzer.from_pretrained(path_or_repo, subfolder, model_name=model_name, **kwargs)
    analyzer.backend.set_detection_size(DETECTION_SIZE)
    return analyzer


@dataclass
class ConsisIDFaces:
    """Per image: the 224-px aligned RGB crop and the raw ArcFace embedding, ``None`` where no face was found."""

    crops: list[np.ndarray | None]
    arcface: list[np.ndarray | None]

    @property
    def found(self) -> np.ndarray:
        return np.array([c is not None for c in self.crops])

    def single(self) -> tuple[np.ndarray, np.ndarray]:
        """The one reference face (crop, embedding); raises :class:`NoFaceError` when it was not found."""
        if len(self.crops) != 1 or self.crops[0] is None:
            raise NoFaceError("No face found in the reference image (ConsisID's protocol needs one).")
        return self.crops[0], self.arcface[0]


def _largest_face(analyzer: FaceAnalyzer, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(keypoints in ``rgb``, raw embedding) of the largest face, trying the gray-padded image second."""
    height, width = rgb.shape[:2]
    top, left = int(height * (PAD_SCALE - 1)), int(width * (PAD_SCALE - 1))
    padded = cv2.copyMakeBorder(rgb, top, top, left, left, cv2.BORDER_CONSTANT, value=PAD_GRAY)
    for image, shift in ((rgb, (0, 0)), (padded, (left, top))):
        faces = analyzer.detect(image)
        if faces:
            embedding = analyzer.recognizer.embed(image, faces[0], normalize=False)
            return faces[0].kps - np.array(shift, dtype=np.float32), embedding
    return None


def consisid_faces(
    images: ImageInput | np.ndarray, analyzer: FaceAnalyzer, num_frames: int | None = NUM_FRAMES
) -> ConsisIDFaces:
    """The faces ConsisID's metrics compare: of ``num_frames`` frames sampled evenly from a video (a file or a
    T x H x W x 3 RGB array; every frame when ``num_frames`` is None), or of one image (the reference)."""
    if is_video_path(images) or (isinstance(images, np.ndarray) and images.ndim == 4):
        frames = load_frames(images)
        if num_frames is not None:
            frames = frames[even_indices(len(frames), num_frames)]
    else:
        frames = [images]
    crops, embeddings = [], []
    for frame in frames:
        rgb = analyzer.load(frame)
        found = _largest_face(analyzer, rgb)
        crops.append(None if found is None else align_face(rgb, found[0], "arcface", CROP_SIZE)[0])
        embeddings.append(None if found is None else found[1])
    return ConsisIDFaces(crops, embeddings)


@dataclass
class FrameScores:
    """A metric per sampled frame (NaN where no face was found) and ConsisID's video score: the mean over the
    frames with a face, 0.0 when there are none."""

    per_frame: np.ndarray

    @property
    def mean(self) -> float:
        found = self.per_frame[~np.isnan(self.per_frame)]
        return float(found.mean()) if found.size else 0.0


def _clipped_cosines(reference: np.ndarray, frames: list[np.ndarray | None]) -> FrameScores:
    ref = torch.as_tensor(reference, dtype=torch.float32)
    scores = [
        np.nan if f is None else max(0.0, torch.cosine_similarity(ref, torch.as_tensor(f), dim=-1).item())
        for f in frames
    ]
    return FrameScores(np.asarray(scores, dtype=np.float64))


def facesim_arc(reference: ConsisIDFaces, frames: ConsisIDFaces) -> FrameScores:
    """FaceSim-Arc: cosine of the raw ArcFace embeddings of each frame's face and the reference's, clipped at 0."""
    return _clipped_cosines(reference.single()[1], frames.arcface)


def load_curricularface(
    path_or_repo: str | os.PathLike = CONSISID_REPO, subfolder: str | None = "face_encoder"
) -> CurricularFaceIR:
    """CurricularFace IR-101 from the published ``.bin`` (a file, a folder holding it, or a Hub repo)."""
    from genface.eval.weights import weights_file

    return CurricularFaceIR.from_checkpoint(weights_file(path_or_repo, CURRICULARFACE_FILE, subfolder))


@torch.no_grad()
def curricularface_embedding(model: CurricularFaceIR, crop: np.ndarray) -> np.ndarray:
    """Unit CurricularFace embedding of a 224-px RGB crop: resized to the model's input (bilinear, OpenCV),
    scaled to [-1, 1]."""
    size = model.config.input_size
    pixels = torch.from_numpy(cv2.resize(crop, (size, size)).transpose(2, 0, 1).copy())[None]
    pixels = pixels.float().to(model.device).div_(255).sub_(0.5).div_(0.5)
    embedding = model(pixels)[0].cpu().numpy()
    return embedding / np.linalg.norm(embedding)


def facesim_cur(reference: ConsisIDFaces, frames: ConsisIDFaces, model: CurricularFaceIR) -> FrameScores:
    """FaceSim-Cur: cosine of CurricularFace embeddings of each frame's crop and the reference's, clipped at 0."""
    ref = curricularface_embedding(model, reference.single()[0])
    return _clipped_cosines(ref, [None if c is None else curricularface_embedding(model, c) for c in frames.crops])
