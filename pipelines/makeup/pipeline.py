"""MakeupPipeline: FLUX-Makeup, a separate pipeline that composes diffusers' FLUX.1 Kontext with its reference injector.

It is not a Kontext pipeline (its call takes a source and a reference photo, not Kontext's arguments in Kontext's
order); :attr:`MakeupPipeline.kontext` is diffusers' own ``FluxKontextPipeline`` on the same modules. The source
face is Kontext's native condition; the makeup reference enters through the injector's attention pathway
(``genface.models.makeup``). Faces are found, cropped and pasted back with the shared
identity stack, so large photos with small faces work; ``regions`` limits the change to parsed regions.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, FluxKontextPipeline
from diffusers.loaders import FluxLoraLoaderMixin
from diffusers.pipelines.flux.pipeline_output import FluxPipelineOutput

from genface.arguments import GUIDANCE, STRENGTH
from genface.errors import InvalidArgumentError, MissingWeightsError
from genface.identity import Face, FaceAnalyzer, FaceParser, face_similarity
from genface.identity.align import paste_back
from genface.identity.parsing import LABELS, REGIONS
from genface.media.image import ImageInput, load_image, to_uint8
from genface.models.makeup import PUBLISHED_CHECKPOINT, MakeupInjector, reference_position_ids
from genface.pipelines._memory import LowMemoryMixin
from genface.pipelines._speed import FastModeMixin

logger = logging.getLogger(__name__)

DEFAULT_BASE = "black-forest-labs/FLUX.1-Kontext-dev"
DEFAULT_INJECTOR = "qihoo360/FLUX-Makeup"
DEFAULT_PROMPT = "makeup."
#: What the published inference keeps of the reference (CelebAMask-HQ labels): skin, brows, glasses, ears,
#: nose, mouth and lips; eyes, hair, neck and background are blacked out.
REFERENCE_KEEP = ("skin", "left_brow", "right_brow", "eyeglasses", "left_ear", "right_ear", "nose", "mouth",
                  "upper_lip", "lower_lip")  # fmt: skip
#: Regions whose colour the makeup similarity compares.
SIMILARITY_REGIONS = ("lips", "skin", "brows")
#: Side of the square face crop, in face-box sizes.
CROP_SCALE = 2.0
#: How the reference enters: "image", the whole photo at the model's size, as FLUX-Makeup's eval.py; "face", a
#: square of CROP_SCALE face boxes around the chosen face, as the source.
REFERENCE_FRAMINGS = ("image", "face")
#: FluxKontextPipeline.__call__ arguments passed on unchanged to the edit's Kontext call (``joint_attention_kwargs``
#: joined with the reference's).
KONTEXT_FORWARDED = ("prompt_2", "negative_prompt", "negative_prompt_2", "true_cfg_scale", "sigmas", "latents",
                     "prompt_embeds", "pooled_prompt_embeds", "ip_adapter_image", "ip_adapter_image_embeds",
                     "negative_ip_adapter_image", "negative_ip_adapter_image_embeds", "negative_prompt_embeds",
                     "negative_pooled_prompt_embeds", "joint_attention_kwargs", "callback_on_step_end",
                     "callback_on_step_end_tensor_inputs", "max_sequence_length")  # fmt: skip
#: FluxKontextPipeline.__call__ arguments the makeup call sets itself, and what to use instead.
KONTEXT_SET_HERE = {
    "image": "the source photo is the first argument (source)",
    "height": "the face crop's side is size=",
    "width": "the face crop's side is size=",
    "max_area": "the face crop's side is size=",
    "_auto_resize": "the face crop's side is size=",
    "num_images_per_prompt": "the pipeline makes one image per call (call again with another generator)",
    "output_type": "edit returns the crop as a uint8 array; the whole-photo call takes output_type='pil' or 'np'",
    "return_dict": "edit returns the crop as a uint8 array; the whole-photo call takes return_dict",
}


@dataclass
class MakeupPipelineOutput(FluxPipelineOutput):
    """``images``: the full-size results (as diffusers' ``FluxPipelineOutput``); ``facesim``: identity kept
    (cosine of recognition embeddings, source vs result); ``makeup_similarity``: per region, 1 - ΔE76/100 between
    the mean CIELAB colours of the region in the result and in the reference (1 = same colour)."""

    facesim: float | None = None
    makeup_similarity: dict[str, float] = field(default_factory=dict)


def square_crop_matrix(face: Face, image_shape: tuple[int, ...], size: int) -> np.ndarray:
    """Axis-aligned square around the face (``CROP_SCALE`` face sizes, kept inside the image where possible)."""
    height, width = image_shape[:2]
    cx, cy = (face.bbox[0] + face.bbox[2]) / 2, (face.bbox[1] + face.bbox[3]) / 2
    side = min(max(face.width, face.height) * CROP_SCALE, height, width)
    x0 = float(np.clip(cx - side / 2, 0, width - side))
    y0 = float(np.clip(cy - side / 2, 0, height - side))
    scale = size / side
    return np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], dtype=np.float64)


def source_facesim(analyzer: FaceAnalyzer, source: np.ndarray, result: np.ndarray, face: Face) -> float | None:
    """FaceSim of the result's face to ``face`` in the source (None without a recognizer or a face)."""
    recognizer = analyzer.recognizer
    if recognizer is None:
        return None
    found = face_similarity(recognizer.embed(source, face), result, analyzer=analyzer)
    return None if np.isnan(found.mean) else found.mean


def mask_reference(parser: FaceParser | None, reference_crop: np.ndarray) -> tuple[np.ndarray, Any]:
    """The reference crop with only its face regions kept, as the published model saw it, and its parsing
    (the whole crop and None without a face parser)."""
    if parser is None:
        logger.warning("No face parser: the whole reference crop is used (the published model saw masked faces).")
        return reference_crop, None
    parsing = parser.parse(reference_crop)
    if not parsing.mask("lips", "skin").any():
        logger.warning("The reference shows no visible lips or skin; its makeup may not transfer.")
    return reference_crop * parsing.mask(*REFERENCE_KEEP)[..., None].astype(np.uint8), parsing


def makeup_similarity(
    parser: FaceParser | None, edited: np.ndarray, reference: np.ndarray, reference_parsing: Any
) -> dict[str, float]:
    """Per region, 1 - the CIELAB distance (ΔE76) / 100 of the edited crop's and the reference's mean colours."""
    if parser is None or reference_parsing is None:
        return {}
    edited_parsing = parser.parse(edited)
    scores = {}
    for region in SIMILARITY_REGIONS:
        ours = _mean_lab(edited, edited_parsing.mask(region))
        theirs = _mean_lab(reference, reference_parsing.mask(region))
        if ours is not None and theirs is not None:
            scores[region] = float(max(0.0, 1.0 - np.linalg.norm(ours - theirs) / 100.0))
    return scores


def _feather(mask: np.ndarray, size: int) -> np.ndarray:
    """Soft edges for a 0/1 mask: a Gaussian blur about 2% of the crop wide."""
    sigma = max(size / 50.0, 0.5)
    return np.clip(cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma), 0.0, 1.0)


def _mean_lab(image: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    if mask.sum() < 4:
        return None
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0  # OpenCV's 8-bit Lab: L in [0, 255], a/b offset by 128
    lab[..., 1:] -= 128.0
    return lab[mask].mean(axis=0)


class MakeupPipeline(LowMemoryMixin, FastModeMixin, DiffusionPipeline, FluxLoraLoaderMixin):
    """Source face + makeup reference -> the source wearing the reference's makeup (FLUX-Makeup weights).

    Components are FLUX.1 Kontext's plus ``injector`` (:class:`MakeupInjector`, optional: without it, or
    with ``strength=0``, the edit is plain Kontext); ``face_analyzer`` and ``face_parser`` come from the shared
    identity stack. Not a Kontext pipeline: :attr:`kontext` is diffusers' ``FluxKontextPipeline`` on these modules.
    """

    model_card = {
        "summary": "Makeup transfer (FLUX.1 Kontext with FLUX-Makeup's reference injector): a face photo and a "
        "makeup reference become that face wearing the makeup.",
        "licences": "FLUX.1 Kontext [dev] is under the FLUX.1 [dev] Non-Commercial License.",
        "tags": ["flux-kontext", "makeup"],
    }

    model_cpu_offload_seq = FluxKontextPipeline.model_cpu_offload_seq
    _optional_components = [*FluxKontextPipeline._optional_components, "injector"]
    # The injector's weights are used inside the transformer's attention, never by a call of their own, so
    # model CPU offload could not move them on time: they stay on the execution device.
    _exclude_from_cpu_offload = ["injector"]

    def __init__(
        self,
        scheduler: Any,
        vae: Any,
        text_encoder: Any,
        tokenizer: Any,
        text_encoder_2: Any,
        tokenizer_2: Any,
        transformer: Any,
        image_encoder: Any = None,
        feature_extractor: Any = None,
        injector: MakeupInjector | None = None,
        face_analyzer: FaceAnalyzer | None = None,
        face_parser: FaceParser | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(
            scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2,
            tokenizer_2=tokenizer_2, transformer=transformer, image_encoder=image_encoder,
            feature_extractor=feature_extractor, injector=injector,
        )  # fmt: skip
        if injector is not None:
            injector.install(transformer)
        self.face_analyzer = face_analyzer
        self.face_parser = face_parser
        self._kontext: FluxKontextPipeline | None = None

    @property
    def kontext(self) -> FluxKontextPipeline:
        """diffusers' ``FluxKontextPipeline`` on this pipeline's modules, for Kontext's own calls (the same output
        as diffusers: without reference conditions the injector's processors compute plain Kontext)."""
        modules = {name: module for name, module in self.components.items() if name != "injector"}
        if self._kontext is None or self._kontext.components != modules:
            self._kontext = FluxKontextPipeline(**modules)
        self._kontext._progress_bar_config = getattr(self, "_progress_bar_config", {})
        return self._kontext

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike = DEFAULT_BASE,
        *,
        injector: MakeupInjector | str | os.PathLike | None = DEFAULT_INJECTOR,
        face_analyzer: FaceAnalyzer | str = "auto",
        face_parser: FaceParser | str | os.PathLike | None = "auto",
        **kwargs: Any,
    ) -> MakeupPipeline:
        """FLUX.1 Kontext from ``pretrained_model_name_or_path`` plus the injector from ``injector`` (a Hub id
        or folder holding the published ``checkpoint.pt`` or a converted ``save_pretrained`` folder).
        ``face_parser="auto"`` takes the injector repository's ``79999_iter.pth`` when it has one."""
        from genface.hub import resolve_folder

        folder = None
        if isinstance(injector, (str, os.PathLike)):
            folder = resolve_folder(
                injector, allow_patterns=[PUBLISHED_CHECKPOINT, "config.json", "*.safetensors", "79999_iter.pth"]
            )
            if (folder / "config.json").is_file():
                injector = MakeupInjector.from_pretrained(str(folder))
            elif (folder / PUBLISHED_CHECKPOINT).is_file():
                logger.warning(
                    "Loading the injector from %s; convert it once to safetensors with `genface convert` to skip "
                    "the pickle reader next time.", folder / PUBLISHED_CHECKPOINT,
                )  # fmt: skip
                injector = MakeupInjector.from_published_checkpoint(folder / PUBLISHED_CHECKPOINT)
            else:
                raise MissingWeightsError(
                    f"No makeup injector in {folder}: expected {PUBLISHED_CHECKPOINT} or config.json."
                )
        if face_parser == "auto":
            face_parser = (
                FaceParser.from_pretrained(folder) if folder and (folder / "79999_iter.pth").is_file() else None
            )
        elif isinstance(face_parser, (str, os.PathLike)):
            face_parser = FaceParser.from_pretrained(face_parser)
        analyzer = FaceAnalyzer(face_analyzer) if isinstance(face_analyzer, str) else face_analyzer
        from genface.hub import load_or_explain

        pipe = load_or_explain(super().from_pretrained, pretrained_model_name_or_path, **kwargs)
        pipe.register_modules(injector=injector)
        if injector is not None:
            injector.to(pipe.transformer.device, pipe.transformer.dtype).install(pipe.transformer)
        pipe.face_analyzer, pipe.face_parser = analyzer, face_parser
        return pipe

    # -- the edit of one face crop ----------------------------------------------------------------------

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, repo_id: str | None = None, **kwargs: Any
    ) -> None:
        """Save the components (the injector included) in diffusers' layout and a model card (``README.md``);
        ``push_to_hub`` then uploads the folder to ``repo_id``."""
        from genface.hub import finish_save, hub_ids, pop_push_options

        push = pop_push_options(kwargs)
        super().save_pretrained(save_directory, **kwargs)
        injector = self.injector.config.get("_name_or_path") if self.injector is not None else None
        finish_save(self, save_directory, hub_ids(self.name_or_path, injector), push_to_hub, repo_id, push)

    def reference_conditions(
        self, reference_crop: np.ndarray, size: int, strength: float, generator: torch.Generator | None = None
    ) -> dict[str, Any] | None:
        """Attention kwargs carrying the reference tokens and their RoPE (None: no reference pathway). The
        reference's latents are drawn from the VAE posterior with ``generator``, as FLUX-Makeup's eval.py does."""
        if self.injector is None or strength == 0:
            return None
        device, dtype = self._execution_device, self.transformer.dtype
        kontext = self.kontext
        pixels = kontext.image_processor.preprocess(PIL.Image.fromarray(reference_crop), size, size).to(
            device, self.vae.dtype
        )
        latents = self.vae.encode(pixels).latent_dist.sample(generator)
        latents = (latents - self.vae.config.shift_factor) * self.vae.config.scaling_factor
        batch, channels, height, width = latents.shape
        packed = kontext._pack_latents(latents, batch, channels, height, width)
        tokens = self.injector.ref_image_proj_model(packed.to(self.injector.device, self.injector.dtype)).to(dtype)
        ids = reference_position_ids(height // 2, width // 2, shift=size // (kontext.vae_scale_factor * 2))
        return {
            "ref_hidden_states": tokens,
            "ref_rotary_emb": self.transformer.pos_embed(ids.to(device)),
            # a tensor, not a float: a compiled transformer would specialise on (recompile for) each strength
            "makeup_level": torch.tensor(float(strength), device=device),
        }

    #: FLUX's attention (and the injector's) goes through diffusers' dispatcher: xformers reaches it too.
    attention_dispatcher = True

    def attention_shape(self) -> tuple[int, int, int, int]:
        """(batch, heads, tokens, head size) of FLUX's joint attention at 1024 x 1024: 512 text tokens plus the
        image's and the Kontext condition's (24 heads of 128, 8704 tokens for FLUX.1 Kontext)."""
        config = self.transformer.config
        image = (1024 // (self.kontext.vae_scale_factor * 2)) ** 2
        return 1, config.num_attention_heads, 512 + 2 * image, config.attention_head_dim

    def fast_blocks(self) -> list[torch.nn.Module]:
        """FLUX's repeated blocks, as diffusers' ``compile_repeated_blocks`` finds them."""
        names = self.transformer._repeated_blocks
        return [module for module in self.transformer.modules() if type(module).__name__ in names]

    def fuse_projections(self, fuse: bool) -> None:
        """diffusers' fused projections of FLUX's attention (the injector's processors read them too)."""
        if fuse:
            self.transformer.fuse_qkv_projections()
        else:
            self.transformer.unfuse_qkv_projections()

    def enable_context_parallel(
        self, ulysses_degree: int | None = None, ring_degree: int | None = None, **options: Any
    ) -> None:
        """Split the image's tokens over GPUs with diffusers' context parallelism and FLUX's own plan; the
        reference pathway contributes one shard of the reference tokens per rank. One process per GPU
        (``torchrun``), ``torch.distributed`` initialised; ``options`` go to ``diffusers.ContextParallelConfig``."""
        from diffusers import ContextParallelConfig

        config = ContextParallelConfig(ulysses_degree=ulysses_degree, ring_degree=ring_degree, **options)
        self.transformer.enable_parallelism(config=config)

    @staticmethod
    def check_kontext_arguments(kontext_kwargs: dict[str, Any]) -> None:
        """Refuse what the edit's Kontext call cannot take as given: its own settings and unknown names."""
        for name in kontext_kwargs:
            if name in KONTEXT_SET_HERE:
                raise InvalidArgumentError(f"MakeupPipeline sets Kontext's {name} itself: {KONTEXT_SET_HERE[name]}.")
            if name not in KONTEXT_FORWARDED:
                raise TypeError(f"MakeupPipeline got an unexpected keyword argument {name!r}.")

    @torch.no_grad()
    def edit(
        self,
        source_crop: np.ndarray,
        reference_crop: np.ndarray | None = None,
        *,
        strength: float = 1.0,
        prompt: str | list[str] | None = None,
        size: int = 1024,
        num_inference_steps: int = 25,
        guidance_scale: float = 2.5,
        generator: torch.Generator | None = None,
        **kontext_kwargs: Any,
    ) -> np.ndarray:
        """Edit one face crop (RGB uint8) at ``size`` x ``size``; returns RGB uint8 of that size.

        ``prompt=None`` is FLUX-Makeup's ``"makeup."`` (unless ``prompt_embeds`` is given); ``kontext_kwargs`` are
        the Kontext arguments of :data:`KONTEXT_FORWARDED`, passed on to its call."""
        self.check_kontext_arguments(kontext_kwargs)
        if prompt is None and kontext_kwargs.get("prompt_embeds") is None:
            prompt = DEFAULT_PROMPT
        conditions = (
            None if reference_crop is None else self.reference_conditions(reference_crop, size, strength, generator)
        )
        given = kontext_kwargs.pop("joint_attention_kwargs", None) or {}
        if conditions and set(given) & set(conditions):
            raise InvalidArgumentError(f"joint_attention_kwargs may not set the reference's {sorted(conditions)}.")
        result = self.kontext(
            image=PIL.Image.fromarray(source_crop).resize((size, size), PIL.Image.BICUBIC),
            prompt=prompt,
            height=size,
            width=size,
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            generator=generator,
            joint_attention_kwargs={**given, **(conditions or {})} or None,
            output_type="np",
            max_area=size * size,
            _auto_resize=False,
            **kontext_kwargs,
        ).images[0]
        self.maybe_free_model_hooks()
        return to_uint8(result)

    # -- the whole photo ----------------------------------------------------------------------------------

    @staticmethod
    def check_regions(regions: list[str] | None) -> None:
        valid = sorted(REGIONS) + list(LABELS)
        unknown = [r for r in regions or [] if r not in valid]
        if unknown:
            raise InvalidArgumentError(f"Unknown face regions {unknown}; choose from {valid}.")

    def _face(self, image: np.ndarray, face_index: int | None, what: str) -> Face:
        if self.face_analyzer is None:
            self.face_analyzer = FaceAnalyzer("auto")
        return self.face_analyzer.get(image, face_index, what=what)

    def _parse(self, crop: np.ndarray) -> Any:
        if self.face_parser is None:
            raise MissingWeightsError(
                "Region control and reference masking need a face parser: pass face_parser= a BiSeNet checkpoint "
                "(FLUX-Makeup's 79999_iter.pth or facexlib's parsing_bisenet.pth)."
            )
        return self.face_parser.parse(crop)

    @torch.no_grad()
    def __call__(
        self,
        source: ImageInput,
        reference: ImageInput,
        strength: float = 1.0,
        regions: list[str] | None = None,
        prompt: str | list[str] | None = None,
        num_inference_steps: int = 25,
        guidance_scale: float = 2.5,
        generator: torch.Generator | None = None,
        face_index: int | None = None,
        reference_face_index: int | None = None,
        size: int = 1024,
        output_type: str = "pil",
        reference_framing: str = "image",
        return_dict: bool = True,
        **kontext_kwargs: Any,
    ) -> MakeupPipelineOutput | tuple:
        """Put the makeup of ``reference`` on the face in ``source``.

        ``strength`` scales the reference pathway (0: Kontext's own edit of the source, no reference);
        ``regions`` (e.g. ``["lips", "eyes"]``) keeps every pixel outside those parsed regions of the source
        exactly as it was, with feathered edges. ``reference_framing="image"`` gives the model the whole
        reference photo resized to ``size`` x ``size``, as FLUX-Makeup's eval.py; ``"face"`` a square around
        its face (``reference_face_index`` picks which), for photos where the face is small.
        ``kontext_kwargs``: Kontext's arguments of :data:`KONTEXT_FORWARDED`, for the edit's Kontext call (the others
        are refused, see :data:`KONTEXT_SET_HERE`). ``return_dict=False`` gives diffusers' ``(images,)``.
        """
        STRENGTH.check(strength, "strength")
        if output_type not in ("pil", "np"):
            raise InvalidArgumentError(f"output_type must be 'pil' or 'np' (images pasted back), got {output_type!r}.")
        GUIDANCE.check(guidance_scale, "guidance_scale")
        self.check_kontext_arguments(kontext_kwargs)
        if reference_framing not in REFERENCE_FRAMINGS:
            raise InvalidArgumentError(
                f"reference_framing must be one of {REFERENCE_FRAMINGS}, got {reference_framing!r}."
            )
        self.check_regions(regions)
        source_rgb, reference_rgb = load_image(source), load_image(reference)
        face = self._face(source_rgb, face_index, "the source photo")
        ref_face = self._face(reference_rgb, reference_face_index, "the reference photo")
        matrix = square_crop_matrix(face, source_rgb.shape, size)
        source_crop = cv2.warpAffine(
            source_rgb, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
        )
        if reference_framing == "image":  # PIL's default (bicubic) resize, as eval.py
            reference_crop = np.array(PIL.Image.fromarray(reference_rgb).resize((size, size)))
        else:
            reference_crop = cv2.warpAffine(
                reference_rgb,
                square_crop_matrix(ref_face, reference_rgb.shape, size),
                (size, size),
                flags=cv2.INTER_AREA,
                borderMode=cv2.BORDER_REPLICATE,
            )
        reference_crop, reference_parsing = self.mask_reference(reference_crop)
        edited = self.edit(
            source_crop, reference_crop, strength=strength, prompt=prompt, size=size, generator=generator,
            num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, **kontext_kwargs,
        )  # fmt: skip
        if regions:
            mask = _feather(self._parse(source_crop).mask(*regions), size)
        else:
            border = np.zeros((size, size), np.float32)
            inset = max(size // 16, 1)
            border[inset:-inset, inset:-inset] = 1.0
            mask = _feather(border, size)
        result = paste_back(source_rgb, edited, matrix, mask)
        images = [PIL.Image.fromarray(result) if output_type == "pil" else result]
        if not return_dict:
            return (images,)
        return MakeupPipelineOutput(
            images=images,
            facesim=source_facesim(self.face_analyzer, source_rgb, result, face),
            makeup_similarity=makeup_similarity(self.face_parser, edited, reference_crop, reference_parsing),
        )

    def mask_reference(self, reference_crop: np.ndarray) -> tuple[np.ndarray, Any]:
        """The reference crop as the published model saw it, only its face regions kept, and its parsing
        (the whole crop and None without a face parser)."""
        return mask_reference(self.face_parser, reference_crop)
