"""TalkingFacePipeline: a face (video or photo) + speech -> lip-synced video, with MuseTalk v1.5 weights.

The renderer is diffusers' own ``UNet2DConditionModel`` and ``AutoencoderKL`` (sd-vae-ft-mse), run as
MuseTalk does: one UNet call at timestep 0 on the 256x256 lower-face crop's latents (the crop with its lower
half blacked out, beside the unmasked crop as reference), conditioned on Whisper-tiny's per-frame windows
plus a sinusoidal position code; the decoded crop is blended back through a parsed, morphology-grown mask.
Faces are found, tracked and smoothed with the shared identity stack; audio goes through
``genface.models.talking.audio``. Latents are the VAE posterior's mode (MuseTalk's training uses the mode;
its inference script draws a sample, which only adds noise), so results are deterministic.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils import BaseOutput

from genface.errors import InvalidArgumentError, InvalidMediaError, MissingWeightsError, OfflineError
from genface.identity import Face, FaceAnalyzer, FaceParser, FaceSimResult
from genface.identity.track import FaceTrack, track_boxes, track_face
from genface.media import load_audio, load_image
from genface.media.video import VideoReader, is_video_path
from genface.models.talking.audio import (
    FEATURES_PER_SECOND,
    SAMPLE_RATE,
    SpeechWindows,
    WhisperFrameFeatures,
    add_positional_encoding,
    frame_count,
    is_silent,
    pitch_contour,
)
from genface.models.talking.metrics import frame_loudness, lip_sync_correlation, mouth_opening
from genface.pipelines._memory import LowMemoryMixin
from genface.pipelines._speed import FastModeMixin, unfuse_legacy_attention
from genface.pipelines.talking_face.regions import BlendMask, blend, blend_mask, crop_box, integer_box

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "TMElyralab/MuseTalk"
DEFAULT_VAE = "stabilityai/sd-vae-ft-mse"
DEFAULT_WHISPER = "openai/whisper-tiny"
#: Where MuseTalk's Hub repository keeps the v1.5 UNet, and the face parser of its ``models/`` folder.
MUSETALK_FOLDER = "musetalkV15"
MUSETALK_CONFIG = "musetalk.json"
MUSETALK_WEIGHTS = "unet.pth"
MUSETALK_PARSER_FOLDER = "face-parse-bisent"
MUSETALK_PARSER_CHECKPOINT = "79999_iter.pth"
#: The Hub repository that publishes the same ``79999_iter.pth`` (MuseTalk's script fetches it from elsewhere),
#: used when the model's folder has no face parser.
DEFAULT_FACE_PARSER = "qihoo360/FLUX-Makeup"
#: Where a converted (diffusers-layout) folder keeps the face parser.
FACE_PARSER_FOLDER = "face_parser"
CROP_SIZE = 256
DEFAULT_FPS = 25.0
#: Decoded frames of a video being dubbed that are held at once (the rest are decoded again when needed).
FRAME_BUFFER_BYTES = 256 * 2**20
#: Motion hook for photo mode: (photo, frame index, f0 of that frame in Hz) -> the frame to lip-sync.
MotionHook = Callable[[np.ndarray, int, float], np.ndarray]


@dataclass
class TalkingFacePipelineOutput(BaseOutput):
    """The result of one run.

    ``frames``: TxHxWx3 uint8 RGB (None when written straight to ``path``); ``fps``; ``audio``: the speech,
    16 kHz mono; ``pitch``: f0 per frame in Hz (0 unvoiced); ``lost_frames``: source frames where the face
    was not found (the nearest box was held); ``facesim``: FaceSim of sampled output frames against the source
    face; ``mouth_opening`` per frame and ``lip_sync``: its correlation with loudness
    (:mod:`genface.models.talking.metrics`); NaN or None where not measured.
    """

    frames: np.ndarray | None
    fps: float
    audio: np.ndarray
    pitch: np.ndarray
    path: Path | None = None
    lost_frames: list[int] = field(default_factory=list)
    facesim: FaceSimResult | None = None
    mouth_opening: np.ndarray | None = None
    lip_sync: float | None = None


def pingpong(index: int, count: int) -> int:
    """Source frame for output frame ``index`` when the audio outlasts ``count`` frames: forwards, then
    backwards, and again (MuseTalk's cycle), so the video never jumps."""
    position = index % (2 * count)
    return position if position < count else 2 * count - 1 - position


class _Frames(Protocol):
    """Frames by index: a list, a :class:`VideoReader` (decoded as needed) or a photo animated by a hook."""

    def __getitem__(self, index: int) -> np.ndarray: ...


@dataclass
class _Moving:
    """A photo animated by a motion hook, frame by frame as asked for (nothing kept)."""

    photo: np.ndarray
    motion: MotionHook
    pitch: np.ndarray

    def __getitem__(self, index: int) -> np.ndarray:
        return self.motion(self.photo, index, float(self.pitch[index]))

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self.pitch)))


@dataclass
class _Source:
    """The frames to lip-sync (``count`` of them), their face boxes, and a photo's cached model inputs."""

    frames: _Frames
    count: int
    fps: float
    boxes: list[tuple[int, int, int, int]]
    track: FaceTrack
    cache: dict[int, tuple[torch.Tensor, BlendMask]] = field(default_factory=dict)

    @property
    def first_found(self) -> int:
        return int(np.flatnonzero(self.track.found)[0])


def _default_face_parser(folder: Path, from_hub: bool) -> FaceParser | None:
    """The parser for a model ``folder`` that has none: MuseTalk's ``79999_iter.pth`` from
    :data:`DEFAULT_FACE_PARSER` when the model came from the Hub (a local folder is not completed from the Hub
    behind its back); otherwise, or where the download fails, None with a warning that says how to get it."""
    from genface.hub import resolve_folder

    reason = "a local model is not completed from the Hub"
    if from_hub:
        try:
            parser_folder = resolve_folder(DEFAULT_FACE_PARSER, allow_patterns=[MUSETALK_PARSER_CHECKPOINT])
            return FaceParser.from_pretrained(parser_folder / MUSETALK_PARSER_CHECKPOINT)
        except (OfflineError, MissingWeightsError) as exc:
            reason = str(exc)
    logger.warning(
        "No face parser in %s (%s). Blending with the lower half of the face box instead of MuseTalk's jaw mask; "
        "for the mask, `hf download %s %s --local-dir DIR` and pass face_parser=DIR (None silences this).",
        folder, reason, DEFAULT_FACE_PARSER, MUSETALK_PARSER_CHECKPOINT,
    )  # fmt: skip
    return None


class TalkingFacePipeline(LowMemoryMixin, FastModeMixin, DiffusionPipeline):
    """Face video or photo + speech -> lip-synced video (MuseTalk v1.5 weights).

    Components: ``unet`` (``UNet2DConditionModel``), ``vae`` (``AutoencoderKL``), ``audio_encoder``
    (transformers' ``WhisperModel``) and ``feature_extractor`` (``WhisperFeatureExtractor``); the shared
    ``face_analyzer`` and ``face_parser`` from the identity stack.
    """

    model_card = {
        "summary": "Audio-driven talking faces (MuseTalk v1.5 renderer): a face video or photo and speech become a "
        "lip-synced video.",
        "licences": "MuseTalk, sd-vae-ft-mse and Whisper each carry their own licence; the face parser was trained "
        "on CelebAMask-HQ (non-commercial research).",
        "tags": ["musetalk"],
    }

    model_cpu_offload_seq = "audio_encoder->unet->vae"
    #: In fast mode every UNet call gets a full batch (the last one padded): one shape, short calls, CUDA graphs.
    fast_cuda_graphs = True

    def __init__(
        self,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        audio_encoder: Any,
        feature_extractor: Any,
        face_analyzer: FaceAnalyzer | None = None,
        face_parser: FaceParser | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, vae=vae, audio_encoder=audio_encoder, feature_extractor=feature_extractor)
        self.face_analyzer = face_analyzer
        self.face_parser = face_parser

    # -- loading and saving --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike = DEFAULT_MODEL,
        *,
        vae: AutoencoderKL | str | os.PathLike = DEFAULT_VAE,
        audio_encoder: str | os.PathLike = DEFAULT_WHISPER,
        face_parser: FaceParser | str | os.PathLike | None = "auto",
        face_analyzer: FaceAnalyzer | str = "auto",
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> TalkingFacePipeline:
        """Load MuseTalk v1.5 from its Hub repository or a local copy of it, or a converted folder.

        MuseTalk's layout (``TMElyralab/MuseTalk``, or the ``models/`` folder its download script fills):
        ``musetalkV15/musetalk.json`` + ``unet.pth`` (read with ``weights_only``); the VAE and Whisper come
        from ``vae`` and ``audio_encoder`` (Hub ids or folders). A folder written by :meth:`save_pretrained`
        (``model_index.json``, safetensors) holds everything. ``face_parser="auto"`` takes its
        ``face_parser/`` or MuseTalk's ``face-parse-bisent/79999_iter.pth``; for a Hub model without one,
        ``79999_iter.pth`` from :data:`DEFAULT_FACE_PARSER`. Where none can be had it warns, and the blend mask
        is the lower half of the face box. A parser, a checkpoint file, folder or Hub id overrides it; ``None``
        turns it off.
        """
        from genface.hub import load_or_explain, resolve_folder

        folder = resolve_folder(
            pretrained_model_name_or_path,
            allow_patterns=[
                "model_index.json",
                f"{MUSETALK_FOLDER}/{MUSETALK_CONFIG}",
                f"{MUSETALK_FOLDER}/{MUSETALK_WEIGHTS}",
                f"{MUSETALK_PARSER_FOLDER}/{MUSETALK_PARSER_CHECKPOINT}",
                f"{FACE_PARSER_FOLDER}/*",
            ],
        )
        if (folder / "model_index.json").is_file():
            pipe = load_or_explain(super().from_pretrained, folder, dtype=dtype, **kwargs)
        else:
            unet = load_musetalk_unet(folder)
            if not isinstance(vae, AutoencoderKL):
                vae = load_or_explain(AutoencoderKL.from_pretrained, vae)
            from transformers import WhisperFeatureExtractor, WhisperModel

            pipe = cls(
                unet,
                vae,
                load_or_explain(WhisperModel.from_pretrained, audio_encoder),
                load_or_explain(WhisperFeatureExtractor.from_pretrained, audio_encoder),
            )
            if dtype is not None:
                pipe.to(dtype=dtype)
        if face_parser == "auto":
            found = [p for p in (folder / FACE_PARSER_FOLDER, folder / MUSETALK_PARSER_FOLDER) if p.is_dir()]
            from_hub = not Path(pretrained_model_name_or_path).expanduser().exists()
            face_parser = FaceParser.from_pretrained(found[0]) if found else _default_face_parser(folder, from_hub)
        elif isinstance(face_parser, (str, os.PathLike)):
            face_parser = FaceParser.from_pretrained(face_parser)
        pipe.face_parser = face_parser
        pipe.face_analyzer = FaceAnalyzer(face_analyzer) if isinstance(face_analyzer, str) else face_analyzer
        # The name as given (a Hub id, not its cache folder), also in MuseTalk's layout: the marks record it.
        pipe.register_to_config(_name_or_path=os.fspath(pretrained_model_name_or_path))
        return pipe

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, repo_id: str | None = None, **kwargs: Any
    ) -> None:
        """Save as one folder of safetensors files (diffusers layout) plus ``face_parser/`` and a model card
        (``README.md``); ``push_to_hub`` then uploads the folder to ``repo_id``."""
        from genface.hub import finish_save, hub_ids, pop_push_options

        push = pop_push_options(kwargs)
        super().save_pretrained(save_directory, **kwargs)
        if self.face_parser is not None:
            self.face_parser.model.save_pretrained(Path(save_directory) / FACE_PARSER_FOLDER)
        names = (self.name_or_path, self.vae.config.get("_name_or_path"), self.audio_encoder.config.name_or_path)
        finish_save(self, save_directory, hub_ids(*names), push_to_hub, repo_id, push)

    # -- inputs --------------------------------------------------------------------------------------------

    def _analyzer(self) -> FaceAnalyzer:
        if self.face_analyzer is None:
            self.face_analyzer = FaceAnalyzer("auto")
        return self.face_analyzer

    @staticmethod
    def _load_face(face: Any, fps: float | None) -> tuple[_Frames, float, bool]:
        """(frames, fps, is_photo) from a video file (streamed), a TxHxWx3 array, or an image."""
        if is_video_path(face):
            reader = VideoReader(face, buffer_bytes=FRAME_BUFFER_BYTES)
            return reader, reader.fps if fps is None else fps, False
        if isinstance(face, np.ndarray) and face.ndim == 4:
            if face.dtype != np.uint8 or face.shape[-1] != 3 or not len(face):
                raise InvalidMediaError(f"Video frames must be a non-empty TxHxWx3 uint8 array; got {face.shape}.")
            return face, DEFAULT_FPS if fps is None else fps, False
        return [load_image(face)], DEFAULT_FPS if fps is None else fps, True

    @staticmethod
    def _load_speech(audio: Any, audio_rate: int | None) -> np.ndarray:
        speech = load_audio(audio, SAMPLE_RATE, source_rate=audio_rate)
        if is_silent(speech):
            raise InvalidMediaError(
                "The audio is silent (below -50 dBFS): there is no speech to lip-sync. Check that the right file "
                "or track was given and that it is not muted."
            )
        return speech

    # -- the model path ------------------------------------------------------------------------------------

    def fast_blocks(self) -> list[torch.nn.Module]:
        """The UNet's down, middle and up blocks (nearly all of its work)."""
        unet = self.unet
        return [*unet.down_blocks, *([unet.mid_block] if unet.mid_block is not None else []), *unet.up_blocks]

    def fuse_projections(self, fuse: bool) -> None:
        """diffusers' fused projections of the UNet; unfusing also drops the fused layers (diffusers' own
        ``unfuse_qkv_projections`` only puts the processors back)."""
        from diffusers.models.attention_processor import Attention

        if fuse:
            self.unet.fuse_qkv_projections()
        elif getattr(self.unet, "original_attn_processors", None) is not None:
            self.unet.unfuse_qkv_projections()
            self.unet.original_attn_processors = None
            for module in self.unet.modules():
                if isinstance(module, Attention):
                    unfuse_legacy_attention(module)

    @torch.no_grad()
    def encode_crops(self, crops: np.ndarray) -> torch.Tensor:
        """UNet inputs for 256x256 RGB uint8 crops: latents of the crop with its lower half black, beside
        latents of the whole crop (N x 8 x 32 x 32), as MuseTalk v1.5 builds them."""
        device, dtype = self._execution_device, self.vae.dtype
        pixels = torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
        masked = pixels.clone()
        masked[:, :, pixels.shape[2] // 2 :] = -1
        scale = self.vae.config.scaling_factor
        masked_latents = self.vae.encode(masked.to(dtype)).latent_dist.mode() * scale
        reference_latents = self.vae.encode(pixels.to(dtype)).latent_dist.mode() * scale
        return torch.cat([masked_latents, reference_latents], dim=1)

    @torch.no_grad()
    def render(self, latents: torch.Tensor, audio_windows: torch.Tensor) -> np.ndarray:
        """One UNet step at timestep 0 and a VAE decode: N x 256 x 256 x 3 uint8 RGB crops."""
        device = self._execution_device
        conditions = add_positional_encoding(audio_windows.to(device, self.unet.dtype))
        timestep = torch.zeros(1, device=device, dtype=torch.long)
        predicted = self.unet(latents.to(device, self.unet.dtype), timestep, encoder_hidden_states=conditions).sample
        images = self.vae.decode(predicted.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        images = (images.float() / 2 + 0.5).clamp(0, 1)
        return (images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()

    # -- the run -------------------------------------------------------------------------------------------

    def _prepare_source(self, frames: _Frames, fps: float, face_index: int | None, smoothing: float) -> _Source:
        """Track the face through every frame (one streaming pass) and smooth its crop boxes."""
        track = track_face(frames, self._analyzer(), face_index, progress=not isinstance(frames, list))
        shape = frames[0].shape
        boxes = track_boxes(track, lambda face: crop_box(face, shape), smoothing)
        return _Source(frames, len(track), fps, [integer_box(b, shape) for b in boxes], track)

    def face_crops(self, face: Any, face_index: int | None = None, smoothing: float = 1.5) -> tuple[np.ndarray, float]:
        """The 256x256 face crops the model sees, one per frame of a video (file or array), tracked and
        smoothed as in a run, and the video's frame rate: the training data of lip-sync fine-tuning."""
        frames, fps, _ = self._load_face(face, None)
        source = self._prepare_source(frames, fps, face_index, smoothing)
        return np.stack([self._crop(source.frames[i], source.boxes[i]) for i in range(source.count)]), fps

    def _inputs(self, source: _Source, indices: list[int]) -> tuple[torch.Tensor, list[np.ndarray], list[BlendMask]]:
        """UNet latents, frames and blend masks of source frames ``indices``; a photo's are made once."""
        frames = [source.frames[k] for k in indices]
        if source.count == 1 and 0 in source.cache:
            latents, mask = source.cache[0]
            return latents.expand(len(indices), -1, -1, -1), frames, [mask] * len(indices)
        crops = np.stack([self._crop(frame, source.boxes[k]) for k, frame in zip(indices, frames, strict=True)])
        latents = self.encode_crops(crops)
        masks = [blend_mask(frame, source.boxes[k], self.face_parser) for k, frame in zip(indices, frames, strict=True)]
        if source.count == 1:
            source.cache[0] = (latents[:1], masks[0])
        return latents, frames, masks

    @staticmethod
    def _crop(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        x1, y1, x2, y2 = box
        return cv2.resize(frame[y1:y2, x1:x2], (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LANCZOS4)

    def _frames(self, source: _Source, windows: SpeechWindows, batch_size: int) -> Iterator[np.ndarray]:
        """Lip-synced full frames, ``batch_size`` at a time, each batch made from the frames it needs only; the
        progress bar counts frames."""
        with self.progress_bar(total=windows.num_frames) as bar:
            for start in range(0, windows.num_frames, batch_size):
                count = min(batch_size, windows.num_frames - start)
                indices = [pingpong(i, source.count) for i in range(start, start + count)]
                latents, frames, masks = self._inputs(source, indices)
                audio = windows(start, count)
                if self.fast_mode is not None and count < batch_size:  # one shape for every compiled call
                    latents, audio = (torch.cat([t, t[-1:].expand(batch_size - count, *t.shape[1:])])
                                      for t in (latents, audio))  # fmt: skip
                crops = self.render(latents, audio)[:count]
                yield np.stack(
                    [
                        blend(frame, crop, source.boxes[k], mask)
                        for k, frame, crop, mask in zip(indices, frames, crops, masks, strict=True)
                    ]
                )
                bar.update(count)

    def __call__(
        self,
        face: Any,
        audio: str | os.PathLike | np.ndarray,
        *,
        audio_rate: int | None = None,
        fps: float | None = None,
        face_index: int | None = None,
        batch_size: int = 8,
        smoothing: float = 1.5,
        motion: MotionHook | None = None,
        output_path: str | os.PathLike | None = None,
        measure: bool = True,
        facesim_every: int = 5,
    ) -> TalkingFacePipelineOutput:
        """Lip-sync ``face`` to ``audio``.

        Args:
            face: a video file or TxHxWx3 uint8 array (dub mode), or a photo (path, array, PIL image).
            audio: a speech file (wav, mp3, m4a, a video's track) or samples with ``audio_rate``.
            fps: frame rate (default: the video's, or 25 for a photo or array).
            face_index: which face to follow when there are several (0 = largest in the first frame).
            batch_size: frames per UNet call.
            smoothing: temporal smoothing of the face box, in frames (Gaussian sigma; 0 = none).
            motion: photo mode only: ``motion(photo, i, f0_hz)`` returns frame ``i`` before lip-sync (head
                motion, blinks); without it the photo stays still and only the mouth moves. Frames are not kept:
                the hook is called again for a frame it has made, so it must give the same frame each time.
            output_path: write the mp4 (with the speech, marked as synthetic) while rendering, keeping no
                frames in memory (long audio); the file appears only when complete.
            measure: report FaceSim (every ``facesim_every`` frames) and the lip-sync proxy.

        The output lasts as long as the audio (to within one frame). A video shorter than the audio is played
        forwards and backwards (ping-pong); a longer one is cut at the audio's end.
        """
        if batch_size < 1:
            raise InvalidArgumentError(f"batch_size must be at least 1, got {batch_size}.")
        frames, fps, is_photo = self._load_face(face, fps)
        if fps <= 0:
            raise InvalidArgumentError(f"fps must be positive, got {fps}.")
        speech = self._load_speech(audio, audio_rate)
        num_frames = frame_count(len(speech), fps)
        if num_frames == 0:
            raise InvalidMediaError(
                f"The audio lasts {len(speech) / SAMPLE_RATE * 1000:.0f} ms, shorter than one frame at {fps:g} fps."
            )
        f0 = pitch_contour(speech)
        centres = np.minimum(((np.arange(num_frames) + 0.5) * FEATURES_PER_SECOND / fps).astype(int), len(f0) - 1)
        pitch = f0[centres] if len(f0) else np.zeros(num_frames, np.float32)
        if motion is not None:
            if not is_photo:
                raise InvalidArgumentError("motion= animates a photo; a video already has its own motion.")
            frames = _Moving(frames[0], motion, pitch)
        source = self._prepare_source(frames, fps, face_index, smoothing)
        windows = SpeechWindows(WhisperFrameFeatures(self.audio_encoder, self.feature_extractor), speech, fps)
        meter = _Meter(self._analyzer(), source, facesim_every) if measure else None
        rendered = self._frames(source, windows, batch_size)
        collected: list[np.ndarray] = []
        path = None
        if output_path is not None:
            track = (
                audio
                if isinstance(audio, (str, os.PathLike))
                else load_audio(audio, audio_rate, source_rate=audio_rate)
            )
            path = self._write(output_path, rendered, track, audio_rate or SAMPLE_RATE, fps, meter)
        else:
            for chunk in rendered:
                collected.append(chunk)
                if meter is not None:
                    meter.add(chunk)
        output = TalkingFacePipelineOutput(
            frames=np.concatenate(collected) if collected else None,
            fps=fps,
            audio=speech,
            pitch=pitch,
            path=path,
            lost_frames=source.track.lost,
        )
        if meter is not None:
            output.facesim, output.mouth_opening = meter.facesim(), meter.openings()
            output.lip_sync = lip_sync_correlation(output.mouth_opening, frame_loudness(speech, fps, num_frames))
        return output

    def _write(
        self,
        output_path: str | os.PathLike,
        rendered: Iterator[np.ndarray],
        track: np.ndarray | str | os.PathLike,
        rate: int,
        fps: float,
        meter: _Meter | None,
    ) -> Path:
        """Stream frames into a marked mp4 carrying the speech as given: a file's own audio track (AAC copied,
        others re-encoded at their rate), or samples at ``rate``."""
        from genface.provenance import marked_video_writer

        with marked_video_writer(
            output_path, fps, "talking_face", self.name_or_path, audio=track, audio_rate=rate
        ) as writer:
            for chunk in rendered:
                writer.write(chunk)
                if meter is not None:
                    meter.add(chunk)
        return writer.path


class _Meter:
    """FaceSim and mouth opening of output frames, measured as they stream past."""

    def __init__(self, analyzer: FaceAnalyzer, source: _Source, facesim_every: int) -> None:
        self.analyzer, self.source, self.every = analyzer, source, max(1, facesim_every)
        self.recognizer = analyzer.recognizer
        first = source.first_found
        face: Face = source.track.faces[first]
        self.reference = None if self.recognizer is None else self.recognizer.embed(source.frames[first], face)
        self.scores: list[float] = []
        self._openings: list[float] = []

    def add(self, frames: np.ndarray) -> None:
        for frame in frames:
            index = len(self._openings)
            box = self.source.boxes[pingpong(index, self.source.count)]
            faces = self.analyzer.detect(frame)
            near = [f for f in faces if _inside(f, box)]
            face = near[0] if near else None
            self._openings.append(mouth_opening(face.landmarks) if face is not None else float("nan"))
            if self.reference is not None and index % self.every == 0:
                score = float(self.recognizer.embed(frame, face) @ self.reference) if face is not None else np.nan
                self.scores.append(score)

    def facesim(self) -> FaceSimResult | None:
        if self.reference is None:
            return None
        return FaceSimResult(np.asarray(self.scores), self.recognizer.name, self.recognizer.match_threshold)

    def openings(self) -> np.ndarray:
        return np.asarray(self._openings)


def _inside(face: Face, box: tuple[int, int, int, int]) -> bool:
    """Whether the face's centre falls within the tracked crop box (the same person)."""
    cx, cy = (face.bbox[0] + face.bbox[2]) / 2, (face.bbox[1] + face.bbox[3]) / 2
    return box[0] <= cx <= box[2] and box[1] - (box[3] - box[1]) <= cy <= box[3]


def load_musetalk_unet(folder: str | os.PathLike) -> UNet2DConditionModel:
    """MuseTalk v1.5's UNet from its published files (``musetalkV15/musetalk.json`` + ``unet.pth``)."""
    from genface.hub import load_state_dict

    root = Path(folder)
    base = root / MUSETALK_FOLDER if (root / MUSETALK_FOLDER).is_dir() else root
    config_path, weights_path = base / MUSETALK_CONFIG, base / MUSETALK_WEIGHTS
    if not config_path.is_file() or not weights_path.is_file():
        raise MissingWeightsError(
            f"No MuseTalk v1.5 UNet in {root}: expected {MUSETALK_FOLDER}/{MUSETALK_CONFIG} and "
            f"{MUSETALK_FOLDER}/{MUSETALK_WEIGHTS} (`hf download {DEFAULT_MODEL} --include '{MUSETALK_FOLDER}/*' "
            "--local-dir DIR`), or a folder saved by TalkingFacePipeline.save_pretrained (model_index.json)."
        )
    config = {k: v for k, v in json.loads(config_path.read_text()).items() if not k.startswith("_")}
    unet = UNet2DConditionModel.from_config(config)
    try:
        unet.load_state_dict(load_state_dict(weights_path))
    except RuntimeError as exc:  # missing, unexpected or mis-shaped tensors
        raise MissingWeightsError(
            f"{weights_path} does not fit {config_path}: {str(exc).splitlines()[1].strip()} (and maybe more). "
            "Use the two files of the same MuseTalk release."
        ) from exc
    return unet.eval()
