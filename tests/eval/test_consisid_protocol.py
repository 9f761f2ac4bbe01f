"""ConsisID's FaceSim-Arc, FaceSim-Cur and per-frame FID equal its ``eval/get_facesim_fid.py`` computation,
written here their way (insightface's FaceAnalysis and norm_crop, OpenCV, PIL), on the same tiny weights."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from genface.eval import (
    consisid_analyzer,
    consisid_faces,
    consisid_frame_fid,
    even_indices,
    facesim_arc,
    facesim_cur,
)
from genface.models.inception import InceptionV3


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    image = np.full((size, size, 3), 20, dtype=np.uint8)
    image[top : top + side, left : left + side] = 255
    return image


def _frames() -> np.ndarray:
    """20 frames of 480 x 480: a face the tiny detector finds at 320 x 320 (moving), one it finds only after the
    gray padding (frame 5), and one without (frame 10)."""
    frames = np.stack([_square(480, 96, 144 + 48 * (i % 3), 48) for i in range(20)])
    frames[5] = _square(480, 16, 16, 72)
    frames[10] = 0
    return frames


@pytest.fixture(scope="module")
def analyzer(tiny_pack):
    return consisid_analyzer(tiny_pack, None, model_name="antelopev2", providers=["CPUExecutionProvider"])


# --- ConsisID's computation, their way ---------------------------------------------------------------------------


def _their_face(app, rgb: np.ndarray):
    def keypoints(image_bgr):
        faces = app.get(image_bgr)
        if faces:
            return sorted(faces, key=lambda x: (x["bbox"][2] - x["bbox"][0]) * (x["bbox"][3] - x["bbox"][1]))[-1]
        return None

    from insightface.utils import face_align

    image_bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    info = keypoints(image_bgr)
    if info is None:
        h, w = image_bgr.shape[:2]
        top, left = int(h * 0.25), int(w * 0.25)
        padded = cv2.copyMakeBorder(image_bgr, top, top, left, left, cv2.BORDER_CONSTANT, value=(128, 128, 128))
        info = keypoints(padded)
        if info is None:
            return None, None
        kps = info["kps"] - np.array((left, top))
    else:
        kps = info["kps"]
    norm_face = face_align.norm_crop(image_bgr, landmark=kps, image_size=224)
    return cv2.cvtColor(norm_face, cv2.COLOR_BGR2RGB), info["embedding"]


def _their_cur(model, img):
    img = cv2.resize(img, (112, 112))
    img = torch.from_numpy(np.transpose(img, (2, 0, 1))).unsqueeze(0).float()
    img.div_(255).sub_(0.5).div_(0.5)
    with torch.no_grad():
        embedding = model(img).numpy()[0]
    return embedding / np.linalg.norm(embedding)


def _their_fid(real, fake):
    def sqrtm(matrix):
        values, vectors = torch.linalg.eigh(matrix)
        return (vectors * torch.sqrt(torch.clamp(values, min=0))).mm(vectors.T)

    real, fake = torch.tensor(real), torch.tensor(fake)
    mu1, sigma1 = real.mean(dim=0), torch.cov(real.T)
    mu2, sigma2 = fake.mean(dim=0), torch.cov(fake.T)
    return (torch.sum((mu1 - mu2) ** 2) + torch.trace(sigma1 + sigma2 - 2 * sqrtm(sigma1.mm(sigma2)))).item()


def _their_activations(model, crop):
    img = Image.fromarray(crop).convert("RGB").resize((299, 299), Image.BILINEAR)  # transforms.Resize on PIL
    img = torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy()).float().div(255)[None]  # ToTensor
    with torch.no_grad():
        activations = model.features(img).numpy()
    return np.repeat(activations, 2, axis=0)


def _cos(a, b) -> float:
    return torch.nn.functional.cosine_similarity(torch.tensor(a), torch.tensor(b), dim=-1).item()


def _consisid_facesim(app, reference, frames, cur_model):
    ref_face, ref_arc = _their_face(app, reference)
    ref_cur = _their_cur(cur_model, ref_face)
    arc, cur = [], []
    for idx in np.linspace(0, len(frames) - 1, 16, dtype=int):
        face, embedding = _their_face(app, frames[idx])
        if face is None:
            continue
        cur.append(max(0.0, _cos(ref_cur, _their_cur(cur_model, face))))
        arc.append(max(0.0, _cos(ref_arc, embedding)))
    return np.mean(arc), np.mean(cur), len(arc)


# --- tests ---------------------------------------------------------------------------------------------------------


def test_frame_sampling_is_consisids():
    assert even_indices(49).tolist() == np.linspace(0, 48, 16, dtype=int).tolist()
    assert even_indices(49)[[0, -1]].tolist() == [0, 48]


def test_detection_at_320_and_gray_padding(analyzer):
    frames = _frames()
    assert analyzer.detect(frames[0])  # the 64-px face fills a stride-32 cell only at 320 x 320
    assert not analyzer.detect(frames[5])
    faces = consisid_faces(frames[5], analyzer)
    assert faces.crops[0].shape == (224, 224, 3)
    assert not consisid_faces(frames[10], analyzer).found.any()


def test_facesim_arc_and_cur_equal_consisids_script(analyzer, their_app, curricularface):
    frames = _frames()
    reference = frames[1]
    ref, got = consisid_faces(reference, analyzer), consisid_faces(frames, analyzer)
    arc, cur = facesim_arc(ref, got), facesim_cur(ref, got, curricularface)
    their_arc, their_cur, found = _consisid_facesim(their_app, reference, frames, curricularface)
    sampled = even_indices(len(frames))
    assert found == int(got.found.sum()) == 15  # frame 10 has no face; frame 5 is found after padding
    assert 5 in sampled and got.found[list(sampled).index(5)]
    assert np.isnan(arc.per_frame).sum() == 1
    assert arc.mean == pytest.approx(their_arc, abs=1e-6)
    assert cur.mean == pytest.approx(their_cur, abs=1e-6)
    assert 0 < cur.mean < 1 and 0 < arc.mean <= 1


def test_consisid_frame_fid_equals_consisids_script(analyzer):
    torch.manual_seed(0)
    inception = InceptionV3().eval()
    frames = _frames()[[0, 5, 10, 13]]
    reference = frames[1]
    ref, got = consisid_faces(reference, analyzer), consisid_faces(frames, analyzer, num_frames=None)
    fid = consisid_frame_fid(ref, got, inception)
    # their sampling of 16 from 4 frames repeats frames; the mean over distinct frames is compared here
    their = [
        _their_fid(_their_activations(inception, got.crops[1]), _their_activations(inception, c))
        for c in got.crops
        if c is not None
    ]
    np.testing.assert_allclose(fid.per_frame[got.found], their, rtol=1e-5)
    assert fid.per_frame[1] == 0.0 and fid.per_frame[0] > 0


def test_no_face_in_every_frame_scores_zero(analyzer, curricularface):
    frames = _frames()
    ref, got = consisid_faces(frames[0], analyzer), consisid_faces(np.zeros_like(frames[:3]), analyzer)
    assert facesim_arc(ref, got).mean == 0.0 and facesim_cur(ref, got, curricularface).mean == 0.0
