"""LatentSyncPipeline on tiny random LatentSync components with real faces (dlib) and real speech (espeak-ng).

The parity test writes LatentSync's inference their way (``latentsync/pipelines/lipsync_pipeline.py`` with
``Audio2Feature``, ``ImageProcessor``, ``load_fixed_mask`` and ``AlignRestore``): their mel of the whole speech,
30 s pieces, ``get_sliced_feature`` and ``feature2chunks``; the faces aligned over the source video, looped
back and forth; one noise frame repeated; per clip the masked and reference latents, the mask resized, DDIM with
guidance, the decode, the paste and the restore; the components are the pipeline's own (their UNet and crop are
compared in tests/models and tests/identity). First checked by running their own ``LipsyncPipeline.__call__``
(outside the repo, on the CPU in float32, their face detector fed the same dlib landmarks): 22 of their 24 frames
kept (0.9 s of speech), one uint8 level apart in 0.006% of values.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from genface.errors import InsufficientMemoryError, InvalidArgumentError, InvalidMediaError, NoFaceError
from genface.models.latentsync.mask import mask_png
from genface.models.talking.audio import frame_count
from genface.pipelines import load_pipeline
from genface.pipelines.talking_face.latentsync import LatentSyncPipeline
from genface.pipelines.talking_face.tiny_latentsync import TINY_RESOLUTION, TINY_UNET, tiny_pipeline
from genface.provenance import verify
from genface.samples import speech_like
from tests.identity.test_affine_crop import _their_crop, _their_matrix, _their_restore


@pytest.fixture(scope="module")
def pipe(dlib_analyzer) -> LatentSyncPipeline:
    torch.manual_seed(4)  # random weights everywhere (the zero-initialised outputs too), so every path counts
    pipeline = tiny_pipeline(dlib_analyzer)
    state = pipeline.unet.state_dict()
    pipeline.unet.load_state_dict({k: v if k.endswith(".pe") else torch.randn_like(v) * 0.05 for k, v in state.items()})
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def clip(astronaut) -> np.ndarray:
    """A 5-frame video of a face moving sideways."""
    return np.stack([np.roll(astronaut, shift, axis=1) for shift in (0, 4, 8, 12, 16)])


# -- their inference, written their way ---------------------------------------------------------------------------


def _their_whisper_chunks(pipe: LatentSyncPipeline, audio: np.ndarray, fps: float) -> list[torch.Tensor]:
    """Audio2Feature.audio2feat (their log_mel_spectrogram, transcribe's 3000-frame pieces, embeddings[:int(n/2)])
    and feature2chunks (get_sliced_feature: 10 features from int(i * 50 / fps) - 4, clamped)."""
    from genface.models.latentsync.audio import LatentSyncWhisper

    whisper = LatentSyncWhisper(pipe.audio_encoder, pipe.feature_extractor)
    audio_t = torch.from_numpy(audio)
    stft = torch.stft(audio_t, 400, 160, window=torch.hann_window(400), return_complex=True)
    magnitudes = stft[:, :-1].abs() ** 2
    log_spec = torch.clamp(whisper.filters @ magnitudes, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    mel = (log_spec + 4.0) / 4.0
    embed_list = []
    for seek in range(0, mel.shape[-1], 3000):
        end_seek = min(seek + 3000, mel.shape[-1])
        embeddings = whisper.encode(mel[:, seek : seek + 3000])  # the encoder's states, compared in tests/models
        embed_list.append(embeddings[: int((end_seek - seek) / 2)])
    feature_array = torch.cat(embed_list)
    chunks, i = [], 0
    while True:
        start_idx = int(i * (50.0 / fps))
        center_idx = int(i * 50 / fps)
        idx = [min(max(0, j), len(feature_array) - 1) for j in range(center_idx - 4, center_idx + 6)]
        chunks.append(torch.cat([feature_array[j] for j in idx]).reshape(-1, feature_array.shape[-1]))
        i += 1
        if start_idx > len(feature_array):
            break
    return chunks


def _as_106(landmarks: np.ndarray) -> np.ndarray:
    """Their 106 points where LatentSync reads them, from dlib's 68 (their face_detector.py's 106-to-68 table)."""
    out = np.zeros((106, 2))
    out[[43, 48, 49, 51, 50]], out[101:106] = landmarks[17:22], landmarks[22:27]
    out[[74, 86, 77, 83]] = landmarks[[28, 29, 31, 35]]
    return out


def _their_frames(pipe, video, audio, steps, guidance, generator) -> np.ndarray:
    res, fps, num_frames = pipe.config.resolution, 25, 16
    whisper_chunks = _their_whisper_chunks(pipe, audio, fps)
    # affine_transform_video on the source frames (one AlignRestore: the smoothing carried), then loop_video
    faces, matrices, p_bias = [], [], None
    for frame in video:
        lmk = np.round(_as_106(pipe.face_analyzer.get(frame).landmarks)).astype(np.int_)
        points = np.round([lmk[[43, 48, 49, 51, 50]].mean(0), lmk[101:106].mean(0), lmk[[74, 77, 83, 86]].mean(0)])
        matrix, p_bias = _their_matrix(points, p_bias, res)
        faces.append(_their_crop(frame, matrix, res))
        matrices.append(matrix)
    order = [k for i in range(-(-len(whisper_chunks) // len(video))) for k in
             (range(len(video)) if i % 2 == 0 else range(len(video) - 1, -1, -1))][: len(whisper_chunks)]  # fmt: skip
    # load_fixed_mask: mask.png resized with Lanczos-4, / 255 (float64); ImageProcessor's Normalize(0.5, 0.5)
    mask_image = torch.from_numpy(
        cv2.resize(np.repeat(mask_png()[..., None], 3, -1), (res, res), interpolation=cv2.INTER_LANCZOS4) / 255.0
    ).permute(2, 0, 1)
    vae, unet, scheduler = pipe.vae, pipe.unet, pipe.scheduler
    scheduler.set_timesteps(steps)
    side = res // 8
    all_latents = torch.randn((1, 4, 1, side, side), generator=generator).repeat(1, 1, len(whisper_chunks), 1, 1)
    all_latents = all_latents * scheduler.init_noise_sigma
    synced = []
    for i in range(-(-len(whisper_chunks) // num_frames)):
        audio_embeds = torch.stack(whisper_chunks[i * num_frames : (i + 1) * num_frames])
        audio_embeds = torch.cat([torch.zeros_like(audio_embeds), audio_embeds])
        inference_faces = [torch.from_numpy(faces[k]).permute(2, 0, 1) for k in order[i * num_frames :][:num_frames]]
        latents = all_latents[:, :, i * num_frames : (i + 1) * num_frames]
        ref_pixel_values = torch.stack([(f / 255.0 - 0.5) / 0.5 for f in inference_faces])
        masked_pixel_values = ref_pixel_values * mask_image
        masks = mask_image[0:1].expand(len(inference_faces), 1, res, res)
        mask = F.interpolate(masks, size=(side, side)).float()
        masked_latents = vae.encode(masked_pixel_values.float()).latent_dist.sample(generator=generator) * 0.18215
        ref_latents = vae.encode(ref_pixel_values.float()).latent_dist.sample(generator=generator) * 0.18215
        as_5d = lambda t: t.permute(1, 0, 2, 3)[None].repeat(2, 1, 1, 1, 1)  # noqa: E731 - "f c h w -> 1 c f h w", x2
        mask, masked_latents, ref_latents = as_5d(mask), as_5d(masked_latents), as_5d(ref_latents)
        for t in scheduler.timesteps:
            unet_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            unet_input = torch.cat([unet_input, mask, masked_latents, ref_latents], dim=1)
            noise_pred = unet(unet_input, t, encoder_hidden_states=audio_embeds).sample
            noise_pred_uncond, noise_pred_audio = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + guidance * (noise_pred_audio - noise_pred_uncond)
            latents = scheduler.step(noise_pred, t, latents, eta=0.0, generator=generator).prev_sample
        decoded = vae.decode((latents / 0.18215)[0].permute(1, 0, 2, 3)).sample
        keep = 1 - masks.float()  # paste_surrounding_pixels_back(decoded, ref_pixel_values, 1 - masks)
        synced.append(decoded * keep + ref_pixel_values.float() * (1 - keep))
    synced = torch.cat(synced)
    return np.stack([_their_restore(video[k], synced[j], matrices[k], res) for j, k in enumerate(order)])


def test_frames_equal_their_lipsync_pipeline(pipe, clip) -> None:
    """17 frames of speech: their 19 make two clips, the second run with their 3 frames, of which 1 is kept."""
    audio = speech_like(0.7)
    with torch.no_grad():
        theirs = _their_frames(pipe, clip, audio, 3, 1.5, torch.Generator().manual_seed(1247))
    ours = pipe(clip, audio, audio_rate=16000, fps=25, num_inference_steps=3, measure=False).frames
    assert len(theirs) == 19 and ours.shape == (frame_count(len(audio), 25), *clip.shape[1:]) == (17, 512, 512, 3)
    diff = np.abs(ours.astype(int) - theirs[:17])
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # uint8 truncation flips on float rounding
    changed = (ours != clip[[0, 1, 2, 3, 4, 4, 3, 2, 1, 0] * 2][:17]).any(-1).mean(axis=(1, 2))
    assert (changed > 0.02).all()  # every frame's lower face was redrawn


def test_their_seed_by_default_and_a_generator_otherwise(pipe, astronaut) -> None:
    audio = speech_like(0.2)
    first = pipe(astronaut, audio, audio_rate=16000, num_inference_steps=2, measure=False).frames
    assert np.array_equal(first, pipe(astronaut, audio, audio_rate=16000, num_inference_steps=2, measure=False).frames)
    seeded = pipe(astronaut, audio, audio_rate=16000, num_inference_steps=2, measure=False,
                  generator=torch.Generator().manual_seed(1247)).frames  # fmt: skip
    other = pipe(astronaut, audio, audio_rate=16000, num_inference_steps=2, measure=False,
                 generator=torch.Generator().manual_seed(7)).frames  # fmt: skip
    assert np.array_equal(seeded, first) and not np.array_equal(other, first)


def test_their_mask_png_row_by_row() -> None:
    """The SHA-256 of the pixels of LatentSync's latentsync/utils/mask.png (one of its three equal channels)."""
    digest = hashlib.sha256(mask_png().tobytes()).hexdigest()
    assert digest == "f8b78274914708ee3b64f800d9c4571b00906863af5df049240c708ee33ef869"


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed; .ci/run installs it (apt-get install espeak-ng).")
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "Hi there."], check=True)
    return path


def test_writes_a_marked_mp4_of_the_speech(pipe, astronaut, speech_wav, tmp_path) -> None:
    out = tmp_path / "dub.mp4"
    output = pipe(astronaut, speech_wav, output_path=out, num_inference_steps=2)
    assert output.frames is None and output.path == out
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(container.streams.video[0]))
        assert container.streams.audio[0].rate == 22050  # espeak-ng's own rate, kept
    assert frames == len(output.pitch) == frame_count(len(output.audio), 25)
    assert abs(frames / 25 - len(output.audio) / 16000) <= 1 / 25
    mark = verify(out)
    assert mark["synthetic"] and mark["metadata"]["model"] == "tiny-latentsync"
    assert output.mouth_opening.shape == (frames,) and output.facesim.per_frame.shape == (-(-frames // 5),)


def test_bad_inputs_are_refused_before_model_work(pipe, astronaut, monkeypatch) -> None:
    def no_model_work(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(LatentSyncPipeline, "render_clip", no_model_work)
    with pytest.raises(NoFaceError, match="No face found in any of the 2 frames"):
        pipe(np.zeros((2, 64, 64, 3), np.uint8), speech_like(0.2), audio_rate=16000)
    monkeypatch.setattr("genface.pipelines.talking_face.dubbing.IN_MEMORY_BYTES", 10 * astronaut.nbytes)
    with pytest.raises(InsufficientMemoryError, match=r"makes 25 frames of 512x512.*output_path=.*pipe.stream"):
        pipe(astronaut, speech_like(1.0), audio_rate=16000)
    with pytest.raises(InvalidMediaError, match="silent"):
        pipe(astronaut, np.zeros(8000, np.float32), audio_rate=16000)
    for arguments, match in [
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"fps": 0}, "fps must be between"),
        ({"generator": 3}, "torch.Generator"),
    ]:
        with pytest.raises(InvalidArgumentError, match=match):
            pipe(astronaut, speech_like(0.2), audio_rate=16000, **arguments)


def test_an_engine_without_landmarks_is_refused(pipe, astronaut) -> None:
    from genface.identity import Face

    class FivePoints:  # an insightface pack without 2d106det.onnx
        min_face_size = 0
        backend = type("Backend", (), {"name": "insightface"})()

        def detect(self, image):
            return [
                Face([150, 60, 380, 330], 0.9, np.array([[220, 160], [310, 160], [265, 210], [230, 260], [300, 260]]))
            ]

    original = pipe.face_analyzer
    pipe.face_analyzer = FivePoints()
    try:
        with pytest.raises(InvalidArgumentError, match="68 or 106 face landmarks.*2d106det"):
            pipe(astronaut, speech_like(0.2), audio_rate=16000)
    finally:
        pipe.face_analyzer = original


def test_published_layout_saved_folder_and_load_pipeline(pipe, astronaut, tmp_path) -> None:
    published = tmp_path / "LatentSync-1.6"
    (published / "whisper").mkdir(parents=True)
    torch.save({"state_dict": pipe.unet.state_dict()}, published / "latentsync_unet.pt")
    config = tmp_path / "stage2_tiny.yaml"
    data = {"num_frames": 16, "resolution": TINY_RESOLUTION, "audio_feat_length": [2, 2]}
    config.write_text(yaml.safe_dump({"data": data, "model": TINY_UNET}))
    pipe.audio_encoder.save_pretrained(tmp_path / "whisper")
    pipe.feature_extractor.save_pretrained(tmp_path / "whisper")
    loaded = LatentSyncPipeline.from_pretrained(
        published, config=config, vae=pipe.vae, audio_encoder=tmp_path / "whisper", face_analyzer=pipe.face_analyzer
    )
    loaded.set_progress_bar_config(disable=True)
    audio = speech_like(0.3)
    expected = pipe(astronaut, audio, audio_rate=16000, num_inference_steps=2, measure=False).frames
    assert loaded.config.resolution == TINY_RESOLUTION
    assert np.array_equal(
        loaded(astronaut, audio, audio_rate=16000, num_inference_steps=2, measure=False).frames, expected
    )
    loaded.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    card = (tmp_path / "saved" / "README.md").read_text()
    assert "LatentSyncPipeline.from_pretrained" in card and "Open RAIL++-M" in card
    again = load_pipeline("talk", str(tmp_path / "saved"), dtype=torch.float32, face_analyzer=pipe.face_analyzer)
    assert isinstance(again, LatentSyncPipeline) and again.config.resolution == TINY_RESOLUTION
    again.set_progress_bar_config(disable=True)
    assert np.array_equal(
        again(astronaut, audio, audio_rate=16000, num_inference_steps=2, measure=False).frames, expected
    )


def test_a_published_v15_checkpoint_with_the_v16_config_is_refused_in_one_line(tmp_path) -> None:
    folder = tmp_path / "LatentSync-1.5"
    folder.mkdir()
    with open(folder / "latentsync_unet.pt", "wb") as f:  # 1.5's published size, no pickle: nothing is read
        f.truncate(5_072_348_184)
    config = tmp_path / "stage2_512.yaml"
    config.write_text(yaml.safe_dump({"data": {"resolution": 512}, "model": TINY_UNET}))
    with pytest.raises(InvalidArgumentError, match=r"LatentSync 1.5's checkpoint \(trained at 256 px\) but .*512 px"):
        LatentSyncPipeline.from_pretrained(folder, config=config)


def test_load_pipeline_names_the_dubbing_models(monkeypatch) -> None:
    assert isinstance(load_pipeline("talk", "tiny-latentsync"), LatentSyncPipeline)
    calls = []
    monkeypatch.setattr(LatentSyncPipeline, "from_pretrained", classmethod(lambda cls, *a, **k: calls.append((a, k))))
    load_pipeline("talk", "latentsync")
    load_pipeline("talk", "ByteDance/LatentSync-1.5")
    assert calls == [((), {"dtype": torch.float16}), (("ByteDance/LatentSync-1.5",), {"dtype": torch.float16})]
    with pytest.raises(InvalidArgumentError, match="tiny-latentsync"):
        load_pipeline("talk", "tiny-wav2lip")


def test_fast_mode_is_exact_and_off_is_the_default_bit_for_bit(pipe, astronaut) -> None:
    """Fused projections (the CPU's fast mode: no compilation here): the same frames within float rounding."""
    audio = speech_like(0.3)
    call = {"audio_rate": 16000, "num_inference_steps": 2, "measure": False}
    default = pipe(astronaut, audio, **call).frames
    report = pipe.enable_fast_mode(compile=False, attention=None)
    try:
        assert report["fuse_qkv"] == "applied"
        fast = pipe(astronaut, audio, **call).frames
    finally:
        pipe.disable_fast_mode()
    assert np.abs(fast.astype(int) - default).max() <= 1
    assert np.array_equal(pipe(astronaut, audio, **call).frames, default)
