"""Detection, keypoints and face choice on real photos with the offline (dlib) engine."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genface.errors import FaceTooSmallError, MultipleFacesError, NoFaceError
from genface.identity import Face, FaceAnalyzer, choose_face
from genface.identity.align import ARCFACE_TEMPLATE


def _plausible(face: Face) -> None:
    x1, y1, x2, y2 = face.bbox
    left_eye, right_eye, nose, left_mouth, right_mouth = face.kps
    margin = 0.15 * face.size
    assert (face.kps[:, 0] > x1 - margin).all() and (face.kps[:, 0] < x2 + margin).all()
    assert (face.kps[:, 1] > y1 - margin).all() and (face.kps[:, 1] < y2 + margin).all()
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1]) + 0.05 * face.size


def test_group_photo_finds_every_face(dlib_analyzer: FaceAnalyzer, group: np.ndarray) -> None:
    faces = dlib_analyzer.detect(group)
    assert len(faces) == 6
    areas = [f.area for f in faces]
    assert areas == sorted(areas, reverse=True)
    for face in faces:
        _plausible(face)
        assert face.landmarks is not None and face.landmarks.shape == (68, 2)


def test_portrait_has_one_face_with_keypoints_on_the_template(dlib_analyzer: FaceAnalyzer, portrait) -> None:
    # The sample portrait is an ArcFace-aligned crop: its eyes, nose and mouth sit on the template.
    faces = dlib_analyzer.detect(portrait)
    assert len(faces) == 1
    error = np.linalg.norm(faces[0].kps - ARCFACE_TEMPLATE, axis=1)
    inter_ocular = np.linalg.norm(ARCFACE_TEMPLATE[1] - ARCFACE_TEMPLATE[0])
    assert (error[:2] < 0.12 * inter_ocular).all(), error  # eyes
    assert (error[2:] < 0.3 * inter_ocular).all(), error  # nose tip and mouth corners


def test_astronaut_keypoints(dlib_analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    # Hand-marked on skimage's astronaut.png: eye centres, nose tip, mouth corners.
    marked = np.array([[203, 102], [246, 104], [225, 127], [200, 139], [247, 141]], dtype=float)
    face = dlib_analyzer.get(astronaut)
    assert np.linalg.norm(face.kps - marked, axis=1).max() < 6


def test_paths_and_exif_rotation(dlib_analyzer: FaceAnalyzer, astronaut: np.ndarray, tmp_path: Path) -> None:
    # Stored rotated with an EXIF tag that says "rotate back": the face is found upright, where it is.
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees counter-clockwise: display rotates it clockwise
    stored = np.ascontiguousarray(np.rot90(astronaut, k=1))
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    face = dlib_analyzer.get(path)
    reference = dlib_analyzer.get(astronaut)
    np.testing.assert_allclose(face.kps, reference.kps, atol=6)


def test_large_image_is_detected_at_full_coordinates(dlib_analyzer: FaceAnalyzer, astronaut) -> None:
    big = np.kron(astronaut, np.ones((4, 4, 1), dtype=np.uint8))  # 2048x2048: shrunk for detection
    face = dlib_analyzer.get(big)
    np.testing.assert_allclose(face.kps / 4, dlib_analyzer.get(astronaut).kps, atol=4)


def test_no_face(dlib_analyzer: FaceAnalyzer) -> None:
    blank = np.full((200, 200, 3), 127, dtype=np.uint8)
    assert dlib_analyzer.detect(blank) == []
    with pytest.raises(NoFaceError, match="No face found"):
        dlib_analyzer.get(blank)


def test_choice_rules(dlib_analyzer: FaceAnalyzer, group: np.ndarray, caplog) -> None:
    faces = dlib_analyzer.detect(group)
    with caplog.at_level(logging.WARNING):
        assert choose_face(faces) is faces[0]
    assert "6 faces found" in caplog.text and "face_index" in caplog.text
    assert choose_face(faces, 3) is faces[3]
    with pytest.raises(MultipleFacesError, match="pass face_index"):
        choose_face(faces, require_single=True)
    with pytest.raises(NoFaceError, match="indexed 0 to 5"):
        choose_face(faces, 6)
    with pytest.raises(FaceTooSmallError, match="at least 200"):
        choose_face(faces, min_face_size=200)


def test_tiny_face_is_refused(dlib_analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    analyzer = FaceAnalyzer(dlib_analyzer.backend, min_face_size=120)  # astronaut's face box is ~90 px
    with pytest.raises(FaceTooSmallError, match="larger or closer photo"):
        analyzer.get(astronaut)


def test_embed_and_align(dlib_analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    face = dlib_analyzer.get(astronaut)
    emb = dlib_analyzer.embed(astronaut, face)
    assert emb.shape == (128,) and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    assert dlib_analyzer.align(astronaut, face).shape == (112, 112, 3)
    assert dlib_analyzer.align(astronaut, face, "ffhq").shape == (512, 512, 3)


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="Unknown face backend"):
        FaceAnalyzer("mediapipe")
