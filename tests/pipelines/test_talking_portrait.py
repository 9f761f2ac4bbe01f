"""TalkingPortraitPipeline (Ditto) on the tiny random model: the chain, controls, streaming, loading, errors."""

from __future__ import annotations

import shutil
import subprocess

import av
import numpy as np
import pytest
import torch

from genface.errors import InvalidArgumentError, InvalidMediaError, MissingWeightsError, NoFaceError
from genface.models.motion.audio import HubertFeatures
from genface.models.motion.stitch import bins_to_degrees
from genface.pipelines.talking_portrait.pipeline import (
    BLINK_PROFILE,
    DITTO_FOLDER,
    TalkingPortraitPipeline,
    blink_conditions,
    count_blinks,
    eye_openness,
)
from genface.pipelines.talking_portrait.tiny import tiny_pipeline
from genface.provenance import verify
from genface.samples import speech_like
from tests.tiny_models import save_ditto_layout

SPEECH = speech_like(0.9)  # 23 frames at 25 fps
FAST = {"num_inference_steps": 2, "measure": False, "audio_rate": 16000}


def _seed(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def pipe(dlib_analyzer) -> TalkingPortraitPipeline:
    pipeline = tiny_pipeline(dlib_analyzer)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def test_a_photo_and_speech_give_frames_as_long_as_the_speech_seeded(pipe, astronaut) -> None:
    first = pipe(astronaut, SPEECH, generator=_seed(), **FAST)
    again = pipe(astronaut, SPEECH, generator=_seed(), **FAST)
    other = pipe(astronaut, SPEECH, generator=_seed(1), **FAST)
    frames = HubertFeatures.frame_count(SPEECH.size)
    assert first.frames.shape == (frames, *astronaut.shape) and first.fps == 25
    assert np.array_equal(first.frames, again.frames)
    assert not np.array_equal(first.frames, other.frames)
    assert first.head_pose.shape == (frames, 3)
    # Only the pasted crop changes: the rest of the photo stays as it was.
    outside = ~_inside_crop(pipe.prepare_source(astronaut).matrix, astronaut.shape)
    assert outside.sum() > 1000 and (first.frames[:, outside] == astronaut[outside]).all()


def _inside_crop(matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Pixels of the photo that the 512 crop covers (grown by 2 px for the interpolation)."""
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    points = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)], 1) @ matrix.T
    inside = (points >= -2).all(1) & (points <= 514).all(1)
    return inside.reshape(shape[:2])


def test_head_motion_zero_keeps_the_photos_pose_and_offsets_turn_it(pipe, astronaut) -> None:
    source = pipe.prepare_source(astronaut)
    photo_pose = torch.cat([bins_to_degrees(source.motion.get(k)) for k in ("pitch", "yaw", "roll")], 1).numpy()
    still = pipe(astronaut, SPEECH, head_motion=0, generator=_seed(), **FAST)
    np.testing.assert_allclose(still.head_pose, np.repeat(photo_pose, len(still.head_pose), 0), atol=1e-5)
    offsets = {"yaw": 10, "pitch": [0, -5]}
    turned = pipe(astronaut, SPEECH, head_motion=0, pose_offsets=offsets, generator=_seed(), **FAST)
    shift = turned.head_pose - still.head_pose
    np.testing.assert_allclose(shift[:, 1], 10, atol=1e-4)
    np.testing.assert_allclose(shift[:, 0], [0] + [-5] * (len(shift) - 1), atol=1e-4)
    assert not np.array_equal(turned.frames, still.frames)
    moving = pipe(astronaut, SPEECH, head_motion=1, generator=_seed(), **FAST)
    assert np.ptp(moving.head_pose, axis=0).max() > 1e-3


def test_pose_offsets_may_be_a_function_of_the_frame_checked_as_called(pipe, astronaut, tmp_path) -> None:
    still = pipe(astronaut, SPEECH, head_motion=0, generator=_seed(), **FAST)
    rocking = pipe(astronaut, SPEECH, head_motion=0, pose_offsets={"roll": lambda i: 2.0 * (i % 2)}, **FAST)
    np.testing.assert_allclose(
        (rocking.head_pose - still.head_pose)[:, 2], 2.0 * (np.arange(len(still.frames)) % 2), atol=1e-4
    )
    with pytest.raises(InvalidArgumentError, match=r"pose_offsets\['yaw'\] must be from -45\.0 to 45\.0, got 90"):
        pipe(astronaut, SPEECH, pose_offsets={"yaw": lambda i: 90}, output_path=tmp_path / "o.mp4", **FAST)
    assert not (tmp_path / "o.mp4").exists()


def test_emotion_changes_the_motion(pipe, astronaut) -> None:
    happy = pipe(astronaut, SPEECH, emotion="happy", generator=_seed(), **FAST)
    sad = pipe(astronaut, SPEECH, emotion="sad", generator=_seed(), **FAST)
    assert not np.allclose(happy.head_pose, sad.head_pose)


def test_blinks_follow_the_rate_and_short_clips_blink_too() -> None:
    openness = np.array([0.9, 0.8], np.float32)
    four_seconds = blink_conditions(openness, 100, None, _seed())
    assert count_blinks(four_seconds[:, 0].numpy()) >= 1  # Ditto's own schedule has none under ~5 s
    assert four_seconds.min() < 0.1 * 0.8 and four_seconds.max() == pytest.approx(0.9)
    assert count_blinks(blink_conditions(openness, 100, 0, None)[:, 0].numpy()) == 0
    assert torch.equal(blink_conditions(openness, 100, 0, None), torch.tensor(openness).expand(100, 2))
    thirty = blink_conditions(openness, 25 * 20, 30, None)  # 30 a minute over 20 s
    assert count_blinks(thirty[:, 1].numpy()) in (9, 10)
    assert len(BLINK_PROFILE) == 6


def test_eye_openness_from_68_landmarks_closes_with_the_lids(dlib_analyzer, astronaut) -> None:
    face = dlib_analyzer.get(astronaut)
    open_eyes = eye_openness(face)
    assert open_eyes.shape == (2,) and (0.3 < open_eyes).all() and (open_eyes < 2).all()
    shut = face.landmarks.copy()
    for top, bottom in ((37, 41), (38, 40), (43, 47), (44, 46)):
        shut[top] = shut[bottom] = (shut[top] + shut[bottom]) / 2
    closed = eye_openness(type(face)(face.bbox, face.score, face.kps, shut))
    np.testing.assert_allclose(closed, 0, atol=1e-6)


def test_live_features_equal_the_whole_speech_features(pipe) -> None:
    features = HubertFeatures(pipe.audio_encoder)
    speech = speech_like(1.3)
    whole = features(speech)
    pieces = np.split(speech, [333, 4000, 4100, 15000])
    live = torch.cat(list(features.live(pieces)))
    assert live.shape == whole.shape
    torch.testing.assert_close(live, whole, atol=1e-5, rtol=1e-5)


def test_streaming_gives_the_same_frames_however_the_speech_arrives(pipe, astronaut) -> None:
    speech = speech_like(1.0)
    one = list(pipe.stream(astronaut, [speech], generator=_seed()))
    many = list(pipe.stream(astronaut, np.array_split(speech, 7), generator=_seed()))
    frames = np.concatenate(one)
    assert frames.shape == (HubertFeatures.frame_count(speech.size), *astronaut.shape)
    assert np.array_equal(frames, np.concatenate(many))


def test_writes_a_marked_mp4_with_the_speech_and_measures_it(pipe, astronaut, tmp_path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed; tests/install.sh installs it.")
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "Hello."], check=True)
    out = tmp_path / "portrait.mp4"
    output = pipe(astronaut, wav, output_path=out, num_inference_steps=2, facesim_every=4, generator=_seed())
    assert output.frames is None and output.path == out
    with av.open(str(out)) as container:
        count = sum(1 for _ in container.decode(container.streams.video[0]))
        assert container.streams.audio[0].rate == 22050  # espeak-ng's own rate, kept
    assert count == HubertFeatures.frame_count(output.audio.size)
    assert abs(count / 25 - output.audio.size / 16000) <= 1 / 25
    mark = verify(out)
    assert mark["synthetic"] and mark["metadata"]["pipeline"] == "talking_portrait"
    assert mark["metadata"]["model"] == "tiny"
    assert output.mouth_opening.shape == (count,) and output.eye_openness.shape == (count, 2)
    assert output.facesim.per_frame.shape == (-(-count // 4),) and output.blinks is not None
    assert 0 < output.first_frame_seconds


def _same_video(a, b) -> None:
    """The same video within float32 rounding: a loaded copy's convolutions differ by ~1e-7, which the motion
    model's sampling carries to ~1e-5 of the motion, and a level here and there in the frames."""
    np.testing.assert_allclose(a.head_pose, b.head_pose, rtol=1e-4, atol=1e-4)
    assert (np.abs(a.frames.astype(int) - b.frames) > 1).mean() < 1e-3


def test_save_and_load_round_trip_and_dittos_layout(pipe, astronaut, tmp_path) -> None:
    expected = pipe(astronaut, SPEECH, generator=_seed(), **FAST)
    saved = tmp_path / "saved"
    pipe.save_pretrained(saved)
    assert (saved / "lmdm" / "diffusion_pytorch_model.safetensors").is_file() and (saved / "README.md").is_file()
    again = TalkingPortraitPipeline.from_pretrained(saved, face_analyzer=pipe.face_analyzer)
    _same_video(again(astronaut, SPEECH, generator=_seed(), **FAST), expected)

    hubert = tmp_path / "hubert"
    pipe.audio_encoder.save_pretrained(hubert)
    ditto = save_ditto_layout(pipe, tmp_path / "ditto")
    loaded = TalkingPortraitPipeline.from_pretrained(ditto, audio_encoder=hubert, face_analyzer=pipe.face_analyzer)
    loaded.register_to_config(input_size=pipe.config.input_size)  # the published model takes 256; the tiny one less
    _same_video(loaded(astronaut, SPEECH, generator=_seed(), **FAST), expected)

    (ditto / DITTO_FOLDER / "decoder.pth").unlink()
    with pytest.raises(MissingWeightsError, match="decoder.pth"):
        TalkingPortraitPipeline.from_pretrained(ditto, audio_encoder=hubert)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"head_motion": -1}, "head_motion"),
        ({"head_motion": float("nan")}, "head_motion"),
        ({"blink_rate": 500}, "blink_rate"),
        ({"pose_offsets": {"yaw": 90}}, "must be from -45.0 to 45.0"),
        ({"pose_offsets": {"tilt": 5}}, "pitch, yaw and roll"),
        ({"emotion": "bored"}, "emotion"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"guidance_scale": float("inf")}, "guidance_scale"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments_are_refused_before_any_model_work(pipe, astronaut, options, match, monkeypatch) -> None:
    monkeypatch.setattr(pipe, "prepare_source", lambda *a, **k: pytest.fail("model work started"))
    with pytest.raises(InvalidArgumentError, match=match):
        pipe(astronaut, SPEECH, audio_rate=16000, **options)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_the_cpu_is_refused_in_one_line(astronaut, dtype) -> None:
    half = tiny_pipeline().to(dtype=dtype)  # PyTorch has no half-precision 3-D pooling on the CPU
    with pytest.raises(InvalidArgumentError, match="float16 on the CPU") as info:
        half(astronaut, SPEECH, **FAST)
    assert "\n" not in str(info.value)


def test_bad_media_is_refused_clearly(pipe, astronaut) -> None:
    with pytest.raises(InvalidMediaError, match="silent"):
        pipe(astronaut, np.zeros(16000, np.float32), audio_rate=16000)
    with pytest.raises(InvalidMediaError, match="shorter than one frame"):
        pipe(astronaut, SPEECH[:600], audio_rate=16000)
    for piece in (np.zeros((3200, 2), np.float32), np.zeros(3200, np.int16)):
        with pytest.raises(InvalidMediaError, match="1-D float pieces"):
            next(pipe.stream(astronaut, [piece]))
    with pytest.raises(NoFaceError, match="No face"):
        pipe(np.full((256, 256, 3), 128, np.uint8), SPEECH, **FAST)
