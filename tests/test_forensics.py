"""Face-forgery scores on the shared identity stack: FSFM's preprocessing written its way, and the whole path on
real offline faces (sample photos, a video made of them) with a tiny random FSFM model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genface.errors import FaceTooSmallError, InvalidImageError, InvalidMediaError, NoFaceError
from genface.forensics import ForgeryDetector, square_box, tiny_fsfm
from genface.identity import FaceAnalyzer
from genface.media import write_video

MEAN, STD = [0.55, 0.42, 0.37], [0.28, 0.24, 0.23]


@pytest.fixture(scope="module")
def detector() -> ForgeryDetector:
    model = tiny_fsfm(image_mean=MEAN, image_std=STD)
    with torch.no_grad():  # a head that spreads the probabilities, so frames differ visibly
        model.head.weight.normal_(0, 0.5)
    return ForgeryDetector(model, FaceAnalyzer("dlib"))


def published_crop(image: np.ndarray, left: int, top: int, right: int, bottom: int) -> torch.Tensor:
    """FSFM's finetune preprocessing: tools/util.py get_boundingbox (face_scale 1.3) and extract_and_save_face,
    then util/datasets.py build_transform at test time: Resize((224, 224), BICUBIC) on the PIL image, ToTensor,
    Normalize(pretrain mean, std) (torchvision's steps written with PIL and torch, as torchvision runs them)."""
    height, width = image.shape[:2]
    size_bb = int(max(right - left, bottom - top) * 1.3)
    center_x, center_y = (left + right) // 2, (top + bottom) // 2
    x1 = max(int(center_x - size_bb // 2), 0)
    y1 = max(int(center_y - size_bb // 2), 0)
    size_bb = min(width - x1, size_bb)
    size_bb = min(height - y1, size_bb)
    cropped_face = image[y1 : y1 + size_bb, x1 : x1 + size_bb]
    img = Image.fromarray(cropped_face).resize((224, 224), Image.BICUBIC)
    tensor = torch.from_numpy(np.array(img)).permute(2, 0, 1).float().div(255)
    return (tensor - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def test_crops_match_the_published_preprocessing(detector, astronaut) -> None:
    face = detector.analyzer.detect(astronaut)[0]
    crop, (x, y, size) = detector.crop(astronaut, face)
    ref = published_crop(astronaut, *(int(round(v)) for v in face.bbox))

    mean, std = torch.tensor(MEAN)[:, None, None], torch.tensor(STD)[:, None, None]
    ours = (torch.from_numpy(crop.copy()).permute(2, 0, 1).float() / 255 - mean) / std
    torch.testing.assert_close(ours, ref)
    assert size == int(max(face.width, face.height) * 1.3)  # the 30% margin: 1.3 times the longer side
    # near an edge the square moves inside at the top/left and is cut at the bottom/right, as published
    assert square_box([0, 0, 100, 100], 1000, 1000) == (0, 0, 130)
    assert square_box([900, 900, 1000, 1000], 1000, 1000) == (885, 885, 115)


def test_every_face_of_a_photo_gets_a_probability(detector, group, astronaut) -> None:
    result = detector.score_image(group)
    assert len(result.faces) == len(detector.analyzer.detect(group)) >= 4
    probs = [f.probability for f in result.faces]
    assert all(0.0 <= p <= 1.0 for p in probs) and result.probability == max(probs)
    crops = np.stack([detector.crop(group, face)[0] for face in detector.analyzer.detect(group)])
    np.testing.assert_allclose(probs, detector.probabilities(crops), rtol=1e-6)

    single = detector.score(astronaut).to_dict()
    assert single["kind"] == "image" and len(single["faces"]) == 1
    json.dumps(single)  # what `genface verify --json` prints


def test_a_video_is_scored_on_one_tracked_face_with_the_frames_that_drove_it(detector, astronaut, tmp_path) -> None:
    # 12 frames: the face drifts right; frames 8-11 show no face
    frames = [np.roll(astronaut, 8 * i, axis=1) for i in range(8)] + [np.full_like(astronaut, 90)] * 4
    path = write_video(tmp_path / "clip.mp4", np.stack(frames), fps=4)

    result = detector.score_video(path, num_frames=6, top_k=2)

    sampled = np.linspace(0, 11, 6, dtype=int).tolist()  # [0, 2, 4, 6, 8, 11]: FSFM's even spacing
    assert [f.index for f in result.frames] == [i for i in sampled if i < 8]
    assert result.lost == [8, 11]
    assert result.frames[1].time == pytest.approx(0.5)
    probs = [f.probability for f in result.frames]
    assert result.probability == pytest.approx(np.mean(probs))  # the published video score: the frames' mean
    assert result.driving == [result.frames[i].index for i in np.argsort(probs)[::-1][:2]]
    assert len(set(np.round(probs, 6))) > 1  # each frame's own crop was scored
    assert result.frames[3].box[0] > result.frames[0].box[0] + 30  # the box followed the face
    assert json.loads(json.dumps(detector.score(path).to_dict()))["kind"] == "video"


def test_bad_inputs_get_clear_errors(detector, astronaut, tmp_path) -> None:
    with pytest.raises(NoFaceError, match="No face"):
        detector.score_image(np.full((256, 256, 3), 127, dtype=np.uint8))
    strict = ForgeryDetector(detector.model, FaceAnalyzer("dlib", min_face_size=1000))
    with pytest.raises(FaceTooSmallError, match="at least 1000"):
        strict.score_image(astronaut)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(InvalidImageError):
        detector.score(tmp_path / "broken.jpg")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(InvalidMediaError):
        detector.score(tmp_path / "broken.mp4")
    blank = write_video(tmp_path / "blank.mp4", np.full((3, 64, 64, 3), 90, dtype=np.uint8))
    with pytest.raises(NoFaceError):
        detector.score(blank)


def test_a_backbone_without_classifier_is_refused(tmp_path: Path) -> None:
    from genface.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="fine-tuned checkpoint"):
        ForgeryDetector(tiny_fsfm(head_type="none"))


def test_from_pretrained_reads_a_folder_and_names_the_published_checkpoints(detector, tmp_path) -> None:
    detector.model.save_pretrained(tmp_path / "fsfm")
    loaded = ForgeryDetector.from_pretrained(tmp_path / "fsfm", analyzer=detector.analyzer)
    assert list(loaded.model.config.image_mean) == MEAN
    with pytest.raises(ValueError, match="deepfake"):
        ForgeryDetector.from_pretrained(task="spoofing")
