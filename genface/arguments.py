"""The rules of the numbers a user gives (steps, guidance, seed, fps, frames, sizes, ...): each defined once, as
a :class:`Rule`, and used by the command line (its argparse types), the web demo and the pipelines' own checks,
so that a seed, a step count or an fps means the same everywhere and is refused with the same words.

Low in the import graph: it imports nothing but :mod:`genface.errors`.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from genface.errors import InvalidArgumentError


@dataclass(frozen=True)
class Rule:
    """What a number may be: a whole number (``kind=int``) or a finite one (``float``) from ``low`` to ``high``;
    with ``every`` > 1, also of the form ``every * k + plus`` (4k+1 frames, multiples of 16 pixels)."""

    name: str
    kind: type[int] | type[float]
    low: float
    high: float
    every: int = 1
    plus: int = 0

    @property
    def span(self) -> str:
        """The range as help texts write it: ``1-1000``, ``0-2.5``, ``-45 to 45``, ``0 to 2^63-1``."""
        low, high = (str(int(v)) if float(v).is_integer() else f"{v:g}" for v in (self.low, self.high))
        if self.high >= 2**32 and (int(self.high) + 1).bit_count() == 1:
            return f"{low} to 2^{int(self.high).bit_length()}-1"
        return f"{low}-{high}" if self.low >= 0 else f"{low} to {high}"

    @property
    def form(self) -> str:
        """``of the form 4k+1``, ``a multiple of 16``; empty for any whole number."""
        if self.every <= 1:
            return ""
        return f"of the form {self.every}k+{self.plus}" if self.plus else f"a multiple of {self.every}"

    def problem(self, value: Any, form: bool = True) -> str | None:
        """Why ``value`` is refused (to follow the name it is given: ``"must be from 1 to 1000, got 0"``), or None
        when it is fine; ``form=False`` leaves out the form (4k+1, multiples of 16)."""
        low, high = self.kind(self.low), self.kind(self.high)
        number = isinstance(value, Real) and not isinstance(value, bool)
        whole = isinstance(value, Integral) or (number and math.isfinite(value) and float(value).is_integer())
        if not number or (self.kind is int and not whole):
            what = "a whole number" if self.kind is int else "a number"
            return f"must be {what} from {low} to {high}, got {value!r}"
        and_form = f" (and {self.form})" if self.form else ""
        if not (math.isfinite(value) and low <= value <= high):
            return f"must be from {low} to {high}, got {value}{and_form}"
        if form and self.every > 1 and (value - self.plus) % self.every:
            k = max(int(value - self.plus) // self.every, 0)
            below, above = self.every * k + self.plus, self.every * (k + 1) + self.plus
            return f"must be {self.form} (got {value}); try {below} or {above}"
        return None

    def check(self, value: Any, name: str | None = None) -> int | float:
        """``value`` as this rule's kind, or an :class:`InvalidArgumentError` naming it ``name`` (default: the
        rule's name), as the command line and the web demo word it."""
        problem = self.problem(value)
        if problem is not None:
            raise InvalidArgumentError(f"{name or self.name} {problem}.")
        return self.kind(value)

    def parse(self, text: str) -> int | float:
        """An argparse ``type``: ``text`` read as this rule's kind and within its range (argparse names the option
        and exits with a usage error). The form is for the command to :meth:`check`, before any model work: a
        number of the wrong form is an error of the run (``main`` returns 1), as the pipelines would refuse it."""
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if self.kind is int else 'a number'}"
            ) from None
        problem = self.problem(value, form=False)
        if problem is not None:
            raise argparse.ArgumentTypeError(problem.replace(f"got {value}", f"got {text}", 1))
        return value


# Generation
STEPS = Rule("num_inference_steps", int, 1, 1000)  # the schedulers' training timesteps
GUIDANCE = Rule("guidance_scale", float, 0, 50)
# A non-negative int64, as the command line always took: torch.Generator.manual_seed takes it, and so do numpy's
# int64 and the JSON of records. A web page's number box (a JavaScript double) is exact only to 2^53, so the web
# demo takes the seed as text.
SEED = Rule("seed", int, 0, 2**63 - 1)
FACE_INDEX = Rule("face_index", int, 0, 999)
FPS = Rule("fps", float, 1, 120)
BATCH_SIZE = Rule("batch_size", int, 1, 256)
# Identity video (ConsisID's VAE: 4 frames per latent frame and 16-pixel patches)
VIDEO_FRAMES = Rule("num_frames", int, 1, 257, every=4, plus=1)
VIDEO_SIDE = Rule("height and width", int, 16, 2048, every=16)
# Makeup
STRENGTH = Rule("strength", float, 0, 2)
CROP_SIZE = Rule("size", int, 16, 2048)
# Talking face: LatentSync's guidance (its pipeline's range) and face crop side (1.6: 512, 1.5: 256; its VAE's 8x
# latents in its 64-pixel blocks)
LIP_SYNC_GUIDANCE = Rule("guidance_scale", float, 0, 20)
LATENTSYNC_RESOLUTION = Rule("resolution", int, 64, 1024, every=64)
# Talking portrait
HEAD_MOTION = Rule("head_motion", float, 0, 3)
BLINK_RATE = Rule("blink_rate", float, 0, 120)  # blinks a minute
POSE_OFFSET = Rule("pose offset", float, -45, 45)  # degrees
# Ditto's controls (its names): pose factors, expression offset, voice activity, fades, the source's size and
# smoothing
POSE_FACTOR = Rule("pose factor", float, 0, 3)  # alpha_pitch, alpha_yaw, alpha_roll
EXPRESSION_OFFSET = Rule("delta_exp", float, -1, 1)  # keypoint units
VOICE_ACTIVITY = Rule("vad_alpha", float, 0, 1)
FADE_FRAMES = Rule("fade frames", int, -1, 90_000)  # fade_in, fade_out: -1 none, up to an hour at 25 fps
SOURCE_SIZE = Rule("max_size", int, -1, 16384)  # the source's longest side in pixels; -1 or 0: any
SOURCE_SMOOTHING = Rule("smo_k_s", int, 1, 101)  # frames of a video source's moving average; 1: none
# Evaluation
SAMPLED_FRAMES = Rule("frames", int, 1, 1000)
# Serving and conversion
PORT = Rule("port", int, 1, 65535)
CONCURRENCY = Rule("concurrency", int, 1, 64)
MAX_QUEUE = Rule("max_queue", int, 1, 1000)
ATTENTION_HEAD_DIM = Rule("attention_head_dim", int, 1, 1024)
