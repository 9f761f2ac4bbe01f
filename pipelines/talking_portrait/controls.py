"""Ditto's per-frame controls (``ctrl_info`` / ``overall_ctrl_info``, applied by ``motion_stitch.py``) and fades
(``setup_Nd``) as the pipeline takes them: checked before any model work, then turned into
:class:`~genface.models.motion.stitch.FrameControls` chunk by chunk.

Each control is a number (every frame), a sequence over the frames (its last value held) or a callable of the
frame index (checked as it is called); ``delta_exp`` takes 63 values (21 keypoints x 3) where the others take one,
and a single number is added to all 63.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from genface.errors import InvalidArgumentError
from genface.models.motion.stitch import NUM_KP, FrameControls, fade_alphas

#: Pose offsets in degrees (genface's ``pose_offsets``; Ditto's ``delta_pitch`` ...) stay within this.
MAX_OFFSET_DEGREES = 45.0
#: control -> (lowest, highest, what it is), with Ditto's names (``motion_stitch.ctrl_motion`` / ``ctrl_vad``).
CONTROLS: dict[str, tuple[float, float, str]] = {
    **{f"delta_{k}": (-MAX_OFFSET_DEGREES, MAX_OFFSET_DEGREES, "degrees") for k in ("pitch", "yaw", "roll")},
    **{f"alpha_{k}": (0.0, 3.0, "factors") for k in ("pitch", "yaw", "roll")},
    "delta_exp": (-1.0, 1.0, "expression offsets (keypoint units)"),
    "vad_alpha": (0.0, 1.0, "weights"),
}
#: Longest fade in frames (an hour at 25 fps).
MAX_FADE = 90_000
FADE_TYPES = ("", "d0", "s")

Series = Callable[[np.ndarray], np.ndarray]


def _width(name: str) -> int:
    return 3 * NUM_KP if name == "delta_exp" else 1


def _checked(name: str, value: Any) -> np.ndarray:
    """``value`` as finite rows (m, width) within the control's bounds, or a one-line error."""
    low, high, unit = CONTROLS[name]
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
    if not np.isfinite(array).all() or (array < low).any() or (array > high).any():
        raise InvalidArgumentError(f"{name} must be finite {unit} within {low:g} to {high:g}.")
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
class PortraitControls:
    """The per-frame controls and fades of one run (build with :meth:`build`, which checks them)."""

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
    ) -> PortraitControls:
        """Check ``controls`` (Ditto's names; None: not given) over ``defaults`` (Ditto's ``overall_ctrl_info``:
        a given control replaces its default, as Ditto merges them) and the fades."""
        for name, value in (("fade_in", fade_in), ("fade_out", fade_out)):
            if not (isinstance(value, int) and not isinstance(value, bool) and -1 <= value <= MAX_FADE):
                raise InvalidArgumentError(f"{name} must be a whole number of frames, -1 (none) to {MAX_FADE}.")
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
