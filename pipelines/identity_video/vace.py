"""VacePipeline: identity video with VACE's reference-to-video on diffusers' Wan (Wan2.1-VACE-1.3B / 14B).

diffusers' ``WanVACEPipeline`` runs as it is (this class subclasses it). genface prepares the face as VACE's own
face annotator does (``vace/annotators/face.py`` of ali-vilab/VACE: antelopev2 at 640, the face's box cut out of
the photo), gives it as the reference image (diffusers then fits it onto a white frame of the video's size), and
adds face choice, input checks, the marked mp4 and FaceSim. Without a face the call is diffusers' own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import WanVACEPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import PipelineImageInput

from genface.errors import InvalidArgumentError
from genface.identity import FaceAnalyzer, FaceIdentity, IdentityEncoder
from genface.media.image import ImageInput
from genface.pipelines.identity_video.stand_in import FACE_ENCODERS
from genface.pipelines.identity_video.wan import FPS, WanIdentityMixin, WanIdentityVideoOutput

DEFAULT_MODEL = "Wan-AI/Wan2.1-VACE-14B-diffusers"
SMALL_MODEL = "Wan-AI/Wan2.1-VACE-1.3B-diffusers"


def vace_reference(rgb: np.ndarray, bbox: np.ndarray) -> np.ndarray:
    """VACE's face reference: the pixels of the face's box, ``[int(y1) : int(y2) + 1, int(x1) : int(x2) + 1]``
    (VACE's ``FaceAnnotator``), the box clipped to the photo (VACE would slice from the far side for a box that
    starts above or left of it)."""
    x1, y1, x2, y2 = (max(int(v), 0) for v in bbox)
    return np.ascontiguousarray(rgb[y1 : y2 + 1, x1 : x2 + 1])


class VacePipeline(WanIdentityMixin, WanVACEPipeline):
    """Face photo + prompt -> video of that person, with VACE's reference-to-video on Wan.

    Components are ``WanVACEPipeline``'s; ``identity_encoder`` (detection, face choice, recognition for FaceSim)
    comes from the shared identity stack.
    """

    model_card = {
        "summary": "Identity video with VACE reference-to-video on Wan: a face photo and a prompt become a video of "
        "that person.",
        "licences": "Wan2.1-VACE is released under the Apache-2.0 licence.",
        "tags": ["wan", "vace"],
    }

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: Any,
        vae: Any,
        scheduler: Any,
        transformer: Any = None,
        transformer_2: Any = None,
        boundary_ratio: float | None = None,
        identity_encoder: IdentityEncoder | None = None,
    ) -> None:
        super().__init__(tokenizer, text_encoder, vae, scheduler, transformer, transformer_2, boundary_ratio)
        self.identity_encoder = identity_encoder

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike = DEFAULT_MODEL,
        *,
        identity_encoder: IdentityEncoder | str | None = "auto",
        **kwargs: Any,
    ) -> VacePipeline:
        """Wan2.1-VACE (14B by default; or ``Wan-AI/Wan2.1-VACE-1.3B-diffusers``) from the Hub or a folder;
        ``"auto"``: antelopev2 from ConsisID's ``face_encoder`` folder, VACE's face annotator's engine."""
        from genface.hub import load_or_explain

        if identity_encoder == "auto":
            identity_encoder = IdentityEncoder(FaceAnalyzer.from_pretrained(*FACE_ENCODERS), max_side=None)
        pipe = load_or_explain(super().from_pretrained, pretrained_model_name_or_path, **kwargs)
        pipe.identity_encoder = identity_encoder
        return pipe

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, repo_id: str | None = None, **kwargs: Any
    ) -> None:
        """Save the components in diffusers' layout and a model card."""
        from genface.hub import finish_save, hub_ids, pop_push_options

        push = pop_push_options(kwargs)
        super().save_pretrained(save_directory, **kwargs)
        finish_save(self, save_directory, hub_ids(self.name_or_path), push_to_hub, repo_id, push)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        video: list[PipelineImageInput] | None = None,
        mask: list[PipelineImageInput] | None = None,
        reference_images: list[PipelineImageInput] | None = None,
        conditioning_scale: float | list[float] | torch.Tensor = 1.0,
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
        """``WanVACEPipeline.__call__`` (every argument with diffusers' meaning), with the face of ``face_image``
        (a photo; several faces need ``face_index``, 0 the largest) or of a saved ``identity`` (its stored crop) as
        the reference image. Without either, diffusers' own call. ``output_path`` writes the video as a marked mp4
        at ``fps``; ``measure`` reports FaceSim of the frames to the face. Returns diffusers' output with
        ``identity``, ``reference``, ``facesim`` and ``path`` added (``return_dict=False``: diffusers' tuple)."""
        numbers = {"guidance_scale": guidance_scale, "guidance_scale_2": guidance_scale_2}
        if not isinstance(conditioning_scale, list):
            numbers["conditioning_scale"] = conditioning_scale
        self.check_video_call(prompt, num_videos_per_prompt, (height, width, num_frames), num_inference_steps, numbers,
                              (output_path, output_type, fps), face_image)  # fmt: skip
        found, reference = None, None
        if face_image is not None or identity is not None:
            if reference_images is not None:
                raise InvalidArgumentError(
                    "Give either face_image / identity (genface prepares the face) or reference_images, not both."
                )
            found, rgb, face = self.encode_face(face_image, identity, face_index)
            reference = PIL.Image.fromarray(vace_reference(rgb, face.bbox))
            reference_images = [reference]
        output = super().__call__(
            prompt, negative_prompt, video, mask, reference_images, conditioning_scale, height, width, num_frames,
            num_inference_steps, guidance_scale, guidance_scale_2, num_videos_per_prompt, generator, latents,
            prompt_embeds, negative_prompt_embeds, output_type, return_dict, attention_kwargs, callback_on_step_end,
            callback_on_step_end_tensor_inputs, max_sequence_length,
        )  # fmt: skip
        return self.finish(output, return_dict, (found, reference), (output_path, output_type, fps), measure, "vace")
