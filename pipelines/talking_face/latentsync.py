"""LatentSyncPipeline: a face (video or photo) + speech -> lip-synced video at 512 px, with LatentSync 1.6 weights.

LatentSync's inference as published (``latentsync/pipelines/lipsync_pipeline.py``): each frame's face is aligned on
three points (:mod:`genface.identity.affine_crop`, the crop's smoothing carried over the video's frames), resized to
the model's resolution; its pixels times the fixed mouth mask and the whole crop are encoded by the VAE (a posterior
sample each, drawn from ``generator``), and with the mask (resized to the latents) and one noise frame repeated over
the video they are the UNet's 13 input channels; DDIM (20 steps) with classifier-free guidance (1.5; the
unconditional branch gets zero audio) denoises 16-frame clips conditioned on Whisper-tiny's per-frame windows
(:mod:`genface.models.latentsync.audio`); the decoded crop keeps the source's pixels where the mask is white and is
warped back into the frame through a soft, eroded mask. A video shorter than the speech is played forwards and
backwards; the output lasts as long as the speech (their script writes about two frames more: the clip that holds
the last frame is run with them, so every frame kept is theirs). Faces are found and followed by the shared identity
stack (dlib's 68 landmarks or insightface's 106), not by LatentSync's own detector call.

Not taken over: their DeepCache option (an approximation), and their conversion of every video to 25 fps (genface
keeps the video's rate; the audio windows follow it).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline

from genface.errors import InvalidArgumentError, MissingWeightsError
from genface.identity import FaceAnalyzer
from genface.identity.affine_crop import affine_crops, affine_matrices, restore_face
from genface.identity.track import track_boxes, track_face
from genface.models.latentsync.audio import (
    HOP,
    PIECE_FRAMES,
    LatentSyncSpeech,
    LatentSyncWhisper,
    feature_total,
    their_frame_count,
    window_positions,
)
from genface.models.latentsync.mask import mask_image
from genface.models.latentsync.published import (
    HUB_IDS,
    NUM_FRAMES,
    SCHEDULER_CONFIG,
    UNET_FILE,
    WHISPER_FILE,
    load_openai_whisper,
    load_unet,
)
from genface.models.latentsync.unet import LatentSyncUNet
from genface.models.talking.audio import frame_count
from genface.models.talking.live import FEATURE_SAMPLES, Block, live_blocks
from genface.models.talking.silence import SilenceGate
from genface.pipelines._memory import LowMemoryMixin
from genface.pipelines._speed import FastModeMixin, unfuse_legacy_attention
from genface.pipelines.talking_face.dubbing import (
    ClosedInSilence,
    DubSink,
    check_in_memory,
    check_silence,
    checked_fps,
    frame_pitch,
    keep_source,
    mix_windows,
    silence_weights,
)
from genface.pipelines.talking_face.pipeline import (
    DEFAULT_VAE,
    DEFAULT_WHISPER,
    StepCallback,
    TalkingFacePipeline,
    TalkingFacePipelineOutput,
    pingpong,
)
from genface.pipelines.talking_face.prepared import FaceTrackBoxes, Frames
from genface.pipelines.talking_face.regions import integer_box

logger = logging.getLogger(__name__)

DEFAULT_MODEL = HUB_IDS["1.6"]
#: Their script's seed (``--seed 1247``): the default generator's, so a run without one is repeatable.
DEFAULT_SEED = 1247
#: Subfolders of a folder written by :meth:`LatentSyncPipeline.save_pretrained`.
COMPONENTS = ("unet", "vae", "audio_encoder", "feature_extractor", "scheduler")


@dataclass
class _Run:
    """A call's sampling settings: the noise, DDIM steps, guidance scale and silence mode."""

    generator: torch.Generator
    steps: int
    guidance: float
    silence: str


@dataclass
class _Faces:
    """The followed face: per source frame its crop matrix, and the boxes the measurements cut around."""

    matrices: np.ndarray
    track: FaceTrackBoxes


class LatentSyncPipeline(LowMemoryMixin, FastModeMixin, DiffusionPipeline):
    """Face video or photo + speech -> lip-synced video (LatentSync 1.6 at 512 px, or 1.5 at 256).

    Components: ``unet`` (:class:`~genface.models.latentsync.unet.LatentSyncUNet`), ``vae`` (``AutoencoderKL``,
    sd-vae-ft-mse), ``audio_encoder`` (transformers' ``WhisperModel``, whisper-tiny), ``feature_extractor``
    (``WhisperFeatureExtractor``: its mel filters), ``scheduler`` (``DDIMScheduler``); the shared ``face_analyzer``.
    ``resolution``: the face crop's side (512 for 1.6, 256 for 1.5).
    """

    model_card = {
        "summary": "Audio-driven lip sync (LatentSync 1.6 renderer): a face video or photo and speech become a "
        "lip-synced video, the mouth redrawn by latent diffusion at 512 px.",
        "licences": "LatentSync's code is Apache-2.0 and its weights CreativeML Open RAIL++-M; sd-vae-ft-mse (MIT) "
        "and Whisper (MIT) carry their own.",
        "tags": ["latentsync"],
    }

    model_cpu_offload_seq = "audio_encoder->unet->vae"

    def __init__(
        self,
        unet: LatentSyncUNet,
        vae: AutoencoderKL,
        audio_encoder: Any,
        feature_extractor: Any,
        scheduler: DDIMScheduler,
        resolution: int = 512,
        face_analyzer: FaceAnalyzer | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(
            unet=unet, vae=vae, audio_encoder=audio_encoder, feature_extractor=feature_extractor, scheduler=scheduler
        )
        self.register_to_config(resolution=resolution)
        self.face_analyzer = face_analyzer

    # -- loading and saving --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike = DEFAULT_MODEL,
        *,
        config: str | os.PathLike | None = None,
        resolution: int | None = None,
        vae: AutoencoderKL | str | os.PathLike = DEFAULT_VAE,
        audio_encoder: str | os.PathLike | None = None,
        face_analyzer: FaceAnalyzer | str = "auto",
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> LatentSyncPipeline:
        """Load LatentSync from its Hub repository (``ByteDance/LatentSync-1.6`` or ``-1.5``), a local copy of it (a
        folder with ``latentsync_unet.pt``, read with ``weights_only``, and ``whisper/tiny.pt``), or a folder written
        by :meth:`save_pretrained` (safetensors).

        ``config``: one of their ``configs/unet/*.yaml`` (default: the published network; its ``data.resolution``
        is the crop size); ``resolution``: 512 or 256 (default: the config's, else the published checkpoint's
        version, told by its size; else 512). A 1.5 checkpoint asked for 512 px, or a 1.6 one for 256, is refused
        in one line before it is read. ``vae``: sd-vae-ft-mse (Hub id or folder), as their script takes it.
        ``audio_encoder``: a Whisper Hub id or folder (default: the repository's ``whisper/tiny.pt``, else
        ``openai/whisper-tiny``).
        """
        if kwargs:
            raise InvalidArgumentError(f"Unknown options for LatentSyncPipeline: {', '.join(kwargs)}.")
        from transformers import WhisperFeatureExtractor, WhisperModel

        from genface.hub import load_or_explain, resolve_folder

        folder = resolve_folder(
            pretrained_model_name_or_path,
            allow_patterns=["model_index.json", UNET_FILE, WHISPER_FILE, *(f"{name}/*" for name in COMPONENTS)],
        )
        if (folder / "model_index.json").is_file() and (folder / "unet").is_dir():
            saved = json.loads((folder / "model_index.json").read_text())
            pipe = cls(
                load_or_explain(LatentSyncUNet.from_pretrained, folder / "unet"),
                load_or_explain(AutoencoderKL.from_pretrained, folder / "vae"),
                load_or_explain(WhisperModel.from_pretrained, folder / "audio_encoder"),
                load_or_explain(WhisperFeatureExtractor.from_pretrained, folder / "feature_extractor"),
                DDIMScheduler.from_pretrained(folder / "scheduler"),
                resolution=saved.get("resolution", 512),
            )
        else:
            if not (folder / UNET_FILE).is_file():
                raise MissingWeightsError(
                    f"{folder} is neither LatentSync's layout ({UNET_FILE}, {WHISPER_FILE}: `hf download "
                    f"{DEFAULT_MODEL} {UNET_FILE} {WHISPER_FILE} --local-dir DIR`) nor a folder saved by "
                    "LatentSyncPipeline.save_pretrained."
                )
            unet, resolution = load_unet(folder / UNET_FILE, config, resolution)
            if not isinstance(vae, AutoencoderKL):
                vae = load_or_explain(AutoencoderKL.from_pretrained, vae)
            if audio_encoder is None and (folder / WHISPER_FILE).is_file():
                whisper = load_openai_whisper(folder / WHISPER_FILE)  # its mel filters are Whisper's own, made here
                extractor = WhisperFeatureExtractor(feature_size=whisper.config.num_mel_bins)
            else:
                whisper = load_or_explain(WhisperModel.from_pretrained, audio_encoder or DEFAULT_WHISPER)
                extractor = load_or_explain(WhisperFeatureExtractor.from_pretrained, audio_encoder or DEFAULT_WHISPER)
            pipe = cls(unet, vae, whisper.eval(), extractor, DDIMScheduler(**SCHEDULER_CONFIG), resolution=resolution)
        if dtype is not None:
            pipe.to(dtype=dtype)
        pipe.face_analyzer = FaceAnalyzer(face_analyzer) if isinstance(face_analyzer, str) else face_analyzer
        pipe.register_to_config(_name_or_path=os.fspath(pretrained_model_name_or_path))
        return pipe

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, repo_id: str | None = None, **kwargs: Any
    ) -> None:
        """Save every component as safetensors in its own subfolder (usable by :meth:`from_pretrained` offline), the
        resolution in ``model_index.json``, plus a model card; ``push_to_hub`` then uploads the folder."""
        from genface.hub import finish_save, hub_ids, pop_push_options

        push = pop_push_options(kwargs)
        super().save_pretrained(save_directory, **kwargs)
        names = (self.name_or_path, self.vae.config.get("_name_or_path"), self.audio_encoder.config.name_or_path)
        finish_save(self, save_directory, hub_ids(*names), push_to_hub, repo_id, push)

    # -- speed ---------------------------------------------------------------------------------------------

    def fast_blocks(self) -> list[torch.nn.Module]:
        """The UNet's down, middle and up blocks (nearly all of its work)."""
        return [*self.unet.down_blocks, self.unet.mid_block, *self.unet.up_blocks]

    def fuse_projections(self, fuse: bool) -> None:
        """diffusers' fused query/key/value (self-attention) and key/value (audio cross-attention) projections."""
        from diffusers.models.attention_processor import Attention, AttnProcessor2_0, FusedAttnProcessor2_0

        for module in self.unet.modules():
            if isinstance(module, Attention):
                if fuse:
                    module.fuse_projections()
                    module.set_processor(FusedAttnProcessor2_0())
                elif module.fused_projections:
                    unfuse_legacy_attention(module)
                    module.set_processor(AttnProcessor2_0())

    def attention_shape(self) -> tuple[int, int, int, int]:
        """The spatial self-attention at the pipeline's resolution: 16 frames twice (guidance), 8 heads."""
        side = self.config.resolution // 8
        channels = self.unet.config.block_out_channels[0]
        heads = self.unet.config.attention_head_dim
        return (2 * NUM_FRAMES, heads, side * side, channels // heads)

    # -- the face ------------------------------------------------------------------------------------------

    def _analyzer(self) -> FaceAnalyzer:
        if self.face_analyzer is None:
            self.face_analyzer = FaceAnalyzer("auto")
        return self.face_analyzer

    def _follow(self, frames: Frames, face_index: int | None) -> _Faces:
        """Detect once in every source frame, follow one face (lost frames hold the nearest face's landmarks), and
        fit the crop of each frame in order."""
        analyzer = self._analyzer()
        track = track_face(frames, analyzer, face_index, progress=not isinstance(frames, list))
        first = int(np.flatnonzero(track.found)[0])
        if any(face is not None and (face.landmarks is None or len(face.landmarks) not in (68, 106))
               for face in track.faces):  # fmt: skip
            raise InvalidArgumentError(
                f"LatentSync's crop needs 68 or 106 face landmarks, and the {analyzer.backend.name} engine gives none: "
                "use FaceAnalyzer('dlib') or an insightface pack with 2d106det.onnx (buffalo_l, antelopev2)."
            )
        points = len(track.faces[first].landmarks)
        landmarks = track_boxes(track, lambda face: face.landmarks, sigma=0).reshape(-1, points, 2)
        shape = frames[first].shape
        boxes = track_boxes(track, lambda face: face.bbox, sigma=0)
        faces = FaceTrackBoxes([integer_box(b, shape) for b in boxes], track.found, first, track.faces[first])
        return _Faces(affine_matrices(landmarks, self.config.resolution), faces)

    # -- the model path ------------------------------------------------------------------------------------

    def _encode(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """VAE posterior samples of (frames, 3, res, res) pixels in [-1, 1], scaled: (1, 4, frames, h, w)."""
        scale = self.vae.config.scaling_factor
        latents = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.sample(generator=generator) * scale
        return latents.transpose(0, 1)[None]

    @torch.no_grad()
    def render_clip(
        self,
        crops: np.ndarray,
        audio: torch.Tensor,
        noise: torch.Tensor,
        generator: torch.Generator,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.5,
    ) -> torch.Tensor:
        """One clip: aligned face crops (frames x res x res x 3 uint8) and their audio windows (frames x tokens x
        width) -> the generated faces with the source's pixels kept where the mask is white (frames x 3 x res x
        res, float in [-1, 1]). ``noise``: the (1, 4, 1, h, w) noise frame every clip starts from."""
        device, dtype = self._execution_device, self.unet.dtype
        frames, resolution = len(crops), self.config.resolution
        mask = torch.from_numpy(np.array(mask_image(resolution)))  # float64, 1 = kept
        pixels = (torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2) / 255.0 - 0.5) / 0.5
        masked = (pixels * mask).to(torch.float32)
        side = resolution // self.vae_scale_factor
        mask_latents = F.interpolate(mask.expand(frames, 1, resolution, resolution), size=(side, side))
        mask_latents = mask_latents.to(device, dtype).transpose(0, 1)[None]
        masked_latents = self._encode(masked.to(device), generator).to(dtype)
        reference_latents = self._encode(pixels.to(device), generator).to(dtype)
        guided = guidance_scale > 1.0
        conditions = audio.to(device, dtype)[None]
        if guided:
            conditions = torch.cat([torch.zeros_like(conditions), conditions])
        extra = torch.cat([mask_latents, masked_latents, reference_latents], dim=1)
        if guided:
            extra = torch.cat([extra] * 2)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        latents = noise.to(device, dtype).repeat(1, 1, frames, 1, 1) * self.scheduler.init_noise_sigma
        for t in self.scheduler.timesteps:
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = torch.cat([self.scheduler.scale_model_input(model_input, t), extra], dim=1)
            noise_pred = self.unet(model_input, t, encoder_hidden_states=conditions).sample
            if guided:
                unconditional, conditional = noise_pred.chunk(2)
                noise_pred = unconditional + guidance_scale * (conditional - unconditional)
            latents = self.scheduler.step(noise_pred, t, latents, eta=0.0, generator=generator).prev_sample
        latents = latents[0].transpose(0, 1) / self.vae.config.scaling_factor
        decoded = self.vae.decode(latents.to(self.vae.dtype)).sample
        kept = mask[None, None].to(device, decoded.dtype)
        return decoded * (1 - kept) + pixels.to(device, decoded.dtype) * kept

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def _noise(self, generator: torch.Generator) -> torch.Tensor:
        """The one noise frame (1, 4, 1, h, w) every frame of a run starts from (drawn first, as theirs)."""
        side = self.config.resolution // self.vae_scale_factor
        shape = (1, self.vae.config.latent_channels, 1, side, side)
        from diffusers.utils.torch_utils import randn_tensor

        return randn_tensor(shape, generator=generator, device=self._execution_device, dtype=self.unet.dtype)

    def _clip(
        self,
        frames: Frames,
        faces: _Faces,
        start: int,
        count: int,
        kept: int,
        audio: torch.Tensor,
        noise: torch.Tensor,
        weights: np.ndarray | None,
        run: _Run,
    ) -> np.ndarray:
        """Output frames ``start`` to ``start + kept - 1`` of a clip of ``count`` frames with audio windows ``audio``;
        with the kept frames' ``weights`` (``silence="source"``) the source frame is kept in the silences."""
        indices = [pingpong(i, len(faces.matrices)) for i in range(start, start + count)]
        sources = [frames[k] for k in indices]
        resolution = self.config.resolution
        crops = np.concatenate([affine_crops(s[None], faces.matrices[k : k + 1], resolution)
                                for s, k in zip(sources, indices, strict=True)])  # fmt: skip
        faces_out = self.render_clip(crops, audio, noise, run.generator, run.steps, run.guidance)
        out = np.stack([restore_face(sources[j], faces_out[j], faces.matrices[indices[j]], resolution)
                        for j in range(kept)])  # fmt: skip
        return out if weights is None else keep_source(out, sources[:kept], weights)

    def _frames(
        self,
        frames: Frames,
        faces: _Faces,
        windows: Callable[[int, int], torch.Tensor],
        num_frames: int,
        clip_end: int,
        weights: np.ndarray | None,
        run: _Run,
        callback: StepCallback | None = None,
    ) -> Iterator[np.ndarray]:
        """The output frames in order, a clip at a time: clip ``c`` holds frames ``16 c`` up to ``clip_end`` (their
        frame count), of which those before ``num_frames`` are kept; ``callback`` is called after each clip."""
        noise = self._noise(run.generator)
        for index, start in enumerate(range(0, num_frames, NUM_FRAMES)):
            count = min(NUM_FRAMES, clip_end - start)
            kept = min(count, num_frames - start)
            source = weights[start : start + kept] if run.silence == "source" else None
            clip = self._clip(frames, faces, start, count, kept, windows(start, count), noise, source, run)
            if callback is not None:
                callback(self, index, None, {})
            yield clip

    def _check_call(self, steps: int, guidance: float, generator: torch.Generator | None, silence: str) -> _Run:
        if not (isinstance(steps, int) and 1 <= steps <= self.scheduler.config.num_train_timesteps):
            raise InvalidArgumentError(f"num_inference_steps must be between 1 and 1000, got {steps}.")
        if not (isinstance(guidance, (int, float)) and math.isfinite(guidance) and 0 <= guidance <= 20):
            raise InvalidArgumentError(f"guidance_scale must be between 0 and 20, got {guidance}.")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise InvalidArgumentError("generator must be a torch.Generator (or None for their seed, 1247).")
        return _Run(generator or torch.Generator().manual_seed(DEFAULT_SEED), steps, guidance, check_silence(silence))

    def _whisper(self) -> LatentSyncWhisper:
        return LatentSyncWhisper(self.audio_encoder, self.feature_extractor)

    def _live_windows(self, whisper: LatentSyncWhisper, block: Block, fps: float, silent: bool) -> torch.Tensor:
        """A live block's audio windows from its own speech window (:mod:`genface.models.talking.live`): the mel of
        that window, its features, LatentSync's positions clamped to the speech's features once it has ended;
        ``silent``: those of digital silence in the same place."""
        audio = np.zeros_like(block.audio) if silent else block.audio
        features = whisper.encode(whisper.mel(audio)[:, :PIECE_FRAMES])
        total = (
            feature_total(block.total // HOP)
            if block.total is not None
            else block.offset // FEATURE_SAMPLES + len(features)
        )
        positions = window_positions(block.start, block.count, fps, total) - block.offset // FEATURE_SAMPLES
        return features[positions].flatten(1, 2)

    @torch.no_grad()
    def stream(
        self,
        face: Any,
        speech_chunks: Iterable[np.ndarray],
        *,
        fps: float | None = None,
        face_index: int | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.5,
        generator: torch.Generator | None = None,
        silence: str = "animate",
    ) -> Iterator[np.ndarray]:
        """Frames as speech arrives: ``speech_chunks`` are 16 kHz mono float arrays of any length (a microphone, a
        text-to-speech stream). Each 16-frame clip is made once its speech and 0.24 s after it are in, from the
        30 s of speech ending there (:mod:`genface.models.talking.live`), so the first frames come out when
        16 / fps s + 0.24 s of speech (0.88 s at 25 fps) are in, plus a clip's rendering; then 16 frames at a time.
        The frames are the same however the speech is cut into chunks, and close to, not equal to, the whole
        speech's (whose Whisper pieces are fixed 30 s). Faces are followed in ``face`` first; the rest as in
        :meth:`__call__`. Memory stays bounded however long the speech."""
        run = self._check_call(num_inference_steps, guidance_scale, generator, silence)
        frames, fps, _ = TalkingFacePipeline._load_face(face, fps)
        fps = checked_fps(fps)
        faces = self._follow(frames, face_index)
        whisper, noise = self._whisper(), self._noise(run.generator)
        gate = None if run.silence == "animate" else SilenceGate(fps)

        def last_frame(samples: int) -> int:
            return their_frame_count(feature_total(samples // HOP), fps)

        for block in live_blocks(speech_chunks, fps, NUM_FRAMES, gate, last_frame):
            audio = self._live_windows(whisper, block, fps, False)
            if run.silence == "closed":
                weights = np.pad(block.weights, (0, block.count - block.kept), mode="edge")
                audio = mix_windows(audio, self._live_windows(whisper, block, fps, True), weights)
            source = block.weights if run.silence == "source" else None
            yield self._clip(frames, faces, block.start, block.count, block.kept, audio, noise, source, run)

    @torch.no_grad()
    def __call__(
        self,
        face: Any,
        audio: str | os.PathLike | np.ndarray,
        *,
        audio_rate: int | None = None,
        fps: float | None = None,
        face_index: int | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.5,
        generator: torch.Generator | None = None,
        silence: str = "animate",
        output_path: str | os.PathLike | None = None,
        measure: bool = True,
        facesim_every: int = 5,
        callback_on_step_end: StepCallback | None = None,
    ) -> TalkingFacePipelineOutput:
        """Lip-sync ``face`` to ``audio``.

        Args:
            face: a video file or TxHxWx3 uint8 array (dub mode), or a photo (path, array, PIL image).
            audio: a speech file (wav, mp3, m4a, a video's track) or samples with ``audio_rate``.
            fps: frame rate (default: the video's, or 25 for a photo or array).
            face_index: which face to follow when there are several (0 = largest in the first frame).
            num_inference_steps, guidance_scale: DDIM steps and classifier-free guidance (theirs: 20, 1.5).
            generator: the noise (one frame for the whole video, then the VAE's posterior samples clip by clip);
                None: a CPU generator seeded with their script's 1247.
            silence: where the speech is silent, ``"source"`` keeps the source frame (a still mouth), ``"closed"``
                draws the mouth the model gives silence, ``"animate"`` (theirs) follows the speech throughout
                (:mod:`~genface.pipelines.talking_face.dubbing`).
            output_path: write the mp4 (with the speech, marked as synthetic) while rendering, keeping no frames in
                memory; the file appears only when complete. Without it the frames are returned, which is refused
                in one line when they would not fit :data:`~genface.pipelines.talking_face.dubbing.IN_MEMORY_BYTES`.
            measure: report FaceSim (every ``facesim_every`` frames) and the lip-sync proxy.
            callback_on_step_end: called after each clip of 16 frames, as diffusers' callback of that name, with
                ``(pipeline, clip index, None, {})``; an exception raised in it stops the call (no file is written).
        """
        run = self._check_call(num_inference_steps, guidance_scale, generator, silence)
        frames, fps, _ = TalkingFacePipeline._load_face(face, fps)
        fps = checked_fps(fps)
        speech = TalkingFacePipeline._load_speech(audio, audio_rate, resampler="ffmpeg")  # whisper's load_audio
        num_frames = frame_count(len(speech), fps)
        check_in_memory(num_frames, frames[0].shape, output_path)
        faces = self._follow(frames, face_index)
        windows = LatentSyncSpeech(self._whisper(), speech, fps)
        clip_end = max(windows.their_frames, num_frames)
        weights = silence_weights(speech, fps, num_frames, silence)
        audio_windows: Callable[[int, int], torch.Tensor] = windows
        if run.silence == "closed":
            silent = LatentSyncSpeech(self._whisper(), np.zeros_like(speech), fps)
            audio_windows = ClosedInSilence(windows, silent, np.pad(weights, (0, clip_end - num_frames), mode="edge"))
        rendered = self._frames(frames, faces, audio_windows, num_frames, clip_end, weights, run, callback_on_step_end)
        sink = DubSink(self, frames, faces.track, speech, fps, num_frames, measure, facesim_every)
        result = sink.run(rendered, audio, audio_rate, output_path)
        return TalkingFacePipelineOutput(
            frames=result.frames,
            fps=fps,
            audio=speech,
            pitch=frame_pitch(speech, fps, num_frames),
            path=result.path,
            lost_frames=faces.track.lost,
            facesim=result.facesim,
            mouth_opening=result.mouth_opening,
            lip_sync=result.lip_sync,
        )
