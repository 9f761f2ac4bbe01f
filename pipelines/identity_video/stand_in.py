"""StandInPipeline: identity-preserving text-to-video with Stand-In on diffusers' Wan (2.1-T2V-14B, 2.2-T2V-A14B).

diffusers' ``WanPipeline`` runs as it is (this class subclasses it): its prompt encoding, latents, denoising loop,
Wan 2.2's switch between the high- and low-noise experts, and decoding. Stand-In enters through attention
processors (:mod:`genface.models.stand_in`). genface adds the face: the reference image Stand-In's preprocessor
makes (:func:`stand_in_reference`, on the shared identity stack), face choice, input checks, the marked mp4 and
FaceSim. Without a face the call is diffusers' plain Wan text-to-video.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import PIL.Image
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, SchedulerMixin, WanPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.pipelines.wan.pipeline_wan_vace import retrieve_latents

from genface.errors import InvalidArgumentError, MissingWeightsError
from genface.identity import FaceAnalyzer, FaceIdentity, FaceParser, IdentityEncoder
from genface.media.image import ImageInput
from genface.models.stand_in import CHECKPOINTS, HUB_REPO, StandInAdapter, StandInState, checkpoint_version
from genface.pipelines.identity_video.wan import FPS, WanIdentityMixin, WanIdentityVideoOutput

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "Wan-AI/Wan2.1-T2V-14B-Diffusers"
WAN22_MODEL = "Wan-AI/Wan2.2-T2V-A14B-Diffusers"
#: Where the face engines come from by default: ConsisID's ``face_encoder`` holds antelopev2 and facexlib's
#: ``parsing_bisenet.pth``, the two models Stand-In's preprocessor uses.
FACE_ENCODERS = ("BestWishYsh/ConsisID-preview", "face_encoder")
#: Stand-In's preprocessor (``preprocessor/image_input_preprocessor.py``): square side, crop scale, border margin.
REFERENCE_SIZE, CROP_SCALE, BORDER = 512, 1.5, 10
#: Stand-In normalises the parser's input to [-1, 1] (ImageNet statistics elsewhere).
PARSER_MEAN = PARSER_STD = (0.5, 0.5, 0.5)


# diffusers finds how to load a saved component by looking its base classes up in the component's module
__all__ = ["SchedulerMixin", "StandInPipeline", "StandInScheduler", "stand_in_reference"]


class StandInScheduler(FlowMatchEulerDiscreteScheduler):
    """diffusers' flow-matching Euler scheduler with Stand-In's sampling schedule (DiffSynth-Studio's
    ``FlowMatchScheduler(shift=5, sigma_min=0, extra_one_step=True)``): the first ``n`` of ``n + 1`` sigmas evenly
    spaced from 1 to 0, shifted, then 0. diffusers' default spaces ``n`` from 1 to 1/1000 instead."""

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: Sequence[float] | None = None,
        mu: float | None = None,
        timesteps: Sequence[float] | None = None,
    ) -> None:
        if sigmas is None and timesteps is None and num_inference_steps is not None:
            sigmas = np.linspace(1.0, 0.0, num_inference_steps + 1)[:-1]
        super().set_timesteps(num_inference_steps, device, sigmas, mu, timesteps)


def _pad_to_square(image: np.ndarray) -> np.ndarray:
    """Stand-In's ``_pad_to_square``: white bars split evenly (the extra pixel after)."""
    height, width = image.shape[:2]
    pad = abs(height - width)
    before, after = pad // 2, pad - pad // 2
    sides = (0, 0, before, after) if height > width else (before, after, 0, 0)
    return cv2.copyMakeBorder(image, *sides, cv2.BORDER_CONSTANT, value=(255, 255, 255))


def stand_in_reference(rgb: np.ndarray, bbox: np.ndarray, parser: FaceParser, size: int = REFERENCE_SIZE) -> np.ndarray:
    """Stand-In's reference image of the face in ``bbox`` (x1, y1, x2, y2) of an RGB photo: a square 1.5 times
    the face's longer side around its centre (clipped to the photo, padded white to a square; the whole photo
    padded when the face reaches all four borders), resized to ``size`` (area interpolation), with every pixel
    the parser calls background painted white."""
    height, width = rgb.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in bbox)
    if x1 <= BORDER and y1 <= BORDER and x2 >= width - BORDER and y2 >= height - BORDER:
        square = _pad_to_square(rgb)
    else:
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        half = int(max(x2 - x1, y2 - y1) * CROP_SCALE) // 2
        square = _pad_to_square(
            rgb[max(cy - half, 0) : min(cy + half, height), max(cx - half, 0) : min(cx + half, width)]
        )
    resized = cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA)
    labels = parser.parse(resized, mean=PARSER_MEAN, std=PARSER_STD).labels
    resized[labels == 0] = 255
    return resized


def _model_index(folder_or_repo: str | os.PathLike) -> dict[str, Any]:
    """The base's ``model_index.json``, read before any weights are (an error asks for the whole base: it is
    loaded next)."""
    from genface.hub import resolve_folder

    folder = resolve_folder(folder_or_repo, allow_patterns=["model_index.json"], needed=["*"])
    return json.loads((folder / "model_index.json").read_text())


def _named(index: dict[str, Any], component: str) -> bool:
    return (index.get(component) or [None])[0] is not None


def _adapter_files(stand_in: str | os.PathLike | Sequence[str | os.PathLike], version: str) -> list[Path]:
    """The checkpoint file(s) for a Wan ``version`` base: the given file(s), or the published names in a folder
    or Hub repo; a checkpoint named for the other version is refused in one line."""
    from genface.hub import resolve_folder

    wanted = CHECKPOINTS[version]
    if isinstance(stand_in, (str, os.PathLike)) and not Path(stand_in).expanduser().is_file():
        folder = resolve_folder(stand_in, allow_patterns=list(wanted))
        files = [folder / name for name in wanted]
    else:
        files = [Path(stand_in)] if isinstance(stand_in, (str, os.PathLike)) else [Path(p) for p in stand_in]
    for file in files:
        named, expert = checkpoint_version(file)
        if named is not None and named != version:
            other = "one transformer" if version == "2.1" else "high- and low-noise experts"
            raise InvalidArgumentError(
                f"{file.name} is a Stand-In checkpoint for Wan {named}, but the base model is Wan {version} "
                f"({other}); use {' and '.join(wanted)}."
            )
    if len(files) != len(wanted):
        raise InvalidArgumentError(
            f"Wan {version} takes {len(wanted)} Stand-In checkpoint(s) ({', '.join(wanted)}); got {len(files)}."
        )
    for file in files:
        if not file.is_file():
            raise MissingWeightsError(f"Stand-In checkpoint not found: {file}")
    return files


class StandInPipeline(WanIdentityMixin, WanPipeline):
    """Face photo + prompt -> video of that person, with Stand-In on Wan.

    Components are ``WanPipeline``'s plus ``stand_in`` (and, for Wan 2.2, ``stand_in_2`` for the low-noise
    ``transformer_2``): :class:`StandInAdapter`. ``identity_encoder`` (detection, face choice, recognition for
    FaceSim) and ``face_parser`` (the reference's background) come from the shared identity stack.
    :attr:`reference_cache` is Stand-In's key/value cache of the reference tokens (exact; on by default).
    """

    model_card = {
        "summary": "Identity-preserving text-to-video (Stand-In on Wan): a face photo and a prompt become a video of "
        "that person.",
        "licences": "Stand-In and Wan2.1 / Wan2.2 are released under the Apache-2.0 licence.",
        "tags": ["wan", "stand-in"],
    }
    _optional_components = [*WanPipeline._optional_components, "stand_in", "stand_in_2"]
    # The adapters' weights are used inside the transformers' attention, never by a call of their own, so model
    # CPU offload could not move them on time: they stay on the execution device.
    _exclude_from_cpu_offload = ["stand_in", "stand_in_2"]

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: Any,
        vae: Any,
        scheduler: Any,
        transformer: Any = None,
        transformer_2: Any = None,
        boundary_ratio: float | None = None,
        expand_timesteps: bool = False,
        stand_in: StandInAdapter | None = None,
        stand_in_2: StandInAdapter | None = None,
        identity_encoder: IdentityEncoder | None = None,
        face_parser: FaceParser | None = None,
    ) -> None:
        super().__init__(tokenizer, text_encoder, vae, scheduler, transformer, transformer_2, boundary_ratio,
                         expand_timesteps)  # fmt: skip
        self.register_modules(stand_in=stand_in, stand_in_2=stand_in_2)
        self.identity_encoder = identity_encoder
        self.face_parser = face_parser
        self.reference_cache = True
        #: Side of the reference image (Stand-In's 512; the tiny model's is smaller).
        self.reference_size = REFERENCE_SIZE
        self.states: list[StandInState] = self.install_adapters()

    def install_adapters(self) -> list[StandInState]:
        """Install each adapter into its transformer (refusing a checkpoint of the other Wan version or expert);
        returns the states the processors share."""
        pairs = [
            (self.stand_in, self.transformer, "high"),
            (self.stand_in_2, getattr(self, "transformer_2", None), "low"),
        ]
        two = pairs[1][1] is not None
        states = []
        for adapter, transformer, expert in pairs:
            if adapter is None:
                continue
            if transformer is None:
                raise InvalidArgumentError("stand_in_2 goes with Wan 2.2's transformer_2, which this pipeline lacks.")
            version, named = adapter.config.wan_version, adapter.config.expert
            if version == "2.2" and not two:
                raise InvalidArgumentError(
                    f"This Stand-In checkpoint is for Wan 2.2 ({named}-noise expert); the pipeline is Wan 2.1 (one "
                    f"transformer): use {CHECKPOINTS['2.1'][0]}."
                )
            if (version == "2.1" and two) or (two and named is not None and named != expert):
                raise InvalidArgumentError(
                    f"The {expert}-noise transformer needs {CHECKPOINTS['2.2'][expert == 'low']}; this checkpoint is "
                    f"{'for Wan 2.1' if version == '2.1' else f'the {named}-noise one'}."
                )
            states.append(adapter.install(transformer))
        return states

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike = DEFAULT_MODEL,
        *,
        stand_in: str | os.PathLike | Sequence[str | os.PathLike] | None = "auto",
        identity_encoder: IdentityEncoder | str | None = "auto",
        face_parser: FaceParser | str | None = "auto",
        **kwargs: Any,
    ) -> StandInPipeline:
        """Wan from ``pretrained_model_name_or_path`` (2.1-T2V-14B by default, or 2.2-T2V-A14B), Stand-In from
        ``stand_in``: a Hub id or folder with the published checkpoints, or the file(s) themselves (high-noise first
        for Wan 2.2); ``"auto"``: the adapters saved with the pipeline, else ``BowenXue/Stand-In``. The checkpoints'
        names are checked against the base before any weights load. ``"auto"`` face engines: antelopev2 and
        facexlib's BiSeNet from ConsisID's ``face_encoder`` folder."""
        from genface.hub import load_or_explain

        index = _model_index(pretrained_model_name_or_path)
        if stand_in == "auto":
            stand_in = None if _named(index, "stand_in") else HUB_REPO
        if stand_in is not None:
            files = _adapter_files(stand_in, "2.2" if _named(index, "transformer_2") else "2.1")
            adapters = [StandInAdapter.from_checkpoint(file) for file in files]
            kwargs |= dict(zip(("stand_in", "stand_in_2"), adapters, strict=False))
        if identity_encoder == "auto":
            identity_encoder = IdentityEncoder(FaceAnalyzer.from_pretrained(*FACE_ENCODERS), max_side=None)
        if face_parser == "auto":
            face_parser = FaceParser.from_pretrained(*FACE_ENCODERS)
        pipe = load_or_explain(super().from_pretrained, pretrained_model_name_or_path, **kwargs)
        pipe.identity_encoder, pipe.face_parser = identity_encoder, face_parser
        return pipe

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, repo_id: str | None = None, **kwargs: Any
    ) -> None:
        """Save the components (the adapters as safetensors) in diffusers' layout and a model card."""
        from genface.hub import finish_save, hub_ids, pop_push_options

        push = pop_push_options(kwargs)
        super().save_pretrained(save_directory, **kwargs)
        finish_save(self, save_directory, hub_ids(self.name_or_path, HUB_REPO), push_to_hub, repo_id, push)

    def extra_tokens(self) -> int:
        """The reference's tokens (32 x 32 for a 512-px face)."""
        return (self.reference_size // self.vae_scale_factor_spatial // 2) ** 2 if self.states else 0

    def reference_image(self, rgb: np.ndarray, face: Any) -> np.ndarray:
        """Stand-In's reference image of ``face`` in ``rgb`` (:func:`stand_in_reference`)."""
        if self.face_parser is None:
            raise MissingWeightsError(
                "Stand-In paints the reference's background white with a face parser, and this pipeline has none; "
                "load it with face_parser (BiSeNet, e.g. ConsisID's face_encoder/parsing_bisenet.pth)."
            )
        return stand_in_reference(rgb, face.bbox, self.face_parser, self.reference_size)

    def reference_latents(self, image: np.ndarray) -> torch.Tensor:
        """The reference's VAE latents, normalised as Wan's (the posterior's mode, as Stand-In's encoder)."""
        device, vae = self._execution_device, self.vae
        pixels = torch.from_numpy(image).permute(2, 0, 1).float().div(255.0).mul(2).sub(1)
        pixels = pixels[None, :, None].to(device, vae.dtype)
        latents = retrieve_latents(vae.encode(pixels), sample_mode="argmax").float()
        mean = torch.tensor(vae.config.latents_mean, device=device).view(1, -1, 1, 1, 1)
        inverse_std = 1.0 / torch.tensor(vae.config.latents_std, device=device).view(1, -1, 1, 1, 1)
        return (latents - mean) * inverse_std

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int = 480,
        width: int = 832,
        num_frames: int = 81,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        guidance_scale_2: float | None = None,
        num_videos_per_prompt: int | None = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str | None = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' default, never mutated)
        max_sequence_length: int = 512,
        *,
        face_image: ImageInput | None = None,
        identity: FaceIdentity | None = None,
        face_index: int | None = None,
        output_path: str | os.PathLike | None = None,
        fps: float = FPS,
        measure: bool = True,
    ) -> WanIdentityVideoOutput | tuple:
        """``WanPipeline.__call__`` (every argument with diffusers' meaning), conditioned on a face: ``face_image``
        (a photo; several faces need ``face_index``, 0 the largest) or a saved ``identity`` (its stored crop is the
        photo). Without either, diffusers' plain Wan video. ``output_path`` writes the first video as a marked mp4
        at ``fps``; ``measure`` reports FaceSim of the frames to the face. Returns diffusers' output with
        ``identity``, ``reference``, ``facesim`` and ``path`` added (``return_dict=False``: diffusers' tuple).

        Stand-In's own preprocessor uses the whole photo when it finds no face; here no face is an error.
        """
        numbers = {"guidance_scale": guidance_scale, "guidance_scale_2": guidance_scale_2}
        self.check_video_call(prompt, num_videos_per_prompt, (height, width, num_frames), num_inference_steps, numbers,
                              (output_path, output_type, fps), face_image)  # fmt: skip
        found, reference = None, None
        if face_image is not None or identity is not None:
            if not self.states:
                raise MissingWeightsError(
                    "This pipeline has no Stand-In weights; load it with stand_in= (BowenXue/Stand-In)."
                )
            found, rgb, face = self.encode_face(face_image, identity, face_index)
            reference = self.reference_image(rgb, face)
            ref_latents = self.reference_latents(reference)
        try:
            for state in self.states:
                state.clear()
                state.latents = None if reference is None else ref_latents
                state.cache = self.reference_cache
            output = super().__call__(
                prompt, negative_prompt, height, width, num_frames, num_inference_steps, guidance_scale,
                guidance_scale_2, num_videos_per_prompt, generator, latents, prompt_embeds, negative_prompt_embeds,
                output_type, return_dict, attention_kwargs, callback_on_step_end, callback_on_step_end_tensor_inputs,
                max_sequence_length,
            )  # fmt: skip
        finally:
            for state in self.states:
                state.latents = None
                state.clear()
        image = None if reference is None else PIL.Image.fromarray(reference)
        return self.finish(output, return_dict, (found, image), (output_path, output_type, fps), measure, "stand-in")
