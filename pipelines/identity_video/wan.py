"""What genface's identity-video pipelines on diffusers' Wan (Stand-In, VACE) share.

The face side: one face chosen in a photo (several faces need ``face_index``), or a saved :class:`FaceIdentity`;
the input checks made before any model work; fast mode and the low-memory modes on Wan's transformers (both of
Wan 2.2's); and the end of a call: the marked mp4 (``output_path``) and FaceSim of the frames to the face.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers.pipelines.wan.pipeline_output import WanPipelineOutput

from genface.errors import InvalidArgumentError, MissingWeightsError
from genface.identity import FaceIdentity, FaceSimResult, IdentityEncoder
from genface.media.image import ImageInput
from genface.pipelines._memory import LowMemoryMixin
from genface.pipelines._speed import FastModeMixin

#: Wan's frame rate (16 fps); the default of ``output_path`` videos.
FPS = 16
#: Wan's recommended negative prompt (Wan2.1's ``sample_neg_prompt``), which Stand-In's ``infer.py`` passes too.
NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，"
    "多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
)
#: Bounds of the numbers a call takes.
MAX_SIDE, MAX_FRAMES, MAX_STEPS, MAX_GUIDANCE = 2048, 1025, 1000, 50.0


@dataclass
class WanIdentityVideoOutput(WanPipelineOutput):
    """diffusers' output (``frames``) plus the face the video was conditioned on: ``identity`` (None without a
    face), ``reference`` (the image the model was given), ``facesim`` (FaceSim of the frames to the face, when
    measured) and ``path`` (the marked mp4, when ``output_path`` was given)."""

    identity: FaceIdentity | None = None
    reference: PIL.Image.Image | None = None
    facesim: FaceSimResult | None = None
    path: Path | None = None


def check_number(name: str, value: float | None, low: float, high: float) -> None:
    """Refuse a number that is NaN, infinite or outside [low, high], in one line (None passes)."""
    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise InvalidArgumentError(f"{name} must be a finite number from {low:g} to {high:g}, got {value}.")


class WanIdentityMixin(LowMemoryMixin, FastModeMixin):
    """Face handling, input checks, speed and memory switches and the marked output of a Wan-based pipeline."""

    identity_encoder: IdentityEncoder | None = None
    #: Wan's attention goes through diffusers' dispatcher: xformers reaches it too.
    attention_dispatcher = True
    #: Where the command line and the web demo start (``genface.pipelines.call_defaults``): Wan's frame rate and its
    #: recommended negative prompt (the call's own default stays diffusers' empty one).
    default_fps: float = float(FPS)
    default_negative_prompt: str | None = NEGATIVE_PROMPT

    def transformers(self) -> list[torch.nn.Module]:
        """The pipeline's Wan transformers: one (Wan 2.1), or Wan 2.2's high- and low-noise experts."""
        return [t for t in (self.transformer, getattr(self, "transformer_2", None)) if t is not None]

    # -- speed and memory -------------------------------------------------------------------------------

    def set_attention_backend(self, backend: str = "sdpa") -> None:
        """Pin the transformers' attention to one PyTorch SDPA kernel (``flash``, ``cudnn``, ``efficient``,
        ``math``) or let PyTorch choose (``sdpa``), as the ConsisID pipeline's method of the same name does."""
        from genface.models.attention import pin_kernel
        from genface.pipelines.identity_video.pipeline import ATTENTION_BACKENDS

        if backend not in ATTENTION_BACKENDS:
            raise InvalidArgumentError(f"Unknown attention backend {backend!r}; choose from {ATTENTION_BACKENDS}.")
        for handle in getattr(self, "_attention_hooks", []):
            handle.remove()
        pinned = [] if backend == "sdpa" else [pin_kernel(t, backend) for t in self.transformers()]
        self._attention_hooks = [handle for handles in pinned for handle in handles]

    def fast_blocks(self) -> list[torch.nn.Module]:
        """Wan's repeated blocks (``_repeated_blocks``, as diffusers' regional compile finds them)."""
        return [m for t in self.transformers() for m in t.modules() if type(m).__name__ in t._repeated_blocks]

    def fast_denoisers(self) -> list[torch.nn.Module]:
        """Both of Wan 2.2's experts run on the kernel fast mode pins."""
        return self.transformers()

    def fuse_projections(self, fuse: bool) -> None:
        """diffusers' fused projections of Wan's attention (Stand-In's processors read them too)."""
        for transformer in self.transformers():
            transformer.fuse_qkv_projections() if fuse else transformer.unfuse_qkv_projections()

    def attention_shape(self) -> tuple[int, int, int, int]:
        """(batch, heads, tokens, head size) of Wan's self-attention at 81 frames of 480x832: 21 x 30 x 52 video
        tokens (plus the reference's, where the model adds them)."""
        config = self.transformers()[0].config
        tokens = 21 * (480 // 16) * (832 // 16) + self.extra_tokens()
        return 1, config.num_attention_heads, tokens, config.attention_head_dim

    def extra_tokens(self) -> int:
        """Tokens the model adds to the video's in self-attention."""
        return 0

    # -- the face ---------------------------------------------------------------------------------------

    def encode_face(
        self, face_image: ImageInput | None, identity: FaceIdentity | None, face_index: int | None
    ) -> tuple[FaceIdentity, np.ndarray, Any]:
        """(identity, the RGB image the face is in, the face in it): from a photo, one face (several need
        ``face_index``; 0 is the largest), or a saved identity's stored crop."""
        if face_image is not None and identity is not None:
            raise InvalidArgumentError("Give face_image (a photo) or identity (a saved FaceIdentity), not both.")
        if identity is not None:
            if not isinstance(identity, FaceIdentity):
                raise InvalidArgumentError(f"identity must be a FaceIdentity, got {type(identity).__name__}.")
            return identity, identity.crop, identity.face_in_crop()
        if self.identity_encoder is None:
            raise MissingWeightsError(
                "This pipeline has no identity encoder, so it cannot read a face photo; load it with one, or pass "
                "identity=FaceIdentity.load(...)."
            )
        rgb = self.identity_encoder.analyzer.load(face_image)
        found = self.identity_encoder.encode(rgb, face_index, require_single=face_index is None)
        return found, rgb, found.face

    # -- checks and the end of a call -------------------------------------------------------------------

    def check_video_call(
        self,
        prompt: str | list[str] | None,
        num_videos_per_prompt: int | None,
        size: tuple[int, int, int],
        num_inference_steps: int,
        numbers: dict[str, float | None],
        output: tuple[str | os.PathLike | None, str | None, float],
        face_image: ImageInput | None,
    ) -> None:
        """Refuse what the call cannot make, before any model work, in one line each: the ``size`` (height, width,
        frames), the steps, the ``numbers`` (guidance, ...) and the ``output`` (path, output type, fps)."""
        height, width, num_frames = size
        output_path, output_type, fps = output
        multiple = self.vae_scale_factor_spatial * self.transformers()[0].config.patch_size[1]
        for name, side in (("height", height), ("width", width)):
            if not (isinstance(side, int) and multiple <= side <= MAX_SIDE and side % multiple == 0):
                raise InvalidArgumentError(
                    f"{name} must be a multiple of {multiple} from {multiple} to {MAX_SIDE}, got {side}; Wan was "
                    "trained at 480x832."
                )
        step = self.vae_scale_factor_temporal
        if not (isinstance(num_frames, int) and 1 <= num_frames <= MAX_FRAMES and (num_frames - 1) % step == 0):
            k = max((num_frames - 1) // step, 0) if isinstance(num_frames, int) else 20
            raise InvalidArgumentError(
                f"num_frames must be of the form {step}k+1 up to {MAX_FRAMES} (got {num_frames}); try "
                f"{step * k + 1} or {step * (k + 1) + 1} (Wan was trained with 81)."
            )
        if not (isinstance(num_inference_steps, int) and 1 <= num_inference_steps <= MAX_STEPS):
            raise InvalidArgumentError(f"num_inference_steps must be from 1 to {MAX_STEPS}, got {num_inference_steps}.")
        for name, value in numbers.items():
            if not isinstance(value, torch.Tensor):
                check_number(name, value, 0.0, MAX_GUIDANCE)
            elif not torch.isfinite(value).all():
                raise InvalidArgumentError(f"{name} must be finite.")
        check_number("fps", fps, 1.0, 120.0)
        if output_path is None:
            return
        out = Path(output_path).expanduser()
        if out.suffix.lower() != ".mp4" or out.is_dir():
            raise InvalidArgumentError(f"output_path {output_path}: give a file name ending in .mp4.")
        if not out.absolute().parent.is_dir():
            raise InvalidArgumentError(f"output_path {output_path}: the folder {out.absolute().parent} is missing.")
        if isinstance(face_image, (str, os.PathLike)) and out.absolute() == Path(face_image).expanduser().absolute():
            raise InvalidArgumentError(f"output_path {output_path} is the face photo; write to another file.")
        batch = (len(prompt) if isinstance(prompt, list) else 1) * (num_videos_per_prompt or 1)
        if batch != 1:
            raise InvalidArgumentError(f"output_path writes one video, but this call makes {batch}.")
        if output_type == "latent":
            raise InvalidArgumentError("output_path writes frames, but output_type='latent' makes latents.")

    def finish(
        self,
        result: Any,
        return_dict: bool,
        face: tuple[FaceIdentity | None, PIL.Image.Image | None],
        output: tuple[str | os.PathLike | None, str | None, float],
        measure: bool,
        kind: str,
    ) -> WanIdentityVideoOutput | tuple:
        """diffusers' ``result`` with the ``face`` (identity, reference image) added, after writing the first video
        as a marked mp4 (when ``output`` has a path) and measuring its FaceSim to the face (with ``measure``, when
        the encoder's recognizer made the identity's embedding); ``return_dict=False``: diffusers' tuple."""
        identity, reference = face
        output_path, output_type, fps = output
        frames = result.frames if return_dict else result[0]
        recognizer = None if self.identity_encoder is None else self.identity_encoder.analyzer.recognizer
        measure = measure and identity is not None and recognizer is not None
        measure = measure and identity.recognition_model == recognizer.name and output_type != "latent"
        facesim, path = None, None
        if output_path is not None or measure:
            video = _uint8_frames(frames, output_type)
            if output_path is not None:
                from genface.provenance import write_marked_video

                path = write_marked_video(output_path, video, fps, "identity_video", self.name_or_path, model_kind=kind)
            if measure:
                from genface.identity import face_similarity

                facesim = face_similarity(identity, video, analyzer=self.identity_encoder.analyzer)
        if not return_dict:
            return result
        return WanIdentityVideoOutput(frames=frames, identity=identity, reference=reference, facesim=facesim, path=path)


def _uint8_frames(frames: Any, output_type: str) -> np.ndarray:
    """The first video of diffusers' output as T x H x W x 3 uint8."""
    from genface.media import to_uint8

    if output_type == "pil":
        return np.stack([np.asarray(frame.convert("RGB")) for frame in frames[0]])
    first = frames[0]
    if isinstance(first, torch.Tensor):  # "pt": frames x channels x height x width in [0, 1]
        first = first.permute(0, 2, 3, 1).float().cpu().numpy()
    return to_uint8(np.asarray(first))
