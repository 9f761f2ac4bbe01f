"""The identity front half against ConsisID's own preprocessing (diffusers' ``consisid_utils``)."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genface.identity import ClipVisionEncoder, EvaClipVisionModel, IdentityEncoder

TINY_CLIP = dict(image_size=28, patch_size=7, width=32, layers=5, head_width=8, embed_dim=24, hidden_state_layers=[4])


@pytest.fixture(scope="module")
def consisid_utils() -> types.ModuleType:
    """diffusers' ``consisid_utils``, imported with its model factories stubbed (facexlib and consisid_eva_clip
    need torchvision at import); its plain functions and consisid_eva_clip's constants are the real ones. It stays
    imported with its stubs: nothing else imports it, as it cannot load for real without torchvision."""
    pytest.importorskip("insightface")  # imported by consisid_utils itself
    clip_spec = importlib.util.find_spec("consisid_eva_clip")
    if clip_spec is None:
        pytest.skip("reference package consisid-eva-clip not installed (tests/reference-requirements.txt)")
    names = ("consisid_eva_clip", "facexlib", "facexlib.parsing", "facexlib.utils")
    stubs = {name: types.ModuleType(name) for name in (*names, "facexlib.utils.face_restoration_helper")}
    for name, module in stubs.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    constants_path = Path(next(iter(clip_spec.submodule_search_locations))) / "constants.py"
    constants_spec = importlib.util.spec_from_file_location("consisid_eva_clip.constants", constants_path)
    stubs["consisid_eva_clip.constants"] = importlib.util.module_from_spec(constants_spec)
    constants_spec.loader.exec_module(stubs["consisid_eva_clip.constants"])
    stubs["consisid_eva_clip"].create_model_and_transforms = None
    stubs["facexlib.parsing"].init_parsing_model = None
    stubs["facexlib.utils.face_restoration_helper"].FaceRestoreHelper = None
    with pytest.MonkeyPatch.context() as patch:
        for name, module in stubs.items():
            patch.setitem(sys.modules, name, module)
        return importlib.import_module("diffusers.pipelines.consisid.consisid_utils")


def test_large_photo_is_shrunk_to_1024_first(consisid_utils, dlib_analyzer, astronaut: np.ndarray) -> None:
    # process_face_embeddings_infer shrinks the photo (long side 1024) before detection, alignment and ArcFace.
    wide = np.pad(astronaut, ((0, 0), (0, 188), (0, 0)), mode="edge")
    photo = cv2.resize(wide, (1540, 1126), interpolation=cv2.INTER_CUBIC)
    shrunk = consisid_utils.resize_numpy_image_long(photo, 1024)
    assert shrunk.shape[:2] == (748, 1024)
    ours = IdentityEncoder(dlib_analyzer).encode(photo)
    expected = IdentityEncoder(dlib_analyzer, max_side=None).encode(shrunk)
    np.testing.assert_array_equal(ours.crop, expected.crop)
    np.testing.assert_array_equal(ours.recognition, expected.recognition)
    # The identity still describes the photo it was given: its size, and coordinates mapping into the crop.
    assert ours.image_size == (1126, 1540)
    np.testing.assert_allclose(ours.face.kps * (1024 / 1540), expected.face.kps, rtol=1e-5)
    in_crop = ours.face.kps @ ours.crop_matrix[:, :2].T + ours.crop_matrix[:, 2]
    np.testing.assert_allclose(in_crop, expected.face.kps @ expected.crop_matrix[:, :2].T + expected.crop_matrix[:, 2],
                               atol=1e-3)  # fmt: skip


def test_clip_input_is_consisid_s(consisid_utils) -> None:
    rng = np.random.default_rng(0)
    crops = rng.choice(np.array([0, 255], np.uint8), (2, 8, 8, 3)).repeat(8, axis=1).repeat(8, axis=2)  # hard edges
    not_face = np.zeros((2, 64, 64), dtype=bool)
    not_face[:, :, :12] = True
    encoder = ClipVisionEncoder(EvaClipVisionModel(**TINY_CLIP))
    # process_face_embeddings: facexlib's BGR crop to a tensor, non-face white, the rest gray, then
    # torchvision's resize(BICUBIC) and normalize. On a float tensor torchvision's resize is
    # F.interpolate(antialias=True, align_corners=False) with no clamp (it clamps uint8 input only).
    bgr = [np.ascontiguousarray(crop[..., ::-1]) for crop in crops]
    pixels = torch.stack(consisid_utils.img2tensor(bgr, bgr2rgb=True)) / 255.0
    bg = torch.from_numpy(not_face)[:, None]
    face = torch.where(bg, torch.ones_like(pixels), consisid_utils.to_gray(pixels))
    resized = F.interpolate(face, (28, 28), mode="bicubic", align_corners=False, antialias=True)
    assert resized.max() > 1 and resized.min() < 0  # the case that tells clamping apart
    mean = torch.tensor(consisid_utils.OPENAI_DATASET_MEAN)[:, None, None]
    std = torch.tensor(consisid_utils.OPENAI_DATASET_STD)[:, None, None]
    torch.testing.assert_close(encoder.preprocess(crops, not_face), (resized - mean) / std, atol=1e-6, rtol=0)
