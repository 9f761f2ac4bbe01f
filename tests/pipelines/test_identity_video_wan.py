"""Stand-In and VACE on diffusers' Wan, as genface's identity-video pipelines: the references their authors'
preprocessors make, VACE equal to diffusers' WanVACEPipeline on the prepared reference, the call shape (marked mp4,
FaceSim), bad input refused before model work, loading by name and in the published layouts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from diffusers import WanPipeline, WanVACEPipeline

from genface.errors import InvalidArgumentError, MultipleFacesError, NoFaceError
from genface.identity import FaceIdentity
from genface.pipelines import StandInPipeline, VacePipeline, default_size, load_pipeline
from genface.pipelines.identity_video.stand_in import stand_in_reference
from genface.pipelines.identity_video.tiny_stand_in import tiny_pipeline as tiny_stand_in_pipeline
from genface.pipelines.identity_video.tiny_vace import tiny_pipeline as tiny_vace_pipeline
from genface.pipelines.identity_video.tiny_wan import TINY_CALL
from genface.pipelines.identity_video.vace import vace_reference
from genface.provenance import verify

FAST = dict(num_inference_steps=2, max_sequence_length=16, **TINY_CALL)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def stand_in(dlib_analyzer) -> StandInPipeline:
    pipe = tiny_stand_in_pipeline(dlib_analyzer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def vace(dlib_analyzer) -> VacePipeline:
    pipe = tiny_vace_pipeline(dlib_analyzer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# -- Stand-In's preprocessor, restated from WeChatCV/Stand-In preprocessor/image_input_preprocessor.py
# (FaceProcessor.process after its face detection, given the same faces; facexlib's BiSeNet as the same network). --


def _their_pad_to_square(img, pad_color=255):
    h, w, _ = img.shape
    if h == w:
        return img
    if h > w:
        pad_size = (h - w) // 2
        return cv2.copyMakeBorder(img, 0, 0, pad_size, h - w - pad_size, cv2.BORDER_CONSTANT, value=[pad_color] * 3)
    pad_size = (w - h) // 2
    return cv2.copyMakeBorder(img, pad_size, w - h - pad_size, 0, 0, cv2.BORDER_CONSTANT, value=[pad_color] * 3)


def their_process(rgb, faces, parsing_model, resize_to=512, border_thresh=10, face_crop_scale=1.5):
    frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    h, w, _ = frame.shape
    largest_face = max(faces, key=lambda f: (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))
    x1, y1, x2, y2 = map(int, largest_face.bbox)
    if x1 <= border_thresh and y1 <= border_thresh and x2 >= w - border_thresh and y2 >= h - border_thresh:
        image_to_process = _their_pad_to_square(frame, pad_color=255)
    else:
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        side = int(max(x2 - x1, y2 - y1) * face_crop_scale)
        half = side // 2
        left, top, right, bottom = max(cx - half, 0), max(cy - half, 0), min(cx + half, w), min(cy + half, h)
        image_to_process = _their_pad_to_square(frame[top:bottom, left:right], pad_color=255)
    image_resized = cv2.resize(image_to_process, (resize_to, resize_to), interpolation=cv2.INTER_AREA)
    face_tensor = torch.from_numpy(
        np.transpose(cv2.cvtColor(image_resized, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0, (2, 0, 1))
    ).unsqueeze(0)
    with torch.no_grad():
        normalized_face = (face_tensor - 0.5) / 0.5  # torchvision's normalize(..., [0.5] * 3, [0.5] * 3)
        parsing_mask = parsing_model(normalized_face).argmax(dim=1, keepdim=True)  # facexlib's [0]: the main head
    background_mask_np = (parsing_mask.squeeze().cpu().numpy() == 0).astype(np.uint8)
    mask_3channel = cv2.cvtColor(background_mask_np * 255, cv2.COLOR_GRAY2BGR)
    result_img_bgr = np.where(mask_3channel == 255, np.ones_like(image_resized) * 255, image_resized)
    return cv2.cvtColor(result_img_bgr, cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("case", ["photo", "tall", "face fills the photo"])
def test_the_reference_is_stand_ins_preprocessors(stand_in, astronaut, case) -> None:
    """Given the same face box and parser weights, the shared stack's reference is Stand-In's, pixel for pixel:
    the 1.5x square around the face (clipped, padded white), the whole photo padded when the face reaches every
    border, area resizing to 512, the parser's background painted white."""
    image = {"photo": astronaut, "tall": astronaut[:, 100:400], "face fills the photo": astronaut[70:172, 170:270]}[
        case
    ]
    faces = stand_in.identity_encoder.analyzer.detect(image) if case != "face fills the photo" else []
    face = faces[0] if faces else SimpleNamespace(bbox=np.array([3.7, 2.2, 97.9, 99.5], np.float32))
    ours = stand_in_reference(image, face.bbox, stand_in.face_parser)
    theirs = their_process(image, [face], stand_in.face_parser.model)
    assert ours.shape == (512, 512, 3)
    assert (ours == 255).all(axis=-1).mean() > 0.001  # some background was painted white (a random parser)
    np.testing.assert_array_equal(ours, theirs)


def test_vace_is_diffusers_on_the_prepared_reference(vace, astronaut) -> None:
    """genface's VACE: the face cut out as VACE's face annotator does, then diffusers' WanVACEPipeline itself."""
    ours = vace("a person", face_image=astronaut, generator=_generator(), output_type="np", measure=False, **FAST)
    (face,) = vace.identity_encoder.analyzer.detect(astronaut)
    x_min, y_min, x_max, y_max = face.bbox.tolist()  # VACE's FaceAnnotator crop
    np.testing.assert_array_equal(
        np.asarray(ours.reference), astronaut[int(y_min) : int(y_max) + 1, int(x_min) : int(x_max) + 1]
    )
    diffusers = WanVACEPipeline(**vace.components)
    diffusers.set_progress_bar_config(disable=True)
    theirs = diffusers("a person", reference_images=[ours.reference], generator=_generator(), output_type="np", **FAST)
    np.testing.assert_array_equal(ours.frames, theirs.frames)
    plain = vace("a person", generator=_generator(), output_type="np", **FAST)  # no face: diffusers' own call
    np.testing.assert_array_equal(plain.frames, diffusers("a person", generator=_generator(), **FAST).frames)
    assert plain.identity is None and np.abs(plain.frames - ours.frames).max() > 1e-3
    assert np.array_equal(vace_reference(astronaut, [-3.5, -2.0, 40.2, 50.9]), astronaut[0:51, 0:41])  # clipped


@pytest.mark.parametrize("model", ["stand_in", "vace"])
def test_a_marked_mp4_with_facesim(model, request, astronaut, tmp_path: Path) -> None:
    pipe = request.getfixturevalue(model)
    out = pipe("a person", face_image=astronaut, generator=_generator(), output_path=tmp_path / "out.mp4", **FAST)
    assert out.path == tmp_path / "out.mp4" and out.path.is_file()
    mark = verify(out.path)
    assert mark["synthetic"] and mark["metadata"]["model"] == f"tiny-{model.replace('_', '-')}"
    assert out.facesim is not None and len(out.facesim.per_frame) == TINY_CALL["num_frames"]
    assert out.facesim.model == out.identity.recognition_model == "dlib_resnet_v1"
    assert out.frames.shape == (1, 9, 32, 32, 3)
    (video,) = pipe("a person", face_image=astronaut, generator=_generator(), return_dict=False, **FAST)
    np.testing.assert_array_equal(video, out.frames)  # diffusers' tuple


@pytest.mark.parametrize("model", ["stand_in", "vace"])
def test_a_saved_identity_conditions_through_its_stored_crop(model, request, astronaut, tmp_path: Path) -> None:
    pipe = request.getfixturevalue(model)
    saved = pipe.identity_encoder.encode(astronaut).save(tmp_path / "me.safetensors")
    identity = FaceIdentity.load(saved)
    out = pipe("a person", identity=identity, generator=_generator(), measure=False, **FAST)
    face = identity.face_in_crop()
    expected = (
        stand_in_reference(identity.crop, face.bbox, pipe.face_parser, pipe.reference_size)
        if model == "stand_in"
        else vace_reference(identity.crop, face.bbox)
    )
    np.testing.assert_array_equal(np.asarray(out.reference), expected)


def _counting(pipe: Any, calls: list[int]) -> list[Any]:
    """Hooks noting every transformer call and VAE encode (remove them after)."""
    original = pipe.vae.encode
    pipe.vae.encode = lambda *a, **k: calls.append(1) or original(*a, **k)
    return [pipe.transformer.register_forward_pre_hook(lambda *_: calls.append(1))]


BAD = {
    "no face": (dict(face_image=np.full((96, 96, 3), 90, np.uint8)), NoFaceError, "No face found"),
    "several faces": (dict(face_image="group"), MultipleFacesError, "6 faces found .* pass face_index"),
    "nan guidance": (dict(guidance_scale=float("nan")), InvalidArgumentError, "guidance_scale must be a finite"),
    "nan guidance 2": (dict(guidance_scale_2=float("inf")), InvalidArgumentError, "guidance_scale_2 must be"),
    "frames": (dict(num_frames=8), InvalidArgumentError, r"4k\+1 up to 1025 \(got 8\); try 5 or 9"),
    "height": (dict(height=40), InvalidArgumentError, "height must be a multiple of 16"),
    "steps": (dict(num_inference_steps=0), InvalidArgumentError, "num_inference_steps must be from 1"),
    "output": (dict(output_path="out.avi"), InvalidArgumentError, "ending in .mp4"),
    "both": (dict(identity="saved"), InvalidArgumentError, "not both"),
    "fps": (dict(output_path="x.mp4", fps=0), InvalidArgumentError, "fps must be a finite number from 1"),
    "latent file": (dict(output_path="x.mp4", output_type="latent"), InvalidArgumentError, "makes latents"),
}


@pytest.mark.parametrize("model", ["stand_in", "vace"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_refused_in_one_line_before_model_work(model, case, request, astronaut, group) -> None:
    pipe = request.getfixturevalue(model)
    kwargs, error, message = BAD[case]
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("face_image"), str):
        kwargs["face_image"] = group
    if "identity" in kwargs:
        kwargs["identity"] = pipe.identity_encoder.encode(astronaut)
    kwargs.setdefault("face_image", astronaut)
    calls: list[int] = []
    handles = _counting(pipe, calls)
    try:
        with pytest.raises(error, match=message) as caught:
            pipe("a person", **{**FAST, **kwargs})
    finally:
        del pipe.vae.encode
        for handle in handles:
            handle.remove()
    assert calls == [] and "\n" not in str(caught.value)


def test_face_index_chooses_among_several_faces(stand_in, group) -> None:
    faces = stand_in.identity_encoder.analyzer.detect(group)
    out = stand_in("a person", face_image=group, face_index=2, generator=_generator(), measure=False, **FAST)
    np.testing.assert_array_equal(out.identity.face.bbox, faces[2].bbox)
    np.testing.assert_array_equal(
        np.asarray(out.reference), stand_in_reference(group, faces[2].bbox, stand_in.face_parser, 64)
    )


def test_load_by_name_and_default_sizes(tmp_path: Path) -> None:
    """The names, and the Hub ids and folders that name Wan models (what ``from_pretrained`` would get)."""
    from genface.pipelines._load import _model

    assert type(load_pipeline("video", "tiny-stand-in")) is StandInPipeline
    assert type(load_pipeline("video", "tiny-vace")) is VacePipeline
    assert default_size("video", "tiny-stand-in") == default_size("video", "tiny-vace") == TINY_CALL
    for name in ("stand-in", "vace", "Wan-AI/Wan2.2-T2V-A14B-Diffusers", "Wan-AI/Wan2.1-VACE-1.3B-diffusers"):
        assert default_size("video", name) == {"height": 480, "width": 832, "num_frames": 81}
    assert default_size("video", "consisid") == {"height": 480, "width": 720, "num_frames": 49}
    assert _model("video", "stand-in") == ("StandInPipeline", None, None)
    assert _model("video", "Wan-AI/Wan2.2-T2V-A14B-Diffusers")[:2] == (
        "StandInPipeline",
        "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
    )
    assert _model("video", "Wan-AI/Wan2.1-VACE-1.3B-diffusers")[0] == "VacePipeline"
    (tmp_path / "model_index.json").write_text('{"_class_name": "WanPipeline"}')  # a downloaded Wan folder
    assert _model("video", str(tmp_path))[0] == "StandInPipeline"


def test_a_wan22_checkpoint_given_to_wan21_is_refused_before_model_work(stand_in, tmp_path, monkeypatch) -> None:
    """The adapters' names are checked against the base's model_index.json before any weights load; a saved
    pipeline loads back with its adapters, in their layout."""
    stand_in.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "stand_in" / "config.json").is_file()
    ckpt = tmp_path / "Stand-In_wan2.2_T2V_A14B_high.ckpt"
    torch.save(stand_in.stand_in.state_dict(), ckpt)

    def no_loading(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the base model was loaded")

    with monkeypatch.context() as patch:
        patch.setattr(WanPipeline, "from_pretrained", no_loading)
        with pytest.raises(InvalidArgumentError, match="for Wan 2.2, but the base model is Wan 2.1") as caught:
            StandInPipeline.from_pretrained(tmp_path / "model", stand_in=ckpt, identity_encoder=None, face_parser=None)
    assert "\n" not in str(caught.value)
    loaded = StandInPipeline.from_pretrained(tmp_path / "model", identity_encoder=None, face_parser=None)
    assert loaded.stand_in.config.wan_version == "2.1" and len(loaded.states) == 1
    assert type(loaded.scheduler) is type(stand_in.scheduler)  # Stand-In's sampling schedule, saved and loaded
    assert all(torch.equal(a, b) for a, b in zip(loaded.stand_in.state_dict().values(),
                                                 stand_in.stand_in.state_dict().values(), strict=True))  # fmt: skip


def test_group_offload_streams_both_wan22_experts_and_changes_no_frame(dlib_analyzer, portrait) -> None:
    """The low-memory "group" mode (here onto the CPU itself) offloads both of Wan 2.2's experts block by block and
    the adapters layer by layer; Stand-In's processors, which reach into the blocks, give the same frames."""
    from diffusers.hooks.group_offloading import _is_group_offload_enabled

    pipe = tiny_stand_in_pipeline(dlib_analyzer, wan22=True)
    pipe.set_progress_bar_config(disable=True)
    run = dict(prompt="a person", face_image=portrait, measure=False, **{**FAST, "num_inference_steps": 3})
    default = pipe(**run, generator=_generator()).frames
    pipe.enable_low_memory("group")
    assert all(_is_group_offload_enabled(m) for m in (pipe.transformer, pipe.transformer_2, pipe.stand_in_2))
    np.testing.assert_array_equal(pipe(**run, generator=_generator()).frames, default)
    assert [state.reference_passes for state in pipe.states] == [2, 2]  # each expert, once per call


@pytest.mark.parametrize("model", ["tiny-stand-in", "tiny-vace"])
def test_genface_video_writes_a_marked_mp4_with_facesim(model, tmp_path: Path, capsys) -> None:
    """`genface video --model tiny-stand-in` / `tiny-vace`: the command line reaches the Wan models by name."""
    import json

    from genface.cli import main
    from genface.samples import sample_path

    out = tmp_path / "v.mp4"
    args = ["video", "--model", model, "--steps", "2", "--prompt", "a woman smiling", "--attention", "math"]
    assert main([*args, "--face", str(sample_path("astronaut")), "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == 9 and result["size"] == [32, 32] and result["facesim"]["frames"] == 9
    mark = verify(out)["metadata"]
    assert mark["synthetic"] is True and mark["pipeline"] == "identity_video" and mark["model"] == model
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
