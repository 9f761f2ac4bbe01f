"""OpenS2V-Eval's FaceSim (PKU-YuanGroup/OpenS2V-Nexus ``eval/get_facesim.py``), beside ConsisID's protocol.

OpenS2V's script finds and crops faces with the same code as ConsisID's (:func:`genface.eval.facesim.consisid_faces`:
the largest face at 320 x 320, the gray-padded retry, the raw ArcFace embedding, the 224-px ``norm_crop`` that
CurricularFace sees at 112). What differs is kept as their script computes it:

- 32 frames sampled evenly (``np.linspace(0, n - 1, 32, dtype=int)``), where ConsisID samples 16;
- ``cur_score`` (FaceSim-Cur, the leaderboard's FaceSim) leaves out the frames whose clipped cosine is 0
  (``if cur_score != 0.0``): a frame that shows somebody else lowers nothing;
- ``arc_score`` (FaceSim-Arc) keeps them: its test ``if arc_scores != 0.0`` compares the list, not the score, and is
  always true;
- frames without a face are left out of both, and a video with none scores 0.0; a reference without a face is an
  error here (the script skips the item);
- the engine is ``FaceAnalysis(root="OpenS2V-Weight/face_extractor")`` with no name, so insightface's default pack
  (``buffalo_l``), and CurricularFace IR-101 from ``glint360k_curricular_face_r101_backbone.bin`` at the
  repository's root.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from genface.eval.facesim import (
    FrameScores,
    consisid_analyzer,
    consisid_faces,
    facesim_arc,
    facesim_cur,
    load_curricularface,
)
from genface.identity.detect import FaceAnalyzer
from genface.media.image import ImageInput
from genface.models.curricularface import CurricularFaceIR

OPENS2V_REPO = "BestWishYsh/OpenS2V-Weight"
#: Frames per video in OpenS2V's protocol.
NUM_FRAMES = 32


def opens2v_analyzer(
    path_or_repo: str | os.PathLike = OPENS2V_REPO,
    subfolder: str | None = "face_extractor",
    *,
    model_name: str = "buffalo_l",
    **kwargs: Any,
) -> FaceAnalyzer:
    """The insightface engine of OpenS2V's FaceSim: ``face_extractor/models/<model_name>``, detecting at 320 x 320.

    Their ``FaceAnalysis(root=...)`` names no pack, so insightface loads its default, ``buffalo_l``; pass
    ``model_name="antelopev2"`` to judge with the pack the generators use.
    """
    return consisid_analyzer(path_or_repo, subfolder, model_name=model_name, **kwargs)


def load_opens2v_curricularface(
    path_or_repo: str | os.PathLike = OPENS2V_REPO, subfolder: str | None = None
) -> CurricularFaceIR:
    """CurricularFace IR-101 from OpenS2V's weights (``glint360k_curricular_face_r101_backbone.bin``)."""
    return load_curricularface(path_or_repo, subfolder)


@dataclass
class OpenS2VFaceSim:
    """Per sampled frame, FaceSim-Arc and FaceSim-Cur (NaN where no face; Cur None without CurricularFace), and
    OpenS2V's video scores from them."""

    arc: FrameScores
    cur: FrameScores | None = None

    @property
    def arc_score(self) -> float:
        """Mean over the frames with a face, zeros included (their ``arc_scores != 0.0`` typo)."""
        return self.arc.mean

    @property
    def cur_score(self) -> float | None:
        """Mean over the frames with a face whose clipped cosine is not 0 (their ``cur_score != 0.0``); 0.0 when
        none is left."""
        if self.cur is None:
            return None
        kept = self.cur.per_frame[~np.isnan(self.cur.per_frame) & (self.cur.per_frame != 0.0)]
        return float(kept.mean()) if kept.size else 0.0


def opens2v_facesim(
    reference: ImageInput | np.ndarray,
    video: str | os.PathLike | np.ndarray,
    analyzer: FaceAnalyzer,
    curricularface: CurricularFaceIR | None = None,
    num_frames: int | None = NUM_FRAMES,
) -> OpenS2VFaceSim:
    """OpenS2V's FaceSim of ``video`` (a file or T x H x W x 3 RGB frames) to the face in ``reference``."""
    ref = consisid_faces(reference, analyzer)
    ref.single()
    frames = consisid_faces(video, analyzer, num_frames)
    cur = None if curricularface is None else facesim_cur(ref, frames, curricularface)
    return OpenS2VFaceSim(facesim_arc(ref, frames), cur)


class OpenS2VJudge:
    """A judge for :func:`genface.eval.runner.evaluate` (``video`` items): OpenS2V's ``opens2v_facesim_cur`` (with
    ``curricularface``) and ``opens2v_facesim_arc`` of the item's video to its reference, and how many of the
    ``num_frames`` sampled frames (their 32) showed a face."""

    def __init__(
        self, analyzer: FaceAnalyzer, curricularface: CurricularFaceIR | None = None, num_frames: int = NUM_FRAMES
    ) -> None:
        self.analyzer, self.curricularface, self.num_frames = analyzer, curricularface, num_frames

    def __call__(self, item: Any) -> dict[str, float | None]:
        reference, video = item.fields["reference"], item.fields["video"]
        scores = opens2v_facesim(reference, video, self.analyzer, self.curricularface, self.num_frames)
        found = int((~np.isnan(scores.arc.per_frame)).sum())
        result = {"opens2v_facesim_arc": scores.arc_score, "opens2v_frames_with_face": found}
        if scores.cur is not None:
            result["opens2v_facesim_cur"] = scores.cur_score
        return result
