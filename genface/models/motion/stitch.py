"""Motion vectors between Ditto's networks, batched over frames.

Ditto's audio-to-motion model speaks a 265-value motion vector per frame; LivePortrait's renderer wants
3-D keypoints. This module holds the layout of that vector, the head pose (66 bins -> degrees -> rotation),
LivePortrait's keypoint transform, and the rules of Ditto's ``motion_stitch.py`` that turn a driving motion
into the keypoints of one frame: motion relative to the photo's own pose, eye and blink control, per-frame
controls (pose offsets and factors, expression offsets, voice activity), fades and the stitching network; and
those controls as a pipeline takes them (:class:`ControlSchedule`). Plus GeneFace++'s smoothing and LLE
projection with a jitter measure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genface.arguments import EXPRESSION_OFFSET, FADE_FRAMES, POSE_FACTOR, POSE_OFFSET, VOICE_ACTIVITY, Rule
from genface.errors import InvalidArgumentError
from genface.identity.track import fill_and_smooth

NUM_KP = 21
POSE_BINS = 66
#: Ditto's motion vector (``audio2motion.py``), in order; ``scale`` is stored minus one.
MOTION_LAYOUT = (("scale", 1), ("pitch", POSE_BINS), ("yaw", POSE_BINS), ("roll", POSE_BINS), ("t", 3), ("exp", 63))
#: 265: the audio-to-motion model's vector; the canonical keypoints ``kp`` (63) may follow it (328).
MOTION_DIM = sum(size for _, size in MOTION_LAYOUT)
#: Keypoints whose expression is the eyes' and the lips' (``motion_stitch.py``); the rest keep the photo's.
EYE_KP = (11, 13, 15, 16, 18)
LIP_KP = (6, 12, 14, 17, 19, 20)
HEAD_KEYS = ("pitch", "yaw", "roll", "t")
#: Ditto's blink spacing: eyes stay open 60 to 100 frames (2.4-4 s at 25 fps) between blinks.
OPEN_MIN, OPEN_MAX = 60, 100
#: Stitching network: (kp_source, kp_driving), both (N, 21, 3) -> stitched kp_driving (N, 21, 3), as Ditto calls
#: it (genface.models.motion.extractor.StitchingNetwork).
Stitching = Callable[[Tensor, Tensor], Tensor]


def bins_to_degrees(pred: Tensor) -> Tensor:
    """Head-pose bins (..., 66) -> degrees (..., 1): softmax expectation * 3 - 97.5; degrees pass through."""
    if pred.shape[-1] != POSE_BINS:
        return pred
    idx = torch.arange(POSE_BINS, dtype=pred.dtype, device=pred.device)
    return (pred.softmax(-1) * idx).sum(-1, keepdim=True) * 3 - 97.5


def rotation_matrix(pitch: Tensor, yaw: Tensor, roll: Tensor) -> Tensor:
    """Degrees (N,) or (N, 1) -> (N, 3, 3), LivePortrait's convention: ``(Rz(roll) Ry(yaw) Rx(pitch))^T``,
    applied to row vectors (``kp @ R``)."""
    x, y, z = (torch.deg2rad(a.reshape(-1)) for a in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    rot_x = torch.stack([one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos()], -1).view(-1, 3, 3)
    rot_y = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], -1).view(-1, 3, 3)
    rot_z = torch.stack([z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one], -1).view(-1, 3, 3)
    return (rot_z @ rot_y @ rot_x).transpose(1, 2)


def transform_keypoint(kp: Tensor, rotation: Tensor, exp: Tensor, scale: Tensor, t: Tensor) -> Tensor:
    """LivePortrait's Eqn. 2, ``scale * (kp @ R + exp) + t`` with t on x, y only -> (N, K, 3).

    kp, exp: (N, K*3) or (N, K, 3); rotation (N, 3, 3); scale (N, 1); t (N, 3)."""
    out = kp.reshape(kp.shape[0], -1, 3) @ rotation + exp.reshape(exp.shape[0], -1, 3)
    out = out * scale.reshape(-1, 1, 1)
    return torch.cat([out[..., :2] + t.reshape(-1, 1, 3)[..., :2], out[..., 2:]], -1)


@dataclass
class Motion:
    """LivePortrait motion of N frames. scale (N, 1); pitch, yaw, roll (N, 66) bin logits or (N, 1) degrees;
    t (N, 3); exp (N, 63); kp (N, 63) canonical keypoints (the motion extractor gives them; the audio-to-motion
    model does not)."""

    scale: Tensor
    pitch: Tensor
    yaw: Tensor
    roll: Tensor
    t: Tensor
    exp: Tensor
    kp: Tensor | None = None

    def __len__(self) -> int:
        return self.exp.shape[0]

    def get(self, key: str) -> Tensor:
        return getattr(self, key)

    def replace(self, **values: Tensor) -> Motion:
        return dataclasses.replace(self, **values)

    def frames(self, index: slice | Tensor) -> Motion:
        """The motion of some frames."""
        return Motion(**{k: None if v is None else v[index] for k, v in self.items()})

    def items(self) -> list[tuple[str, Tensor | None]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]

    @classmethod
    def unpack(cls, vectors: Tensor) -> Motion:
        """(N, 265) audio-to-motion vectors, or (N, 328) with kp, -> Motion (as Ditto's ``arr2dic``)."""
        if vectors.ndim != 2 or vectors.shape[-1] not in (MOTION_DIM, MOTION_DIM + 63):
            raise InvalidArgumentError(
                f"Motion vectors must be (frames, {MOTION_DIM}) or (frames, {MOTION_DIM + 63}); "
                f"got {tuple(vectors.shape)}."
            )
        parts = vectors[:, :MOTION_DIM].split([s for _, s in MOTION_LAYOUT], -1)
        values = dict(zip([k for k, _ in MOTION_LAYOUT], parts, strict=True))
        values["scale"] = values["scale"] + 1
        kp = vectors[:, MOTION_DIM:] if vectors.shape[-1] > MOTION_DIM else None
        return cls(**values, kp=kp)

    def pack(self) -> Tensor:
        """Motion -> (N, 265) vectors (N, 328 with kp), as Ditto's ``dic2arr``; pose must be in bins."""
        if self.pitch.shape[-1] != POSE_BINS:
            raise InvalidArgumentError("Only motion whose head pose is in bins packs into motion vectors.")
        parts = [self.scale - 1] + [self.get(k).reshape(len(self), -1) for k, _ in MOTION_LAYOUT[1:]]
        return torch.cat(parts + ([] if self.kp is None else [self.kp.reshape(len(self), -1)]), -1)

    def in_degrees(self) -> Motion:
        """The same motion with the head pose in degrees (N, 1)."""
        return self.replace(**{k: bins_to_degrees(self.get(k)) for k in ("pitch", "yaw", "roll")})

    def keypoints(self, kp: Tensor | None = None) -> Tensor:
        """Posed keypoints (N, 21, 3) of these frames, from canonical keypoints ``kp`` (default: own)."""
        kp = self.kp if kp is None else kp
        if kp is None:
            raise InvalidArgumentError("Keypoints need the canonical keypoints kp (the photo's).")
        rotation = rotation_matrix(*(bins_to_degrees(self.get(k)) for k in ("pitch", "yaw", "roll")))
        return transform_keypoint(kp, rotation, self.exp, self.scale, self.t)


def blink_schedule(
    num_frames: int,
    blink_frames: int,
    open_frames: int | Sequence[int] = 0,
    *,
    short_clips: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Index (N,) into a blink animation of ``blink_frames`` frames for each frame (0: eyes open).

    Ditto's schedule: ``open_frames`` -1 never blinks; 0 keeps the eyes open a random 60-100 frames before,
    between and after blinks; n > 0 always n frames; a list cycles. Ditto places no blink in a clip shorter
    than both margins (about 5-8 s at 25 fps); with ``short_clips`` such a clip gets one blink in its middle
    when it is at least three blinks long.
    """
    index = torch.zeros(num_frames, dtype=torch.long)
    if isinstance(open_frames, int) and open_frames < 0:
        return index
    gaps = [open_frames] if isinstance(open_frames, int) and open_frames > 0 else list(open_frames or [])
    if any(g < 0 for g in gaps):
        raise InvalidArgumentError(f"Frames between blinks cannot be negative; got {open_frames}.")

    def gap(i: int) -> int:
        if gaps:
            return gaps[i % len(gaps)]
        return int(torch.randint(OPEN_MIN, OPEN_MAX + 1, (1,), generator=generator))

    start, end = (gaps[0], gaps[-1]) if gaps else (gap(0), gap(0))
    last, i, n = num_frames - max(end, blink_frames), start, 1
    starts = []
    while i < last:
        starts.append(i)
        i, n = i + blink_frames + gap(n), n + 1
    if not starts and short_clips and num_frames >= 3 * blink_frames:
        starts = [(num_frames - blink_frames) // 2]
    for s in starts:
        index[s : s + blink_frames] = torch.arange(blink_frames)
    return index


def fade_alphas(
    num_frames: int | None, fade_in: int = -1, fade_out: int = -1, *, start: int = 0, count: int | None = None
) -> Tensor:
    """Ditto's fade weights (``setup_Nd``) of frames ``start`` .. ``start + count - 1`` (default: all
    ``num_frames``): 0 -> 1 over the first ``fade_in`` frames, 1 -> 0 over the last ``fade_out + 1`` (the fade-out
    wins where they meet); 1 elsewhere. ``num_frames`` None: the end is not known yet (no fade-out)."""
    if count is None:
        if num_frames is None:
            raise InvalidArgumentError("fade_alphas needs num_frames or count.")
        count = num_frames - start
    frames = torch.arange(start, start + count)
    alpha = torch.ones(count)
    if fade_in > 0:
        alpha = torch.where(frames < fade_in, frames / fade_in, alpha)
    if fade_out > 0 and num_frames is not None:
        last = num_frames - 1
        alpha = torch.where(frames >= last - fade_out, ((last - frames) / fade_out).clamp(min=0), alpha)
    return alpha


@dataclass
class StitchConfig:
    """Ditto's motion-stitch settings (``stream_pipeline_offline.py`` defaults).

    use_d_keys: motion keys taken from the driving motion, with weights on their change (Ditto's dict form);
        None: pose, t and exp for a photo, exp only for a video source.
    head_motion: genface's head-motion amplitude, multiplying the weights of pitch, yaw, roll and t (0 keeps
        the photo's head still).
    relative: drive by the change from the first driving frame (``relative_d``), else absolute values.
    drive_eye: eyes from the driving motion (or the blink animation); None: True for a photo, False for a video.
    open_frames: frames between blinks (``delta_eye_open_n``; 0 random 60-100, -1 none, list cycles).
    fade_type: fade towards "" nothing, "d0" the first driven frame, "s" the source.
    fade_keys: keys a fade touches (``fade_out_keys``).
    stitching: run the stitching network (``flag_stitching``).
    """

    use_d_keys: Mapping[str, float] | Sequence[str] | None = None
    head_motion: float = 1.0
    relative: bool = True
    drive_eye: bool | None = None
    open_frames: int | Sequence[int] = 0
    fade_type: str = ""
    fade_keys: Sequence[str] = ("exp",)
    stitching: bool = True

    def weights(self, is_image: bool) -> dict[str, float]:
        keys = self.use_d_keys
        if keys is None:
            keys = ("exp", *HEAD_KEYS) if is_image else ("exp",)
        weights = dict(keys) if isinstance(keys, Mapping) else dict.fromkeys(keys, 1.0)
        return {k: w * (self.head_motion if k in HEAD_KEYS else 1.0) for k, w in weights.items()}


@dataclass
class FrameControls:
    """Per-frame controls (Ditto's ``ctrl_info`` entries), each (N,...) or None: pose offsets in degrees, pose
    factors (``alpha_*``: Ditto multiplies the offset pose in degrees, or the pose's bin logits when that angle
    has no offset), translation offset (N, 3) (genface), expression offset (N, 63), fade weight and
    voice-activity weight (N,)."""

    delta_pitch: Tensor | None = None
    delta_yaw: Tensor | None = None
    delta_roll: Tensor | None = None
    alpha_pitch: Tensor | None = None
    alpha_yaw: Tensor | None = None
    alpha_roll: Tensor | None = None
    delta_t: Tensor | None = None
    delta_exp: Tensor | None = None
    fade_alpha: Tensor | None = None
    vad_alpha: Tensor | None = None

    def frames(self, index: slice | Tensor) -> FrameControls:
        """The controls of some frames."""
        return FrameControls(**{k: None if v is None else v[index] for k, v in vars(self).items()})


#: control -> (its rule in genface.arguments, what it is), with Ditto's names (``motion_stitch.ctrl_motion`` /
#: ``ctrl_vad``); pose offsets are genface's ``pose_offsets`` (Ditto's ``delta_pitch`` ...).
CONTROLS: dict[str, tuple[Rule, str]] = {
    **{f"delta_{k}": (POSE_OFFSET, "degrees") for k in ("pitch", "yaw", "roll")},
    **{f"alpha_{k}": (POSE_FACTOR, "factors") for k in ("pitch", "yaw", "roll")},
    "delta_exp": (EXPRESSION_OFFSET, "expression offsets (keypoint units)"),
    "vad_alpha": (VOICE_ACTIVITY, "weights"),
}
FADE_TYPES = ("", "d0", "s")

Series = Callable[[np.ndarray], np.ndarray]


def _width(name: str) -> int:
    return 3 * NUM_KP if name == "delta_exp" else 1


def _checked(name: str, value: Any) -> np.ndarray:
    """``value`` as rows (m, width) within the control's rule, or a one-line error."""
    rule, unit = CONTROLS[name]
    width = _width(name)
    if name.removeprefix("delta_") in ("pitch", "yaw", "roll"):
        name = f"pose_offsets[{name.removeprefix('delta_')!r}]"
    shape = "a number, 63 numbers or (frames, 63)" if width > 1 else "a number or a sequence over the frames"
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be {shape} ({unit}).") from None
    if array.ndim == 0:
        array = np.full((1, width), float(array))
    elif (width == 1 and array.ndim == 1) or (width > 1 and array.ndim in (1, 2) and array.shape[-1] == width):
        array = array.reshape(-1, width)
    else:
        array = np.empty((0, width))
    if array.shape[0] == 0:
        raise InvalidArgumentError(f"{name} must be {shape} ({unit}).")
    outside = ~(np.isfinite(array) & (array >= rule.low) & (array <= rule.high))
    if outside.any():  # the (first) value out of range, refused in the rule's words
        rule.check(value if isinstance(value, Real) else float(array.flat[np.argmax(outside)]), name)
    return array.astype(np.float32)


def _one_frame(name: str, value: Any) -> np.ndarray:
    rows = _checked(name, value)
    if len(rows) != 1:
        raise InvalidArgumentError(f"{name} as a function must give one frame's value, not {len(rows)}.")
    return rows


def _series(name: str, value: Any) -> Series:
    """Values of frames (indices) -> (count, width): a callable is checked as it is called."""
    if callable(value):
        return lambda frames: np.concatenate([_one_frame(name, value(int(i))) for i in frames])
    array = _checked(name, value)
    return lambda frames: array[np.minimum(frames, len(array) - 1)]


@dataclass
class ControlSchedule:
    """Ditto's per-frame controls (``ctrl_info`` / ``overall_ctrl_info``) and fades (``setup_Nd``) of one run, as
    a pipeline takes them: built (and checked, before any model work) by :meth:`build`, then turned into
    :class:`FrameControls` chunk by chunk. Each control is a number (every frame), a sequence over the frames (its
    last value held) or a callable of the frame index (checked as it is called); ``delta_exp`` takes 63 values
    (21 keypoints x 3) where the others take one, and a single number is added to all 63."""

    series: dict[str, Series]
    fade_in: int = -1
    fade_out: int = -1
    fade_type: str = ""

    @classmethod
    def build(
        cls,
        controls: Mapping[str, Any],
        defaults: Mapping[str, Any] | None = None,
        *,
        fade_in: int = -1,
        fade_out: int = -1,
        fade_type: str = "",
    ) -> ControlSchedule:
        """Check ``controls`` (Ditto's names; None: not given) over ``defaults`` (Ditto's ``overall_ctrl_info``:
        a given control replaces its default, as Ditto merges them) and the fades."""
        fade_in, fade_out = FADE_FRAMES.check(fade_in, "fade_in"), FADE_FRAMES.check(fade_out, "fade_out")
        if fade_type not in FADE_TYPES:
            raise InvalidArgumentError(f"fade_type must be '' (none), 'd0' or 's'; got {fade_type!r}.")
        if (fade_in > 0 or fade_out > 0) and not fade_type:
            raise InvalidArgumentError(
                "fade_in and fade_out need fade_type 'd0' (towards the first frame's motion) or 's' (towards the "
                "photo's); Ditto ignores them without one."
            )
        merged = {**(defaults or {}), **{k: v for k, v in controls.items() if v is not None}}
        unknown = sorted(set(merged) - set(CONTROLS))
        if unknown:
            raise InvalidArgumentError(f"Unknown controls {', '.join(unknown)}; known: {', '.join(CONTROLS)}.")
        return cls({name: _series(name, value) for name, value in merged.items()}, fade_in, fade_out, fade_type)

    @property
    def hold(self) -> int:
        """Frames held back until the end of the speech is known (the fade-out's)."""
        return self.fade_out + 1 if self.fade_out > 0 else 0

    def frames(self, start: int, count: int, total: int | None) -> FrameControls:
        """Controls of frames ``start`` .. ``start + count - 1``; ``total`` frames in all (None: not known yet)."""
        frames = np.arange(start, start + count)
        values = {name: torch.from_numpy(series(frames)).reshape(count, -1) for name, series in self.series.items()}
        if self.fade_in > 0 or self.fade_out > 0:
            values["fade_alpha"] = fade_alphas(total, self.fade_in, self.fade_out, start=start, count=count)
        return FrameControls(**values)


def released(chunks: Iterable[torch.Tensor], hold: int) -> Iterator[tuple[torch.Tensor, int | None]]:
    """Motion chunks with the total frame count once it is known: the last ``hold`` frames wait for the end."""
    pending, done = None, 0
    for chunk in chunks:
        pending = chunk if pending is None else torch.cat([pending, chunk])
        ready = pending.shape[0] - hold
        if ready > 0:
            yield pending[:ready], None
            pending, done = pending[ready:], done + ready
    if pending is not None and pending.shape[0]:
        yield pending, done + pending.shape[0]


def _rows(kp: Sequence[int], dtype: torch.dtype) -> Tensor:
    mask = torch.zeros(NUM_KP, 3, dtype=dtype)
    mask[list(kp)] = 1
    return mask.reshape(1, -1)


def relative_motion(source: Motion, driving: Motion, weights: Mapping[str, float], d0: Motion | None) -> Motion:
    """Ditto's ``_mix_s_d_info``: keys in ``weights`` follow the driving motion (relative: source + (driving -
    d0) * w, on the raw values, pose bins included; absolute: driving * w); all other keys are the source's."""
    values = {}
    for key, value in source.items():
        if key not in weights or driving.get(key) is None:
            values[key] = value
        elif d0 is not None:
            values[key] = value + (driving.get(key) - d0.get(key)) * weights[key]
        else:
            values[key] = driving.get(key) * weights[key]
    return Motion(**values)


def _posed(bins: Tensor, controls: FrameControls, key: str) -> Tensor:
    """One angle in degrees (N, 1) after Ditto's ``ctrl_motion``: bins -> degrees + ``delta_<key>``, then times
    ``alpha_<key>``; with a factor but no offset, the factor scales the bin logits before the degrees."""
    delta, alpha = getattr(controls, f"delta_{key}"), getattr(controls, f"alpha_{key}")
    alpha = None if alpha is None else alpha.reshape(-1, 1)
    if delta is None:
        return bins_to_degrees(bins if alpha is None else bins * alpha)
    degrees = bins_to_degrees(bins) + delta.reshape(-1, 1)
    return degrees if alpha is None else degrees * alpha


def _fix_gaze(exp: Tensor, yaw: Tensor, pitch: Tensor, pose_s: tuple[Tensor, Tensor]) -> Tensor:
    """Ditto's ``_fix_gaze``: the pupils follow the head's turn away from the photo's pose."""
    dx = (yaw - pose_s[0]).reshape(-1) * 0.26
    dy = (pitch - pose_s[1]).reshape(-1) * 0.28
    exp = exp.clone()
    exp[:, 33] += torch.where(dx > 0, dx * 0.0007, dx * 0.001)
    exp[:, 45] += torch.where(dx > 0, dx * 0.001, dx * 0.0007)
    exp[:, 34] += dy * -0.001
    exp[:, 46] += dy * -0.001
    return exp


class MotionStitcher:
    """Ditto's ``MotionStitch`` over chunks of frames: driving motion -> (kp_source, kp_driving).

    Args:
        source: the photo's motion (1 frame, pose in bins, with kp) from the motion extractor.
        config: the settings (:class:`StitchConfig`).
        is_image: the source is a photo (Ditto's defaults differ for a video source).
        stitching: the stitching network, ``(kp_source, kp_driving) -> stitched kp_driving`` (N, 21, 3 each;
            :class:`~genface.models.motion.extractor.StitchingNetwork`); needed when ``config.stitching``.
        blink: Ditto's blink animation ``delta_eye_arr`` (B, 63), expression offsets from the open eye
            (row 0) through a blink; None: the eyes follow the driving motion.
        blink_index: (frames,) row of ``blink`` per frame for the whole clip (default: :func:`blink_schedule`
            over ``num_frames``, or 3000 frames looped as Ditto when unknown).
    """

    def __init__(
        self,
        source: Motion,
        config: StitchConfig | None = None,
        *,
        is_image: bool = True,
        stitching: Stitching | None = None,
        blink: Tensor | None = None,
        blink_index: Tensor | None = None,
        num_frames: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        config = config or StitchConfig()
        if source.kp is None:
            raise InvalidArgumentError("The source motion needs its canonical keypoints kp.")
        if config.stitching and stitching is None:
            raise InvalidArgumentError("config.stitching is on, but no stitching network was given.")
        if config.fade_type not in FADE_TYPES:
            raise InvalidArgumentError(f"fade_type must be '', 'd0' or 's'; got {config.fade_type!r}.")
        if config.head_motion < 0:
            raise InvalidArgumentError(f"head_motion is an amplitude (0 still, 1 as driven); got {config.head_motion}.")
        if blink is not None and (blink.ndim != 2 or blink.shape[1] != 3 * NUM_KP):
            raise InvalidArgumentError(f"The blink animation must be (frames, 63); got {tuple(blink.shape)}.")
        self.source, self.config, self.is_image, self.stitching = source, config, is_image, stitching
        self.weights = config.weights(is_image)
        self.drive_eye = is_image if config.drive_eye is None else config.drive_eye
        self.blink = blink if self.drive_eye else None
        dtype = source.exp.dtype
        lip, eye = _rows(LIP_KP, dtype), _rows(EYE_KP, dtype)
        a1 = lip + (eye if self.drive_eye and self.blink is None else 0)
        a2 = eye if self.blink is not None else torch.zeros_like(eye)
        self.exp_weights = (a1 * (1 - a2), (1 - a1) + a1 * a2, a2)
        if self.blink is not None and blink_index is None:
            blink_index = blink_schedule(num_frames or 3000, len(self.blink), config.open_frames, generator=generator)
        self.blink_index = blink_index
        self.d0: Motion | None = None
        self.fade_target: Motion | None = None
        self.frame = 0

    def motion(self, driving: Motion, controls: FrameControls | None = None, source: Motion | None = None) -> Motion:
        """The next ``len(driving)`` frames' final motion (pose in degrees, kp the source's), before keypoints.

        ``source`` (N frames) replaces the photo's motion frame by frame for a video source."""
        n, c = len(driving), controls or FrameControls()
        for name, value in ((f.name, getattr(c, f.name)) for f in dataclasses.fields(c)):
            if value is not None and value.shape[0] != n:
                raise InvalidArgumentError(f"Control {name} has {value.shape[0]} frames; the motion has {n}.")
        source = self.source if source is None else source
        if self.config.relative and self.d0 is None:
            self.d0 = driving.frames(slice(0, 1))
        motion = relative_motion(source, driving, self.weights, self.d0 if self.config.relative else None)

        a1, a2, a3 = self.exp_weights
        eye = 0.0
        if self.blink is not None:
            eye = self.blink[self.blink_index[(self.frame + torch.arange(n)) % len(self.blink_index)]]
        exp = motion.exp * a1 + source.exp * a2 + eye * a3
        if c.vad_alpha is not None:
            vad = c.vad_alpha.reshape(-1, 1)
            exp = torch.where(vad < 1, exp * vad + source.exp * (1 - vad), exp)
        motion = motion.replace(exp=exp, **{key: _posed(motion.get(key), c, key) for key in ("pitch", "yaw", "roll")})
        for key, delta in {"t": c.delta_t, "exp": c.delta_exp}.items():
            if delta is not None:
                motion = motion.replace(**{key: motion.get(key) + delta.reshape(n, -1)})

        if self.config.fade_type == "d0" and self.fade_target is None:
            self.fade_target = motion.frames(slice(0, 1))
        if c.fade_alpha is not None and self.config.fade_type:
            target = self.fade_target if self.config.fade_type == "d0" else source.in_degrees()
            alpha = c.fade_alpha.reshape(-1, 1)
            faded = {k: motion.get(k) * alpha + target.get(k) * (1 - alpha) for k in self.config.fade_keys if k != "kp"}
            motion = motion.replace(**faded)

        if self.drive_eye:
            first = self.source.frames(slice(0, 1)).in_degrees()
            motion = motion.replace(exp=_fix_gaze(motion.exp, motion.yaw, motion.pitch, (first.yaw, first.pitch)))
        self.frame += n
        return motion

    def __call__(
        self, driving: Motion, controls: FrameControls | None = None, source: Motion | None = None
    ) -> tuple[Tensor, Tensor]:
        """Keypoints of the next ``len(driving)`` frames: kp_source (1 or N, 21, 3), kp_driving (N, 21, 3)."""
        return self.keypoints(self.motion(driving, controls, source), source)

    def keypoints(self, motion: Motion, source: Motion | None = None) -> tuple[Tensor, Tensor]:
        """kp_source and the (stitched) kp_driving of final motion from :meth:`motion`."""
        source = self.source if source is None else source
        kp_source, kp_driving = source.keypoints(), motion.keypoints()
        if self.config.stitching:
            kp_driving = self.stitching(kp_source.expand(len(kp_driving), -1, -1), kp_driving)
        return kp_source, kp_driving


def mean_filter(x: Tensor, k: int) -> Tensor:
    """Ditto's moving average over frames (dim 0): window ``k`` centred, cut at the ends (``_mean_filter``)."""
    if k <= 1:
        return x
    n, half = x.shape[0], k // 2
    csum = torch.cat([torch.zeros_like(x[:1]), x.cumsum(0)])
    i = torch.arange(n, device=x.device)
    lo, hi = (i - half).clamp(min=0), (i + half + 1).clamp(max=n)
    shape = (-1,) + (1,) * (x.ndim - 1)
    return (csum[hi] - csum[lo]) / (hi - lo).to(x.dtype).reshape(shape)


def smooth(x: Tensor, sigma: float) -> Tensor:
    """Zero-phase Gaussian smoothing over frames (dim 0) of ``sigma`` frames (genface.identity.track's)."""
    flat = x.detach().reshape(x.shape[0], -1).cpu().double().numpy()
    out = fill_and_smooth(flat, np.ones(len(flat), dtype=bool), sigma)
    return torch.from_numpy(out).to(x).reshape(x.shape)


def lle_project(
    x: Tensor, bank: Tensor, k: int = 10, weight: float = 1.0, reg: float = 1e-3, leave_out: bool = False
) -> Tensor:
    """GeneFace's manifold projection: each row of ``x`` (N, D) rebuilt from its ``k`` nearest rows of
    ``bank`` (M, D) with locally linear weights summing to one, then blended ``weight * proj + (1 - weight) *
    x``. ``reg`` regularises the local Gram matrix (relative to its trace). ``leave_out``: the bank is ``x``
    itself, and a row may not use itself."""
    distances = torch.cdist(x, bank)
    if leave_out:
        distances.fill_diagonal_(float("inf"))
    k = min(k, bank.shape[0] - int(leave_out))
    nbrs = bank[distances.topk(k, largest=False).indices]  # (N, k, D)
    diff = nbrs - x[:, None]
    gram = diff @ diff.transpose(1, 2)
    trace = gram.diagonal(dim1=1, dim2=2).sum(-1).clamp(min=1e-12)
    gram = gram + torch.eye(k, dtype=x.dtype, device=x.device) * (reg * trace)[:, None, None]
    w = torch.linalg.solve(gram, torch.ones(x.shape[0], k, 1, dtype=x.dtype, device=x.device))
    w = w / w.sum(1, keepdim=True)
    proj = (w.transpose(1, 2) @ nbrs).squeeze(1)
    return weight * proj + (1 - weight) * x


def keypoint_jitter(kp: Tensor) -> float:
    """Mean frame-to-frame acceleration of keypoints (N, K, 3): mean L2 norm of ``x[t+1] - 2 x[t] + x[t-1]``."""
    if kp.shape[0] < 3:
        return 0.0
    kp = kp.reshape(kp.shape[0], -1, 3)
    return float((kp[2:] - 2 * kp[1:-1] + kp[:-2]).norm(dim=-1).mean())
