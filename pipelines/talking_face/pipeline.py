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

import contextlib
import functools
import json
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.utils import BaseOutput

from genface.arguments import BATCH_SIZE, FPS
from genface.errors import InvalidArgumentError, InvalidMediaError, MissingWeightsError, OfflineError
from genface.identity import FaceAnalyzer, FaceParser, FaceSimResult
from genface.identity.track import track_boxes, track_face
from genface.media import check_output_path, load_audio, load_image
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
from genface.models.talking.live import live_blocks, whisper_windows
from genface.models.talking.metrics import frame_loudness, lip_sync_correlation
from genface.models.talking.silence import SilenceGate
from genface.pipelines._memory import LowMemoryMixin
from genface.pipelines._speed import FastModeMixin, unfuse_legacy_attention
from genface.pipelines.talking_face.dubbing import (
    ClosedInSilence,
    SourceInSilence,
    _Meter,
    check_silence,
    checked_fps,
    keep_source,
    mix_windows,
    pingpong,
    silence_weights,
)
from genface.pipelines.talking_face.overlap import Ahead, Behind
from genface.pipelines.talking_face.prepared import FORMAT as PREPARED_FORMAT
from genface.pipelines.talking_face.prepared import (
    Box,
    FaceTrackBoxes,
    Frames,
    PreparedVideo,
    content_hash,
    weights_hash,
)
from genface.pipelines.talking_face.regions import (
    FEATHER,
    Blend,
    alpha_mask,
    blend,
    box_alpha,
    crop_box,
    integer_box,
    parsing_patch,
)

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
#: Decoded frames of a video being dubbed that are held at once, with their model inputs (the rest are decoded
#: and prepared again when needed; the reader keeps an eighth of it besides).
FRAME_BUFFER_BYTES = 256 * 2**20
#: Source frames prepared together (crops, parsing, VAE latents): fixed, so a frame's model inputs never depend
#: on how the output is batched, and a prepared video gives the same output bit for bit.
PREPARE_BATCH = 8
#: Batches of work held in each queue between the threads (reading ahead of the model, encoding behind it).
QUEUE_DEPTH = 2
#: Whether a run on the CPU overlaps too: off, as PyTorch's threads already use every core there and any other
#: busy thread slows them down more than it saves (on 2 cores: 2.3 fps overlapped against 4.5 not).
OVERLAP_ON_CPU = False
#: Held while a model runs on the CPU (see ``TalkingFacePipeline._computing``).
_CPU_MODELS = threading.Lock()
#: Motion hook for photo mode: (photo, frame index, f0 of that frame in Hz) -> the frame to lip-sync.
MotionHook = Callable[[np.ndarray, int, float], np.ndarray]
#: Called after each batch of frames as diffusers' ``callback_on_step_end``: ``(pipeline, batch index, None, {})``.
StepCallback = Callable[[Any, int, None, dict[str, Any]], Any]


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


@dataclass
class _Moving:
    """A photo animated by a motion hook, frame by frame as asked for (nothing kept)."""

    photo: np.ndarray
    motion: MotionHook
    pitch: np.ndarray

    def __getitem__(self, index: int) -> np.ndarray:
        return self.motion(self.photo, index, float(self.pitch[index]))

    def __len__(self) -> int:
        return len(self.pitch)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self.pitch)))


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
    def _load_face(face: Any, fps: float | None) -> tuple[Frames, float, bool]:
        """(frames, fps, is_photo) from a video file (streamed), a TxHxWx3 array, or an image."""
        if is_video_path(face):
            reader = VideoReader(face, buffer_bytes=FRAME_BUFFER_BYTES // 8)  # the run keeps the frames it needs
            return reader, reader.fps if fps is None else fps, False
        if isinstance(face, np.ndarray) and face.ndim == 4:
            if face.dtype != np.uint8 or face.shape[-1] != 3 or not len(face):
                raise InvalidMediaError(f"Video frames must be a non-empty TxHxWx3 uint8 array; got {face.shape}.")
            return face, DEFAULT_FPS if fps is None else fps, False
        return [load_image(face)], DEFAULT_FPS if fps is None else fps, True

    @staticmethod
    def _load_speech(audio: Any, audio_rate: int | None, resampler: str = "soxr") -> np.ndarray:
        """The speech at 16 kHz, read as MuseTalk reads it (``librosa.load``: soxr) or, with
        ``resampler="ffmpeg"``, as LatentSync does (openai-whisper's FFmpeg reader)."""
        speech = load_audio(audio, SAMPLE_RATE, source_rate=audio_rate, resampler=resampler)
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
        """One UNet step at timestep 0 and a VAE decode: N x 256 x 256 x 3 uint8 RGB crops. The UNet always sees
        channels-last latents (the layout :meth:`encode_crops` gives on a CPU): the kernels, and so the last bits,
        then do not depend on how latents were gathered, stored or loaded."""
        device = self._execution_device
        conditions = add_positional_encoding(audio_windows.to(device, self.unet.dtype))
        timestep = torch.zeros(1, device=device, dtype=torch.long)
        latents = latents.to(device, self.unet.dtype).contiguous(memory_format=torch.channels_last)
        predicted = self.unet(latents, timestep, encoder_hidden_states=conditions).sample
        images = self.vae.decode(predicted.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        images = (images.float() / 2 + 0.5).clamp(0, 1)
        return (images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()

    # -- the run -------------------------------------------------------------------------------------------

    # -- preparing a video ---------------------------------------------------------------------------------

    def _progress(self, description: str, iterable: Any = None, total: int | None = None) -> Any:
        """The pipeline's progress bar (diffusers' ``progress_bar``, so ``set_progress_bar_config`` holds) for one
        phase, named ``description`` unless the configuration names it."""
        bar = self.progress_bar(iterable, total=total)
        if "desc" not in getattr(self, "_progress_bar_config", {}):
            bar.set_description(description, refresh=False)
        return bar

    def _track(self, frames: Frames, face_index: int | None, smoothing: float) -> FaceTrackBoxes:
        """Detect once in every frame (decoded a few frames ahead in a thread), follow one face, and smooth its
        crop boxes; a video shows a progress bar (a photo is one detection)."""
        analyzer = self._analyzer()
        count = len(frames) if hasattr(frames, "__len__") else None
        logger.info("Tracking the face in %s.", "the video" if count is None else f"{count} frames")
        with Ahead(iter(frames), PREPARE_BATCH) as ahead, contextlib.ExitStack() as stack:
            seen: Any = ahead
            if not isinstance(frames, list):
                seen = stack.enter_context(self._progress("tracking the face", ahead, total=count))
            track = track_face(seen, analyzer, face_index, progress=False)
        shape = frames[0].shape
        boxes = track_boxes(track, lambda face: crop_box(face, shape), smoothing)
        first = int(np.flatnonzero(track.found)[0])
        lost = int((~track.found).sum())
        logger.info("The face was found in %d of %d frames%s.", len(track.found) - lost, len(track.found),
                    f" (the nearest box held in the other {lost})" if lost else "")  # fmt: skip
        return FaceTrackBoxes([integer_box(b, shape) for b in boxes], track.found, first, track.faces[first])

    @staticmethod
    def _crop(frame: np.ndarray, box: Box) -> np.ndarray:
        x1, y1, x2, y2 = box
        return cv2.resize(frame[y1:y2, x1:x2], (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LANCZOS4)

    def _prepare_chunk(self, frames: Frames, track: FaceTrackBoxes, blend: Blend, chunk: int) -> _Chunk:
        """Source frames ``chunk * PREPARE_BATCH`` onwards with their UNet image latents and blend weights (one
        VAE encode for all of them, and on a GPU one parser call, on the pipeline's device); ``blend`` as in
        :meth:`__call__`."""
        indices = _chunk_range(chunk, len(track))
        images = [frames[k] for k in indices]
        boxes = [track.boxes[k] for k in indices]
        crops = np.stack([self._crop(image, box) for image, box in zip(images, boxes, strict=True)])
        labels: list[np.ndarray | None] = [None] * len(boxes)
        if self.face_parser is not None:
            patches = np.stack([parsing_patch(image, box) for image, box in zip(images, boxes, strict=True)])
        with self._computing():
            if self.face_parser is not None:
                parser = self.face_parser.to(self._execution_device)
                # the same labels either way; on a CPU BiSeNet at 512 px runs faster a frame at a time (caches):
                # 73 ms a frame against 125 in batches of 8 on 2 cores
                cpu = self._execution_device.type == "cpu"
                parsed = [parser.parse(patch) for patch in patches] if cpu else parser.parse(patches)
                labels = [parsing.labels for parsing in parsed]
            latents = self.encode_crops(crops)
        return images, latents, [box_alpha(box, lab, blend) for box, lab in zip(boxes, labels, strict=True)]

    @contextlib.contextmanager
    def _computing(self) -> Iterator[None]:
        """Hold the CPU's model lock while running models there: the threads' models run one at a time (two
        thread pools on the same cores slow each other down many times over); on a GPU they only queue work."""
        if self._execution_device.type == "cpu":
            with _CPU_MODELS:
                yield
        else:
            yield

    def _prepared_key(self, content: str, face_index: int | None, smoothing: float, blend: Blend) -> dict[str, Any]:
        """What a prepared video depends on besides the video (see :mod:`.prepared`)."""
        analyzer = self._analyzer()
        return {
            "format": PREPARED_FORMAT,
            "video": content,
            "face_index": face_index,
            "smoothing": float(smoothing),
            "blend": blend,
            "face_engine": analyzer.backend.name,
            "face_threshold": float(analyzer.det_thresh),
            "face_parser": None if self.face_parser is None else weights_hash(self.face_parser.model),
            "vae": weights_hash(self.vae.encoder, self.vae.quant_conv),
            "dtype": str(self.vae.dtype).removeprefix("torch."),
            "device": self._execution_device.type,
            "prepare_batch": PREPARE_BATCH,
        }

    @torch.no_grad()
    def prepare(
        self,
        face: Any,
        *,
        fps: float | None = None,
        face_index: int | None = None,
        smoothing: float = 1.5,
        blend: Blend = "inference",
        cache: str | os.PathLike | None = None,
    ) -> PreparedVideo:
        """Everything a dub needs from ``face`` (a video file or TxHxWx3 uint8 array, or a photo) that does not
        depend on the speech (MuseTalk's "avatar"): the tracked face, each frame's blend weights and the UNet's
        image latents of its crop. Pass the result to the pipeline instead of ``face``: the output is the same,
        bit for bit, without detection, parsing and VAE encoding. ``fps``, ``face_index``, ``smoothing`` and
        ``blend`` as in :meth:`__call__`. Tracking and preparing each show a progress bar.

        ``cache``: a folder. Holding a prepared video, it is read back (refused with one line when it was made
        for another video or other settings: face choice, smoothing, blend, face engine, parser or VAE weights,
        dtype, device type); absent or empty, the video is prepared and saved there. It holds about 32 KB of
        latents (float32) and a face box of weights per frame.
        """
        _check_blend(blend)
        folder = None if cache is None else Path(cache).expanduser()
        if folder is not None and folder.exists() and not folder.is_dir():
            raise InvalidArgumentError(f"cache must be a folder; {folder} is a file.")
        frames, fps, is_photo = self._load_face(face, fps)
        content = content_hash(face, None if isinstance(frames, VideoReader) else frames)
        key = self._prepared_key(content, face_index, smoothing, blend)
        if folder is not None and folder.is_dir() and any(folder.iterdir()):
            logger.info("Reading the prepared video from %s.", folder)
            return PreparedVideo.load(folder, frames, fps, key)
        folder = check_output_path(folder, (), [face], name="cache")
        track = self._track(frames, face_index, smoothing)
        logger.info("Preparing %d frames: face parsing %s, VAE encoding.", len(track),
                    "on" if self.face_parser is not None else "off (no parser)")  # fmt: skip
        latents, alphas = [], []
        with self._progress("preparing frames", total=len(track)) as bar:
            for chunk in range(math.ceil(len(track) / PREPARE_BATCH)):
                _, chunk_latents, chunk_alphas = self._prepare_chunk(frames, track, blend, chunk)
                latents.append(chunk_latents.cpu())
                alphas.extend(chunk_alphas)
                bar.update(len(chunk_alphas))
        prepared = PreparedVideo(frames, fps, track, torch.cat(latents), alphas, key, is_photo)
        if folder is not None:
            prepared.save(folder)
            logger.info("Saved the prepared video to %s.", folder)
        return prepared

    def face_crops(self, face: Any, face_index: int | None = None, smoothing: float = 1.5) -> tuple[np.ndarray, float]:
        """The 256x256 face crops the model sees, one per frame of a video (file or array), tracked and
        smoothed as in a run, and the video's frame rate: the training data of lip-sync fine-tuning."""
        frames, fps, _ = self._load_face(face, None)
        track = self._track(frames, face_index, smoothing)
        return np.stack([self._crop(frames[k], box) for k, box in enumerate(track.boxes)]), fps

    # -- the run -------------------------------------------------------------------------------------------

    def _chunks(
        self, frames: Frames, track: FaceTrackBoxes, prepared: PreparedVideo | None, batch_size: int, blend: Blend
    ) -> _Chunks:
        """Source frames with their model inputs: a prepared video's, or made a chunk at a time when first needed;
        :data:`FRAME_BUFFER_BYTES` of frames kept, and at least as many chunks as one output batch can span."""
        if prepared is None:
            make = functools.partial(self._prepare_chunk, frames, track, blend)
        else:
            make = functools.partial(_stored_chunk, prepared)
        return _Chunks(make, math.ceil(batch_size / PREPARE_BATCH) + 1, FRAME_BUFFER_BYTES)

    def _inputs(
        self, count: int, chunks: _Chunks, windows: SpeechWindows, batch_size: int
    ) -> Iterator[tuple[list[int], list[np.ndarray], torch.Tensor, list[np.ndarray], torch.Tensor]]:
        """Per output batch: source indices, frames, UNet latents, blend weights and audio windows."""
        for start in range(0, windows.num_frames, batch_size):
            size = min(batch_size, windows.num_frames - start)
            indices = [pingpong(i, count) for i in range(start, start + size)]
            frames, latents, alphas = chunks.get(indices)
            with self._computing():
                audio = windows(start, size)
            yield indices, frames, latents, alphas, audio

    def _run(
        self,
        track: FaceTrackBoxes,
        chunks: _Chunks,
        windows: SpeechWindows,
        batch_size: int,
        sink: Callable[[np.ndarray], None],
        callback: StepCallback | None = None,
    ) -> None:
        """Render every output frame and hand them to ``sink`` in order, a batch at a time: frames are read and
        their inputs made in one thread ahead of the model, blended and handed on in another behind it (queues of
        :data:`QUEUE_DEPTH` batches; on a CPU in this thread, see :data:`OVERLAP_ON_CPU`); the progress bar counts
        frames, ``callback`` is called after each batch."""

        def finish(item: tuple[list[int], list[np.ndarray], np.ndarray, list[np.ndarray]]) -> None:
            sink(_blended(track.boxes, *item))

        inputs = self._inputs(len(track), chunks, windows, batch_size)
        threaded = self._execution_device.type != "cpu" or OVERLAP_ON_CPU
        logger.info("Rendering %d frames in batches of %d.", windows.num_frames, batch_size)
        with (
            self._progress("rendering", total=windows.num_frames) as bar,
            Behind(finish, QUEUE_DEPTH, threaded) as behind,
            Ahead(inputs, QUEUE_DEPTH, threaded) as ahead,
        ):
            for step, (indices, sources, latents, alphas, audio) in enumerate(ahead):
                size = len(indices)
                if self.fast_mode is not None and size < batch_size:  # one shape for every compiled call
                    latents, audio = (torch.cat([t, t[-1:].expand(batch_size - size, *t.shape[1:])])
                                      for t in (latents, audio))  # fmt: skip
                with self._computing():
                    crops = self.render(latents, audio)[:size]
                behind.put((indices, sources, crops, alphas))
                bar.update(size)
                if callback is not None:
                    callback(self, step, None, {})

    @torch.no_grad()
    def stream(
        self,
        face: Any,
        speech_chunks: Iterable[np.ndarray],
        *,
        fps: float | None = None,
        face_index: int | None = None,
        batch_size: int = 8,
        smoothing: float = 1.5,
        blend: Blend | None = None,
        silence: str = "animate",
    ) -> Iterator[np.ndarray]:
        """Frames as speech arrives: ``speech_chunks`` are 16 kHz mono float arrays of any length (a microphone, a
        text-to-speech stream). ``face`` is prepared first (:meth:`prepare`; a :class:`PreparedVideo` is used as it
        is); then each batch of ``batch_size`` frames is made once its speech and 0.24 s after it are in, from the
        30 s of speech ending there (:mod:`genface.models.talking.live`): the first frames come out when
        ``batch_size / fps`` s + 0.24 s of speech (0.56 s for 8 frames at 25 fps) are in, plus one UNet call. The
        frames are the same however the speech is cut into chunks, and close to, not equal to, the whole speech's.
        Memory stays bounded however long the speech. ``blend`` as in :meth:`__call__`."""
        BATCH_SIZE.check(batch_size, "batch_size")
        check_silence(silence)
        _check_blend(blend, face if isinstance(face, PreparedVideo) else None)
        prepared = face if isinstance(face, PreparedVideo) else self.prepare(face, fps=fps, face_index=face_index,
                                                                             smoothing=smoothing,
                                                                             blend=blend or "inference")  # fmt: skip
        fps = checked_fps(prepared.fps if fps is None else fps)
        encoder = WhisperFrameFeatures(self.audio_encoder, self.feature_extractor)
        chunks = self._chunks(prepared.frames, prepared.track, prepared, batch_size, prepared.blend)
        boxes = prepared.track.boxes
        for block in live_blocks(speech_chunks, fps, batch_size, None if silence == "animate" else SilenceGate(fps)):
            indices = [pingpong(i, len(boxes)) for i in range(block.start, block.start + block.count)]
            frames, latents, alphas = chunks.get(indices)
            audio = whisper_windows(encoder, block, fps)
            if silence == "closed":
                silent = whisper_windows(encoder, replace(block, audio=np.zeros_like(block.audio)), fps)
                audio = mix_windows(audio, silent, block.weights)
            out = _blended(boxes, indices, frames, self.render(latents, audio), alphas)
            yield out if silence != "source" else keep_source(out, frames, block.weights)

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
        blend: Blend | None = None,
        motion: MotionHook | None = None,
        silence: str = "animate",
        output_path: str | os.PathLike | None = None,
        measure: bool = True,
        facesim_every: int = 5,
        callback_on_step_end: StepCallback | None = None,
    ) -> TalkingFacePipelineOutput:
        """Lip-sync ``face`` to ``audio``.

        Args:
            face: a video file or TxHxWx3 uint8 array (dub mode), or a photo (path, array, PIL image); or a
                :class:`PreparedVideo` from :meth:`prepare` (its ``face_index``, ``smoothing`` and ``blend`` hold).
            audio: a speech file (wav, mp3, m4a, a video's track) or samples with ``audio_rate``.
            fps: frame rate (default: the video's, or 25 for a photo or array).
            face_index: which face to follow when there are several (0 = largest in the first frame).
            batch_size: frames per UNet call.
            smoothing: temporal smoothing of the face box, in frames (Gaussian sigma; 0 = none).
            blend: whose blend to reproduce: ``"inference"`` (MuseTalk's ``scripts/inference.py``: the mask
                feathered over 5% of the parsing square; the default) or ``"realtime"`` (its
                ``realtime_inference.py`` "avatar": 10%, a softer edge). None: the prepared video's, or
                ``"inference"``.
            motion: photo mode only: ``motion(photo, i, f0_hz)`` returns frame ``i`` before lip-sync (head
                motion, blinks); without it the photo stays still and only the mouth moves. Frames are not kept:
                the hook is called again for a frame it has made, so it must give the same frame each time.
            silence: where the speech is silent, ``"source"`` keeps the source frame (a still mouth), ``"closed"``
                draws the mouth MuseTalk gives silence, ``"animate"`` follows the speech throughout
                (:mod:`~genface.pipelines.talking_face.dubbing`).
            output_path: write the mp4 (with the speech, marked as synthetic) while rendering, keeping no
                frames in memory (long audio); the file appears only when complete.
            measure: report FaceSim (every ``facesim_every`` frames) and the lip-sync proxy.
            callback_on_step_end: called after each batch of ``batch_size`` frames, as diffusers' callback of that
                name, with ``(pipeline, batch index, None, {})``; an exception raised in it stops the call (no file
                is written).

        The output lasts as long as the audio (to within one frame). A video shorter than the audio is played
        forwards and backwards (ping-pong); a longer one is cut at the audio's end. Each source frame is detected
        once; reading and preparing frames runs in a thread ahead of the model, blending, measuring and encoding
        in one behind it (models on a GPU).
        """
        BATCH_SIZE.check(batch_size, "batch_size")
        if fps is not None:
            FPS.check(fps, "fps")
        check_silence(silence)
        output_path = check_output_path(output_path, (".mp4",), [face, audio])
        prepared = face if isinstance(face, PreparedVideo) else None
        _check_blend(blend, prepared)
        if prepared is not None:
            if motion is not None:
                raise InvalidArgumentError("motion= animates a photo each run; pass the photo, not a prepared video.")
            frames, is_photo = prepared.frames, prepared.is_photo
            fps = prepared.fps if fps is None else fps
        else:
            frames, fps, is_photo = self._load_face(face, fps)
        if fps <= 0:
            raise InvalidArgumentError(f"fps must be positive, got {fps}.")
        speech = self._load_speech(audio, audio_rate)
        num_frames = frame_count(len(speech), fps)
        logger.info("Speech: %.2f s, %d frames at %g fps.", len(speech) / SAMPLE_RATE, num_frames, fps)
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
        if prepared is not None:
            track = prepared.track
        else:
            track = self._track(frames, face_index, smoothing)
        encoder = WhisperFrameFeatures(self.audio_encoder, self.feature_extractor)
        windows = SpeechWindows(encoder, speech, fps)
        weights = silence_weights(speech, fps, num_frames, silence)
        if silence == "closed":
            windows = ClosedInSilence(windows, SpeechWindows(encoder, np.zeros_like(speech), fps), weights)
        keeper = SourceInSilence(frames, len(track), weights) if silence == "source" else None
        meter = _Meter(self._analyzer(), frames, track, facesim_every) if measure else None
        chunks = self._chunks(frames, track, prepared, batch_size, blend or "inference")
        collected: list[np.ndarray] = []
        path = None

        def sink(chunk: np.ndarray, write: Callable[[np.ndarray], None] = collected.append) -> None:
            chunk = chunk if keeper is None else keeper(chunk)
            write(chunk)
            if meter is not None:
                meter.add(chunk)

        if output_path is not None:
            from genface.provenance import marked_video_writer

            track_audio = (
                audio
                if isinstance(audio, (str, os.PathLike))
                else load_audio(audio, audio_rate, source_rate=audio_rate)
            )
            rate = audio_rate or SAMPLE_RATE
            name = self.name_or_path
            with marked_video_writer(
                output_path, fps, "talking_face", name, audio=track_audio, audio_rate=rate
            ) as writer:
                written = functools.partial(sink, write=writer.write)
                self._run(track, chunks, windows, batch_size, written, callback_on_step_end)
            path = writer.path
            logger.info("Wrote %s.", path)
        else:
            self._run(track, chunks, windows, batch_size, sink, callback_on_step_end)
        output = TalkingFacePipelineOutput(
            frames=np.concatenate(collected) if collected else None,
            fps=fps,
            audio=speech,
            pitch=pitch,
            path=path,
            lost_frames=track.lost,
        )
        if meter is not None:
            output.facesim, output.mouth_opening = meter.facesim(), meter.openings()
            output.lip_sync = lip_sync_correlation(output.mouth_opening, frame_loudness(speech, fps, num_frames))
        return output


def _check_blend(blend: str | None, prepared: PreparedVideo | None = None) -> None:
    """Refuse a ``blend`` MuseTalk has no script for, or one other than the ``prepared`` video's (None: any)."""
    if blend is None:
        return
    if blend not in FEATHER:
        raise InvalidArgumentError(f"blend must be 'inference' or 'realtime' (MuseTalk's two scripts), got {blend!r}.")
    if prepared is not None and blend != prepared.blend:
        raise InvalidArgumentError(
            f"The video was prepared with blend={prepared.blend!r}; prepare it again with blend={blend!r}."
        )


def _blended(
    boxes: list[Box], indices: list[int], sources: list[np.ndarray], crops: np.ndarray, alphas: list[np.ndarray]
) -> np.ndarray:
    """Source frames ``indices`` with their generated crops blended in through their weights."""
    return np.stack([blend(frame, crop, boxes[k], alpha_mask(boxes[k], alpha))
                     for k, frame, crop, alpha in zip(indices, sources, crops, alphas, strict=True)])  # fmt: skip


#: Source frames, their UNet image latents and their blend weights.
_Chunk = tuple[list[np.ndarray], torch.Tensor, list[np.ndarray]]


def _chunk_range(chunk: int, count: int) -> range:
    return range(chunk * PREPARE_BATCH, min((chunk + 1) * PREPARE_BATCH, count))


def _stored_chunk(prepared: PreparedVideo, chunk: int) -> _Chunk:
    indices = _chunk_range(chunk, len(prepared))
    frames = [prepared.frames[k] for k in indices]
    return frames, prepared.latents[indices.start : indices.stop], prepared.alphas[indices.start : indices.stop]


class _Chunks:
    """Source frames with their model inputs, made :data:`PREPARE_BATCH` frames at a time by ``make(chunk)``;
    the chunks last used are kept, as many as hold ``budget`` bytes of frames and at least ``least``, so a video
    played back and forth (audio longer than it) is prepared once when it fits."""

    def __init__(self, make: Callable[[int], _Chunk], least: int, budget: int) -> None:
        self.make, self.keep, self.budget = make, least, budget
        self.kept: OrderedDict[int, _Chunk] = OrderedDict()

    def _chunk(self, chunk: int) -> _Chunk:
        if chunk in self.kept:
            self.kept.move_to_end(chunk)
            return self.kept[chunk]
        if len(self.kept) >= self.keep:
            self.kept.popitem(last=False)
        made = self.kept[chunk] = self.make(chunk)
        self.keep = max(self.keep, self.budget // max(sum(frame.nbytes for frame in made[0]), 1))
        return made

    def get(self, indices: list[int]) -> tuple[list[np.ndarray], torch.Tensor, list[np.ndarray]]:
        """Frames, UNet latents (stacked) and blend weights of source frames ``indices``."""
        parts = [(self._chunk(k // PREPARE_BATCH), k % PREPARE_BATCH) for k in indices]
        return (
            [chunk[0][i] for chunk, i in parts],
            torch.stack([chunk[1][i] for chunk, i in parts]),
            [chunk[2][i] for chunk, i in parts],
        )


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
