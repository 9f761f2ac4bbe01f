"""TalkingPortraitPipeline: one photo + speech -> a talking head that moves, blinks and shows expression (Ditto).

Ditto (antgroup/ditto-talkinghead) drives LivePortrait's renderer from audio: the photo's LivePortrait crop
gives its appearance feature and its motion (head pose, translation, expression, scale, canonical keypoints);
HuBERT features of the speech plus the conditions (emotion, eye openness, gaze, the photo's keypoints) go
through Ditto's audio-to-motion diffusion model (LMDM) in overlapping windows; each frame's motion is made
relative to the photo's own pose, stitched, warped, decoded and pasted back into the whole photo. A video
source (Ditto's) gives a crop and motion per frame; its lips follow the speech, its head and eyes the video.

The call follows Ditto's arithmetic: offline (``__call__``) its ``stream_pipeline_offline.py``, streaming
(``stream``) its online path (``inference.py`` + ``stream_pipeline_online.py``); its controls (``ctrl_info``),
fades, motion clamp, photo resize and video sources with its names, defaults and meanings; the paste-back of its
``putback.py``; its precision split. Its configuration's defaults are read as data (:func:`read_default_kwargs`).

genface differs from Ditto's scripts where its own stack replaces theirs: faces come from the shared identity
stack (dlib's 68 or insightface's 106 points instead of their 203-point and MediaPipe models), so the crop is
close to theirs but not pixel-identical; the eye-openness condition is measured on those landmarks and the gaze
condition is centred (no iris landmarks); blinks are asked of the motion model through the eye-openness
condition on a blink schedule (Ditto's scripts splice a blink animation, ``delta_eye_arr``, from their
configuration pickle, which genface leaves out); HuBERT is transformers' ``HubertModel`` (Ditto runs an ONNX
export of the same model); the output has exactly one frame per 40 ms of speech, streamed or not.
"""

from __future__ import annotations

import builtins
import itertools
import json
import logging
import os
import pickle
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from numpy._core import multiarray

from genface.arguments import BATCH_SIZE, BLINK_RATE, GUIDANCE, HEAD_MOTION, SOURCE_SIZE, SOURCE_SMOOTHING, STEPS
from genface.errors import InvalidArgumentError, InvalidMediaError, MissingWeightsError, UnsafeWeightsError
from genface.identity import Face, FaceAnalyzer, FaceSimResult
from genface.identity.track import track_boxes, track_face
from genface.media import check_output_path, load_audio, load_image
from genface.media.video import VideoReader, is_video_path
from genface.models.motion.audio import HUBERT_REPO, SAMPLES_PER_FRAME, HubertFeatures
from genface.models.motion.crop import MAX_SIZE, crop_matrix, face_points, paste_render, resize_frame
from genface.models.motion.extractor import MotionExtractor, StitchingNetwork
from genface.models.motion.lmdm import (
    LMDM,
    Emotion,
    MotionConditions,
    MotionGenerator,
    emotion_probabilities,
    mirror_index,
    motion_bounds,
)
from genface.models.motion.renderer import AppearanceFeatureExtractor, SPADEDecoder, WarpingNetwork
from genface.models.motion.stitch import (
    CONTROLS,
    FADE_TYPES,
    ControlSchedule,
    Motion,
    MotionStitcher,
    StitchConfig,
    blink_schedule,
    mean_filter,
    released,
)
from genface.models.talking.audio import SAMPLE_RATE, is_silent
from genface.models.talking.metrics import FrameMeter, frame_loudness, lip_sync_correlation

logger = logging.getLogger(__name__)

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
MAX_BLINK_RATE = BLINK_RATE.high
#: Components Ditto runs in float32 whatever the renderer's precision.
FLOAT32_COMPONENTS = ("lmdm", "audio_encoder", "stitching_network")
#: Ditto's ``smo_k_s``: the moving average over a video source's motion, in frames.
SMO_K_S = 13
#: A video source uses at most its first this many frames (two minutes at 25 fps), looped back and forth.
MAX_SOURCE_FRAMES = 3000


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


def check_source_options(image: Any, head_motion: float, blink_rate: float | None, smo_k_s: int | None) -> None:
    """Options of one kind of source only: ``head_motion`` and ``blink_rate`` are a photo's, ``smo_k_s`` a video
    source's (the source named by ``image``)."""
    if is_video_path(image) and (head_motion != 1 or blink_rate is not None):
        raise InvalidArgumentError(
            "head_motion and blink_rate apply to a photo: from a video source the head and eyes move as in the "
            "video (Ditto's video source)."
        )
    if not is_video_path(image) and smo_k_s is not None:
        raise InvalidArgumentError(
            "smo_k_s smooths a video source's motion over its frames; a photo has one frame (give a video file)."
        )


def check_pose_offsets(offsets: Mapping[str, Any] | None) -> dict[str, Any]:
    """Pose offsets (``pitch``, ``yaw``, ``roll`` -> degrees) as Ditto's ``delta_*`` controls."""
    for key in offsets or {}:
        if key not in ("pitch", "yaw", "roll"):
            raise InvalidArgumentError(f"Pose offsets are pitch, yaw and roll (degrees); got {key!r}.")
    return {f"delta_{key}": value for key, value in (offsets or {}).items()}


# -- Ditto's configuration ----------------------------------------------------------------------------

#: Ditto's configuration for its PyTorch models, beside ``ditto_pytorch/`` in its Hub repository.
CONFIG_FILE = "ditto_cfg/v0.4_hubert_cfg_pytorch.pkl"
#: ``default_kwargs`` entries genface takes (Ditto's names); the others keep Ditto's code defaults or are
#: genface's own (see the pipeline's docs).
DEFAULT_KEYS = ("v_min_max_for_clip", "max_size", "smo_k_s", "fade_type", "fade_out_keys", "overall_ctrl_info")
MOTION_KEYS = ("scale", "pitch", "yaw", "roll", "t", "exp")

_PLAIN = ("dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool", "str", "bytes", "bytearray")
_NUMPY = {"ndarray": np.ndarray, "dtype": np.dtype}
_MULTIARRAY = {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar}


class _DataUnpickler(pickle.Unpickler):
    """Builds Python's plain data types and NumPy arrays only."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _PLAIN:
            return getattr(builtins, name)
        if module == "numpy" and name in _NUMPY:
            return _NUMPY[name]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in _MULTIARRAY:
            return _MULTIARRAY[name]
        raise UnsafeWeightsError(
            f"The Ditto configuration refers to {module}.{name}; genface reads only NumPy arrays and plain data from "
            "it, so that no code inside it can run. Use the publisher's original file."
        )


def load_data_pickle(path: str | os.PathLike) -> Any:
    """A pickle of plain data and NumPy arrays (Ditto's configuration), refusing anything else."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            return _DataUnpickler(file).load()
    except UnsafeWeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise InvalidArgumentError(f"{path} is not a readable Ditto configuration pickle ({exc}).") from exc


def read_default_kwargs(path: str | os.PathLike, motion_dim: int) -> dict[str, Any]:
    """The ``default_kwargs`` of Ditto's configuration that genface takes, checked, as JSON data."""
    config = load_data_pickle(path)
    values = config.get("default_kwargs") if isinstance(config, Mapping) else None
    if not isinstance(values, Mapping):
        raise InvalidArgumentError(f"{path} has no default_kwargs: it is not one of Ditto's configurations.")
    taken = {k: values[k] for k in DEFAULT_KEYS if k in values}
    controls = dict(taken.get("overall_ctrl_info") or {})
    taken["overall_ctrl_info"] = {k: v for k, v in controls.items() if k in CONTROLS}
    left = [k for k in values if k not in DEFAULT_KEYS]
    left += [f"overall_ctrl_info.{k}" for k in controls if k not in CONTROLS]
    if left:
        logger.info("Ditto's configuration also sets %s; genface keeps its own values there.", ", ".join(sorted(left)))
    return check_default_kwargs(taken, motion_dim)


def check_default_kwargs(values: Mapping[str, Any] | None, motion_dim: int) -> dict[str, Any]:
    """Ditto's defaults (the keys of :data:`DEFAULT_KEYS`) checked and made JSON data, or a one-line error."""
    values = dict(values or {})
    unknown = sorted(set(values) - set(DEFAULT_KEYS))
    if unknown:
        raise InvalidArgumentError(f"Unknown Ditto defaults {', '.join(unknown)}; known: {', '.join(DEFAULT_KEYS)}.")
    out: dict[str, Any] = {}
    if values.get("v_min_max_for_clip") is not None:
        out["v_min_max_for_clip"] = motion_bounds(values["v_min_max_for_clip"], motion_dim).tolist()
    if "max_size" in values:
        out["max_size"] = SOURCE_SIZE.check(values["max_size"], "max_size")
    if "smo_k_s" in values:
        out["smo_k_s"] = SOURCE_SMOOTHING.check(values["smo_k_s"], "smo_k_s")
    if "fade_type" in values:
        if values["fade_type"] not in FADE_TYPES:
            raise InvalidArgumentError(f"fade_type must be '', 'd0' or 's'; got {values['fade_type']!r}.")
        out["fade_type"] = values["fade_type"]
    if "fade_out_keys" in values:
        keys = values["fade_out_keys"]
        if isinstance(keys, str) or not all(k in MOTION_KEYS for k in keys):
            raise InvalidArgumentError(f"fade_out_keys must name motion keys ({', '.join(MOTION_KEYS)}).")
        out["fade_out_keys"] = list(keys)
    controls = dict(values.get("overall_ctrl_info") or {})
    if controls:
        ControlSchedule.build(controls)  # checks names and values
        out["overall_ctrl_info"] = {k: np.asarray(v, dtype=np.float64).tolist() for k, v in controls.items()}
    return out


# -- the source ------------------------------------------------------------------------------------------


class SourceFrames:
    """The source's frames at Ditto's size by index: the photo, or a video's first ``count`` frames (decoded as
    they are asked for)."""

    def __init__(self, photo: np.ndarray | None = None, video: VideoReader | None = None, max_size: int = MAX_SIZE):
        self.photo, self.video, self.max_size, self.count = photo, video, max_size, 1

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if self.video is None:
            return self.photo
        return resize_frame(self.video[index], self.max_size)

    def scan(self, limit: int) -> Iterator[np.ndarray]:
        """A video's frames from the start (at most ``limit``), counted as they pass."""
        self.count = 0
        for frame in itertools.islice(self.video, limit):
            self.count += 1
            yield resize_frame(frame, self.max_size)


@dataclass
class PortraitSource:
    """What a source gives once: its frames, the face (in the first frame), the crop matrices (image -> 512 crop,
    one per frame), the appearance feature (a photo's; a video's are made per frame as it is rendered), the motion
    (one frame per source frame: pose in bins, with the canonical keypoints), the eye openness (frames, 2) and
    whether it is a photo."""

    frames: SourceFrames
    face: Face
    matrices: np.ndarray
    feature: torch.Tensor | None
    motion: Motion
    eye_open: np.ndarray
    is_image: bool = True

    @property
    def photo(self) -> np.ndarray:
        """The (first) frame."""
        return self.frames[0]

    @property
    def matrix(self) -> np.ndarray:
        """The (first) frame's crop matrix."""
        return self.matrices[0]

    def index(self, first: int, count: int) -> np.ndarray:
        """Source frame of output frames ``first`` .. ``first + count - 1`` (Ditto's ``_mirror_index``)."""
        return mirror_index(torch.arange(first, first + count), len(self.frames)).numpy()


class TalkingPortraitPipeline(DiffusionPipeline):
    """A photo (or a video) + speech -> talking portrait (Ditto's audio-to-motion on LivePortrait's renderer).

    Components: ``appearance_extractor``, ``motion_extractor``, ``warping_network``, ``decoder`` (SPADE),
    ``stitching_network``, ``lmdm`` (all :mod:`genface.models.motion`) and ``audio_encoder`` (transformers'
    ``HubertModel``); the shared ``face_analyzer``. ``default_kwargs``: Ditto's run defaults read from its
    configuration (:func:`read_default_kwargs`), kept in the pipeline's configuration.

    Precision follows Ditto's: in half precision (``dtype=torch.float16`` or ``.to(dtype=...)``) only the renderer
    and the extractors run in it (Ditto runs those under float16 autocast); the motion model, HuBERT and the
    stitching network stay in float32.
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
        default_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        defaults = check_default_kwargs(default_kwargs, lmdm.config.motion_feat_dim)
        self.register_to_config(input_size=input_size, default_kwargs=defaults)
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
        """Load Ditto from its Hub repository (``ditto_pytorch/models/*.pth``, read with ``weights_only``, and the
        run defaults of ``ditto_cfg/v0.4_hubert_cfg_pytorch.pkl`` when present, read as data only) or a local
        copy, or a folder written by :meth:`save_pretrained` (one subfolder of safetensors per component, the
        audio encoder included). The audio encoder of Ditto's layout comes from ``audio_encoder``."""
        if kwargs:
            raise InvalidArgumentError(f"Unknown options for TalkingPortraitPipeline: {', '.join(kwargs)}.")
        from genface.hub import load_or_explain, load_state_dict, resolve_folder

        folder = resolve_folder(
            pretrained_model_name_or_path,
            allow_patterns=[f"{DITTO_FOLDER}/{file}" for _, file in COMPONENTS.values()]
            + [CONFIG_FILE]
            + [f"{name}/*" for name in (*COMPONENTS, "audio_encoder")],
        )
        from transformers import HubertModel

        if all((folder / name / "config.json").is_file() for name in COMPONENTS):
            modules = {name: load_class.from_pretrained(folder / name) for name, (load_class, _) in COMPONENTS.items()}
            hubert = HubertModel.from_pretrained(folder / "audio_encoder")
            index = folder / "model_index.json"
            saved = json.loads(index.read_text()) if index.is_file() else {}
            options = {key: saved[key] for key in ("input_size", "default_kwargs") if key in saved}
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
            config = folder / CONFIG_FILE
            dim = modules["lmdm"].config.motion_feat_dim
            options = {"default_kwargs": read_default_kwargs(config, dim)} if config.is_file() else {}
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

    def to(self, *args: Any, **kwargs: Any) -> TalkingPortraitPipeline:
        """diffusers' ``to`` for the device; a dtype with Ditto's precision split: in half precision (float16,
        bfloat16) the motion model, HuBERT and the stitching network stay in float32 (never cast, so their weights
        keep every bit), the renderer and the extractors take it."""
        dtype = kwargs.pop("dtype", None)
        if args and isinstance(args[-1], torch.dtype):
            *args, dtype = args
        super().to(*args, **kwargs)
        if dtype is not None:
            half = dtype in (torch.float16, torch.bfloat16)
            for name, module in self.components.items():
                if isinstance(module, torch.nn.Module):
                    module.to(dtype=torch.float32 if half and name in FLOAT32_COMPONENTS else dtype)
        return self

    # -- the source ----------------------------------------------------------------------------------------

    def _analyzer(self) -> FaceAnalyzer:
        if self.face_analyzer is None:
            self.face_analyzer = FaceAnalyzer("auto")
        return self.face_analyzer

    def _model_input(self, crops: np.ndarray, module: torch.nn.Module) -> torch.Tensor:
        """Crops (N, 512, 512, 3) uint8 -> the extractors' input (N, 3, size, size) in [0, 1] (INTER_AREA)."""
        size = self.config.input_size
        small = np.stack([cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA) for crop in crops])
        param = next(module.parameters())
        return torch.from_numpy(small).permute(0, 3, 1, 2).to(param.device, param.dtype) / 255.0

    def _default(self, name: str, value: Any, fallback: Any) -> Any:
        """A call option: ``value`` when given, else Ditto's configuration's, else Ditto's code default."""
        return value if value is not None else self.config.default_kwargs.get(name, fallback)

    @torch.no_grad()
    def prepare_source(
        self,
        image: Any,
        face_index: int | None = None,
        *,
        max_size: int | None = None,
        smo_k_s: int | None = None,
        max_frames: int = MAX_SOURCE_FRAMES,
    ) -> PortraitSource:
        """What the source gives once: a photo, or a video file (Ditto's video source: its first ``max_frames``
        frames, a crop and motion per frame, the motion smoothed over ``smo_k_s`` frames); each frame resized as
        Ditto's loader does (longest side at most ``max_size``, even sides)."""
        max_size, smo_k_s = self._source_options(max_size, smo_k_s)
        if is_video_path(image):
            frames = SourceFrames(video=VideoReader(image), max_size=max_size)
            track = track_face(frames.scan(max_frames), self._analyzer(), face_index, progress=False)
            face = next(found for found in track.faces if found is not None)
            # lost frames hold the nearest face found (a crop and eye openness for every frame)
            held = track_boxes(track, lambda f: np.concatenate([face_points(f).ravel(), eye_openness(f)]), sigma=0)
            points, eyes = held[:, :-2].reshape(len(held), -1, 2), held[:, -2:].astype(np.float32)
        else:
            frames = SourceFrames(photo=resize_frame(load_image(image), max_size), max_size=max_size)
            face = self._analyzer().get(frames.photo, face_index)
            points, eyes = face_points(face)[None], eye_openness(face)[None]
        matrices = np.stack([crop_matrix(p, CROP_SIZE) for p in points])
        parts = []
        for first in range(0, len(matrices), 16):
            crops = self._crops(frames, matrices, range(first, min(first + 16, len(matrices))))
            out = self.motion_extractor(self._model_input(crops, self.motion_extractor))
            parts.append([v.float().cpu() for v in (out.scale, out.pitch, out.yaw, out.roll, out.t, out.exp, out.kp)])
        motion = Motion(*(mean_filter(torch.cat(values), smo_k_s) for values in zip(*parts, strict=True)))
        is_image = frames.video is None
        feature = self._features(frames, matrices, [0]) if is_image else None
        return PortraitSource(frames, face, matrices, feature, motion, eyes, is_image)

    def _source_options(self, max_size: int | None, smo_k_s: int | None) -> tuple[int, int]:
        """``max_size`` and ``smo_k_s`` as given, else the configuration's, else Ditto's defaults; checked."""
        max_size = SOURCE_SIZE.check(self._default("max_size", max_size, MAX_SIZE), "max_size")
        return max_size, SOURCE_SMOOTHING.check(self._default("smo_k_s", smo_k_s, SMO_K_S), "smo_k_s")

    @staticmethod
    def _crops(frames: SourceFrames, matrices: np.ndarray, indices: Iterable[int]) -> np.ndarray:
        """The 512 crops of source frames ``indices``."""
        size = (CROP_SIZE, CROP_SIZE)
        return np.stack([cv2.warpAffine(frames[i], matrices[i], size, flags=cv2.INTER_LINEAR) for i in indices])

    def _features(self, frames: SourceFrames, matrices: np.ndarray, indices: Sequence[int]) -> torch.Tensor:
        """Appearance features of source frames ``indices`` (each made once per call)."""
        unique, inverse = np.unique(np.asarray(indices), return_inverse=True)
        crops = self._crops(frames, matrices, unique)
        return self.appearance_extractor(self._model_input(crops, self.appearance_extractor))[torch.from_numpy(inverse)]

    # -- motion ------------------------------------------------------------------------------------------

    def _conditions(
        self, source: PortraitSource, emotion: Emotion, num_frames: int, blink_rate: float | None, generator: Any
    ) -> MotionConditions:
        """The condition maker for this run: which parts the model takes follows from its width. A photo's eye
        openness follows the blink schedule; a video's is its own, frame by frame."""
        width = self.lmdm.config.cond_feat_dim - self.audio_encoder.config.hidden_size
        parts = {"use_emotion": 8, "use_eye_open": 2, "use_eye_ball": 6, "use_source_keypoints": 63}
        chosen = _parts_for_width(parts, width)
        if source.is_image:
            eyes = blink_conditions(source.eye_open[0], num_frames, blink_rate, generator)
        else:
            eyes = torch.from_numpy(source.eye_open)
        return MotionConditions(source.motion.kp[:1], eyes, np.zeros(6, np.float32), emotion, **chosen)

    def _motion_generator(self, source: PortraitSource, generator: Any, **options: Any) -> MotionGenerator:
        return MotionGenerator(
            self.lmdm, source.motion.frames(slice(0, 1)).replace(kp=None).pack(), generator=generator, **options
        )

    def _stitcher(
        self, source: PortraitSource, head_motion: float, num_frames: int | None, controls: ControlSchedule
    ) -> MotionStitcher:
        fade_keys = tuple(self.config.default_kwargs.get("fade_out_keys", ("exp",)))
        config = StitchConfig(head_motion=head_motion, fade_type=controls.fade_type, fade_keys=fade_keys)
        return MotionStitcher(
            source.motion, config, is_image=source.is_image, stitching=self._stitch, num_frames=num_frames
        )

    @torch.no_grad()
    def _stitch(self, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> torch.Tensor:
        """The stitching network on its device and dtype, keypoints in and out as float32 on the CPU."""
        param = next(self.stitching_network.parameters())
        moved = (kp.to(param.device, param.dtype) for kp in (kp_source, kp_driving))
        return self.stitching_network(*moved).float().cpu()

    # -- rendering -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def render(self, feature: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> np.ndarray:
        """Crops (N, 512, 512, 3), float32 in [0, 255] as Ditto's decoder gives them, for posed keypoints
        (N, 21, 3): warp the source's appearance feature (1 or N), decode."""
        param = next(self.warping_network.parameters())
        n = kp_driving.shape[0]
        feature = feature.expand(n, *feature.shape[1:]).to(param.device, param.dtype)
        kp_source = kp_source.expand(n, -1, -1).to(param.device, param.dtype)
        warped = self.warping_network(feature, kp_source, kp_driving.to(param.device, param.dtype))
        images = self.decoder(warped.to(next(self.decoder.parameters()).dtype)).float().clamp(0, 1)
        crops = (images.permute(0, 2, 3, 1) * 255).cpu().numpy()
        if crops.shape[1] != CROP_SIZE:
            crops = np.stack([cv2.resize(c, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_CUBIC) for c in crops])
        return crops

    def _frames(
        self,
        source: PortraitSource,
        motion_chunks: Iterable[torch.Tensor],
        stitcher: MotionStitcher,
        controls: ControlSchedule,
        batch_size: int,
        poses: list[np.ndarray],
    ) -> Iterator[np.ndarray]:
        """Whole frames (n, H, W, 3) for chunks of motion vectors, ``batch_size`` frames per render."""
        done = 0
        for chunk, total in released(motion_chunks, controls.hold):
            for first in range(0, chunk.shape[0], batch_size):
                driving = Motion.unpack(chunk[first : first + batch_size].float().cpu())
                count = len(driving)
                index = source.index(done, count)
                frame_motion = source.motion.frames(torch.from_numpy(index))
                final = stitcher.motion(driving, controls.frames(done, count, total), frame_motion)
                poses.append(torch.cat([final.pitch, final.yaw, final.roll], 1).numpy())
                kp_source, kp_driving = stitcher.keypoints(final, frame_motion)
                feature = source.feature if source.is_image else self._features(source.frames, source.matrices, index)
                crops = self.render(feature, kp_source, kp_driving)
                pasted = zip(index, crops, strict=True)
                yield np.stack([paste_render(source.frames[i], crop, source.matrices[i]) for i, crop in pasted])
                done += count

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
        alpha_pitch: Any = None,
        alpha_yaw: Any = None,
        alpha_roll: Any = None,
        delta_exp: Any = None,
        vad_alpha: Any = None,
        fade_in: int = -1,
        fade_out: int = -1,
        fade_type: str | None = None,
        v_min_max_for_clip: Any = None,
        max_size: int | None = None,
        smo_k_s: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 2.0,
        generator: torch.Generator | None = None,
        face_index: int | None = None,
        batch_size: int = 8,
        output_path: str | os.PathLike | None = None,
        measure: bool = True,
        facesim_every: int = 5,
        callback_on_step_end: Callable[..., Any] | None = None,
    ) -> TalkingPortraitPipelineOutput:
        """Animate the photo ``image`` with the speech ``audio`` (25 fps, as long as the speech).

        Args:
            image: the photo (path, array, PIL image), or a video file as Ditto's video source (the face moves
                its lips to the speech, head and eyes as in the video, played forwards and backwards; at most its
                first 3000 frames); the largest face (or ``face_index``) is animated.
            audio: a speech file (wav, mp3, m4a, a video's track) or samples with ``audio_rate``.
            emotion: a name (angry, disgust, fear, happy, neutral, sad, surprise, contempt), several mixed, or
                8 probabilities (per frame: a T x 8 array).
            head_motion: amplitude of the head's movement (0: the head stays as in the photo; 1: as generated;
                up to 3). Photos only.
            blink_rate: blinks a minute (0: none; None: Ditto's rhythm, one every 2.4-4 s at random). Photos only.
            pose_offsets: degrees added to the head's ``pitch``, ``yaw`` and ``roll`` (Ditto's ``delta_*``): a
                number, a sequence over the frames (its last value held), or a callable of the frame index; each
                within +-45.
            alpha_pitch, alpha_yaw, alpha_roll: Ditto's pose factors, 0 to 3, per frame as ``pose_offsets``: the
                head's angle (relative motion on the photo's pose, plus the offset) times the factor when that
                angle has an offset; without one Ditto multiplies the angle's bin logits (a softer or sharper
                pose estimate) instead. Not the same as ``head_motion``, which scales the motion's change.
            delta_exp: Ditto's expression offset added to the 21 x 3 expression keypoints (a number for all, 63
                numbers, or per frame (frames, 63), or a callable), each within +-1.
            vad_alpha: Ditto's voice-activity weight, 0 to 1 per frame: below 1 the expression goes that far back
                to the photo's (0: the photo's expression; mouth closed as in the photo).
            fade_in, fade_out: frames over which the motion fades in from, and out to, ``fade_type``'s target
                (Ditto's ``setup_Nd``; -1: none). ``fade_type``: "d0" (the first frame's motion) or "s" (the
                photo's); Ditto's configuration's, else "" (none, where fades are refused).
            v_min_max_for_clip: Ditto's motion clamp, (2, 265) lower and upper bounds of every motion value;
                None: the loaded configuration's (none without one); False: no clamp.
            max_size: the source's longest side in pixels, resized as Ditto does (default 1920; -1 or 0: any; up to
                16384); odd sides lose a pixel. The output has that size.
            smo_k_s: frames of Ditto's moving average over a video source's motion (default 13; 1: none; up to
                101); refused with a photo, which has one frame.
            num_inference_steps, guidance_scale: the motion model's DDIM steps and classifier-free guidance.
            generator: seeds the motion (the same seed gives the same video).
            batch_size: frames per render call.
            output_path: write the mp4 (with the speech, marked as synthetic) while rendering, keeping no frames
                in memory; the file appears only when complete.
            measure: report FaceSim to the photo (every ``facesim_every`` frames), blinks and the lip-sync proxy.
            callback_on_step_end: called after each batch of ``batch_size`` frames, as diffusers' callback of that
                name, with ``(pipeline, batch index, None, {})``; an exception raised in it stops the call (no file
                is written).
        """
        started = time.perf_counter()
        output_path = check_output_path(output_path, (".mp4",), [image, audio])
        self._check_call(
            image, head_motion, blink_rate, smo_k_s, num_inference_steps, guidance_scale, batch_size, facesim_every
        )
        controls = self._controls(
            pose_offsets, alpha_pitch, alpha_yaw, alpha_roll, delta_exp, vad_alpha, fade_in, fade_out, fade_type
        )
        clip = self._clip(v_min_max_for_clip)
        max_size, smo_k_s = self._source_options(max_size, smo_k_s)
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
        # a video source's frames up to the speech's last, and as far past it as the smoothing reads (Ditto reads
        # them all; genface at most MAX_SOURCE_FRAMES)
        used = min(num_frames + smo_k_s // 2, MAX_SOURCE_FRAMES)
        source = self.prepare_source(image, face_index, max_size=max_size, smo_k_s=smo_k_s, max_frames=used)
        conditions = self._conditions(source, emotion, num_frames, blink_rate, generator)
        features = HubertFeatures(self.audio_encoder)
        generator_options = {"num_steps": num_inference_steps, "guidance_scale": guidance_scale, "clip": clip}
        motion = self._motion_generator(source, generator, **generator_options)
        stitcher = self._stitcher(source, head_motion, num_frames, controls)
        poses: list[np.ndarray] = []
        chunks = _motion_chunks(features.stream(speech), conditions, motion)
        frames = self._frames(source, chunks, stitcher, controls, batch_size, poses)
        track = (
            audio if isinstance(audio, (str, os.PathLike)) else load_audio(audio, audio_rate, source_rate=audio_rate)
        )
        written = None if output_path is None else (output_path, track, audio_rate or SAMPLE_RATE)
        return self._finish(
            frames, source, speech, num_frames, written, measure, facesim_every, poses, started, callback_on_step_end
        )

    def stream(
        self,
        image: Any,
        audio_chunks: Iterable[np.ndarray],
        *,
        emotion: Emotion = "neutral",
        head_motion: float = 1.0,
        blink_rate: float | None = None,
        pose_offsets: Mapping[str, Any] | None = None,
        alpha_pitch: Any = None,
        alpha_yaw: Any = None,
        alpha_roll: Any = None,
        delta_exp: Any = None,
        vad_alpha: Any = None,
        fade_in: int = -1,
        fade_out: int = -1,
        fade_type: str | None = None,
        v_min_max_for_clip: Any = None,
        max_size: int | None = None,
        smo_k_s: int | None = None,
        generator: torch.Generator | None = None,
        face_index: int | None = None,
        batch_size: int = 5,
    ) -> Iterator[np.ndarray]:
        """Frames as speech arrives: ``audio_chunks`` are 16 kHz mono float arrays of any length (a microphone, a
        text-to-speech stream). Ditto's online path: its preset (10 DDIM steps, windows of 80 frames every 10),
        its HuBERT windows (1920 samples of silence in front) and its lead-in of 70 silent frames, whose first
        frame the motion is relative to. A frame is final once the next window has been blended over it, so the
        first frames come out when 0.8 s of speech (and 80 ms of look-ahead) are in, then 10 frames for every
        0.4 s; a ``fade_out`` holds back its last ``fade_out + 1`` frames until the speech ends. The stream ends
        with the speech's last frame (Ditto's online loop goes on for up to 17 frames). Silence is animated like
        speech (a live stream pauses); pieces must be 1-D float arrays. Memory stays bounded however long the
        speech; a video source uses at most its first 3000 frames. The options are :meth:`__call__`'s."""
        self._check_call(image, head_motion, blink_rate, smo_k_s, 10, 2.0, batch_size, 1)
        controls = self._controls(
            pose_offsets, alpha_pitch, alpha_yaw, alpha_roll, delta_exp, vad_alpha, fade_in, fade_out, fade_type
        )
        clip = self._clip(v_min_max_for_clip)
        max_size, smo_k_s = self._source_options(max_size, smo_k_s)
        emotion_probabilities(emotion)
        source = self.prepare_source(image, face_index, max_size=max_size, smo_k_s=smo_k_s)
        # One chunk a call, so the frames do not depend on how the speech arrives (batches round differently).
        features = HubertFeatures(self.audio_encoder, batch_size=1, online=True)
        motion = self._motion_generator(source, generator, online=True, clip=clip, **ONLINE)
        lead_in = ONLINE["overlap"]
        # The blink schedule is drawn for an hour and cycled; the lead-in frames come first (Ditto's silence,
        # whose features its offline wav2feat makes).
        conditions = self._conditions(source, emotion, int(FPS * 3600), blink_rate, generator)
        silence = HubertFeatures(self.audio_encoder, batch_size=1)(np.zeros(lead_in * SAMPLES_PER_FRAME, np.float32))
        heard = itertools.chain([silence], features.live(audio_chunks))
        stitcher = self._stitcher(source, head_motion, None, controls)
        chunks = _relative_to_reference(_motion_chunks(heard, conditions, motion, start=-lead_in), motion, stitcher)
        yield from self._frames(source, _speech_frames(chunks, features), stitcher, controls, batch_size, [])

    def _controls(
        self,
        pose_offsets: Mapping[str, Any] | None,
        alpha_pitch: Any,
        alpha_yaw: Any,
        alpha_roll: Any,
        delta_exp: Any,
        vad_alpha: Any,
        fade_in: int,
        fade_out: int,
        fade_type: str | None,
    ) -> ControlSchedule:
        """The per-frame controls over the configuration's ``overall_ctrl_info``, checked."""
        given = {
            **check_pose_offsets(pose_offsets),
            **{"alpha_pitch": alpha_pitch, "alpha_yaw": alpha_yaw, "alpha_roll": alpha_roll},
            **{"delta_exp": delta_exp, "vad_alpha": vad_alpha},
        }
        defaults = self.config.default_kwargs.get("overall_ctrl_info", {})
        fade_type = self._default("fade_type", fade_type, "")
        return ControlSchedule.build(given, defaults, fade_in=fade_in, fade_out=fade_out, fade_type=fade_type)

    def _clip(self, value: Any) -> torch.Tensor | None:
        """The motion clamp: ``value``, the configuration's (None) or none (False)."""
        if value is False:
            return None
        value = self.config.default_kwargs.get("v_min_max_for_clip") if value is None else value
        return None if value is None else motion_bounds(value, self.lmdm.config.motion_feat_dim)

    def _check_call(
        self, image: Any, head_motion: float, blink_rate: float | None, smo_k_s: int | None, steps: int,
        guidance: float, batch: int, every: int,
    ) -> None:  # fmt: skip
        param = next(self.warping_network.parameters())
        if param.device.type == "cpu" and param.dtype in (torch.float16, torch.bfloat16):
            raise InvalidArgumentError(
                "The renderer's 3-D layers do not run in float16 on the CPU (nor in bfloat16); load the pipeline "
                "with dtype=torch.float32 there, or move it to a GPU."
            )
        HEAD_MOTION.check(head_motion, "head_motion")
        if blink_rate is not None:
            BLINK_RATE.check(blink_rate, "blink_rate")
        check_source_options(image, head_motion, blink_rate, smo_k_s)
        STEPS.check(steps, "num_inference_steps")
        GUIDANCE.check(guidance, "guidance_scale")
        BATCH_SIZE.check(batch, "batch_size")
        if not (isinstance(every, int) and every >= 1):
            raise InvalidArgumentError(f"facesim_every must be a whole number of at least 1, got {every!r}.")

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
        callback: Callable[..., Any] | None,
    ) -> TalkingPortraitPipelineOutput:
        meter = _Meter(self._analyzer(), source, facesim_every) if measure else None
        first: list[float] = []
        collected: list[np.ndarray] = []

        def measured() -> Iterator[np.ndarray]:
            with self.progress_bar(total=total) as bar:
                for step, chunk in enumerate(frames):
                    if not first:
                        first.append(time.perf_counter() - started)
                    if meter is not None:
                        meter.add(chunk)
                    bar.update(len(chunk))
                    if callback is not None:
                        callback(self, step, None, {})
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


def _relative_to_reference(
    chunks: Iterable[torch.Tensor], motion: MotionGenerator, stitcher: MotionStitcher
) -> Iterator[torch.Tensor]:
    """The chunks as they come; before the first, the stitcher's reference (``d0``) becomes frame 0 of the first
    window, the lead-in's (Ditto's online ``motion_stitch.d0``), not the first frame returned."""
    for chunk in chunks:
        if stitcher.d0 is None:
            stitcher.d0 = Motion.unpack(motion.reference[None].float().cpu())
        yield chunk


def _speech_frames(chunks: Iterable[torch.Tensor], features: HubertFeatures) -> Iterator[torch.Tensor]:
    """Motion chunks up to the speech's last frame (the features go on past it, as Ditto's online path's do; the
    frame count is known before any motion past it comes)."""
    done = 0
    for chunk in chunks:
        end = features.speech_frames
        chunk = chunk if end is None else chunk[: max(end - done, 0)]
        if chunk.shape[0]:
            done += chunk.shape[0]
            yield chunk


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
