"""FaceSim on real photos: the same face scores high, another person lower; videos give a curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genface.errors import MissingWeightsError
from genface.identity import IdentityEncoder, face_similarity
from genface.media import write_video


def test_same_face_under_flips_and_crops_beats_another_person(dlib_analyzer, astronaut, portrait) -> None:
    variants = [astronaut[:, ::-1], astronaut[20:400, 60:420], np.pad(astronaut, ((40, 0), (0, 60), (0, 0)))]
    same = face_similarity(astronaut, variants, analyzer=dlib_analyzer)
    other = face_similarity(astronaut, portrait, analyzer=dlib_analyzer)
    assert same.min > 0.97
    assert other.mean < dlib_analyzer.recognizer.match_threshold < same.min
    assert same.model == "dlib_resnet_v1"


def test_group_members_are_different_people(dlib_analyzer, group) -> None:
    faces = dlib_analyzer.detect(group)
    embeddings = np.stack([dlib_analyzer.embed(group, f) for f in faces])
    cross = embeddings @ embeddings.T
    off_diagonal = cross[~np.eye(len(faces), dtype=bool)]
    assert off_diagonal.max() < dlib_analyzer.recognizer.match_threshold


def test_video_per_frame_curve_with_missing_faces(dlib_analyzer, astronaut, tmp_path: Path) -> None:
    blank = np.full_like(astronaut, 90)
    frames = np.stack([astronaut, blank, astronaut[:, ::-1], blank])
    path = write_video(tmp_path / "clip.mp4", frames, fps=4)
    result = face_similarity(astronaut, path, analyzer=dlib_analyzer)
    assert len(result.per_frame) == 4
    assert result.missing_frames == [1, 3]
    assert result.min > 0.95 and result.mean >= result.min
    summary = result.to_dict()
    assert summary["per_frame"][1] is None and summary["frames"] == 4


def test_reference_as_identity_or_embedding(dlib_analyzer, astronaut) -> None:
    identity = IdentityEncoder(dlib_analyzer).encode(astronaut)
    by_identity = face_similarity(identity, astronaut[:, ::-1], analyzer=dlib_analyzer)
    by_embedding = face_similarity(identity.recognition, astronaut[:, ::-1], analyzer=dlib_analyzer)
    assert by_identity.mean == pytest.approx(by_embedding.mean, abs=1e-6)
    with pytest.raises(ValueError, match="dims"):
        face_similarity(np.ones(512, np.float32), astronaut, analyzer=dlib_analyzer)


def test_embeddings_of_different_models_are_not_compared(dlib_analyzer, astronaut, tiny_pack) -> None:
    from genface.identity import FaceAnalyzer

    identity = IdentityEncoder(dlib_analyzer).encode(astronaut)
    with pytest.raises(ValueError, match="different models cannot be compared"):
        face_similarity(identity, astronaut, analyzer=FaceAnalyzer("insightface", model_root=tiny_pack))


def test_no_face_in_reference(dlib_analyzer, astronaut) -> None:
    from genface.errors import NoFaceError

    with pytest.raises(NoFaceError, match="reference"):
        face_similarity(np.zeros((100, 100, 3), np.uint8), astronaut, analyzer=dlib_analyzer)


def test_recognizer_required(tiny_pack: Path, tmp_path: Path) -> None:
    from genface.identity import FaceAnalyzer

    detector_only = tmp_path / "pack"
    detector_only.mkdir()
    (detector_only / "scrfd_10g_bnkps.onnx").symlink_to(tiny_pack / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx")
    analyzer = FaceAnalyzer("insightface", model_root=detector_only)
    with pytest.raises(MissingWeightsError, match="recognition"):
        face_similarity(np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8), analyzer=analyzer)
