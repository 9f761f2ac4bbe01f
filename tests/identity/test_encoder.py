"""IdentityEncoder and FaceIdentity: encode once, save as safetensors, load back exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from genface.errors import InvalidIdentityFileError, MissingWeightsError
from genface.identity import BiSeNet, ClipVisionEncoder, EvaClipVisionModel, FaceIdentity, FaceParser, IdentityEncoder
from genface.identity.align import template_points
from genface.identity.encoder import shrink_long_side
from tests.tiny_models import planted_face

# head_width 64 as published: a ConsisID-layout file stores no config and is read at that head width.
TINY_CLIP = dict(
    image_size=28, patch_size=7, width=64, layers=9, head_width=64, embed_dim=24, hidden_state_layers=[4, 8]
)


@pytest.fixture(scope="module")
def encoder(dlib_analyzer) -> IdentityEncoder:
    torch.manual_seed(0)
    return IdentityEncoder(dlib_analyzer, FaceParser(BiSeNet()))


def test_encode_real_photo(encoder: IdentityEncoder, astronaut: np.ndarray) -> None:
    identity = encoder.encode(astronaut)
    assert identity.crop.shape == (512, 512, 3) and identity.crop_template == "ffhq"
    assert identity.image_size == (512, 512)
    assert identity.recognition.shape == (128,) and identity.recognition_model == "dlib_resnet_v1"
    assert identity.parsing.shape == (512, 512)
    # The crop matrix maps the face's keypoints onto the template.
    mapped = identity.face.kps @ identity.crop_matrix[:, :2].T + identity.crop_matrix[:, 2]
    assert np.abs(mapped - template_points("ffhq")).max() < 15


def test_save_load_round_trip(encoder: IdentityEncoder, astronaut: np.ndarray, tmp_path: Path) -> None:
    identity = encoder.encode(astronaut)
    path = identity.save(tmp_path / "me.safetensors")
    loaded = FaceIdentity.load(path)
    for name in ("crop", "crop_matrix", "parsing", "recognition"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(identity, name))
    np.testing.assert_array_equal(loaded.face.kps, identity.face.kps)
    np.testing.assert_array_equal(loaded.face.landmarks, identity.face.landmarks)
    assert loaded.face.score == identity.face.score
    assert (loaded.image_size, loaded.crop_template, loaded.recognition_model) == (
        identity.image_size, identity.crop_template, identity.recognition_model,
    )  # fmt: skip
    assert loaded.clip_embeds is None


def test_load_refuses_other_files(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(2, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InvalidIdentityFileError, match="not a saved FaceIdentity"):
        FaceIdentity.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(InvalidIdentityFileError, match="not a safetensors file"):
        FaceIdentity.load(tmp_path / "junk.safetensors")
    with pytest.raises(MissingWeightsError, match="not found"):
        FaceIdentity.load(tmp_path / "none.safetensors")


def test_from_pretrained_consisid_layout(tiny_pack: Path, tmp_path: Path) -> None:
    # ConsisID keeps antelopev2, facexlib's parser and EVA-CLIP together under face_encoder/.
    folder = tmp_path / "repo" / "face_encoder"
    shutil.copytree(tiny_pack, folder)
    torch.save(BiSeNet().state_dict(), folder / "parsing_bisenet.pth")
    clip = EvaClipVisionModel(**TINY_CLIP)
    torch.save({f"visual.{k}": v for k, v in clip.state_dict().items()}, folder / "EVA02_CLIP_L_336_psz14_s6B.pt")
    encoder = IdentityEncoder.from_pretrained(tmp_path / "repo", subfolder="face_encoder")
    assert encoder.clip.model.config.hidden_state_layers == [4, 8]  # read off the weights' shapes
    image, bbox, _ = planted_face()
    identity = encoder.encode(image)
    np.testing.assert_allclose(identity.face.bbox, bbox, atol=1e-3)
    assert identity.recognition_model == "glintr100" and identity.recognition.shape == (512,)
    assert identity.parsing is not None and identity.clip_embeds.shape == (24,)
    # ... and it saves back into the same layout.
    encoder.save_pretrained(tmp_path / "copy")
    names = sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    again = IdentityEncoder.from_pretrained(tmp_path / "copy").encode(image)
    np.testing.assert_array_equal(again.clip_hidden, identity.clip_hidden)


def test_clip_features_and_their_round_trip(dlib_analyzer, astronaut, tmp_path: Path) -> None:
    torch.manual_seed(0)
    parser = FaceParser(BiSeNet())
    clip = ClipVisionEncoder(EvaClipVisionModel(**TINY_CLIP))
    identity = IdentityEncoder(dlib_analyzer, parser, clip).encode(astronaut)
    assert identity.clip_embeds.shape == (24,) and identity.clip_hidden.shape == (2, 17, 64)
    not_face = parser.parse(identity.crop).mask("not_face")[None]
    expected = clip.encode(identity.crop[None], not_face)[0][0]
    np.testing.assert_allclose(identity.clip_embeds, expected, atol=1e-6)  # the parsing map was applied
    loaded = FaceIdentity.load(identity.save(tmp_path / "id.safetensors"))
    np.testing.assert_array_equal(loaded.clip_hidden, identity.clip_hidden)
    assert loaded.clip_model == identity.clip_model


def test_face_index_chooses_the_face(dlib_analyzer, group: np.ndarray) -> None:
    encoder = IdentityEncoder(dlib_analyzer, crop_template="arcface")
    shrunk, scale = shrink_long_side(group, encoder.max_side)  # faces are counted in the photo as encoded
    faces = dlib_analyzer.detect(shrunk)
    identity = encoder.encode(group, face_index=2)
    np.testing.assert_allclose(identity.face.bbox, faces[2].bbox / scale, rtol=1e-6)
    assert identity.crop.shape == (112, 112, 3) and identity.parsing is None
