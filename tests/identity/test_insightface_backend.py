"""insightface engine on a tiny model pack with antelopev2 file names: real loading, routing, decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genface.errors import MissingWeightsError, OfflineError
from genface.identity import ArcFaceRecognizer, FaceAnalyzer
from tests.tiny_models import planted_face


def test_detects_the_planted_face_exactly(tiny_pack: Path) -> None:
    analyzer = FaceAnalyzer("insightface", model_root=tiny_pack)
    image, bbox, kps = planted_face()
    faces = analyzer.detect(image)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].bbox, bbox, atol=1e-3)
    np.testing.assert_allclose(faces[0].kps, kps, atol=1e-3)
    assert faces[0].score > 0.99
    assert analyzer.detect(np.zeros((640, 640, 3), dtype=np.uint8)) == []


def test_coordinates_follow_image_scale(tiny_pack: Path) -> None:
    analyzer = FaceAnalyzer("insightface", model_root=tiny_pack)
    image, bbox, kps = planted_face()
    big = np.kron(image, np.ones((2, 2, 1), dtype=np.uint8))  # 1280x1280: detector input is 640
    face = analyzer.get(big)
    np.testing.assert_allclose(face.bbox, bbox * 2, atol=1e-2)
    np.testing.assert_allclose(face.kps, kps * 2, atol=1e-2)


def test_embedding_matches_insightface_face_analysis(tiny_pack: Path) -> None:
    import insightface

    analyzer = FaceAnalyzer("insightface", model_root=tiny_pack)
    image, _, _ = planted_face(3, 9)
    ours = analyzer.embed(image, analyzer.get(image))
    app = insightface.app.FaceAnalysis(
        name=str(tiny_pack / "models" / "antelopev2"), providers=["CPUExecutionProvider"]
    )
    app.prepare(ctx_id=-1, det_size=(640, 640))
    reference = app.get(np.ascontiguousarray(image[..., ::-1]))
    assert len(reference) == 1
    np.testing.assert_allclose(ours, reference[0].normed_embedding, atol=1e-6)
    assert analyzer.recognizer.name == "glintr100" and analyzer.recognizer.dim == 512


def test_identity_keeps_the_raw_arcface_embedding_consisid_uses(tiny_pack: Path) -> None:
    # ConsisID conditions on insightface's un-normalised `face.embedding`.
    import insightface

    from genface.identity import IdentityEncoder

    image, _, _ = planted_face(4, 6)
    identity = IdentityEncoder(FaceAnalyzer("insightface", model_root=tiny_pack)).encode(image)
    app = insightface.app.FaceAnalysis(
        name=str(tiny_pack / "models" / "antelopev2"), providers=["CPUExecutionProvider"]
    )
    app.prepare(ctx_id=-1, det_size=(640, 640))
    raw = app.get(np.ascontiguousarray(image[..., ::-1]))[0].embedding
    np.testing.assert_allclose(identity.recognition * identity.recognition_norm, raw, rtol=1e-5, atol=1e-6)


def test_recognizer_from_onnx_file(tiny_pack: Path) -> None:
    recognizer = ArcFaceRecognizer.from_onnx(tiny_pack / "models" / "antelopev2" / "glintr100.onnx")
    image, _, _ = planted_face()
    face = FaceAnalyzer("insightface", model_root=tiny_pack).get(image)
    emb = recognizer.embed(image, face)
    assert emb.shape == (512,) and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="not a recognition model"):
        ArcFaceRecognizer.from_onnx(tiny_pack / "models" / "antelopev2" / "scrfd_10g_bnkps.onnx")


@pytest.mark.parametrize("layout", ["root", "models_dir", "pack_dir"])
def test_weight_folder_layouts(tiny_pack: Path, layout: str) -> None:
    folder = {"root": tiny_pack, "models_dir": tiny_pack / "models", "pack_dir": tiny_pack / "models" / "antelopev2"}
    analyzer = FaceAnalyzer("insightface", model_root=folder[layout])
    assert len(analyzer.detect(planted_face()[0])) == 1


def test_auto_prefers_insightface_when_weights_exist(tiny_pack: Path, monkeypatch) -> None:
    monkeypatch.setenv("GENFACE_INSIGHTFACE_ROOT", str(tiny_pack))
    assert FaceAnalyzer("auto").backend.name == "insightface"
    monkeypatch.setenv("GENFACE_INSIGHTFACE_ROOT", str(tiny_pack / "missing"))
    assert FaceAnalyzer("auto").backend.name == "dlib"


def test_missing_weights_say_where_they_were_looked_for(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match=r"looked in: .*models/antelopev2"):
        FaceAnalyzer("insightface", model_root=tmp_path)
    with pytest.raises(MissingWeightsError):
        FaceAnalyzer("auto", model_root=tmp_path)  # an explicit folder is never silently ignored


def test_pack_without_detector(tiny_pack: Path, tmp_path: Path) -> None:
    (tmp_path / "glintr100.onnx").symlink_to(tiny_pack / "models" / "antelopev2" / "glintr100.onnx")
    with pytest.raises(MissingWeightsError, match="no face-detection ONNX model"):
        FaceAnalyzer("insightface", model_root=tmp_path)


def test_from_pretrained_local_folder_with_subfolder(tiny_pack: Path) -> None:
    repo = tiny_pack.parent
    analyzer = FaceAnalyzer.from_pretrained(repo, subfolder=tiny_pack.name)
    assert analyzer.backend.name == "insightface"
    with pytest.raises(MissingWeightsError, match="subfolder"):
        FaceAnalyzer.from_pretrained(repo, subfolder="no_such_folder")


def test_hub_offline_says_how_to_use_a_local_folder(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OfflineError, match=r"hf download BestWishYsh/ConsisID-preview .*--local-dir DIR"):
        FaceAnalyzer.from_pretrained("BestWishYsh/ConsisID-preview", subfolder="face_encoder")


def test_not_a_repo_id() -> None:
    with pytest.raises(MissingWeightsError, match="does not exist.*owner/name"):
        FaceAnalyzer.from_pretrained("./no/such/folder")
