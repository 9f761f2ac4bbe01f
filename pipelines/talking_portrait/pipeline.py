"""TalkingPortraitPipeline: one photo + speech -> a talking head that moves, blinks and shows expression (Ditto).

Ditto (antgroup/ditto-talkinghead) drives LivePortrait's renderer from audio: the photo's LivePortrait crop
gives its appearance feature and its motion (head pose, translation, expression, scale, canonical keypoints);
HuBERT features of the speech plus the conditions (emotion, eye openness, gaze, the photo's keypoints) go
through Ditto's audio-to-motion diffusion model (LMDM) in overlapping windows; each frame's motion is made
relative to the photo's own pose, stitched, warped, decoded and pasted back into the whole photo.

genface differs from Ditto's scripts where its own stack replaces theirs: faces come from the shared identity
stack (dlib's 68 or insightface's 106 points instead of their 203-point and MediaPipe models), so the crop is
close to theirs but not pixel-identical; the eye-openness condition is measured on those landmarks and the gaze
condition is centred (no iris landmarks); blinks are asked of the motion model through the eye-openness
condition on a blink schedule (Ditto's scripts splice a blink animation from their configuration pickle, which
genface does not read); HuBERT is transformers' ``HubertModel`` (Ditto runs an ONNX export of the same model).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from genface.errors import InvalidArgumentError, InvalidMediaError, MissingWeightsError
from genface.identity import Face, FaceAnalyzer, FaceSimResult
from genface.media import check_output_path, load_audio, load_image
from genface.models.motion.audio import HUBERT_REPO, SAMPLES_PER_FRAME, HubertFeatures
from genface.models.motion.crop import crop_face, paste_render
from genface.models.motion.extractor import MotionExtractor, StitchingNetwork
from genface.models.motion.lmdm import LMDM, Emotion, MotionConditions, MotionGenerator, emotion_probabilities
from genface.models.motion.renderer import AppearanceFeatureExtractor, SPADEDecoder, WarpingNetwork
from genface.models.motion.stitch import FrameControls, Motion, MotionStitcher, StitchConfig, blink_schedule
from genface.models.talking.audio import SAMPLE_RATE, is_silent
from genface.models.talking.metrics import FrameMeter, frame_loudness, lip_sync_correlation

DEFAULT_MODEL = "digital-avatar/ditto-talkinghead"
#: Where Ditto's Hub repository keeps the PyTorch weights.
DITTO_FOLDER = "ditto_pytorch/models"
#: component -> (class, Ditto's file in DITTO_FOLDER)
COMPONENTS: dict[str, tuple[type, str]] = {
    "appearance_extractor": (AppearanceFeatureExtractor, "appearance_extractor.pth"),
    "motion_extractor": (MotionExtractor, "motion_extractor.pth"),
    "warping_network": (WarpingNetwork, "warp_network.pth"),
    "decoder": (SPADEDecoder, "decoder.pth"),
    "stitching_network": (StitchingNetwork, "stitch_network.pth"),
    "lmdm": (LMDM, "lmdm_v0.4_hubert.pth"),
}
FPS = 25.0
CROP_SIZE = 512
#: The extractors' input size (Ditto resizes the 512 crop with INTER_AREA; the tiny model takes less).
INPUT_SIZE = 256
#: Frames of one blink (240 ms at 25 fps) and the eyes' openness at each, as a share of the photo's.
BLINK_PROFILE = (0.55, 0.15, 0.0, 0.1, 0.45, 0.8)
#: Eye openness (Ditto's measure: three lid gaps over the eye's width) when the photo has no dense landmarks.
OPEN_EYE = 0.9
#: Ditto's online preset (stream_pipeline_online): overlap, DDIM steps, reset, kept dimensions.
ONLINE = {"overlap": 70, "num_steps": 10, "reset_every": 1, "keep_dims": (0, 202)}
MAX_BLINK_RATE = 120.0
MAX_OFFSET_DEGREES = 45.0


@dataclass
class TalkingPortraitPipelineOutput(BaseOutput):
    """frames: TxHxWx3 uint8 (None when written to ``path``); fps; audio: the 16 kHz speech; path: the mp4.

    Measured on the output: ``facesim`` to the photo (every few frames), ``mouth_opening`` per frame and
    ``lip_sync`` (its correlation with the speech's loudness), ``eye_openness`` per frame and ``blinks``
    counted from it; from the motion: ``head_pose`` (T x 3 pitch, yaw, roll in degrees); ``first_frame_seconds``
    from the call to the first rendered frame."""

    frames: np.ndarray | None
    fps: float
    audio: np.ndarray
    path: Path | None = None
    head_pose: np.ndarray | None = None
    facesim: FaceSimResult | None = None
    mouth_opening: np.ndarray | None = None
    lip_sync: float | None = None
    eye_openness: np.ndarray | None = None
    blinks: int | None = None
    first_frame_seconds: float | None = None


def eye_openness(face: Face) -> np.ndarray:
    """Left and right (in the image) eye openness as Ditto measures it (the lid gap at three points over the eye's
    width), from 68 landmarks (two gaps, scaled by 3/2) or 106; the open-eye default without dense landmarks."""
    points = face.landmarks
    if points is None or len(points) not in (68, 106):
        return np.full(2, OPEN_EYE, dtype=np.float32)
    if len(points) == 68:  # iBUG: eye 36-41 and 42-47, corners 0 and 3, upper 1, 2 over lower 5, 4
        eyes, corners = [points[36:42], points[42:48]], (0, 3)
        pairs, scale = ((1, 5), (2, 4)), 1.5
    else:  # insightface 106: eyes 33-42 and 87-96, corners 0/4 (local 33,37 / 87,91)
        eyes, corners = [points[33:43], points[87:97]], (0, 4)
        pairs, scale = ((1, 7), (2, 6), (3, 5)), 1.0
    values = []
    for eye in eyes:
        width = np.linalg.norm(eye[corners[0]] - eye[corners[1]])
        gaps = sum(np.linalg.norm(eye[a] - eye[b]) for a, b in pairs)
        values.append(scale * gaps / max(width, 1e-6))
    return np.asarray(values, dtype=np.float32)


def blink_conditions(
    openness: np.ndarray, num_frames: int, blink_rate: float | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Eye-openness conditions (num_frames, 2): the photo's openness, closing and opening over
    :data:`BLINK_PROFILE` on Ditto's blink schedule (``blink_rate`` None: every 60-100 frames at random;
    0: never; else that many blinks a minute); short clips get a blink too."""
    profile = torch.tensor((1.0, *BLINK_PROFILE))
    if blink_rate == 0:
        gaps = -1
    elif blink_rate is None:
        gaps = 0
    else:
        gaps = max(1, round(FPS * 60 / blink_rate) - len(BLINK_PROFILE))
    index = blink_schedule(num_frames + 1, len(profile), gaps, generator=generator)[1:]
    return torch.as_tensor(openness, dtype=torch.float32)[None] * profile[index][:, None]


def count_blinks(openness: np.ndarray, threshold: float = 0.6) -> int:
    """Blinks in a per-frame openness series: dips below ``threshold`` times its median (NaN frames skipped)."""
    values = openness[~np.isnan(openness)]
    if len(values) < 3:
        return 0
    closed = values < threshold * np.median(values)
    return int(np.sum(closed[1:] & ~closed[:-1]) + closed[0])


def _pose_offsets(offsets: Mapping[str, Any] | None, start: int, count: int) -> FrameControls:
    """Per-frame pose offsets (degrees) of frames ``start`` .. ``start + count - 1``: each value a number, a
    sequence over the whole clip (its last value held) or a callable of the frame index."""
    if not offsets:
        return FrameControls()
    values = {}
    frames = np.arange(start, start + count)
    for key, value in offsets.items():
        if callable(value):
            series = _degrees(key, [value(int(i)) for i in frames]).astype(np.float32)
        else:
            array = np.asarray(value, dtype=np.float32).reshape(-1)
            series = array[np.minimum(frames, len(array) - 1)] if array.size else np.zeros(count, np.float32)
        values[f"delta_{key}"] = torch.from_numpy(series).reshape(count, 1)
    return FrameControls(**values)


def _degrees(key: str, value: Any) -> np.ndarray:
    """A pose offset's values as finite degrees within +-45, or a one-line error."""
    try:
        array = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"The {key} offset must be degrees (a number or a sequence).") from None
    if not np.isfinite(array).all() or (np.abs(array) > MAX_OFFSET_DEGREES).any():
        raise InvalidArgumentError(f"The {key} offset must be finite degrees within +-{MAX_OFFSET_DEGREES:g}.")
    return array


def check_pose_offsets(offsets: Mapping[str, Any] | None) -> None:
    """Pose offsets are pitch / yaw / roll in degrees, each within +-45 (numbers or sequences; callables are
    checked per frame as they are called)."""
    for key, value in (offsets or {}).items():
        if key not in ("pitch", "yaw", "roll"):
            raise InvalidArgumentError(f"Pose offsets are pitch, yaw and roll (degrees); got {key!r}.")
        if not callable(value):
            _degrees(key, value)


class TalkingPortraitPipeline(DiffusionPipeline):
    """A photo + speech -> talking portrait (Ditto's audio-to-motion on LivePortrait's renderer).

    Components: ``appearance_extractor``, ``motion_extractor``, ``warping_network``, ``decoder`` (SPADE),
    ``stitching_network``, ``lmdm`` (all :mod:`genface.models.motion`) and ``audio_encoder`` (transformers'
    ``HubertModel``); the shared ``face_analyzer``.
    """

    model_card = {
        "summary": "Talking portraits (Ditto on LivePortrait's renderer): one photo and speech become a talking head "
        "that moves, blinks and shows expression.",
        "licences": "Ditto's code is Apache-2.0 and its weights carry their own licence file; LivePortrait's renderer "
        "weights follow LivePortrait's terms (its insightface parts are non-commercial); HuBERT is Apache-2.0.",
        "tags": ["ditto", "liveportrait", "talking-head"],
    }
    model_cpu_offload_seq = "audio_encoder->lmdm->motion_extractor->appearance_extractor->warping_network->decoder"

    def __init__(
        self,
        appearance_extractor: AppearanceFeatureExtractor,
        motion_extractor: MotionExtractor,
        warping_network: WarpingNetwork,
        decoder: SPADEDecoder,
        stitching_network: StitchingNetwork,
        lmdm: LMDM,
        audio_encoder: Any,
        face_analyzer: FaceAnalyzer | None = None,
        input_size: int = INPUT_SIZE,
    ) -> None:
        super().__init__()
        self.register_to_config(input_size=input_size)
        self.register_modules(
            appearance_extractor=appearance_extractor,
            motion_extractor=motion_extractor,
            warping_network=warping_network,
            decoder=decoder,
            stitching_network=stitching_network,
            lmdm=lmdm,
            audio_encoder=audio_encoder,
        )
        self.face_analyzer = face_analyzer

    # -- loading and saving --------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike = DEFAULT_MODEL,
        *,
        audio_encoder: str | os.PathLike = HUBERT_REPO,
        face_analyzer: FaceAnalyzer | str = "auto",
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> TalkingPortraitPipeline:
        """Load Ditto from its Hub repository (``ditto_pytorch/models/*.pth``, read with ``weights_only``) or a
        local copy, or a folder written by :meth:`save_pretrained` (one subfolder of safetensors per component,
        the audio encoder included). The audio encoder of Ditto's layout comes from ``audio_encoder``."""
        if kwargs:
            raise InvalidArgumentError(f"Unknown options for TalkingPortraitPipeline: {', '.join(kwargs)}.")
        from genface.hub import load_or_explain, load_state_dict, resolve_folder

        folder = resolve_folder(
            pretrained_model_name_or_path,
            allow_patterns=[f"{DITTO_FOLDER}/{file}" for _, file in COMPONENTS.values()]
            + [f"{name}/*" for name in (*COMPONENTS, "audio_encoder")],
        )
        from transformers import HubertModel

        if all((folder / name / "config.json").is_file() for name in COMPONENTS):
            modules = {name: load_class.from_pretrained(folder / name) for name, (load_class, _) in COMPONENTS.items()}
            hubert = HubertModel.from_pretrained(folder / "audio_encoder")
            index = folder / "model_index.json"
            saved = json.loads(index.read_text()) if index.is_file() else {}
            options = {"input_size": saved.get("input_size", INPUT_SIZE)}
        else:
            weights = folder / DITTO_FOLDER if (folder / DITTO_FOLDER).is_dir() else folder
            missing = [file for _, file in COMPONENTS.values() if not (weights / file).is_file()]
            if missing:
                raise MissingWeightsError(
                    f"{weights} is neither Ditto's layout (ditto_pytorch/models/ with {', '.join(missing)}) nor a "
                    "folder saved by TalkingPortraitPipeline.save_pretrained."
                )
            modules = {
                name: load_class.from_state_dict(load_state_dict(weights / file))
                for name, (load_class, file) in COMPONENTS.items()
            }
            hubert = load_or_explain(HubertModel.from_pretrained, audio_encoder)
            options = {}
        pipe = cls(**modules, audio_encoder=hubert.eval(), **options)
        if dtype is not None:
            pipe.to(dtype=dtype)
        pipe.face_analyzer = FaceAnalyzer(face_analyzer) if isinstance(face_analyzer, str) else face_analyzer
        pipe.register_to_config(_name_or_path=os.fspath(pretrained_model_name_or_path))
        return pipe

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, repo_id: str | None = None, **kwargs: Any
    ) -> None:
        """Save every component as safetensors in its own subfolder (usable by :meth:`from_pretrained` offline),
        plus a model card; ``push_to_hub`` then uploads the folder to ``repo_id``."""
        from genface.hub import finish_save, hub_ids, pop_push_options

        push = pop_push_options(kwargs)
        super().save_pretrained(save_directory, **kwargs)
        names = (self.name_or_path, self.audio_encoder.config.name_or_path)
        finish_save(self, save_directory, hub_ids(*names), push_to_hub, repo_id, push)

    # -- the source ----------------------------------------------------------------------------------------

    def _analyzer(self) -> FaceAnalyzer:
        if self.face_analyzer is None:
            self.face_analyzer = FaceAnalyzer("auto")
        return self.face_analyzer

    def _model_input(self, crop: np.ndarray, module: torch.nn.Module) -> torch.Tensor:
        size = self.config.input_size
        small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        param = next(module.parameters())
        return torch.from_numpy(small).permute(2, 0, 1)[None].to(param.device, param.dtype) / 255.0

    @torch.no_grad()
    def prepare_source(self, image: Any, face_index: int | None = None) -> PortraitSource:
        """The photo's crop, appearance feature, motion and eye openness (done once per photo)."""
        photo = load_image(image)
        face = self._analyzer().get(photo, face_index)
        crop, matrix = crop_face(photo, face, CROP_SIZE)
        x = self._model_input(crop, self.motion_extractor)
        out = self.motion_extractor(x)
        motion = Motion(*(v.float() for v in (out.scale, out.pitch, out.yaw, out.roll, out.t, out.exp, out.kp)))
        feature = self.appearance_extractor(self._model_input(crop, self.appearance_extractor))
        return PortraitSource(photo, face, matrix, feature, motion, eye_openness(face))

    # -- motion ------------------------------------------------------------------------------------------

    def _conditions(
        self, source: PortraitSource, emotion: Emotion, num_frames: int, blink_rate: float | None, generator: Any
    ) -> MotionConditions:
        """The condition maker for this run: which parts the model takes follows from its width."""
        width = self.lmdm.config.cond_feat_dim - self.audio_encoder.config.hidden_size
        parts = {"use_emotion": 8, "use_eye_open": 2, "use_eye_ball": 6, "use_source_keypoints": 63}
        chosen = _parts_for_width(parts, width)
        eyes = blink_conditions(source.eye_open, num_frames, blink_rate, generator)
        return MotionConditions(source.motion.kp, eyes, np.zeros(6, np.float32), emotion, **chosen)

    def _stitcher(self, source: PortraitSource, head_motion: float, num_frames: int | None) -> MotionStitcher:
        config = StitchConfig(head_motion=head_motion)
        return MotionStitcher(source.motion, config, stitching=self._stitch, num_frames=num_frames)

    @torch.no_grad()
    def _stitch(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        """The stitching network on its device and dtype, keypoints in and out as float32 on the CPU."""
        param = next(self.stitching_network.parameters())
        moved = (kp.to(param.device, param.dtype) for kp in (kp_source, kp_driving))
        return self.stitching_network(*moved).float().cpu()

    # -- rendering -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def render(self, source: PortraitSource, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> np.ndarray:
        """Crops (N, 512, 512, 3) uint8 for posed keypoints (N, 21, 3): warp the photo's feature, decode."""
        param = next(self.warping_network.parameters())
        n = kp_driving.shape[0]
        feature = source.feature.expand(n, *source.feature.shape[1:])
        kp_source = kp_source.expand(n, -1, -1).to(param.device, param.dtype)
        warped = self.warping_network(feature.to(param.dtype), kp_source, kp_driving.to(param.device, param.dtype))
        images = self.decoder(warped.to(next(self.decoder.parameters()).dtype)).float().clamp(0, 1)
        crops = (images.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
        if crops.shape[1] != CROP_SIZE:
            crops = np.stack([cv2.resize(c, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_CUBIC) for c in crops])
        return crops

    def _frames(
        self,
        source: PortraitSource,
        motion_chunks: Iterable[torch.Tensor],
        stitcher: MotionStitcher,
        pose_offsets: Mapping[str, Any] | None,
        batch_size: int,
        poses: list[np.ndarray],
    ) -> Iterator[np.ndarray]:
        """Whole frames (n, H, W, 3) for chunks of motion vectors, ``batch_size`` frames per render."""
        done = 0
        for chunk in motion_chunks:
            for first in range(0, chunk.shape[0], batch_size):
                vectors = chunk[first : first + batch_size].float().cpu()
                driving = Motion.unpack(vectors)
                controls = _pose_offsets(pose_offsets, done, len(driving))
                final = stitcher.motion(driving, controls)
                poses.append(torch.cat([final.pitch, final.yaw, final.roll], 1).numpy())
                kp_source, kp_driving = stitcher.keypoints(final)
                crops = self.render(source, kp_source, kp_driving)
                yield np.stack([paste_render(source.photo, crop, source.matrix) for crop in crops])
                done += len(driving)

    # -- the call ------------------------------------------------------------------------------------------

    def __call__(
        self,
        image: Any,
        audio: str | os.PathLike | np.ndarray,
        *,
        audio_rate: int | None = None,
        emotion: Emotion = "neutral",
        head_motion: float = 1.0,
        blink_rate: float | None = None,
        pose_offsets: Mapping[str, Any] | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        face_index: int | None = None,
        batch_size: int = 8,
        output_path: str | os.PathLike | None = None,
        measure: bool = True,
        facesim_every: int = 5,
    ) -> TalkingPortraitPipelineOutput:
        """Animate the photo ``image`` with the speech ``audio`` (25 fps, as long as the speech).

        Args:
            image: the photo (path, array, PIL image); the largest face (or ``face_index``) is animated.
            audio: a speech file (wav, mp3, m4a, a video's track) or samples with ``audio_rate``.
            emotion: a name (angry, disgust, fear, happy, neutral, sad, surprise, contempt), several mixed, or
                8 probabilities (per frame: a T x 8 array).
            head_motion: amplitude of the head's movement (0: the head stays as in the photo; 1: as generated;
                up to 3).
            blink_rate: blinks a minute (0: none; None: Ditto's rhythm, one every 2.4-4 s at random).
            pose_offsets: degrees added to the head's ``pitch``, ``yaw`` and ``roll``: a number, a sequence over
                the frames (its last value held), or a callable of the frame index; each within +-45.
            num_inference_steps, guidance_scale: the motion model's DDIM steps and classifier-free guidance.
            generator: seeds the motion (the same seed gives the same video).
            batch_size: frames per render call.
            output_path: write the mp4 (with the speech, marked as synthetic) while rendering, keeping no frames
                in memory; the file appears only when complete.
            measure: report FaceSim to the photo (every ``facesim_every`` frames), blinks and the lip-sync proxy.
        """
        started = time.perf_counter()
        output_path = check_output_path(output_path, (".mp4",), [image, audio])
        self._check_call(head_motion, blink_rate, num_inference_steps, guidance_scale, batch_size, facesim_every)
        check_pose_offsets(pose_offsets)
        emotion_probabilities(emotion)  # a bad emotion is refused before any model work
        speech = load_audio(audio, SAMPLE_RATE, source_rate=audio_rate)
        if is_silent(speech):
            raise InvalidMediaError(
                "The audio is silent (below -50 dBFS): there is no speech to animate. Check that the right file or "
                "track was given and that it is not muted."
            )
        if speech.size < SAMPLES_PER_FRAME:
            raise InvalidMediaError(
                f"The audio lasts {speech.size / SAMPLE_RATE * 1000:.0f} ms, shorter than one frame at {FPS:g} fps."
            )
        num_frames = HubertFeatures.frame_count(speech.size)
        source = self.prepare_source(image, face_index)
        conditions = self._conditions(source, emotion, num_frames, blink_rate, generator)
        features = HubertFeatures(self.audio_encoder)
        generator_options = {"num_steps": num_inference_steps, "guidance_scale": guidance_scale}
        motion = MotionGenerator(
            self.lmdm, source.motion.replace(kp=None).pack(), generator=generator, **generator_options
        )
        stitcher = self._stitcher(source, head_motion, num_frames)
        poses: list[np.ndarray] = []
        chunks = _motion_chunks(features.stream(speech), conditions, motion)
        frames = self._frames(source, chunks, stitcher, pose_offsets, batch_size, poses)
        track = (
            audio if isinstance(audio, (str, os.PathLike)) else load_audio(audio, audio_rate, source_rate=audio_rate)
        )
        written = None if output_path is None else (output_path, track, audio_rate or SAMPLE_RATE)
        return self._finish(frames, source, speech, num_frames, written, measure, facesim_every, poses, started)

    def stream(
        self,
        image: Any,
        audio_chunks: Iterable[np.ndarray],
        *,
        emotion: Emotion = "neutral",
        head_motion: float = 1.0,
        blink_rate: float | None = None,
        pose_offsets: Mapping[str, Any] | None = None,
        generator: torch.Generator | None = None,
        face_index: int | None = None,
        batch_size: int = 5,
    ) -> Iterator[np.ndarray]:
        """Frames as speech arrives: ``audio_chunks`` are 16 kHz mono float arrays of any length (a microphone, a
        text-to-speech stream). Ditto's online preset (10 DDIM steps, windows of 80 frames every 10): a frame is
        final once the next window has been blended over it, so the first frames come out when 0.8 s of speech
        (and 80 ms of look-ahead) are in, then 10 frames for every 0.4 s. Silence is animated like speech (a live
        stream pauses); pieces must be 1-D float arrays. Memory stays bounded however long the speech."""
        self._check_call(head_motion, blink_rate, 10, 2.0, batch_size, 1)
        check_pose_offsets(pose_offsets)
        emotion_probabilities(emotion)
        source = self.prepare_source(image, face_index)
        # One chunk a call, so the frames do not depend on how the speech arrives (batches round differently).
        features = HubertFeatures(self.audio_encoder, batch_size=1)
        motion = MotionGenerator(
            self.lmdm, source.motion.replace(kp=None).pack(), online=True, generator=generator, **ONLINE
        )
        lead_in = ONLINE["overlap"]
        # The blink schedule is drawn for an hour and cycled; the lead-in frames come first (Ditto's silence).
        conditions = self._conditions(source, emotion, int(FPS * 3600), blink_rate, generator)
        silence = features(np.zeros(lead_in * SAMPLES_PER_FRAME, np.float32))
        heard = itertools.chain([silence], features.live(audio_chunks))
        chunks = _motion_chunks(heard, conditions, motion, start=-lead_in)
        stitcher = self._stitcher(source, head_motion, None)
        yield from self._frames(source, chunks, stitcher, pose_offsets, batch_size, [])

    def _check_call(
        self, head_motion: float, blink_rate: float | None, steps: int, guidance: float, batch: int, every: int
    ) -> None:
        param = next(self.warping_network.parameters())
        if param.device.type == "cpu" and param.dtype == torch.float16:
            raise InvalidArgumentError(
                "The renderer's 3-D layers do not run in float16 on the CPU; load the pipeline with "
                "dtype=torch.float32 there, or move it to a GPU."
            )
        if not (isinstance(head_motion, (int, float)) and 0 <= head_motion <= 3):
            raise InvalidArgumentError(f"head_motion must be between 0 (still) and 3, got {head_motion}.")
        if blink_rate is not None and not (isinstance(blink_rate, (int, float)) and 0 <= blink_rate <= MAX_BLINK_RATE):
            raise InvalidArgumentError(
                f"blink_rate must be between 0 and {MAX_BLINK_RATE:g} a minute, got {blink_rate}."
            )
        if not (isinstance(steps, int) and 1 <= steps <= self.lmdm.config.num_train_timesteps):
            raise InvalidArgumentError(f"num_inference_steps must be between 1 and 1000, got {steps}.")
        if not (isinstance(guidance, (int, float)) and math.isfinite(guidance) and 0 <= guidance <= 20):
            raise InvalidArgumentError(f"guidance_scale must be between 0 and 20, got {guidance}.")
        if not (isinstance(batch, int) and batch >= 1) or not (isinstance(every, int) and every >= 1):
            raise InvalidArgumentError("batch_size and facesim_every must be whole numbers of at least 1.")

    def _finish(
        self,
        frames: Iterator[np.ndarray],
        source: PortraitSource,
        speech: np.ndarray,
        total: int,
        written: tuple[str | os.PathLike, Any, int] | None,
        measure: bool,
        facesim_every: int,
        poses: list[np.ndarray],
        started: float,
    ) -> TalkingPortraitPipelineOutput:
        meter = _Meter(self._analyzer(), source, facesim_every) if measure else None
        first: list[float] = []
        collected: list[np.ndarray] = []

        def measured() -> Iterator[np.ndarray]:
            with self.progress_bar(total=total) as bar:
                for chunk in frames:
                    if not first:
                        first.append(time.perf_counter() - started)
                    if meter is not None:
                        meter.add(chunk)
                    bar.update(len(chunk))
                    yield chunk

        path = None
        if written is not None:
            from genface.provenance import marked_video_writer

            output_path, track, rate = written
            with marked_video_writer(
                output_path, FPS, "talking_portrait", self.name_or_path, audio=track, audio_rate=rate
            ) as writer:
                for chunk in measured():
                    writer.write(chunk)
            path = writer.path
        else:
            collected = list(measured())
        output = TalkingPortraitPipelineOutput(
            frames=np.concatenate(collected) if collected else None,
            fps=FPS,
            audio=speech,
            path=path,
            head_pose=np.concatenate(poses) if poses else None,
            first_frame_seconds=first[0] if first else None,
        )
        if meter is not None:
            output.facesim, output.mouth_opening = meter.facesim(), meter.openings()
            output.eye_openness = np.asarray(meter.eyes)
            output.blinks = count_blinks(output.eye_openness.mean(axis=1))
            loudness = frame_loudness(speech, FPS, len(meter.mouth))
            output.lip_sync = lip_sync_correlation(output.mouth_opening, loudness)
        return output


@dataclass
class PortraitSource:
    """What a photo gives once: the photo, its face, the crop matrix (image -> 512 crop), the appearance
    feature, the motion (pose in bins, with the canonical keypoints) and the eye openness (2,)."""

    photo: np.ndarray
    face: Face
    matrix: np.ndarray
    feature: torch.Tensor
    motion: Motion
    eye_open: np.ndarray


def _parts_for_width(parts: dict[str, int], width: int) -> dict[str, bool]:
    """Which condition parts (Ditto's use_* flags) add up to ``width``: all if they do, else the first
    subset that does."""
    names = list(parts)
    for mask in range(2 ** len(names) - 1, -1, -1):
        chosen = {n: bool(mask >> (len(names) - 1 - i) & 1) for i, n in enumerate(names)}
        if sum(parts[n] for n in names if chosen[n]) == width:
            return chosen
    described = ", ".join(f"{name.removeprefix('use_')} {size}" for name, size in parts.items())
    raise MissingWeightsError(
        f"The motion model takes {width} condition values besides the audio features; no combination of Ditto's "
        f"parts ({described}) adds up to it."
    )


def _motion_chunks(
    features: Iterable[torch.Tensor], conditions: MotionConditions, motion: MotionGenerator, start: int = 0
) -> Iterator[torch.Tensor]:
    """Motion vectors as they become final, from chunks of audio features."""
    frame = start
    for chunk in features:
        out = motion.push(conditions(chunk, frame))
        frame += chunk.shape[0]
        if out.shape[0]:
            yield out
    out = motion.flush()
    if out.shape[0]:
        yield out


class _Meter(FrameMeter):
    """FaceSim to the photo, mouth and eye openness of output frames, as they stream past (the face is found
    again in each frame, around the photo's face box)."""

    def __init__(self, analyzer: FaceAnalyzer, source: PortraitSource, facesim_every: int) -> None:
        super().__init__(analyzer.recognizer, source.photo, source.face, facesim_every)
        self.analyzer = analyzer
        x1, y1, x2, y2 = source.face.bbox
        w, h = x2 - x1, y2 - y1
        height, width = source.photo.shape[:2]
        self.cut = (int(max(x1 - w, 0)), int(max(y1 - h, 0)), int(min(x2 + w, width)), int(min(y2 + h, height)))
        self.eyes: list[np.ndarray] = []

    def add(self, frames: np.ndarray) -> None:
        cx1, cy1, cx2, cy2 = self.cut
        for frame in frames:
            cut = frame[cy1:cy2, cx1:cx2]
            faces = self.analyzer.detect(cut)
            face = faces[0] if faces else None
            self.eyes.append(eye_openness(face) if face is not None else np.full(2, np.nan, np.float32))
            self.measure(cut, face)
