"""IdentityVideoPipeline: diffusers' ConsisID pipeline fed by genface's shared identity stack.

Everything diffusers ships is reused as it is: ``ConsisIDTransformer3DModel``, ``AutoencoderKLCogVideoX``,
T5, the scheduler and the whole denoising loop (this class subclasses ``ConsisIDPipeline``). What genface
adds is the front half: a photo (or a saved :class:`FaceIdentity`) becomes ConsisID's conditions
(``image``, ``id_cond``, ``id_vit_hidden``, ``kps_cond``) through the shared :class:`IdentityEncoder`,
plus input checks, a NaN guard, memory modes and the face encoders' ``face_encoder/`` folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import ConsisIDPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.image_processor import PipelineImageInput
from diffusers.pipelines.consisid.pipeline_output import ConsisIDPipelineOutput

from genface.arguments import GUIDANCE, STEPS, VIDEO_FRAMES
from genface.errors import GenfaceError, InvalidArgumentError, MissingWeightsError
from genface.hub import finish_save, hub_ids, pop_push_options
from genface.identity import FaceIdentity, IdentityEncoder, Parsing
from genface.media.image import ImageInput
from genface.models.attention import pin_kernel
from genface.pipelines._memory import LowMemoryMixin
from genface.pipelines._speed import FastModeMixin, unfuse_legacy_attention

logger = logging.getLogger(__name__)

#: Where the face encoders live in ConsisID's Hub repository.
FACE_ENCODER_FOLDER = "face_encoder"
DEFAULT_MODEL = "BestWishYsh/ConsisID-preview"
#: PyTorch SDPA kernels the attention can be pinned to ("sdpa": let PyTorch choose, the default).
ATTENTION_BACKENDS = ("sdpa", "flash", "cudnn", "efficient", "math")


@dataclass
class IdentityVideoPipelineOutput(ConsisIDPipelineOutput):
    """diffusers' output (``frames``: list of lists of PIL images, or an array/tensor B x F x ...) plus the
    :class:`FaceIdentity` the videos were conditioned on (save it to reuse the person without re-encoding; None
    when ConsisID's precomputed conditions were given)."""

    identity: FaceIdentity | None = None


class IdentityVideoPipeline(LowMemoryMixin, FastModeMixin, ConsisIDPipeline):
    """Face photo + prompt -> video of that person, with ConsisID weights.

    Components are ConsisID's (``tokenizer``, ``text_encoder``, ``vae``, ``transformer``, ``scheduler``)
    plus an optional ``identity_encoder``; :meth:`from_pretrained` loads it from the repository's
    ``face_encoder/`` folder, and :meth:`save_pretrained` writes it back there.
    """

    model_card = {
        "summary": "Identity-preserving text-to-video (ConsisID): a face photo and a prompt become a video of that "
        "person.",
        "licences": "ConsisID's weights derive from CogVideoX-5B, whose model licence applies.",
        "tags": ["consisid"],
    }
    #: Where the command line and the web demo start (``genface.pipelines.call_defaults``): ConsisID's frame rate (its
    #: ``infer.py`` writes 8 fps) and no negative prompt.
    default_fps: float = 8.0
    default_negative_prompt: str | None = None

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: Any,
        vae: Any,
        transformer: Any,
        scheduler: Any,
        identity_encoder: IdentityEncoder | None = None,
    ) -> None:
        super().__init__(tokenizer, text_encoder, vae, transformer, scheduler)
        self.identity_encoder = identity_encoder
        self._frames_asked: int | None = None  # set while __call__ runs (see decode_latents)
        self.attention_backend = "sdpa"
        self._attention_hooks: list[Any] = []
        self._cfg_parallel_hooks: list[Any] = []
        self._cache_hooks: list[Any] = []
        self._timestep = 0
        self.cache_config: Any = None

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike = DEFAULT_MODEL,
        *,
        identity_encoder: IdentityEncoder | str | None = "auto",
        **kwargs: Any,
    ) -> IdentityVideoPipeline:
        """Load ConsisID from the Hub or a local folder, face encoders included.

        ``identity_encoder="auto"`` loads ``face_encoder/`` from the same place (warning, and then only
        ``identity=`` inputs work, if it is missing); pass an :class:`IdentityEncoder` or ``None`` instead.
        Other keyword arguments go to ``DiffusionPipeline.from_pretrained`` (``dtype``, ...).
        """
        if isinstance(identity_encoder, str) and identity_encoder != "auto":
            raise InvalidArgumentError(
                f"identity_encoder must be 'auto', an IdentityEncoder or None: {identity_encoder!r}"
            )
        from genface.hub import load_or_explain

        pipe = load_or_explain(super().from_pretrained, pretrained_model_name_or_path, identity_encoder=None, **kwargs)
        if identity_encoder == "auto":
            try:
                identity_encoder = IdentityEncoder.from_pretrained(pretrained_model_name_or_path, FACE_ENCODER_FOLDER)
            except MissingWeightsError as exc:
                logger.warning("No face encoders loaded (%s); pass identity= FaceIdentity files to the pipeline.", exc)
                identity_encoder = None
        pipe.identity_encoder = identity_encoder
        return pipe

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, repo_id: str | None = None, **kwargs: Any
    ) -> None:
        """Save in the Hub repository's layout: diffusers components plus ``face_encoder/`` and a model card
        (``README.md``); ``push_to_hub`` then uploads the folder to ``repo_id``.

        ``model_index.json`` names ``ConsisIDPipeline``, as the published repository does, so the folder
        also loads in plain diffusers.
        """
        push = pop_push_options(kwargs)
        super().save_pretrained(save_directory, **kwargs)
        index = Path(save_directory) / "model_index.json"
        config = json.loads(index.read_text())
        config["_class_name"] = ConsisIDPipeline.__name__
        index.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        if self.identity_encoder is not None:
            self.identity_encoder.save_pretrained(Path(save_directory) / FACE_ENCODER_FOLDER)
        finish_save(self, save_directory, hub_ids(self.name_or_path), push_to_hub, repo_id, push)

    def set_attention_backend(self, backend: str = "sdpa") -> None:
        """Pin attention to one PyTorch SDPA kernel (``flash``, ``cudnn``, ``efficient``, ``math``) or let
        PyTorch choose (``sdpa``).

        ConsisID's attention processors call ``torch.nn.functional.scaled_dot_product_attention`` directly,
        so diffusers' ``set_attention_backend`` does not reach them, and its xformers switch would install a
        processor without CogVideoX's rotary embeddings; PyTorch's kernel selection is what applies.
        The pin applies to the video transformer only (the T5 text encoder passes an attention bias that
        not every kernel takes).
        """
        if backend not in ATTENTION_BACKENDS:
            raise InvalidArgumentError(f"Unknown attention backend {backend!r}; choose from {ATTENTION_BACKENDS}.")
        for handle in self._attention_hooks:
            handle.remove()
        self.attention_backend = backend
        self._attention_hooks = [] if backend == "sdpa" else pin_kernel(self.transformer, backend)

    def attention_shape(self) -> tuple[int, int, int, int]:
        """(batch, heads, tokens, head size) of the transformer's attention at its trained size with guidance:
        (2, 48, 17776, 64) for ConsisID (226 text tokens + 13 x 30 x 45 video tokens)."""
        config = self.transformer.config
        frames = (config.sample_frames - 1) // config.temporal_compression_ratio + 1
        video = frames * (config.sample_height // config.patch_size) * (config.sample_width // config.patch_size)
        return 2, config.num_attention_heads, config.max_text_seq_length + video, config.attention_head_dim

    def fast_blocks(self) -> list[torch.nn.Module]:
        """ConsisID's transformer blocks (its class declares no ``_repeated_blocks`` for regional compile)."""
        return list(self.transformer.transformer_blocks)

    def fuse_projections(self, fuse: bool) -> None:
        """Fuse each block's self-attention projections by hand: ConsisID's ``fuse_qkv_projections()`` skips its
        legacy ``Attention`` layers. The fused processor is diffusers' ``FusedCogVideoXAttnProcessor2_0``; layers
        with another processor than CogVideoX's (e.g. context parallelism's) stay as they are."""
        from diffusers.models.attention_processor import CogVideoXAttnProcessor2_0, FusedCogVideoXAttnProcessor2_0

        for block in self.transformer.transformer_blocks:
            attn = block.attn1
            if fuse and type(attn.processor) is CogVideoXAttnProcessor2_0:
                attn.fuse_projections()
                attn.set_processor(FusedCogVideoXAttnProcessor2_0())
            elif not fuse and attn.fused_projections:
                unfuse_legacy_attention(attn)
                attn.set_processor(CogVideoXAttnProcessor2_0())

    def enable_cache(self, config: Any) -> None:
        """Opt-in approximation: reuse transformer work across denoising steps with one of diffusers' cache
        hooks, given its config: ``FirstBlockCacheConfig(threshold=...)``, ``PyramidAttentionBroadcastConfig``,
        ``FasterCacheConfig`` or ``MagCacheConfig``. Results differ from exact mode (the benchmark reports
        by how much); :meth:`disable_cache` restores exact mode. ConsisID's transformer lacks diffusers'
        ``CacheMixin``, so the hooks are applied here, with the current timestep supplied to the configs that
        need it."""
        from diffusers.hooks import (
            FasterCacheConfig,
            FirstBlockCacheConfig,
            MagCacheConfig,
            PyramidAttentionBroadcastConfig,
            apply_faster_cache,
            apply_first_block_cache,
            apply_mag_cache,
            apply_pyramid_attention_broadcast,
        )

        appliers = {
            FirstBlockCacheConfig: apply_first_block_cache,
            PyramidAttentionBroadcastConfig: apply_pyramid_attention_broadcast,
            FasterCacheConfig: apply_faster_cache,
            MagCacheConfig: apply_mag_cache,
        }
        if type(config) not in appliers:
            raise InvalidArgumentError(
                f"Unsupported cache config {type(config).__name__}; use one of {list(appliers)}."
            )
        from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry
        from diffusers.models.transformers.consisid_transformer_3d import ConsisIDBlock

        # ConsisID's block returns (video, text) like CogVideoX's, which diffusers registers; its own is not.
        TransformerBlockRegistry.register(ConsisIDBlock, TransformerBlockMetadata(0, 1))
        self.disable_cache()
        if getattr(config, "current_timestep_callback", "absent") is None:
            config.current_timestep_callback = lambda: self._timestep
        from diffusers.hooks.hooks import CacheContext, _set_cache_context

        def enter(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            # what a CacheMixin model's cache_context does (ConsisID's batched CFG is one context)
            self._timestep = int(kwargs["timestep"].flatten()[0])
            _set_cache_context(module, CacheContext("denoise"))

        def leave(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            _set_cache_context(module, None)

        self._cache_hooks = [
            self.transformer.register_forward_pre_hook(enter, with_kwargs=True),
            self.transformer.register_forward_hook(leave, with_kwargs=True, always_call=True),
        ]
        appliers[type(config)](self.transformer, config)
        self.cache_config = config

    def disable_cache(self) -> None:
        """Back to exact mode: remove the cache hooks of :meth:`enable_cache`."""
        from diffusers.hooks import HookRegistry

        # diffusers' own hook names (as its CacheMixin.disable_cache removes them)
        names = ("fbc_leader_block_hook", "fbc_block_hook", "pyramid_attention_broadcast", "faster_cache_denoiser",
                 "faster_cache_block", "mag_cache_leader_block_hook", "mag_cache_block_hook")  # fmt: skip
        registry = HookRegistry.check_if_exists_or_initialize(self.transformer)
        for name in names:
            registry.remove_hook(name, recurse=True)
        for handle in self._cache_hooks:
            handle.remove()
        self._cache_hooks, self.cache_config = [], None

    def enable_context_parallel(
        self, ulysses_degree: int | None = None, ring_degree: int | None = None, **options: Any
    ) -> None:
        """Split one video's tokens over GPUs (sequence parallelism) with diffusers' context-parallel machinery.

        Run one process per GPU (``torchrun --nproc-per-node N script.py``) with ``torch.distributed``
        initialised; every process runs the same pipeline call and gets the same video. ``ulysses_degree``
        (all-to-all over heads; ConsisID's 48 heads) and ``ring_degree`` (key/value rotation; needs an attention
        backend that returns log-sum-exp, e.g. ``pipe.transformer.set_attention_backend("flash")``) multiply
        to the number of processes; ``options`` go to ``diffusers.ContextParallelConfig`` (e.g.
        ``ulysses_anything=True`` for more than 2 GPUs, as ConsisID's 226 text tokens split evenly only in 2).
        See :mod:`genface.models.consisid_parallel` for the plan.
        """
        from diffusers import ContextParallelConfig

        from genface.models.consisid_parallel import enable_context_parallel

        config = ContextParallelConfig(ulysses_degree=ulysses_degree, ring_degree=ring_degree, **options)
        enable_context_parallel(self.transformer, config)

    def enable_cfg_parallel(self, ulysses_degree: int = 1, ring_degree: int = 1, **options: Any) -> None:
        """Run the conditional and unconditional passes of each step on different GPUs (the first half of the
        processes the conditional one), each half also splitting the video's tokens over ``ulysses_degree`` x
        ``ring_degree`` GPUs with :meth:`enable_context_parallel` (``options`` go there too).

        Launch 2 x ``ulysses_degree`` x ``ring_degree`` processes (``torchrun``), ``torch.distributed``
        initialised; every process runs the same call (same seed) and gets the same video. Needs guidance
        (``guidance_scale > 1``, the default). See :mod:`genface.models.cfg_parallel`.
        """
        from genface.models.cfg_parallel import apply_cfg_parallel, parallel_mesh

        if self._cfg_parallel_hooks:
            raise InvalidArgumentError("CFG-parallel is already on for this pipeline.")
        mesh = parallel_mesh(ring_degree=ring_degree, ulysses_degree=ulysses_degree)
        if ring_degree * ulysses_degree > 1:
            self.enable_context_parallel(ulysses_degree, ring_degree, mesh=mesh, **options)
        batched = ("hidden_states", "encoder_hidden_states", "timestep")
        self._cfg_parallel_hooks = apply_cfg_parallel(self.transformer, mesh, batched)

    def check_video_size(self, height: int, width: int, num_frames: int) -> None:
        """Refuse sizes the model cannot take, before any work is done."""
        config = self.transformer.config
        multiple = self.vae_scale_factor_spatial * config.patch_size
        if height < multiple or width < multiple or height % multiple or width % multiple:
            raise InvalidArgumentError(
                f"height and width must be positive multiples of {multiple} (got {height}x{width}); ConsisID was "
                "trained at 480x720."
            )
        dataclasses.replace(VIDEO_FRAMES, every=self.vae_scale_factor_temporal).check(num_frames, "num_frames")
        if config.use_learned_positional_embeddings:
            expected = (
                config.sample_height * self.vae_scale_factor_spatial,
                config.sample_width * self.vae_scale_factor_spatial,
            )
            if (height, width) != expected:
                raise InvalidArgumentError(
                    f"This transformer's learned positional embeddings fit {expected[0]}x{expected[1]} only."
                )

    def encode_identity(
        self, face_image: ImageInput | None, identity: FaceIdentity | None, face_index: int | None = None
    ) -> FaceIdentity:
        """The identity to condition on: ``identity`` as given, or ``face_image`` encoded now."""
        if (face_image is None) == (identity is None):
            raise InvalidArgumentError("Give exactly one of face_image (a photo) or identity (a saved FaceIdentity).")
        if identity is not None:
            return self.complete_identity(identity)
        if self.identity_encoder is None:
            raise MissingWeightsError(
                "This pipeline has no identity encoder, so it cannot read a face photo. Load it with its "
                "face_encoder/ folder, or pass identity=FaceIdentity.load(...)."
            )
        return self.identity_encoder.to(self._execution_device).encode(face_image, face_index)

    def complete_identity(self, identity: FaceIdentity) -> FaceIdentity:
        """``identity`` with what this pipeline's face encoders add, computed from its stored crop where it is
        missing or came from other models: the recognition embedding (embeddings of two recognition models are
        never mixed), the parsing map and the CLIP features. So an identity saved by ``genface identity --save``
        (recognition only) conditions the video as the photo would. Without face encoders it is returned as is."""
        encoder = self.identity_encoder
        return identity if encoder is None else encoder.to(self._execution_device).complete(identity)

    def identity_conditions(
        self, identity: FaceIdentity, device: torch.device, dtype: torch.dtype
    ) -> tuple[PIL.Image.Image, torch.Tensor, list[torch.Tensor], np.ndarray | None]:
        """ConsisID's conditions from a FaceIdentity: the face image with non-face regions white (global
        path), ``id_cond`` = [raw ArcFace, CLIP embedding], ``id_vit_hidden`` (local path), and the
        keypoints in the face image's coordinates."""
        missing = [
            name
            for name in ("recognition", "recognition_norm", "clip_embeds", "clip_hidden")
            if getattr(identity, name) is None
        ]
        if missing:
            raise GenfaceError(
                f"The identity lacks {missing}; encode it with ConsisID's face encoders "
                "(IdentityEncoder.from_pretrained(model, subfolder='face_encoder'))."
            )
        config = self.transformer.config
        id_dim = identity.recognition.shape[-1] + identity.clip_embeds.shape[-1]
        scales, _, vit_dim = identity.clip_hidden.shape
        if (id_dim, vit_dim, scales) != (config.LFE_id_dim, config.LFE_vit_dim, config.LFE_num_scale):
            raise GenfaceError(
                f"The identity's features ({id_dim}-d id, {scales} hidden states of {vit_dim}) do not fit this "
                f"transformer ({config.LFE_id_dim}-d, {config.LFE_num_scale} of {config.LFE_vit_dim}); it was encoded "
                f"with {identity.recognition_model} + {identity.clip_model}. Re-encode it with this model's face "
                "encoders."
            )
        raw = identity.recognition * identity.recognition_norm
        id_cond = torch.from_numpy(np.concatenate([raw, identity.clip_embeds])[None]).to(device, dtype)
        id_vit_hidden = [torch.from_numpy(h[None]).to(device, dtype) for h in identity.clip_hidden]
        face = identity.crop.copy()
        if identity.parsing is None:
            logger.warning("The identity has no parsing map; the face image keeps its background.")
        else:
            face[Parsing(identity.parsing).mask("not_face")] = 255
        return PIL.Image.fromarray(face), id_cond, id_vit_hidden, identity.face_in_crop().kps

    def _stop_on_nan(self, callback: Any, tensor_inputs: list[str]) -> Callable[..., dict[str, Any]]:
        """``callback`` (diffusers' ``callback_on_step_end``, shown only ``tensor_inputs``) followed by a check that
        stops the run at the first step whose latents are not finite."""

        def guarded(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            outputs = {} if callback is None else callback(pipe, step, timestep, {k: tensors[k] for k in tensor_inputs})
            if not torch.isfinite(outputs.get("latents", tensors["latents"])).all():
                raise GenfaceError(
                    f"The latents became NaN or infinite at denoising step {step + 1} of {pipe.num_timesteps}, so "
                    "the run stopped there and no video was made. This usually means float16 overflow: load with "
                    "dtype=torch.bfloat16 (or float32)."
                )
            return outputs

        return guarded

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """diffusers' decoding, cut to the frames the call asked for: CogVideoX's VAE decodes latent frames two at
        a time (the first three when their count is odd), so an even count gives 4k+4 frames, not 4k+1 (5 frames
        asked: 8 decoded; 13: 16). The first ``num_frames`` are kept, so a video has exactly the frames asked."""
        frames = super().decode_latents(latents)
        return frames if self._frames_asked is None else frames[:, :, : self._frames_asked]

    @torch.no_grad()
    def __call__(
        self,
        image: PipelineImageInput | str | list[str] | None = None,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int = 480,
        width: int = 720,
        num_frames: int = 49,
        num_inference_steps: int = 50,
        guidance_scale: float = 6.0,
        use_dynamic_cfg: bool = False,
        num_videos_per_prompt: int = 1,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' default, never mutated)
        max_sequence_length: int | None = None,
        id_vit_hidden: list[torch.Tensor] | None = None,
        id_cond: torch.Tensor | None = None,
        kps_cond: np.ndarray | torch.Tensor | None = None,
        *,
        face_image: ImageInput | None = None,
        identity: FaceIdentity | None = None,
        face_index: int | None = None,
    ) -> IdentityVideoPipelineOutput | tuple:
        """``ConsisIDPipeline.__call__`` (every argument with diffusers' meaning), plus genface's shortcut: a
        ``face_image`` (photo; ``face_index`` picks a face) or a saved ``identity`` instead of ConsisID's
        precomputed ``image`` / ``id_cond`` / ``id_vit_hidden`` / ``kps_cond`` (giving both is an error).

        A text first argument is the prompt (``pipe("a woman smiling", face_image="me.jpg")``): diffusers takes no
        text or path as ``image``. ``max_sequence_length=None`` is the transformer's text length (226 for ConsisID,
        diffusers' default). ``num_frames`` (4k+1) is what the video has, exactly: diffusers' ConsisID decodes 4k+4
        frames when k is odd, and the first ``num_frames`` are kept. The run stops with a :class:`GenfaceError` at
        the step whose latents go NaN or infinite. Returns diffusers' output, with ``.identity`` added to the
        dataclass (None for precomputed conditions); ``return_dict=False`` gives diffusers' ``(frames,)``.
        """
        if isinstance(image, str) or (isinstance(image, list) and image and all(isinstance(i, str) for i in image)):
            if prompt is not None:
                raise InvalidArgumentError(
                    "image takes ConsisID's face image (a PIL image, array or tensor), not text or a path; give a "
                    "photo file as face_image=."
                )
            image, prompt = None, image
        STEPS.check(num_inference_steps, "num_inference_steps")
        GUIDANCE.check(guidance_scale, "guidance_scale")
        if self._cfg_parallel_hooks and guidance_scale <= 1:
            raise InvalidArgumentError(
                f"CFG-parallel splits the guidance passes, but guidance_scale={guidance_scale} turns guidance off; "
                "use guidance_scale > 1 or a pipeline without enable_cfg_parallel()."
            )
        config = self.transformer.config
        # diffusers' fallbacks, for None only: a 0 is refused below rather than read as "the default"
        height = config.sample_height * self.vae_scale_factor_spatial if height is None else height
        width = config.sample_width * self.vae_scale_factor_spatial if width is None else width
        num_frames = config.sample_frames if num_frames is None else num_frames
        self.check_video_size(height, width, num_frames)
        precomputed = dict(image=image, id_cond=id_cond, id_vit_hidden=id_vit_hidden, kps_cond=kps_cond)
        given = sorted(name for name, value in precomputed.items() if value is not None)
        if face_image is not None or identity is not None:
            if given:
                raise InvalidArgumentError(
                    f"Give either face_image / identity (genface encodes the face) or ConsisID's precomputed "
                    f"conditions ({', '.join(given)}), not both."
                )
            identity = self.encode_identity(face_image, identity, face_index)
            image, id_cond, id_vit_hidden, kps_cond = self.identity_conditions(
                identity, self._execution_device, self.transformer.dtype
            )
        elif image is None:
            raise InvalidArgumentError(
                "Give face_image (a photo) or identity (a saved FaceIdentity), or ConsisID's precomputed image, "
                "id_cond, id_vit_hidden and kps_cond."
            )
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs  # as diffusers does
        self._frames_asked = num_frames
        try:
            output = super().__call__(
                image, prompt, negative_prompt, height, width, num_frames, num_inference_steps, guidance_scale,
                use_dynamic_cfg, num_videos_per_prompt, eta, generator, latents, prompt_embeds, negative_prompt_embeds,
                output_type, return_dict, attention_kwargs,
                callback_on_step_end=self._stop_on_nan(callback_on_step_end, callback_on_step_end_tensor_inputs),
                callback_on_step_end_tensor_inputs=list(dict.fromkeys([*callback_on_step_end_tensor_inputs,
                                                                       "latents"])),
                max_sequence_length=max_sequence_length or config.max_text_seq_length,
                id_vit_hidden=id_vit_hidden, id_cond=id_cond, kps_cond=kps_cond,
            )  # fmt: skip
        finally:
            self._frames_asked = None
        if not return_dict:
            return output
        return IdentityVideoPipelineOutput(frames=output.frames, identity=identity)
