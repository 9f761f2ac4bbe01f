"""Train ConsisID's identity modules on a folder of videos with its coarse-to-fine strategy, on accelerate.

    # 1. coarse: the global path (the reference face's latents enter through the input channels)
    accelerate launch examples/train_identity_video.py --data videos/ --output-dir coarse/ --stage global
    # 2. fine: the local path (facial extractor + cross-attention), continuing from stage 1's transformer
    accelerate launch examples/train_identity_video.py --data videos/ --output-dir fine/ --stage local \\
        --transformer coarse/transformer

    options: [--model BestWishYsh/ConsisID-preview | tiny] [--transformer FOLDER | HUB_ID]
        [--height 480] [--width 720] [--frames 49] [--frame-stride 3] [--references-per-clip 2]
        [--steps 2000] [--lr 3e-6] [--mask-loss-probability 0.5] [--cross-face-probability 0.5]
        [--cross-face-warmup 0] [--image-dropout 0.05] [--lora-rank 0] [--ema-decay 0] [--validation-steps 50]
        [--validation-prompt TEXT] [--cache-dir DIR] [--checkpoint-every 500] [--resume latest]
        [--mixed-precision bf16] [--gradient-checkpointing]

**Data.** ``--data`` holds videos, each with its caption in a ``.txt`` file of the same name. Videos in one
subfolder show the same person; a video at the top level is a person of its own. One person per video (the
largest face is followed).

**Preparation** (once, with the shared identity stack; cached in ``--cache-dir``, by default
``<output-dir>/cache``, and redone only when a video, its caption or a setting changes). Each video is cut
into clips of ``--frames`` frames taken every ``--frame-stride`` frames, resized and centre-cropped to the
training size. Per clip: the VAE's latent distribution; the face tracked through the clip and its face
region (FaceParser) as a mask at latent resolution; and ``--references-per-clip`` reference identities
(IdentityEncoder: ArcFace and EVA-CLIP features, and the face image with non-face regions white, VAE-encoded
as the pipeline does at inference). Per video: the caption's T5 embedding. Clips without a face are skipped
with a warning.

**Objective** (ConsisID's): v-prediction with the pipeline's ``CogVideoXDPMScheduler`` at a uniform
timestep; the loss is the squared error of the implied clean latents weighted 1 / (1 - alpha_t)
(:func:`genface.training.v_prediction_loss`).

- *Dynamic mask loss*: with probability ``--mask-loss-probability`` a step's loss is averaged over the face
  mask only.
- *Dynamic cross-face loss*: with probability ``--cross-face-probability`` x min(1, step /
  ``--cross-face-warmup``) the reference face comes from another clip of the same person instead of the
  clip's own frames, so the model learns the identity rather than copying the frame.
- ``--image-dropout``: the reference latents are zeroed on that share of steps, as ConsisID's training does.

**Stages.** ``global`` trains ``patch_embed.proj`` (where the reference latents enter) with the local path
switched off (``local_face_scale`` 0), so an untrained facial extractor cannot disturb it; ``local`` trains
``local_facial_extractor`` and ``perceiver_cross_attention``; ``all`` trains both (fine-tuning a ConsisID
checkpoint on new people). The rest of the DiT stays frozen, unless ``--lora-rank`` adds a PEFT LoRA to its
blocks' attention projections (``to_q``, ``to_k``, ``to_v``, ``to_out.0``), trained with the stage's modules.
``--transformer`` is a ConsisID transformer to continue from (a previous stage's ``transformer/``) or a
CogVideoX image-to-video transformer (e.g. ``THUDM/CogVideoX-5b-I2V``), whose weights then go into a ConsisID
transformer with new identity modules shaped like ``--model``'s.

**Output.** ``<output-dir>/transformer`` loads with ``IdentityVideoPipeline.from_pretrained(model,
transformer=ConsisIDTransformer3DModel.from_pretrained("<output-dir>/transformer"))``; a LoRA is saved beside
it (``<output-dir>/lora``, for ``pipe.load_lora_weights``). Checkpoints hold only the trained parameters (LoRA
included), optimiser and EMA; ``--resume`` continues with exactly the clips, references and noise an
uninterrupted run would have drawn. At each checkpoint a video of the first clip's reference face and the
first caption (or ``--validation-prompt``) is generated in ``--validation-steps`` steps, saved (marked) as
``validation/step-<N>.mp4``, and its FaceSim appended to ``validation.jsonl``. One process per GPU
(``accelerate launch --multi_gpu``), data parallel; FSDP and DeepSpeed are refused.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from genface.errors import GenfaceError, InvalidArgumentError, MissingWeightsError
from genface.media._files import atomic_path
from genface.media.video import is_video_path
from genface.pipelines import load_pipeline
from genface.training import loop, v_prediction_loss

logger = logging.getLogger("train_identity_video")

#: Parameter-name prefixes each stage trains.
STAGES = {
    "global": ("patch_embed.proj.",),
    "local": ("local_facial_extractor.", "perceiver_cross_attention."),
}
STAGES["all"] = STAGES["global"] + STAGES["local"]
#: The DiT blocks' attention projections a ``--lora-rank`` LoRA adapts (not the identity modules' own).
LORA_TARGETS = r"transformer_blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)"
#: Cache layout version: bump when what is cached changes.
CACHE_VERSION = 1


@dataclass
class Video:
    path: Path
    caption: str
    person: str
    key: str  # its cache file's name


def find_videos(data: Path) -> list[Video]:
    """The videos under ``data`` with their captions and people (see the module's notes)."""
    if not data.is_dir():
        raise InvalidArgumentError(f"--data {data} is not a folder of videos.")
    paths = sorted(p for p in data.rglob("*") if p.is_file() and is_video_path(p))
    if not paths:
        raise InvalidArgumentError(f"No videos in {data}: put .mp4 (or .mov, .mkv, .webm, .avi) files there.")
    missing = [p for p in paths if not p.with_suffix(".txt").is_file()]
    if missing:
        names = ", ".join(str(p.relative_to(data)) for p in missing[:5])
        raise InvalidArgumentError(
            f"{len(missing)} video(s) have no caption: {names}. Write each video's caption in a .txt file of the "
            f"same name (e.g. {missing[0].with_suffix('.txt').name})."
        )
    videos = []
    for path in paths:
        relative = path.relative_to(data)
        person = relative.parent.as_posix() if relative.parent != Path(".") else relative.as_posix()
        caption = path.with_suffix(".txt").read_text().strip()
        if not caption:
            raise InvalidArgumentError(f"The caption {path.with_suffix('.txt')} is empty.")
        videos.append(Video(path, caption, person, relative.as_posix().replace("/", "__")))
    return videos


def load_transformer(source: str, like: dict[str, Any], dtype: torch.dtype) -> Any:
    """A ConsisID transformer from ``source``: as saved, or a CogVideoX transformer's weights with new identity
    modules (PyTorch's default initialisation) configured as in ``like`` (a ConsisID transformer's config)."""
    from diffusers import CogVideoXTransformer3DModel, ConsisIDTransformer3DModel

    from genface.hub import load_or_explain

    subfolder = None if (Path(source) / "config.json").is_file() else "transformer"
    config = load_or_explain(ConsisIDTransformer3DModel.load_config, source, subfolder=subfolder)
    if "LFE_id_dim" in config:
        return ConsisIDTransformer3DModel.from_pretrained(source, subfolder=subfolder, dtype=dtype)
    base = CogVideoXTransformer3DModel.from_pretrained(source, subfolder=subfolder, dtype=dtype)
    names = set(inspect.signature(CogVideoXTransformer3DModel.__init__).parameters)
    face = {k: v for k, v in like.items() if not k.startswith("_") and k not in names}
    model = ConsisIDTransformer3DModel.from_config({**base.config, **face}).to(dtype)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    new = [k for k in missing if not k.startswith(STAGES["local"])]
    if unexpected or new:
        raise InvalidArgumentError(
            f"{source} is not a CogVideoX transformer ConsisID can start from (weights it lacks: {new[:3]}, weights "
            f"it does not know: {unexpected[:3]}); use a CogVideoX 1.0 image-to-video model such as "
            "THUDM/CogVideoX-5b-I2V."
        )
    return model


def load_training_pipeline(model: str, transformer: str | None, dtype: torch.dtype) -> Any:
    pipe = load_pipeline("video", model, dtype=dtype)
    if transformer:
        pipe.transformer = load_transformer(transformer, dict(pipe.transformer.config), dtype)
    encoder = pipe.identity_encoder
    if encoder is None or encoder.parser is None or encoder.clip is None:
        raise MissingWeightsError(
            "Training needs the face encoders with a face parser and EVA-CLIP (ConsisID's face_encoder/ folder)."
        )
    if not pipe.transformer.config.is_train_face:
        raise InvalidArgumentError("This transformer has no identity modules (is_train_face is false).")
    return pipe


def fit(images: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    """Resize images (N x h x w [x c]) to cover ``height`` x ``width``, then crop the centre."""
    h, w = images.shape[1:3]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    return np.stack(
        [cv2.resize(im, size, interpolation=interpolation)[top : top + height, left : left + width] for im in images]
    )


@torch.no_grad()
def reference_conditions(pipe: Any, identity: Any, height: int, width: int) -> dict[str, torch.Tensor]:
    """A reference face's conditions as the pipeline makes them at inference: ``id_cond``, the EVA-CLIP hidden
    states (``vit``), and the latent distribution (``mean``, ``std``: N x C x h x w) of the face image (and,
    for ``is_kps`` transformers, of its keypoint map)."""
    from diffusers.pipelines.consisid.pipeline_consisid import draw_kps

    image, id_cond, id_vit_hidden, kps = pipe.identity_conditions(identity, pipe._execution_device, torch.float32)
    images = [image, draw_kps(image, kps)] if pipe.transformer.config.is_kps else [image]
    pixels = torch.cat([pipe.video_processor.preprocess(im, height=height, width=width) for im in images])
    dist = pipe.vae.encode(pixels.unsqueeze(2).to(pipe._execution_device, pipe.vae.dtype)).latent_dist
    return {
        "id_cond": id_cond[0].cpu(),
        "vit": torch.stack([h[0] for h in id_vit_hidden]).cpu(),
        "mean": dist.mean[:, :, 0].float().cpu(),
        "std": dist.std[:, :, 0].float().cpu(),
    }


def reference_latents(reference: dict[str, torch.Tensor], frames: int, generator: torch.Generator) -> torch.Tensor:
    """The reference latents as ConsisID's ``prepare_latents`` makes them (a sample of each image's latent
    distribution, scaling left to the caller), zero-padded to ``frames`` latent frames: 1 x F x C x h x w."""
    mean, std = reference["mean"], reference["std"]
    draws = [torch.randn(m[None, :, None].shape, generator=generator)[0, :, 0] for m in mean]  # in diffusers' order
    images = [m + s * noise for m, s, noise in zip(mean, std, draws, strict=True)]
    return torch.cat([torch.stack(images), mean.new_zeros(frames - len(images), *mean.shape[1:])])[None]


@torch.no_grad()
def encode_clip(
    pipe: Any, frames: list[np.ndarray], what: str, args: argparse.Namespace
) -> tuple[dict[str, torch.Tensor], Any] | None:
    """A clip's latent distribution, face masks at latent resolution and reference conditions, and its first
    reference identity (None, with a warning, when no face can be used)."""
    from genface.identity.track import track_face

    encoder = pipe.identity_encoder
    try:
        track = track_face(frames, encoder.analyzer, progress=False)
    except GenfaceError as exc:
        logger.warning("%s skipped: %s", what, exc)
        return None
    masks = encoder.parser.image_masks(frames, track.faces, "face")
    pixels = fit(np.stack(frames), args.height, args.width, cv2.INTER_AREA)
    masks = fit(masks.astype(np.uint8), args.height, args.width, cv2.INTER_NEAREST)
    video = torch.from_numpy(pixels).permute(3, 0, 1, 2)[None].to(pipe._execution_device, pipe.vae.dtype)
    dist = pipe.vae.encode(video / 127.5 - 1).latent_dist
    mean, std = (x[0].permute(1, 0, 2, 3).float().cpu() for x in (dist.mean, dist.std))  # F x C x h x w
    mask = F.interpolate(
        torch.from_numpy(masks)[None, None].float(), size=mean.shape[:1] + mean.shape[2:], mode="trilinear"
    )
    references, identities = [], []
    found = np.flatnonzero(track.found)
    for target in np.linspace(0, len(frames) - 1, args.references_per_clip):
        for index in sorted(found, key=lambda i: abs(i - target)):  # the nearest frame whose face encodes
            try:
                identity = encoder.encode(frames[index])
            except GenfaceError:
                continue
            identities.append(identity)
            references.append(reference_conditions(pipe, identity, args.height, args.width))
            break
    if len(references) < args.references_per_clip:
        logger.warning("%s skipped: a reference face could not be encoded.", what)
        return None
    stacked = {key: torch.stack([r[key] for r in references]) for key in references[0]}
    return {"mean": mean, "std": std, "mask": mask[0, 0], **{f"ref_{k}": v for k, v in stacked.items()}}, identities[0]


def cache_settings(pipe: Any, video: Video, args: argparse.Namespace) -> str:
    """What a video's cache depends on: the file, its caption, the encoders (``--model``) and the clip settings."""
    stat = video.path.stat()
    names = ("model", "height", "width", "frames", "frame_stride", "references_per_clip")
    settings = {name: getattr(args, name) for name in names}
    settings |= {"kps": bool(pipe.transformer.config.is_kps), "version": CACHE_VERSION}
    return json.dumps({"size": stat.st_size, "mtime": stat.st_mtime_ns, "caption": video.caption, **settings})


@torch.no_grad()
def prepare_video(pipe: Any, video: Video, args: argparse.Namespace, cache: Path) -> Path | None:
    """Encode one video into ``cache`` (unless an up-to-date file is there); its path, or None without clips."""
    from genface.media.video import VideoReader

    path = cache / f"{video.key}.safetensors"
    settings = cache_settings(pipe, video, args)
    if path.is_file():
        with safe_open(str(path), framework="pt") as handle:
            if (handle.metadata() or {}).get("settings") == settings:
                return path
    span = args.frames * args.frame_stride
    clips, first_identity, frames = [], None, []
    for index, frame in enumerate(VideoReader(video.path)):
        if index % args.frame_stride == 0:
            frames.append(frame)
        if (index + 1) % span == 0:
            encoded = encode_clip(pipe, frames, f"{video.path.name} frames {index + 1 - span}-{index}", args)
            if encoded is not None:
                clips.append(encoded[0])
                first_identity = encoded[1] if first_identity is None else first_identity
            frames = []
    if not clips:
        logger.warning("%s gives no clip of %d frames with a face; it is left out.", video.path, span)
        return None
    tensors = {key: torch.stack([clip[key] for clip in clips]).contiguous() for key in clips[0]}
    device = pipe._execution_device
    limit = pipe.transformer.config.max_text_seq_length
    prompt = pipe.encode_prompt(
        video.caption, do_classifier_free_guidance=False, max_sequence_length=limit, device=device
    )[0]
    tensors["prompt"] = prompt[0].float().cpu().contiguous()
    first_identity.save(cache / f"{video.key}.face.safetensors")
    with atomic_path(path) as partial:  # an interrupted run leaves no half-written cache
        save_file(tensors, str(partial), metadata={"settings": settings})
    return path


def prepare(pipe: Any, videos: list[Video], args: argparse.Namespace, cache: Path) -> tuple[list[dict], list[dict]]:
    """All clips (latents, mask, prompt, own and same-person references) and references, from the cache."""
    from tqdm.auto import tqdm

    clips, references, people = [], [], {}
    for video in tqdm(videos, desc="preparing videos", unit="video"):
        path = prepare_video(pipe, video, args, cache)
        if path is None:
            continue
        data = load_file(str(path))
        for c in range(len(data["mean"])):
            own = []
            for r in range(args.references_per_clip):
                own.append(len(references))
                references.append({key: data[f"ref_{key}"][c, r] for key in ("id_cond", "vit", "mean", "std")})
            clip = {"mean": data["mean"][c], "std": data["std"][c], "mask": data["mask"][c], "prompt": data["prompt"]}
            clips.append({**clip, "own": own, "video": video})
            people.setdefault(video.person, []).extend(own)
    if not clips:
        raise InvalidArgumentError(
            f"No usable clip in {args.data}: each video needs at least {args.frames * args.frame_stride} frames "
            f"(--frames x --frame-stride) with one face clearly visible."
        )
    alone = 0
    for clip in clips:
        clip["others"] = [r for r in people[clip["video"].person] if r not in clip["own"]]
        alone += not clip["others"]
    if alone:
        logger.warning(
            "%d of %d clips have no other clip of the same person, so their cross-face references come from "
            "their own frames. Put several videos of a person in one subfolder.", alone, len(clips),
        )  # fmt: skip
    return clips, references


def cross_face_probability(step: int, probability: float, warmup: int) -> float:
    """The dynamic cross-face schedule: rises linearly from 0 to ``probability`` over ``warmup`` steps."""
    return probability if warmup <= 0 else probability * min(1.0, step / warmup)


def training_loss(
    pipe: Any, transformer: Any, data: tuple[list[dict], list[dict]], generator: torch.Generator, step: int,
    args: argparse.Namespace,
) -> torch.Tensor:  # fmt: skip
    """One clip's loss, every random choice drawn from ``generator`` (see the module's notes)."""
    clips, references = data
    clip = clips[int(torch.randint(len(clips), (1,), generator=generator))]
    cross = float(torch.rand(1, generator=generator)) < cross_face_probability(
        step, args.cross_face_probability, args.cross_face_warmup
    )
    pool = clip["others"] if cross and clip["others"] else clip["own"]
    reference = references[pool[int(torch.randint(len(pool), (1,), generator=generator))]]
    masked = float(torch.rand(1, generator=generator)) < args.mask_loss_probability
    dropped = float(torch.rand(1, generator=generator)) < args.image_dropout
    scheduler, config = pipe.scheduler, pipe.transformer.config
    t = torch.randint(scheduler.config.num_train_timesteps, (1,), generator=generator)
    scale = pipe.vae_scaling_factor_image
    latents = (clip["mean"] + clip["std"] * torch.randn(clip["mean"].shape, generator=generator))[None] * scale
    image = reference_latents(reference, latents.shape[1], generator) * scale
    noise = torch.randn(latents.shape, generator=generator)
    device = pipe._execution_device  # float32 inputs: accelerate's autocast runs the mixed-precision weights
    latents, noise, t = latents.to(device), noise.to(device), t.to(device)
    noisy = scheduler.add_noise(latents, noise, t)
    inputs = torch.cat([noisy, torch.zeros_like(image) if dropped else image.to(device)], dim=2)
    rotary = None
    if config.use_rotary_positional_embeddings:
        rotary = pipe._prepare_rotary_positional_embeddings(args.height, args.width, latents.shape[1], device)
    output = transformer(
        hidden_states=inputs, encoder_hidden_states=clip["prompt"][None].to(device), timestep=t,
        image_rotary_emb=rotary, id_cond=reference["id_cond"][None].to(device),
        id_vit_hidden=[h[None].to(device) for h in reference["vit"]], return_dict=False,
    )[0]  # fmt: skip
    mask = clip["mask"]
    weight = mask[None, :, None].to(device) if masked and mask.sum() > 0 else None
    return v_prediction_loss(scheduler, output, noisy, latents, t, weight)


@torch.no_grad()
def validation_inputs(pipe: Any, clips: list[dict], args: argparse.Namespace, cache: Path) -> tuple[Any, tuple]:
    """The first clip's reference identity and the prompt's embeddings (with the empty negative prompt)."""
    from genface.identity import FaceIdentity

    identity = FaceIdentity.load(cache / f"{clips[0]['video'].key}.face.safetensors")
    prompt = args.validation_prompt or clips[0]["video"].caption
    limit = pipe.transformer.config.max_text_seq_length
    text = pipe.encode_prompt(prompt, "", max_sequence_length=limit, device=pipe._execution_device)
    return identity, text


@torch.no_grad()
def validate(pipe: Any, transformer: Any, inputs: tuple[Any, tuple], step: int, args: argparse.Namespace) -> dict:
    """A video with the transformer as trained so far (saved, marked), and its FaceSim to the reference."""
    from genface.identity import face_similarity
    from genface.media import to_uint8
    from genface.provenance import write_marked_video

    identity, (prompt, negative) = inputs
    transformer.eval()
    try:
        output = pipe(
            prompt_embeds=prompt, negative_prompt_embeds=negative, identity=identity, height=args.height,
            width=args.width, num_frames=args.frames, num_inference_steps=args.validation_steps,
            generator=torch.Generator().manual_seed(args.seed), output_type="np",
        )  # fmt: skip
    finally:
        transformer.train()
    frames = to_uint8(output.frames[0])
    path = args.output_dir / "validation" / f"step-{step}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_marked_video(path, frames, 8, "identity_video", args.model, step=step)
    facesim = face_similarity(identity, frames, analyzer=pipe.identity_encoder.analyzer).mean
    return {
        "facesim": None if math.isnan(facesim) else round(facesim, 4),
        "video": str(path.relative_to(args.output_dir)),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line (the commands in docs/training.md are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of videos with .txt captions")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--stage", choices=sorted(STAGES), required=True)
    parser.add_argument("--model", default="BestWishYsh/ConsisID-preview", help="Hub id, folder, or 'tiny'")
    parser.add_argument("--transformer", default=None, help="a transformer to start from (see the notes)")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=720)
    parser.add_argument("--frames", type=int, default=49, help="frames per clip (4k+1)")
    parser.add_argument("--frame-stride", type=int, default=3, help="take every n-th frame of the video")
    parser.add_argument("--references-per-clip", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=3e-6)
    parser.add_argument("--mask-loss-probability", type=float, default=0.5)
    parser.add_argument("--cross-face-probability", type=float, default=0.5)
    parser.add_argument("--cross-face-warmup", type=int, default=0, help="steps over which it rises from 0")
    parser.add_argument("--image-dropout", type=float, default=0.05)
    parser.add_argument("--lora-rank", type=int, default=0, help="a LoRA on the DiT's attention; 0: none")
    parser.add_argument("--ema-decay", type=float, default=0.0, help="0: no EMA")
    parser.add_argument("--validation-steps", type=int, default=50, help="inference steps at each checkpoint; 0: none")
    parser.add_argument("--validation-prompt", default=None)
    parser.add_argument("--cache-dir", type=Path, default=None)
    loop.add_loop_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.references_per_clip < 1 or args.frame_stride < 1:
        parser.error("--references-per-clip and --frame-stride must be at least 1")

    accelerator = loop.make_accelerator(args)
    pipe = load_training_pipeline(args.model, args.transformer, loop.weight_dtype(accelerator)).to(accelerator.device)
    pipe.check_video_size(args.height, args.width, args.frames)
    pipe.set_progress_bar_config(disable=True)
    videos = find_videos(args.data)
    cache = args.cache_dir or args.output_dir / "cache"
    with accelerator.main_process_first():
        data = prepare(pipe, videos, args, cache)
    checking = None
    if accelerator.is_main_process and args.validation_steps:
        checking = validation_inputs(pipe, data[0], args, cache)
    pipe.text_encoder.to("cpu")  # its work is done: captions are cached

    transformer = pipe.transformer
    transformer.requires_grad_(False)
    lora = loop.add_lora(transformer, args.lora_rank, LORA_TARGETS) if args.lora_rank else None
    trainable = [  # the stage's modules, and the LoRA's weights (which add_lora made trainable)
        p for name, p in transformer.named_parameters() if name.startswith(STAGES[args.stage]) or p.requires_grad
    ]
    for p in trainable:
        p.requires_grad_(True)
        p.data = p.data.float()  # trainable weights stay float32 under mixed precision
    if args.stage == "global":
        transformer.local_face_scale = 0.0  # the local path is off while the global path learns
    if args.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.train()
    optimizer = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.95), weight_decay=1e-4)
    transformer, optimizer = accelerator.prepare(transformer, optimizer)
    loop.save_trainable_only(accelerator)
    ema = loop.make_ema(trainable, args.ema_decay)
    checkpoints = loop.Checkpoints(accelerator, args.output_dir)
    checkpoints.track("ema", ema)
    first = checkpoints.resume(args.resume, strict=False)
    losses: dict[int, float] = {}
    for step in (bar := loop.progress(accelerator, first, args.steps)):
        generator = loop.step_generator(args.seed, loop.process_step(accelerator, step))
        loss = training_loss(pipe, transformer, data, generator, step, args)
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if ema is not None:
            ema.step(trainable)
        loop.record_loss(accelerator, losses, step + 1, loss, bar)
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps:
            checkpoints.save(step + 1)
            if checking is not None:
                with accelerator.autocast():
                    scores = validate(pipe, accelerator.unwrap_model(transformer), checking, step + 1, args)
                loop.write_validation(args.output_dir, step + 1, scores)
    if accelerator.is_main_process:
        loop.write_losses(args.output_dir, losses)
        trained = accelerator.unwrap_model(transformer)
        if ema is not None:
            ema.copy_to(trainable)
        if lora is not None:
            pipe.save_lora_weights(args.output_dir / "lora", transformer_lora_layers=lora.state_dict())
            trained.unload_lora()  # transformer/ holds the base DiT with the trained identity modules
        trained.save_pretrained(args.output_dir / "transformer")
        print(
            f"trained {args.steps - first} steps; last loss {losses[args.steps]:.4f}; {args.output_dir / 'transformer'}"
        )


if __name__ == "__main__":
    main()
