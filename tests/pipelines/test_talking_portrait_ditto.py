"""TalkingPortraitPipeline against Ditto's own arithmetic, written their way (ditto-talkinghead: inference.py,
stream_pipeline_offline.py / stream_pipeline_online.py, core/atomic_components/audio2motion.py, motion_stitch.py,
putback.py, avatar_registrar.py, loader.py, cfg.py), on the tiny random model: the keypoints the renderer is given
and the frames pasted back, offline and streamed, with Ditto's controls; video sources, resizing, precision,
Ditto's configuration pickle."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from genface.errors import InvalidArgumentError, UnsafeWeightsError
from genface.media.video import VideoReader, write_video
from genface.models.motion.audio import HubertFeatures
from genface.models.motion.crop import ditto_size, paste_mask, resize_frame
from genface.pipelines.talking_portrait.pipeline import (
    CONFIG_FILE,
    FLOAT32_COMPONENTS,
    TalkingPortraitPipeline,
    load_data_pickle,
)
from genface.pipelines.talking_portrait.tiny import tiny_pipeline
from genface.samples import speech_like
from tests.models.test_motion_lmdm import (
    TheirAudio2Motion,
    their_clip,
    their_offline,
    their_online,
    their_online_features,
    their_wav2feat,
)
from tests.models.test_motion_stitch import RefStitch, ref_arr2dic, ref_fade_alpha, ref_stitching, their_putback
from tests.tiny_models import save_ditto_layout

SPEECH = speech_like(1.0)  # 25 frames at 25 fps
HEAD = ("exp", "pitch", "yaw", "roll", "t")
GREY = 127.5  # the stand-in render


def _seed(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def pipe(dlib_analyzer) -> TalkingPortraitPipeline:
    pipeline = tiny_pipeline(dlib_analyzer)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture
def rendered(pipe, monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """What the renderer is given (feature, kp_source, kp_driving), frame by frame; it renders a flat grey (the
    motion is what these tests follow; the renderer's parity is tested on its own)."""
    seen = []

    def render(feature, kp_source, kp_driving):
        n = kp_driving.shape[0]
        seen.extend(zip(feature.expand(n, *feature.shape[1:]), kp_source.expand(n, -1, -1), kp_driving, strict=True))
        return np.full((n, 512, 512, 3), GREY, np.float32)

    monkeypatch.setattr(pipe, "render", render)
    return seen


def _driving(seen) -> np.ndarray:
    return torch.stack([kp for _, _, kp in seen]).numpy()


# ---- their chain --------------------------------------------------------------------------------------------------


def their_ctrl_info(num_frames: int, fade_in: int = -1, fade_out: int = -1, **per_frame) -> list[dict]:
    """StreamSDK.setup_Nd's ctrl_info: per-frame controls plus the fade weights, by frame."""
    fades = ref_fade_alpha(num_frames, max(fade_in, 0), fade_out) if fade_out > 0 else {}
    fades = {**{i: i / fade_in for i in range(max(fade_in, 0))}, **fades}
    info = []
    for i in range(num_frames):
        item = {k: v[min(i, len(v) - 1)] if isinstance(v, list) else v for k, v in per_frame.items()}
        if i in fades:
            item["fade_alpha"] = fades[i]
        info.append(item)
    return info


def their_keypoints(pipe, source, motion, d0=None, ctrl_info=None, fade_type="", is_image=True, frames=None):
    """MotionStitch.__call__ frame by frame (x_s_info of source frame ``frames[i]``) -> kp_source, kp_driving."""
    state = {k: v.detach() for k, v in pipe.stitching_network.state_dict().items()}
    info = [{k: v[i : i + 1].numpy().copy() for k, v in source.motion.items()} for i in range(len(source.motion))]
    use = dict.fromkeys(HEAD if is_image else ("exp",), 1)
    ref = RefStitch(info[0], use, is_image, None, [0], fade_type, ("exp",), ref_stitching(state), is_image=is_image)
    ref.d0 = None if d0 is None else ref_arr2dic(d0.numpy())
    out = [ref(info[0 if frames is None else frames[i]], ref_arr2dic(m.numpy()), **(ctrl_info or [{}] * len(motion))[i])
           for i, m in enumerate(motion)]  # fmt: skip
    return np.concatenate([s for s, _ in out]), np.concatenate([d for _, d in out])


def their_offline_motion(pipe, source, speech, steps, seed, clip=None):
    """Wav2Feat.wav2feat -> condition handler -> Audio2Motion offline (stream_pipeline_offline) -> cvt_fmt."""
    features = torch.from_numpy(their_wav2feat(pipe.audio_encoder, speech))
    conditions = pipe._conditions(source, "neutral", len(features), 0, None)(features, 0)
    start = source.motion.frames(slice(0, 1)).replace(kp=None).pack()[0]
    return their_clip(their_offline(TheirAudio2Motion(pipe.lmdm, start, 10, steps, _seed(seed)), conditions), clip)


def their_online_motion(pipe, source, speech, seed, clip=None):
    """inference.py's online loop -> stream_pipeline_online (70 frames of silence first, 10 steps, fix_kp_cond 1
    over dims 0-202) -> cvt_fmt; returns the speech's frames and d0."""
    silence = their_wav2feat(pipe.audio_encoder, np.zeros(70 * 640, np.float32))
    features = torch.from_numpy(np.concatenate([silence, their_online_features(pipe.audio_encoder, speech)]))
    conditions = pipe._conditions(source, "neutral", 25 * 3600, 0, None)(features, -70)
    start = source.motion.frames(slice(0, 1)).replace(kp=None).pack()[0]
    a2m = TheirAudio2Motion(pipe.lmdm, start, 70, 10, _seed(seed), online=True, fix_kp_cond=1, fix_dim=(0, 202))
    motion, d0 = their_online(a2m, conditions)
    return their_clip(motion, clip), their_clip(d0[None], clip)[0]


def _bounds(low: float, high: float) -> np.ndarray:
    bounds = np.zeros((4, 265), np.float32)  # Ditto's configuration holds 4 rows; the clamp uses the first two
    bounds[0], bounds[1] = low, high
    return bounds


CONTROLS = {  # genface's arguments -> Ditto's ctrl_info entries
    "pose_offsets": ({"yaw": 5.0, "roll": [0.0, -3.0]}, {"delta_yaw": 5.0, "delta_roll": [0.0, -3.0]}),
    "alpha_pitch": (0.5, {"alpha_pitch": 0.5}),  # no pitch offset: Ditto scales the bin logits
    "alpha_yaw": ([1.0, 0.5], {"alpha_yaw": [1.0, 0.5]}),  # with an offset: the degrees
    "delta_exp": (np.linspace(-0.02, 0.02, 63), {"delta_exp": np.linspace(-0.02, 0.02, 63)[None]}),
    "vad_alpha": ([1.0, 1.0, 0.3], {"vad_alpha": [1.0, 1.0, 0.3]}),
}


def _controls() -> tuple[dict, dict]:
    ours = {name: value for name, (value, _) in CONTROLS.items()}
    theirs = {k: v for _, (_, entries) in CONTROLS.items() for k, v in entries.items()}
    return ours, theirs


# ---- offline and streamed motion -------------------------------------------------------------------------------


@pytest.mark.parametrize("controlled", [False, True])
def test_offline_keypoints_are_dittos(pipe, astronaut, rendered, controlled) -> None:
    n = HubertFeatures.frame_count(SPEECH.size)
    source = pipe.prepare_source(astronaut)
    ours_controls, their_controls = _controls() if controlled else ({}, {})
    fades = {"fade_in": 3, "fade_out": 4, "fade_type": "s"} if controlled else {}
    clip = _bounds(-0.8, 0.8) if controlled else None
    output = pipe(astronaut, SPEECH, audio_rate=16000, num_inference_steps=10, blink_rate=0, generator=_seed(3),
                  measure=False, v_min_max_for_clip=clip, **ours_controls, **fades)  # fmt: skip
    motion = their_offline_motion(pipe, source, SPEECH, 10, 3, clip)
    ctrl_info = their_ctrl_info(n, fades.get("fade_in", -1), fades.get("fade_out", -1), **their_controls)
    fade_type = fades.get("fade_type", "")
    kp_source, kp_driving = their_keypoints(pipe, source, motion, ctrl_info=ctrl_info, fade_type=fade_type)
    np.testing.assert_allclose(_driving(rendered), kp_driving, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(torch.stack([s for _, s, _ in rendered]).numpy(), kp_source, atol=1e-6)
    # the frames are Ditto's paste-back of the render (putback.py: float blend, truncated)
    M_c2o = np.linalg.inv(np.vstack([source.matrix, [0, 0, 1]]))
    grey = np.full((512, 512, 3), GREY, np.float32)
    np.testing.assert_array_equal(output.frames[0], their_putback(astronaut, grey, M_c2o, paste_mask(512)))


@pytest.mark.parametrize("controlled", [False, True])
def test_streamed_keypoints_are_dittos_online_path(pipe, astronaut, rendered, controlled) -> None:
    n = HubertFeatures.frame_count(SPEECH.size)
    source = pipe.prepare_source(astronaut)
    ours_controls, their_controls = _controls() if controlled else ({}, {})
    fades = {"fade_in": 4, "fade_out": 5, "fade_type": "d0"} if controlled else {}
    clip = _bounds(-0.8, 0.8) if controlled else None
    frames = list(pipe.stream(astronaut, np.array_split(SPEECH, 3), blink_rate=0, generator=_seed(3),
                              v_min_max_for_clip=clip, **ours_controls, **fades))  # fmt: skip
    assert sum(len(f) for f in frames) == len(rendered) == n  # the speech's frames, none past its end
    motion, d0 = their_online_motion(pipe, source, SPEECH, 3, clip)
    assert motion.shape[0] > n  # Ditto's online loop goes on past the speech
    ctrl_info = their_ctrl_info(n, fades.get("fade_in", -1), fades.get("fade_out", -1), **their_controls)
    fade_type = fades.get("fade_type", "")
    _, kp_driving = their_keypoints(pipe, source, motion[:n], d0, ctrl_info=ctrl_info, fade_type=fade_type)
    np.testing.assert_allclose(_driving(rendered), kp_driving, atol=2e-5, rtol=1e-5)
    # relative to the first speech frame instead (genface before): every frame carries an offset
    _, first_frame = their_keypoints(pipe, source, motion[:n], ctrl_info=ctrl_info, fade_type=fade_type)
    assert np.abs(first_frame - kp_driving).max() > 1e-3


# ---- controls ------------------------------------------------------------------------------------------------------


def test_pose_factor_zero_with_an_offset_gives_zero_degrees(pipe, astronaut, rendered) -> None:
    output = pipe(astronaut, SPEECH[:8000], audio_rate=16000, num_inference_steps=2, measure=False,
                  pose_offsets={"yaw": 0}, alpha_yaw=0, alpha_roll=1)  # fmt: skip
    np.testing.assert_allclose(output.head_pose[:, 1], 0, atol=1e-6)  # (angle + 0) * 0
    assert np.abs(output.head_pose[:, 2]).min() > 0.01  # a factor of 1 on the logits leaves the angle


def test_controls_from_dittos_configuration_and_a_malicious_pickle(pipe, astronaut, rendered, tmp_path) -> None:
    hubert = tmp_path / "hubert"
    pipe.audio_encoder.save_pretrained(hubert)
    ditto = save_ditto_layout(pipe, tmp_path / "ditto")
    (ditto / CONFIG_FILE).parent.mkdir()
    config = {
        "base_cfg": {"decoder_cfg": {"model_path": "ditto_pytorch/models/decoder.pth", "device": "cuda"}},
        "audio2motion_cfg": {"seq_frames": 80, "use_emo": True, "w2f_type": "hubert"},
        "default_kwargs": {
            "v_min_max_for_clip": _bounds(-0.5, 0.6), "smo_k_s": 7, "fade_type": "s", "fade_out_keys": ("exp",),
            "overall_ctrl_info": {"delta_pitch": 2}, "sampling_timesteps": 50, "emo": np.full((3, 8), 0.125),
        },
    }  # fmt: skip
    (ditto / CONFIG_FILE).write_bytes(pickle.dumps(config))
    loaded = TalkingPortraitPipeline.from_pretrained(ditto, audio_encoder=hubert, face_analyzer=pipe.face_analyzer)
    defaults = loaded.config.default_kwargs
    assert defaults["v_min_max_for_clip"] == _bounds(-0.5, 0.6)[:2].tolist()
    assert (defaults["smo_k_s"], defaults["fade_type"], defaults["overall_ctrl_info"]) == (7, "s", {"delta_pitch": 2.0})
    assert "sampling_timesteps" not in defaults and "emo" not in defaults  # genface keeps its own values there
    # the configuration's values are the call's defaults, and survive a save
    saved = tmp_path / "saved"
    loaded.save_pretrained(saved)
    again = TalkingPortraitPipeline.from_pretrained(saved, face_analyzer=pipe.face_analyzer)
    assert again.config.default_kwargs == defaults
    loaded.register_to_config(input_size=pipe.config.input_size)
    loaded.render = pipe.render
    common = {"audio_rate": 16000, "num_inference_steps": 2, "measure": False, "blink_rate": 0}
    by_default = loaded(astronaut, SPEECH[:8000], generator=_seed(1), **common).head_pose
    given = loaded(astronaut, SPEECH[:8000], generator=_seed(1), v_min_max_for_clip=_bounds(-0.5, 0.6),
                   pose_offsets={"pitch": 2}, **common).head_pose  # fmt: skip
    np.testing.assert_allclose(by_default, given, atol=1e-5)
    unclamped = loaded(astronaut, SPEECH[:8000], generator=_seed(1), v_min_max_for_clip=False, **common).head_pose
    assert not np.allclose(by_default, unclamped, atol=1e-3)
    # a pickle that would run code is refused in one line, and runs nothing
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (ditto / CONFIG_FILE).write_bytes(pickle.dumps({"default_kwargs": {"smo_k_s": Exploit()}}))
    with pytest.raises(UnsafeWeightsError, match="posix.system|os.system") as info:
        TalkingPortraitPipeline.from_pretrained(ditto, audio_encoder=hubert, face_analyzer=pipe.face_analyzer)
    assert "\n" not in str(info.value) and not marker.exists()
    data = {"a": np.float32(1.5), "b": {1, 2}, "c": np.arange(3), "d": (b"x", 2j)}
    (tmp_path / "data.pkl").write_bytes(pickle.dumps(data))
    read = load_data_pickle(tmp_path / "data.pkl")
    assert (read["a"], read["b"], read["d"]) == (1.5, {1, 2}, data["d"]) and np.array_equal(read["c"], np.arange(3))


def test_a_video_source_is_dittos_registrar_and_mirror_loop(pipe, astronaut, rendered, tmp_path) -> None:
    shifts = [0, 3, 6, 9, 12]
    clip = np.stack([np.roll(astronaut, (s, s // 2), axis=(1, 0)) for s in shifts])
    video = write_video(tmp_path / "source.mp4", clip, fps=25)
    decoded = list(VideoReader(video))
    speech = SPEECH[:7680]  # 12 frames: the 5 source frames forwards, backwards, forwards
    output = pipe(video, speech, audio_rate=16000, num_inference_steps=10, generator=_seed(2), measure=False,
                  smo_k_s=3)  # fmt: skip
    n = HubertFeatures.frame_count(speech.size)
    mirror = [0, 1, 2, 3, 4, 4, 3, 2, 1, 0, 0, 1]
    assert output.frames.shape == (n, *astronaut.shape)
    # per-frame source info, smoothed over 3 frames as avatar_registrar.smooth_x_s_info_lst
    raw = pipe.prepare_source(video, smo_k_s=1)
    source = pipe.prepare_source(video, smo_k_s=3)
    for key, value in raw.motion.items():
        smoothed = np.stack([value[max(0, i - 1) : i + 2].numpy().mean(0) for i in range(5)])
        np.testing.assert_allclose(source.motion.get(key).numpy(), smoothed, atol=1e-6)
    # the motion: only the expression follows the audio, on each source frame's own pose (Ditto's video source)
    motion = their_offline_motion(pipe, source, speech, 10, 2)
    kp_source, kp_driving = their_keypoints(pipe, source, motion, is_image=False, frames=mirror)
    np.testing.assert_allclose(_driving(rendered), kp_driving, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(torch.stack([s for _, s, _ in rendered]).numpy(), kp_source, atol=1e-6)
    # each frame's appearance and paste-back are its source frame's
    features = [f for f, _, _ in rendered]
    for i, j in enumerate(mirror):
        assert torch.equal(features[i], features[mirror.index(j)])
        M_c2o = np.linalg.inv(np.vstack([source.matrices[j], [0, 0, 1]]))
        grey = np.full((512, 512, 3), GREY, np.float32)
        np.testing.assert_array_equal(output.frames[i], their_putback(decoded[j], grey, M_c2o, paste_mask(512)))
    assert not torch.equal(features[0], features[1])
    streamed = np.concatenate(list(pipe.stream(video, [speech], generator=_seed(2), smo_k_s=3)))
    assert streamed.shape == output.frames.shape
    np.testing.assert_array_equal(streamed[-1], output.frames[-1])  # a grey render on source frame 1, both ways


def their_check_resize(h, w, max_dim=1920, division=2):
    """loader.check_resize."""
    if max_dim > 0 and max(h, w) > max_dim:
        if h > w:
            new_h, new_w = max_dim, int(round(w * max_dim / h))
        else:
            new_w, new_h = max_dim, int(round(h * max_dim / w))
    else:
        new_h, new_w = h, w
    return new_h - new_h % division, new_w - new_w % division


def test_photos_are_resized_as_dittos_loader(pipe, astronaut, rendered) -> None:
    for h, w in [(1080, 1920), (2001, 1001), (3000, 4001), (513, 511), (512, 512), (1921, 1921)]:
        for max_size in (1920, 1024, -1):
            assert ditto_size(h, w, max_size) == their_check_resize(h, w, max_size)
    odd = astronaut[:509, :511]
    assert resize_frame(odd).shape == (508, 510, 3)
    small = pipe(astronaut, SPEECH[:4000], audio_rate=16000, num_inference_steps=2, measure=False, max_size=400)
    assert small.frames.shape[1:] == (400, 400, 3)
    outside = np.abs(small.frames[0].astype(int) - resize_frame(astronaut, 400)) == 0
    assert outside.mean() > 0.3  # the photo as Ditto resizes it (cv2 bilinear), around the pasted face


# ---- precision ---------------------------------------------------------------------------------------------------


def test_half_precision_runs_only_the_renderer_and_extractors_in_it(pipe, tmp_path) -> None:
    half = tiny_pipeline(pipe.face_analyzer).to(dtype=torch.bfloat16)
    renderer = ("appearance_extractor", "motion_extractor", "warping_network", "decoder")
    assert {next(getattr(half, n).parameters()).dtype for n in renderer} == {torch.bfloat16}
    assert {next(getattr(half, n).parameters()).dtype for n in FLOAT32_COMPONENTS} == {torch.float32}
    # the motion model gives what it gives in float32, bit for bit
    c = pipe.lmdm.config
    g = _seed(0)
    frame, cond = torch.randn(1, c.motion_feat_dim, generator=g), torch.randn(1, 80, c.cond_feat_dim, generator=g)
    assert torch.equal(half.lmdm.sample(frame, cond, 3, generator=_seed(1)),
                       pipe.lmdm.sample(frame, cond, 3, generator=_seed(1)))  # fmt: skip
    assert torch.equal(HubertFeatures(half.audio_encoder)(SPEECH), HubertFeatures(pipe.audio_encoder)(SPEECH))
    pipe.save_pretrained(tmp_path / "saved")
    loaded = TalkingPortraitPipeline.from_pretrained(tmp_path / "saved", dtype=torch.float16)
    assert next(loaded.decoder.parameters()).dtype == torch.float16
    assert {next(getattr(loaded, n).parameters()).dtype for n in FLOAT32_COMPONENTS} == {torch.float32}


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"alpha_yaw": 5}, r"alpha_yaw must be from 0\.0 to 3\.0, got 5\."),
        ({"delta_exp": [0.1, 0.2]}, "delta_exp must be a number, 63 numbers"),
        ({"vad_alpha": [1, 2]}, "vad_alpha"),
        ({"fade_in": 10}, "fade_type"),
        ({"fade_in": 1.5, "fade_type": "s"}, "fade_in must be a whole number"),
        ({"fade_out": -3, "fade_type": "s"}, "fade_out"),
        ({"fade_type": "x"}, "fade_type must be"),
        ({"v_min_max_for_clip": np.zeros((2, 10))}, r"\(2, 265\)"),
        ({"max_size": 10**6}, "max_size"),
        ({"smo_k_s": 0}, "smo_k_s"),
    ],
)
def test_bad_controls_are_refused_before_any_model_work(pipe, astronaut, options, match, monkeypatch) -> None:
    monkeypatch.setattr(pipe, "prepare_source", lambda *a, **k: pytest.fail("model work started"))
    with pytest.raises(InvalidArgumentError, match=match) as info:
        pipe(astronaut, SPEECH, audio_rate=16000, **options)
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidArgumentError, match=match):
        next(pipe.stream(astronaut, [SPEECH], **options))
    with pytest.raises(InvalidArgumentError, match="apply to a photo"):
        pipe("clip.mp4", SPEECH, audio_rate=16000, blink_rate=10)
