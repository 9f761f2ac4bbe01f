"""OpenS2V-Eval's FaceSim equals its ``eval/get_facesim.py`` computation, written here their way (insightface's
FaceAnalysis and norm_crop, OpenCV), on the same tiny weights; its quirks are kept and named."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from insightface.utils import face_align

from genface.errors import NoFaceError
from genface.eval import FrameScores, OpenS2VFaceSim, OpenS2VJudge, even_indices, opens2v_analyzer, opens2v_facesim
from genface.eval.runner import Item
from tests.eval.test_consisid_protocol import _square


def _frames() -> np.ndarray:
    """40 frames of 480 x 480 with a face the tiny detector finds at 320 x 320 (moving), one it finds only after
    the gray padding (frame 5) and two without (frames 10 and 30)."""
    frames = np.stack([_square(480, 96, 144 + 48 * (i % 3), 48) for i in range(40)])
    frames[5] = _square(480, 16, 16, 72)
    frames[[10, 30]] = 0
    return frames


@pytest.fixture(scope="module")
def analyzer(tiny_pack):
    return opens2v_analyzer(tiny_pack, None, model_name="antelopev2", providers=["CPUExecutionProvider"])


# --- OpenS2V's computation, their way (eval/get_facesim.py: process_image, inference, process_video) -------------


def pad_np_bgr_image(np_image, scale=1.25):
    pad_scale = scale - 1.0
    h, w = np_image.shape[:2]
    top = bottom = int(h * pad_scale)
    left = right = int(w * pad_scale)
    padded = cv2.copyMakeBorder(np_image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    return padded, (left, top)


def get_face_keypoints(face_model, image_bgr):
    face_info = face_model.get(image_bgr)
    if len(face_info) > 0:
        return sorted(face_info, key=lambda x: (x["bbox"][2] - x["bbox"][0]) * (x["bbox"][3] - x["bbox"][1]))[-1]
    return None


def inference(face_model, img):
    img = cv2.resize(img, (112, 112))
    img = torch.from_numpy(np.transpose(img, (2, 0, 1))).unsqueeze(0).float()
    img.div_(255).sub_(0.5).div_(0.5)
    with torch.no_grad():
        embedding = face_model(img).detach().cpu().numpy()[0]
    return embedding / np.linalg.norm(embedding)


def process_image(face_model, np_faceid_image):
    image_bgr = cv2.cvtColor(np_faceid_image, cv2.COLOR_RGB2BGR)
    face_info = get_face_keypoints(face_model, image_bgr)
    if face_info is None:
        padded_image, sub_coord = pad_np_bgr_image(image_bgr)
        face_info = get_face_keypoints(face_model, padded_image)
        if face_info is None:
            return None, None
        face_kps = face_info["kps"]
        face_kps -= np.array(sub_coord)
    else:
        face_kps = face_info["kps"]
    norm_face = face_align.norm_crop(image_bgr, landmark=face_kps, image_size=224)
    return cv2.cvtColor(norm_face, cv2.COLOR_BGR2RGB), face_info["embedding"]


def cosine(a, b):
    return torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b), dim=-1).numpy()


def process_video(frames, face_arc_model, face_cur_model, arcface_image_embedding, cur_image_embedding,
                  num_frames=32):  # fmt: skip
    cur_scores, arc_scores = [], []
    for idx in np.linspace(0, len(frames) - 1, num_frames, dtype=int):
        align_face_frame, arcface_frame_embedding = process_image(face_arc_model, frames[int(idx)])
        if align_face_frame is None:
            continue
        cur_embedding_frame = inference(face_cur_model, align_face_frame)
        cur_score = max(0.0, cosine(cur_image_embedding, cur_embedding_frame).item())
        arc_score = max(0.0, cosine(arcface_image_embedding, arcface_frame_embedding).item())
        if cur_score != 0.0:
            cur_scores.append(cur_score)
        if arc_scores != 0.0:
            arc_scores.append(arc_score)
    return (np.mean(cur_scores) if cur_scores else 0.0), (np.mean(arc_scores) if arc_scores else 0.0)


def their_facesim(app, cur_model, reference, frames):
    align_face_image, arcface_image_embedding = process_image(app, reference)
    return process_video(frames, app, cur_model, arcface_image_embedding, inference(cur_model, align_face_image))


# -----------------------------------------------------------------------------------------------------------------


def test_32_frames_faces_as_their_script_and_their_scores(analyzer, their_app, curricularface) -> None:
    frames = _frames()
    ours = opens2v_facesim(frames[1], frames, analyzer, curricularface)
    their_cur, their_arc = their_facesim(their_app, curricularface, frames[1], frames)
    assert len(ours.arc.per_frame) == 32 and list(even_indices(40, 32)) == list(np.linspace(0, 39, 32, dtype=int))
    sampled = list(even_indices(40, 32))
    assert 5 in sampled and 10 in sampled and 30 in sampled
    assert np.isnan(ours.arc.per_frame).sum() == 2  # frames 10 and 30; frame 5 found after the gray padding
    assert ours.cur_score == pytest.approx(their_cur, abs=1e-6)
    assert ours.arc_score == pytest.approx(their_arc, abs=1e-6)
    assert 0 < ours.cur_score < 1 and 0 < ours.arc_score <= 1


def test_the_named_quirks_cur_leaves_out_zero_frames_arc_keeps_them() -> None:
    """Clipped cosines of 0 (another person) are left out of cur_score and kept in arc_score, as their script's
    ``cur_score != 0.0`` and ``arc_scores != 0.0`` (a list compared to a number: always true) make them."""
    scores = np.array([0.8, 0.0, np.nan, 0.6, 0.0])
    result = OpenS2VFaceSim(arc=FrameScores(scores), cur=FrameScores(scores))
    assert result.cur_score == pytest.approx(0.7)  # (0.8 + 0.6) / 2
    assert result.arc_score == pytest.approx(1.4 / 4)  # zeros count, the frame without a face does not
    nobody = OpenS2VFaceSim(arc=FrameScores(np.array([0.0, np.nan])), cur=FrameScores(np.array([0.0, np.nan])))
    assert nobody.cur_score == 0.0 and nobody.arc_score == 0.0
    assert OpenS2VFaceSim(arc=FrameScores(scores)).cur_score is None  # without CurricularFace


def test_the_judge_scores_items_and_refuses_a_reference_without_a_face(analyzer, curricularface, tmp_path) -> None:
    frames = _frames()
    cv2.imwrite(str(tmp_path / "ref.png"), frames[1])
    item = Item("a", {"video": frames, "reference": str(tmp_path / "ref.png")})
    scores = OpenS2VJudge(analyzer, curricularface)(item)
    assert scores["opens2v_frames_with_face"] == 30 and 0 < scores["opens2v_facesim_cur"] < 1
    with pytest.raises(NoFaceError):
        opens2v_facesim(np.zeros((64, 64, 3), np.uint8), frames, analyzer)
