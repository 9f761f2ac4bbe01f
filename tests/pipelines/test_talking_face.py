"""TalkingFacePipeline on tiny random MuseTalk components with real faces (dlib) and real speech (espeak-ng)."""

from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from genface.errors import InvalidArgumentError, InvalidMediaError, MissingWeightsError, NoFaceError
from genface.media import write_video
from genface.models.talking.audio import frame_count
from genface.pipelines.talking_face.pipeline import TalkingFacePipeline, load_musetalk_unet, pingpong
from genface.pipelines.talking_face.regions import blend_mask, crop_box, integer_box
from genface.pipelines.talking_face.tiny import TINY_WIDTH, tiny_pipeline
from genface.provenance import verify
from genface.samples import speech_like


@pytest.fixture(scope="module")
def pipe(dlib_analyzer) -> TalkingFacePipeline:
    pipeline = tiny_pipeline(dlib_analyzer)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real speech from espeak-ng (installed by .ci/run)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed; .ci/run installs it (apt-get install espeak-ng).")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "Hello there."], check=True)
    return path


def _outside_mask(pipe: TalkingFacePipeline, frame: np.ndarray) -> np.ndarray:
    """Pixels of ``frame`` the blend may not touch (the mask is zero or outside the box)."""
    face = pipe.face_analyzer.get(frame)
    box = integer_box(crop_box(face, frame.shape), frame.shape)
    mask = blend_mask(frame, box, pipe.face_parser)
    touched = np.zeros(frame.shape[:2], dtype=bool)
    x1, y1, x2, y2 = box
    sx, sy = mask.square[:2]
    touched[y1:y2, x1:x2] = mask.alpha[y1 - sy : y2 - sy, x1 - sx : x2 - sx] > 0
    return ~touched


def test_render_is_musetalks_path_with_diffusers_modules(pipe, astronaut) -> None:
    """The crop -> latents -> UNet(t=0, audio + position code) -> decode path, written the way MuseTalk's
    scripts compute it (normalise after multiplying the lower half by zero; PositionalEncoding buffer)."""
    import cv2

    crop = cv2.resize(astronaut[60:380, 120:400], (256, 256), interpolation=cv2.INTER_LANCZOS4)[None]
    windows = torch.randn(1, 30, TINY_WIDTH, generator=torch.Generator().manual_seed(0))
    ours = pipe.render(pipe.encode_crops(crop), windows)

    x = torch.from_numpy(crop).permute(0, 3, 1, 2).float() / 255.0
    half = torch.zeros(256, 256)
    half[:128] = 1
    normalise = lambda t: (t - 0.5) / 0.5  # noqa: E731 - torchvision's Normalize(0.5, 0.5)
    vae, unet = pipe.vae, pipe.unet
    with torch.no_grad():
        masked = vae.encode(normalise(x * half)).latent_dist.mode() * vae.config.scaling_factor
        reference = vae.encode(normalise(x)).latent_dist.mode() * vae.config.scaling_factor
        position = torch.arange(30).float()[:, None]
        div = torch.exp(torch.arange(0, TINY_WIDTH, 2).float() * (-math.log(10000.0) / TINY_WIDTH))
        code = torch.zeros(30, TINY_WIDTH)
        code[:, 0::2], code[:, 1::2] = torch.sin(position * div), torch.cos(position * div)
        latents = unet(torch.cat([masked, reference], 1), torch.tensor([0]), encoder_hidden_states=windows + code)
        image = vae.decode(latents.sample / vae.config.scaling_factor).sample
    expected = ((image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    assert np.abs(ours.astype(int) - expected).max() <= 1
    assert (ours != expected).mean() < 0.001


def test_photo_mode_lasts_as_long_as_the_audio_and_touches_only_the_mask(pipe, astronaut) -> None:
    audio = speech_like(0.45)
    output = pipe(astronaut, audio, audio_rate=16000, measure=False)
    assert output.frames.shape == (frame_count(len(audio), 25), *astronaut.shape) == (11, 512, 512, 3)
    outside = _outside_mask(pipe, astronaut)
    assert outside.mean() > 0.9
    for frame in output.frames:
        assert np.array_equal(frame[outside], astronaut[outside])  # bit-identical outside the mask
    assert (output.frames[0] != astronaut).any(axis=-1).sum() > 500  # and the lower face did change
    assert np.allclose(output.pitch[2:-2], 150, atol=2)  # f0 per frame
    again = pipe(astronaut, audio, audio_rate=16000, measure=False)
    assert np.array_equal(again.frames, output.frames)  # deterministic


def test_dub_mode_plays_a_short_video_back_and_forth(pipe, astronaut) -> None:
    clip = np.stack([np.roll(astronaut, shift, axis=1) for shift in (0, 3, 6)])
    output = pipe(clip, speech_like(0.33), audio_rate=16000, fps=25, smoothing=0, measure=False)
    assert len(output.frames) == 8
    outside = [_outside_mask(pipe, source) for source in clip]
    for i, frame in enumerate(output.frames):
        k = pingpong(i, 3)
        assert np.array_equal(frame[outside[k]], clip[k][outside[k]]), i
    assert [pingpong(i, 3) for i in range(8)] == [0, 1, 2, 2, 1, 0, 0, 1]


def test_the_progress_bar_counts_frames(dlib_analyzer, astronaut) -> None:
    shown = io.StringIO()
    pipeline = tiny_pipeline(dlib_analyzer)
    pipeline.set_progress_bar_config(file=shown, mininterval=0)
    output = pipeline(astronaut, speech_like(0.33), audio_rate=16000, fps=25, batch_size=3, measure=False)
    assert len(output.frames) == 8 and "8/8" in shown.getvalue()  # 3 + 3 + 2 frames, not 3 steps


def test_preparing_a_video_shows_each_phase_and_logs_it(dlib_analyzer, astronaut, caplog, capsys) -> None:
    """Tracking and preparing (parsing, VAE encoding) each show the pipeline's progress bar, which follows
    ``set_progress_bar_config`` (disabled: nothing shown), and log at INFO (``genface -v``)."""
    import logging

    clip = np.stack([np.roll(astronaut[40:296, 100:356], i, axis=1) for i in range(3)])
    shown = io.StringIO()
    pipeline = tiny_pipeline(dlib_analyzer, parser=False)
    pipeline.set_progress_bar_config(file=shown, mininterval=0)
    with caplog.at_level(logging.INFO):
        pipeline.prepare(clip)
    bars = shown.getvalue()
    assert "tracking the face" in bars and "preparing frames" in bars and "3/3" in bars
    assert "Tracking the face in 3 frames" in caplog.text and "The face was found in 3 of 3 frames" in caplog.text
    assert "Preparing 3 frames" in caplog.text
    capsys.readouterr()
    pipeline.set_progress_bar_config(disable=True)
    pipeline(clip, speech_like(0.12), audio_rate=16000, fps=25, measure=False)
    assert capsys.readouterr().err == ""  # no bar at all, tracking's included


def test_lost_frames_hold_the_last_box_and_no_face_at_all_is_an_error(pipe, astronaut) -> None:
    black = np.zeros_like(astronaut)
    clip = np.stack([astronaut, black, astronaut])
    output = pipe(clip, speech_like(0.12), audio_rate=16000, fps=25, measure=False)
    assert output.lost_frames == [1] and len(output.frames) == 3
    with pytest.raises(NoFaceError, match="No face found in any of the 2 frame"):
        pipe(np.stack([black, black]), speech_like(0.12), audio_rate=16000, fps=25)


def test_face_index_follows_another_person(pipe, group) -> None:
    faces = pipe.face_analyzer.detect(group)
    output = pipe(group, speech_like(0.08), audio_rate=16000, face_index=1, measure=False)
    changed = np.argwhere((output.frames[0] != group).any(-1))
    x1, y1, x2, y2 = integer_box(crop_box(faces[1], group.shape), group.shape)
    assert changed.size and (changed[:, 1] >= x1).all() and (changed[:, 1] < x2).all()
    assert (changed[:, 0] >= y1).all() and (changed[:, 0] < y2).all()


@pytest.mark.parametrize(
    ("audio", "error", "match"),
    [
        (np.zeros(16000, np.float32), InvalidMediaError, "silent"),
        (speech_like(0.02), InvalidMediaError, "shorter than one frame"),
        (np.full(16000, np.nan, np.float32), InvalidMediaError, "NaN"),
    ],
)
def test_bad_audio_is_refused_clearly(pipe, astronaut, audio, error, match) -> None:
    with pytest.raises(error, match=match):
        pipe(astronaut, audio, audio_rate=16000)


def test_bad_arguments_are_refused_clearly(pipe, astronaut, tmp_path) -> None:
    clip = np.stack([astronaut, astronaut])
    with pytest.raises(InvalidArgumentError, match="animates a photo"):
        pipe(clip, speech_like(0.1), audio_rate=16000, motion=lambda photo, i, f0: photo)
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        pipe(astronaut, speech_like(0.1), audio_rate=16000, batch_size=0)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with pytest.raises(InvalidMediaError):
        pipe(broken, speech_like(0.1), audio_rate=16000)


def test_motion_hook_moves_the_photo(pipe, astronaut) -> None:
    seen = []

    def sway(photo: np.ndarray, index: int, f0: float) -> np.ndarray:
        seen.append((index, round(f0)))
        return np.roll(photo, 2 * index, axis=1)

    output = pipe(astronaut, speech_like(0.16), audio_rate=16000, motion=sway, measure=False)
    # Frames are asked for as needed and not kept: once to track the face, once to render.
    calls = Counter(i for i, _ in seen)
    assert set(calls) == {0, 1, 2, 3} and [calls[i] for i in (1, 2, 3)] == [2, 2, 2]
    assert all(abs(f - 150) <= 2 for i, f in seen if i)
    assert np.array_equal(output.frames[3][:, 6:60], np.roll(astronaut, 6, axis=1)[:, 6:60])


def test_streams_into_a_marked_mp4_with_the_speech(pipe, astronaut, speech_wav, tmp_path) -> None:
    out = tmp_path / "talk.mp4"
    output = pipe(astronaut, speech_wav, output_path=out, batch_size=4)
    assert output.frames is None and output.path == out
    with av.open(str(out)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = sum(1 for _ in container.decode(video))
        assert audio.rate == 22050  # espeak-ng's own rate, kept
    seconds = len(output.audio) / 16000
    assert frames == len(output.pitch) == frame_count(len(output.audio), 25)
    assert abs(frames / 25 - seconds) <= 1 / 25  # duration equals the audio's, within one frame
    mark = verify(out)
    assert mark["synthetic"] and mark["metadata"]["pipeline"] == "talking_face" and mark["metadata"]["model"] == "tiny"
    assert mark["watermark"]["detected"]  # in the H.264 frames of a dub too
    voiced = output.pitch[output.pitch > 0]
    assert len(voiced) > 5 and 60 < np.median(voiced) < 300  # espeak's voice
    assert output.facesim is not None and output.facesim.per_frame.shape == (math.ceil(frames / 5),)
    assert output.mouth_opening.shape == (frames,)


def test_an_interrupted_run_leaves_no_file(pipe, astronaut, tmp_path, monkeypatch) -> None:
    calls = []
    original = TalkingFacePipeline.render

    def failing(self, latents, windows):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(self, latents, windows)

    monkeypatch.setattr(TalkingFacePipeline, "render", failing)
    out = tmp_path / "talk.mp4"
    with pytest.raises(KeyboardInterrupt):
        pipe(astronaut, speech_like(0.4), audio_rate=16000, output_path=out, batch_size=4, measure=False)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_video_file_input_keeps_its_frame_rate(pipe, astronaut, tmp_path) -> None:
    clip = tmp_path / "clip.mp4"
    write_video(clip, np.stack([astronaut] * 3), fps=30)
    output = pipe(clip, speech_like(0.2), audio_rate=16000, measure=False)
    assert output.fps == pytest.approx(30) and len(output.frames) == 6


def test_a_dubbed_video_file_streams_with_bounded_memory(dlib_analyzer, astronaut, tmp_path, monkeypatch) -> None:
    """A video file is decoded as needed, not held: played forwards and back (ping-pong) through a buffer of
    4 frames it gives the video made from frames held in memory, and a 4x longer video and speech raise the
    run's peak memory by far less than the extra decoded frames."""
    import tracemalloc

    from genface.media import read_video
    from genface.pipelines.talking_face import pipeline as module

    pipe = tiny_pipeline(dlib_analyzer, parser=False)  # the parser's cost is not what is measured here
    pipe.set_progress_bar_config(disable=True)
    face = astronaut[40:296, 100:356]
    monkeypatch.setattr(module, "FRAME_BUFFER_BYTES", 4 * face.nbytes)

    def run(count: int) -> tuple[int, np.ndarray, Path]:
        clip = write_video(tmp_path / f"clip{count}.mp4", np.stack([np.roll(face, i, 1) for i in range(count)]), 25)
        tracemalloc.start()
        try:  # speech for count + 10 frames: the last 10 play the video backwards
            out = pipe(
                clip, speech_like((count + 10) / 25), audio_rate=16000, output_path=tmp_path / "o.mp4", measure=False
            )
            return tracemalloc.get_traced_memory()[1], clip, out.path
        finally:
            tracemalloc.stop()

    short_peak, clip, path = run(20)
    frames, _ = read_video(clip)
    held = pipe(frames, speech_like(30 / 25), audio_rate=16000, fps=25, measure=False).frames
    back, _ = read_video(path)
    assert len(back) == len(held) == 30
    assert np.abs(back.astype(int) - held).mean() < 3  # the same video, through H.264
    long_peak, _, _ = run(80)
    assert long_peak - short_peak < 60 * face.nbytes / 8


def _musetalk_folder(pipe: TalkingFacePipeline, root: Path) -> Path:
    """``root/models`` in MuseTalk's layout (musetalkV15/musetalk.json + unet.pth, no face parser), with the
    VAE in ``root/vae`` and Whisper in ``root/whisper-tiny`` (model and feature extractor, as openai/whisper-tiny)."""
    models = root / "models"
    (models / "musetalkV15").mkdir(parents=True)
    config = {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0.dev0", **pipe.unet.config}
    (models / "musetalkV15" / "musetalk.json").write_text(json.dumps(config))
    torch.save(pipe.unet.state_dict(), models / "musetalkV15" / "unet.pth")
    pipe.vae.save_pretrained(root / "vae")
    pipe.audio_encoder.save_pretrained(root / "whisper-tiny")
    pipe.feature_extractor.save_pretrained(root / "whisper-tiny")
    return models


def _save_parser_checkpoint(pipe: TalkingFacePipeline, folder: Path) -> None:
    """The face parser as face-parsing.PyTorch publishes it: ``79999_iter.pth``, keys under ``module.``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({f"module.{k}": v for k, v in pipe.face_parser.model.state_dict().items()}, folder / "79999_iter.pth")


def test_save_and_load_round_trip_and_musetalk_layout(pipe, astronaut, tmp_path) -> None:
    audio = speech_like(0.12)
    expected = pipe(astronaut, audio, audio_rate=16000, measure=False).frames
    saved = tmp_path / "converted"
    pipe.save_pretrained(saved)
    assert json.loads((saved / "model_index.json").read_text())["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert (saved / "unet" / "diffusion_pytorch_model.safetensors").is_file() and (saved / "face_parser").is_dir()
    loaded = TalkingFacePipeline.from_pretrained(saved, face_analyzer=pipe.face_analyzer)
    loaded.set_progress_bar_config(disable=True)
    assert np.array_equal(loaded(astronaut, audio, audio_rate=16000, measure=False).frames, expected)

    # MuseTalk's own layout: musetalkV15/musetalk.json + unet.pth beside face-parse-bisent/79999_iter.pth
    models = _musetalk_folder(pipe, tmp_path)
    _save_parser_checkpoint(pipe, models / "face-parse-bisent")
    published = TalkingFacePipeline.from_pretrained(
        models, vae=tmp_path / "vae", audio_encoder=tmp_path / "whisper-tiny", face_analyzer=pipe.face_analyzer
    )
    published.set_progress_bar_config(disable=True)
    assert np.array_equal(published(astronaut, audio, audio_rate=16000, measure=False).frames, expected)

    torch.save({"conv_in.weight": torch.zeros(1)}, models / "musetalkV15" / "unet.pth")
    with pytest.raises(MissingWeightsError, match="does not fit"):
        load_musetalk_unet(models)
    with pytest.raises(MissingWeightsError, match="No MuseTalk v1.5 UNet"):
        load_musetalk_unet(tmp_path / "nothing")


def test_face_parser_from_flux_makeup_when_the_model_has_none(pipe, tmp_path, monkeypatch, caplog) -> None:
    """MuseTalk's Hub repository has no face parser; the same 79999_iter.pth comes from qihoo360/FLUX-Makeup."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    models = _musetalk_folder(pipe, tmp_path)  # what the Hub download of TMElyralab/MuseTalk gives
    _save_parser_checkpoint(pipe, tmp_path / "hub")  # qihoo360/FLUX-Makeup's layout: the file at its root
    calls, offline = [], []

    def snapshot_download(repo_id: str, **kwargs) -> str:
        calls.append((repo_id, kwargs["allow_patterns"]))
        if repo_id == "qihoo360/FLUX-Makeup" and offline:
            raise LocalEntryNotFoundError("offline")  # what the Hub client raises offline for files not cached
        return str(models if repo_id == "TMElyralab/MuseTalk" else tmp_path / "hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    parts = dict(vae=tmp_path / "vae", audio_encoder=tmp_path / "whisper-tiny", face_analyzer=pipe.face_analyzer)
    loaded = TalkingFacePipeline.from_pretrained("TMElyralab/MuseTalk", **parts)
    assert calls[-1] == ("qihoo360/FLUX-Makeup", ["79999_iter.pth"])
    for name, value in pipe.face_parser.model.state_dict().items():
        assert torch.equal(loaded.face_parser.model.state_dict()[name], value), name
    calls.clear()
    assert TalkingFacePipeline.from_pretrained("TMElyralab/MuseTalk", face_parser=None, **parts).face_parser is None
    assert TalkingFacePipeline.from_pretrained(models, **parts).face_parser is None  # a local folder stays local
    assert [repo for repo, _ in calls] == ["TMElyralab/MuseTalk"]
    assert "hf download qihoo360/FLUX-Makeup 79999_iter.pth --local-dir DIR" in caplog.text

    # Offline and not cached: a warning that says how to get it, and the lower half of the face box.
    offline.append(True)
    caplog.clear()
    assert TalkingFacePipeline.from_pretrained("TMElyralab/MuseTalk", **parts).face_parser is None
    assert "hf download qihoo360/FLUX-Makeup --include '79999_iter.pth'" in caplog.text
    assert "lower half of the face box" in caplog.text


def test_published_weights_record_their_hub_id_in_the_mark(pipe, astronaut, tmp_path, monkeypatch) -> None:
    import huggingface_hub

    models = _musetalk_folder(pipe, tmp_path)  # what the Hub download of TMElyralab/MuseTalk gives
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **kwargs: str(models))
    published = TalkingFacePipeline.from_pretrained(
        "TMElyralab/MuseTalk", vae=tmp_path / "vae", audio_encoder=tmp_path / "whisper-tiny", face_parser=None,
        face_analyzer=pipe.face_analyzer,
    )  # fmt: skip
    published.set_progress_bar_config(disable=True)
    out = published(astronaut, speech_like(0.12), audio_rate=16000, output_path=tmp_path / "t.mp4", measure=False)
    assert verify(out.path)["metadata"]["model"] == "TMElyralab/MuseTalk"


def test_jaw_mask_grows_skin_keeps_lips_and_drops_the_nose() -> None:
    from genface.identity.parsing import LABELS
    from genface.pipelines.talking_face.regions import jaw_mask

    labels = np.zeros((512, 512), np.uint8)
    labels[200:300, 156:356] = LABELS.index("skin")
    labels[220:250, 236:276] = LABELS.index("nose")
    labels[270:290, 226:286] = LABELS.index("upper_lip")
    mask = jaw_mask(labels)
    assert mask[280, 256] == 255 and mask[235, 256] == 0  # lips kept, nose dropped
    assert mask[305, 256] == 255 and mask[306, 256] == 0  # grown 6 px below the skin (MuseTalk's cone element)
    assert mask[185, 200] == 255 and mask[183, 256] == 0  # and up to 16 px above
    assert mask[100, 256] == 0 and mask[260, 20] == 0


# -- MuseTalk's published arithmetic: the crop box, the blend, the two scripts ------------------------------


def _musetalk_box(landmarks: np.ndarray, bbox: np.ndarray, height: int) -> tuple[int, int, int, int]:
    """MuseTalk's crop box written their way (``musetalk/utils/preprocessing.py``, ``get_landmark_and_bbox``
    with bbox_shift 0; the detector's box as ``face_detection/api.py`` gives it; then ``scripts/inference.py``'s
    v1.5 ``extra_margin`` of 10)."""
    face_land_mark = landmarks.astype(np.int32)
    f = tuple(map(int, np.clip(bbox, 0, None)))
    half_face_coord = face_land_mark[29]
    half_face_dist = np.max(face_land_mark[:, 1]) - half_face_coord[1]
    upper_bond = max(0, half_face_coord[1] - half_face_dist)
    x1, y1 = np.min(face_land_mark[:, 0]), int(upper_bond)
    x2, y2 = np.max(face_land_mark[:, 0]), np.max(face_land_mark[:, 1])
    if y2 - y1 <= 0 or x2 - x1 <= 0 or x1 < 0:
        x1, y1, x2, y2 = f
    return int(x1), int(y1), int(x2), int(min(y2 + 10, height))


def test_the_crop_box_truncates_fractional_landmarks_as_musetalk(pipe, astronaut) -> None:
    from genface.identity import Face

    face = pipe.face_analyzer.get(astronaut)
    rng = np.random.default_rng(0)
    for _ in range(50):  # fractional landmarks (insightface's are): genface rounded the box, 1-2 px off
        landmarks = face.landmarks + rng.uniform(-0.99, 0.99, face.landmarks.shape)
        moved = Face(face.bbox + rng.uniform(0, 1, 4), face.score, face.kps, landmarks)
        expected = _musetalk_box(landmarks, moved.bbox, astronaut.shape[0])
        assert integer_box(crop_box(moved, astronaut.shape), astronaut.shape) == expected
    flat = face.landmarks.copy()
    flat[:, 1] = flat[29, 1] + 0.5  # no height below the nose: the detector's box, truncated
    fallback = Face(face.bbox + 0.7, face.score, face.kps, flat)
    assert crop_box(fallback, astronaut.shape).tolist() == list(_musetalk_box(flat, fallback.bbox, 512))


def _musetalk_frame(frame: np.ndarray, crop: np.ndarray, box: tuple[int, int, int, int], parser, feather: float):
    """A generated ``crop`` pasted into ``frame`` as MuseTalk writes it: ``blending.get_image`` (feather 0.05,
    ``scripts/inference.py``) or ``get_image_prepare_material`` + ``get_image_blending`` (0.1,
    ``scripts/realtime_inference.py``), with ``face_parsing.FaceParsing``'s input resize (PIL bilinear) and
    ``face_seg``'s resize of its mask (PIL's default, bicubic). Only the network and the jaw morphology (tested
    on its own) are genface's; the crop is resized to the box with cv2's default, as both scripts do."""
    import cv2
    from PIL import Image

    from genface.pipelines.talking_face.regions import jaw_mask

    body = Image.fromarray(frame)
    x, y, x1, y1 = box
    x_c, y_c = (x + x1) // 2, (y + y1) // 2
    s = int(max(x1 - x, y1 - y) // 2 * 1.5)
    crop_box = [x_c - s, y_c - s, x_c + s, y_c + s]
    x_s, y_s = crop_box[:2]
    face_large = body.crop(crop_box)
    labels = parser.parse(np.array(face_large.resize((512, 512), Image.BILINEAR))).labels
    mask_image = Image.fromarray(jaw_mask(labels)).resize(face_large.size)
    mask_small = mask_image.crop((x - x_s, y - y_s, x1 - x_s, y1 - y_s))
    mask_image = Image.new("L", face_large.size, 0)
    mask_image.paste(mask_small, (x - x_s, y - y_s, x1 - x_s, y1 - y_s))
    width, height = mask_image.size
    top_boundary = int(height * 0.5)
    modified_mask_image = Image.new("L", face_large.size, 0)
    modified_mask_image.paste(mask_image.crop((0, top_boundary, width, height)), (0, top_boundary))
    blur_kernel_size = int(feather * face_large.size[0] // 2 * 2) + 1
    mask_array = cv2.GaussianBlur(np.array(modified_mask_image), (blur_kernel_size, blur_kernel_size), 0)
    face_large.paste(Image.fromarray(cv2.resize(crop, (x1 - x, y1 - y))), (x - x_s, y - y_s, x1 - x_s, y1 - y_s))
    body.paste(face_large, crop_box[:2], Image.fromarray(mask_array))
    return np.array(body)


@pytest.mark.parametrize(("blend", "feather"), [("inference", 0.05), ("realtime", 0.1)])
def test_final_frames_are_musetalks_blend_bit_for_bit(pipe, astronaut, blend, feather, monkeypatch) -> None:
    """The frames a user gets equal MuseTalk's arithmetic on the same generated crop and box, for both of its
    scripts; so does the blend where the parsing square leaves the frame (black there). With the cv2 resizes
    genface used before (parser input, mask) frames were up to 7-13 levels off the inference script's, and the
    one blend it had up to 75 levels off the realtime script's."""
    from genface.pipelines.talking_face import pipeline as module
    from genface.pipelines.talking_face.regions import blend as paste

    seen, original = [], module.blend

    def recording(frame, crop, box, mask):
        seen.append((frame, crop, box))
        return original(frame, crop, box, mask)

    monkeypatch.setattr(module, "blend", recording)
    output = pipe(astronaut, speech_like(0.04), audio_rate=16000, blend=blend, measure=False)
    (frame, crop, box), shown = seen[0], output.frames[0]
    assert len(seen) == 1 and np.array_equal(shown, _musetalk_frame(frame, crop, box, pipe.face_parser, feather))

    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)  # a generated crop
    corner = np.ascontiguousarray(astronaut[60:, 150:])  # the parsing square leaves the frame at the top left
    box = integer_box(crop_box(pipe.face_analyzer.get(corner), corner.shape), corner.shape)
    ours = paste(corner, noise, box, blend_mask(corner, box, pipe.face_parser, blend))
    assert np.array_equal(ours, _musetalk_frame(corner, noise, box, pipe.face_parser, feather))


def test_blend_choice_is_kept_by_a_prepared_video_and_checked(pipe, face_clip) -> None:
    audio = speech_like(2 / 25)
    clip = face_clip[:2]
    realtime = pipe(clip, audio, audio_rate=16000, fps=25, blend="realtime", measure=False).frames
    inference = pipe(clip, audio, audio_rate=16000, fps=25, measure=False).frames
    assert not np.array_equal(realtime, inference)  # a softer edge: twice as wide a feather
    prepared = pipe.prepare(clip, blend="realtime")
    assert prepared.blend == "realtime" and prepared.key["blend"] == "realtime"
    assert np.array_equal(pipe(prepared, audio, audio_rate=16000, measure=False).frames, realtime)
    with pytest.raises(InvalidArgumentError, match="prepared with blend='realtime'"):
        pipe(prepared, audio, audio_rate=16000, blend="inference")
    with pytest.raises(InvalidArgumentError, match="blend must be 'inference' or 'realtime'"):
        pipe(clip, audio, audio_rate=16000, blend="soft")
    with pytest.raises(InvalidArgumentError, match="blend must be"):
        pipe.prepare(clip, blend="avatar")


# -- speed: detection once, batched parsing, overlap, prepared videos --------------------------------------


@pytest.fixture(scope="module")
def face_clip(astronaut) -> np.ndarray:
    """8 frames of the astronaut's face (256x256), moving sideways."""
    face = astronaut[40:296, 100:356]
    return np.stack([np.roll(face, i % 5, axis=1) for i in range(8)])


def _counting(monkeypatch, owner, name: str) -> list:
    """Record each call of ``owner.name`` (its first argument) and pass it on."""
    calls, original = [], getattr(owner, name)

    def counted(first, *args, **kwargs):
        calls.append(first)
        return original(first, *args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _pre_change_dub(pipe: TalkingFacePipeline, clip: np.ndarray, audio: np.ndarray, batch_size: int) -> np.ndarray:
    """The dub as the pipeline computed it before batching and overlap: track, then per output batch the crops'
    latents, each frame parsed on its own into its blend mask, one render, each frame blended, in one thread."""
    from genface.identity.track import track_boxes, track_face
    from genface.models.talking.audio import SpeechWindows, WhisperFrameFeatures
    from genface.pipelines.talking_face.regions import blend

    track = track_face(clip, pipe.face_analyzer, progress=False)
    boxes = [integer_box(b, clip.shape[1:]) for b in track_boxes(track, lambda f: crop_box(f, clip.shape[1:]))]
    windows = SpeechWindows(WhisperFrameFeatures(pipe.audio_encoder, pipe.feature_extractor), audio, 25)
    masks = [blend_mask(frame, box, pipe.face_parser) for frame, box in zip(clip, boxes, strict=True)]
    out = []
    for start in range(0, windows.num_frames, batch_size):
        indices = [pingpong(i, len(clip)) for i in range(start, min(start + batch_size, windows.num_frames))]
        latents = pipe.encode_crops(np.stack([pipe._crop(clip[k], boxes[k]) for k in indices]))
        crops = pipe.render(latents, windows(start, len(indices)))
        for k, crop in zip(indices, crops, strict=True):
            out.append(blend(clip[k], crop, boxes[k], masks[k]))
    return np.stack(out)


def test_dub_detects_each_frame_once_and_equals_the_pre_change_path(pipe, face_clip, monkeypatch) -> None:
    audio = speech_like(12 / 25)  # 12 frames: the last 4 play the clip backwards
    expected = _pre_change_dub(pipe, face_clip, audio, batch_size=8)
    detected = _counting(monkeypatch, pipe.face_analyzer, "detect")
    parsed = _counting(monkeypatch, pipe.face_parser, "parse")
    output = pipe(face_clip, audio, audio_rate=16000, fps=25, batch_size=8)
    assert np.array_equal(output.frames, expected)  # bit for bit
    assert sum(len(p) if p.ndim == 4 else 1 for p in parsed) == 8  # each frame once (not again when replayed)
    sources, measured = detected[: len(face_clip)], detected[len(face_clip) :]
    assert all(np.array_equal(a, b) for a, b in zip(sources, face_clip, strict=True))  # each source frame once
    # and the metrics look once at each output frame (its mouth changed), in a cut around its face box
    assert len(measured) == len(expected) and output.mouth_opening.shape == (12,)


def test_batched_parsing_equals_parsing_frame_by_frame(pipe, face_clip) -> None:
    from genface.pipelines.talking_face.regions import alpha_mask, box_alpha, parsing_patch

    frames = face_clip[:3]
    boxes = [integer_box(crop_box(pipe.face_analyzer.get(frame), frame.shape), frame.shape) for frame in frames]
    patches = np.stack([parsing_patch(frame, box) for frame, box in zip(frames, boxes, strict=True)])
    batched = pipe.face_parser.parse(patches)
    for patch, parsing in zip(patches, batched, strict=True):
        assert np.array_equal(parsing.labels, pipe.face_parser.parse(patch).labels)
    # the one-frame path (parse + weights) gives the same blend mask
    single = blend_mask(frames[0], boxes[0], pipe.face_parser)
    assert np.array_equal(alpha_mask(boxes[0], box_alpha(boxes[0], batched[0].labels)).alpha, single.alpha)


def test_a_prepared_video_round_trips_through_a_folder_with_the_same_frames(pipe, face_clip, tmp_path, monkeypatch):
    from genface.pipelines.talking_face import PreparedVideo

    video = write_video(tmp_path / "clip.mp4", face_clip, 25)
    audio = speech_like(10 / 25)
    expected = pipe(video, audio, audio_rate=16000, batch_size=4, measure=False).frames
    prepared = pipe.prepare(video, cache=tmp_path / "prepared")
    assert isinstance(prepared, PreparedVideo) and prepared.latents.shape == (8, 8, 32, 32)
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == ["prepared.json", "prepared.safetensors"]
    assert np.array_equal(pipe(prepared, audio, audio_rate=16000, batch_size=4, measure=False).frames, expected)

    # Read back: no detection, parsing or VAE encoding, and the same frames bit for bit
    detected = _counting(monkeypatch, pipe.face_analyzer, "detect")
    parsed = _counting(monkeypatch, pipe.face_parser, "parse")
    encoded = _counting(monkeypatch, pipe.vae, "encode")
    loaded = pipe.prepare(video, cache=tmp_path / "prepared")
    assert torch.equal(loaded.latents, prepared.latents) and loaded.track.boxes == prepared.track.boxes
    assert all(np.array_equal(a, b) for a, b in zip(loaded.alphas, prepared.alphas, strict=True))
    output = pipe(loaded, audio, audio_rate=16000, batch_size=4, measure=False)
    assert detected == parsed == encoded == [] and output.lost_frames == []
    assert np.array_equal(output.frames, expected)

    # Stale: another video, or a setting that changes what is stored, is refused in one line
    with pytest.raises(InvalidArgumentError, match=r"prepared for another video or other settings \(changed: video\)"):
        pipe.prepare(face_clip[::-1].copy(), cache=tmp_path / "prepared")
    with pytest.raises(InvalidArgumentError, match=r"\(changed: smoothing\)"):
        pipe.prepare(video, smoothing=0, cache=tmp_path / "prepared")
    with pytest.raises(InvalidArgumentError, match="not empty"):
        prepared.save(tmp_path / "prepared")
    with pytest.raises(InvalidArgumentError, match="is a file"):
        pipe.prepare(video, cache=video)


def test_the_threads_give_the_same_frames_and_their_errors_stop_the_run_with_no_file(
    pipe, face_clip, tmp_path, monkeypatch
):
    import threading

    from genface.pipelines.talking_face import pipeline as module

    out = tmp_path / "dub.mp4"
    calls = []

    def failing_blend(*args):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("blend failed")
        return blend(*args)

    def failing_get(self, indices):
        calls.append(2)
        if calls.count(2) == 2:
            raise OSError("read failed")
        return get(self, indices)

    blend, get = module.blend, module._Chunks.get
    monkeypatch.setattr(pipe, "face_parser", None)  # not what is tested here
    monkeypatch.setattr(module, "OVERLAP_ON_CPU", True)  # the threads a GPU run uses
    kwargs = dict(audio_rate=16000, fps=25, batch_size=4, output_path=out, measure=False)
    threaded = pipe(face_clip, speech_like(12 / 25), **(kwargs | {"output_path": None})).frames
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "OVERLAP_ON_CPU", False)
        inline = pipe(face_clip, speech_like(12 / 25), **(kwargs | {"output_path": None})).frames
    assert np.array_equal(threaded, inline)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "blend", failing_blend)
        with pytest.raises(RuntimeError, match="blend failed"):  # behind the model
            pipe(face_clip, speech_like(16 / 25), **kwargs)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module._Chunks, "get", failing_get)
        with pytest.raises(OSError, match="read failed"):  # ahead of it
            pipe(face_clip, speech_like(16 / 25), **kwargs)
    assert not list(tmp_path.iterdir())
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("genface-")]  # all stopped


def test_the_overlap_helpers_raise_the_threads_errors_and_stop_them() -> None:
    import threading

    from genface.pipelines.talking_face.overlap import Ahead, Behind

    def broken():
        yield 1
        raise ValueError("in the reader")

    with pytest.raises(ValueError, match="in the reader"), Ahead(broken(), 1) as items:
        assert next(items) == 1
        next(items)
    endless = iter(range(10**9))
    with Ahead(endless, 2) as items:  # left early: the thread stops, having read at most a few ahead
        assert next(items) == 0
    assert next(endless) < 10

    seen = []

    def consume(item: int) -> None:
        if item == 3:
            raise KeyError("in the writer")
        seen.append(item)

    with pytest.raises(KeyError, match="in the writer"), Behind(consume, 1) as behind:  # noqa: PT012
        for item in range(100):
            behind.put(item)
    assert seen == [0, 1, 2]
    with Behind(seen.append, 2) as behind:
        for item in range(4, 8):
            behind.put(item)
    assert seen == [0, 1, 2, 4, 5, 6, 7]
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("genface-")]
