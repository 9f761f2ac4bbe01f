"""Train FLUX-Makeup's reference injector (and optionally a LoRA on FLUX.1 Kontext) from triplets, with accelerate.

    accelerate launch examples/train_makeup.py --triplets triplets.jsonl --output-dir my-injector/
        [--model black-forest-labs/FLUX.1-Kontext-dev | tiny] [--injector qihoo360/FLUX-Makeup | new]
        [--size 512] [--steps 5000] [--lr 1e-4] [--lora-rank 0] [--ema-decay 0.999] [--checkpoint-every 500]
        [--validation-steps 28] [--resume latest] [--mixed-precision bf16] [--gradient-checkpointing]

``triplets.jsonl`` holds one example per line: ``{"source": "bare.png", "reference": "look.png", "target":
"bare_with_look.png"}``, face crops as ``MakeupPipeline.edit`` takes them (the pipeline's own square crops).
The reference is masked to its face regions as at inference. The objective is Kontext's flow matching:
the target's latents are mixed with noise at a logit-normal time ``t``, and the transformer, given the
source as Kontext's context image and the reference through the injector, predicts the velocity
``noise - target``; the loss is its mean squared error. The transformer's own weights stay frozen unless
``--lora-rank`` adds a PEFT LoRA to its attention projections.

Checkpoints and ``--resume`` as in ``train_talking_face.py`` (same batches after a resume); they hold the
injector, the LoRA (not the frozen base), the optimiser and the EMA (safetensors: resuming unpickles nothing).
At each checkpoint the first triplet's source is edited with its reference in ``--validation-steps`` steps;
the edit is saved (marked) as ``validation/step-<N>.png``, and its difference from the target and FaceSim to
the source go to ``validation.jsonl``. Several GPUs: ``accelerate launch --multi_gpu``, each process drawing
its own triplets (data parallel; the injector's and LoRA's gradients are averaged by hand, as the injector
works from inside the transformer's attention rather than through a forward of its own; FSDP and DeepSpeed are
refused). The result, ``<output-dir>/injector`` (safetensors, the published checkpoint's parameter names),
loads with ``MakeupPipeline.from_pretrained(base, injector=<output-dir>/injector)``; a LoRA is saved beside it
(``<output-dir>/lora``, for ``pipe.load_lora_weights``).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from genface.media import load_image
from genface.pipelines import load_pipeline
from genface.pipelines.makeup.pipeline import DEFAULT_PROMPT
from genface.training import loop

#: The base transformer's attention projections a ``--lora-rank`` LoRA adapts.
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def load_makeup_pipeline(model: str, injector: str, dtype: torch.dtype) -> Any:
    """The pipeline, frozen weights in ``dtype``, and the injector to train (a new one: the published
    initialisation)."""
    pipe = load_pipeline("makeup", model, dtype=dtype, injector=None if injector == "new" else injector)
    if pipe.injector is None:
        from genface.models.makeup import MakeupInjector

        pipe.injector = MakeupInjector()  # the published initialisation: zero up-projections
        pipe.injector.install(pipe.transformer)
    return pipe


@torch.no_grad()
def validate(pipe: Any, triplet: dict[str, np.ndarray], step: int, args: argparse.Namespace) -> dict[str, Any]:
    """Edit the first triplet's source with its reference as trained so far: the edit (saved, marked), its mean
    absolute difference from the target (0-1), and FaceSim to the source."""
    from genface.errors import GenfaceError
    from genface.identity import face_similarity
    from genface.provenance import save_marked_image

    pipe.injector.eval()
    try:
        edited = pipe.edit(
            triplet["source"], triplet["reference"], size=args.size, num_inference_steps=args.validation_steps,
            generator=torch.Generator().manual_seed(args.seed),
        )  # fmt: skip
    finally:
        pipe.injector.train()
    path = args.output_dir / "validation" / f"step-{step}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_marked_image(path, edited, "makeup", args.model, step=step)
    target = cv2.resize(triplet["target"], (args.size, args.size), interpolation=cv2.INTER_AREA)
    scores: dict[str, Any] = {
        "target_l1": round(float(np.abs(edited.astype(np.float32) - target).mean()) / 255, 4),
        "image": str(path.relative_to(args.output_dir)),
    }
    try:
        facesim = face_similarity(triplet["source"], edited, analyzer=pipe.face_analyzer).mean
    except GenfaceError as exc:  # e.g. no face found in a small source crop: say so, keep training
        facesim, scores["note"] = math.nan, str(exc)
    scores["facesim"] = None if math.isnan(facesim) else round(facesim, 4)
    return scores


@torch.no_grad()
def text_conditions(pipe: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed prompt's T5 and CLIP embeddings and text ids, encoded once for the whole run."""
    return pipe.kontext.encode_prompt(DEFAULT_PROMPT, None, device=pipe._execution_device)


def flow_matching_loss(
    pipe: Any, triplet: dict[str, np.ndarray], size: int, generator: torch.Generator, text: tuple[torch.Tensor, ...]
) -> Any:
    """Kontext's training objective on one (source, reference, target) triplet; ``text``: :func:`text_conditions`."""
    device, dtype, kontext = pipe._execution_device, pipe.transformer.dtype, pipe.kontext

    def pixels(image: np.ndarray) -> torch.Tensor:
        return kontext.image_processor.preprocess(PIL.Image.fromarray(image), size, size).to(device, pipe.vae.dtype)

    channels = pipe.transformer.config.in_channels // 4
    with torch.no_grad():
        noise, context, latent_ids, context_ids = kontext.prepare_latents(
            pixels(triplet["source"]), 1, channels, size, size, dtype, device, generator
        )
        target = kontext._encode_vae_image(pixels(triplet["target"]), generator)
        target = kontext._pack_latents(target, 1, channels, *target.shape[2:])
    prompt, pooled, text_ids = text
    # The injector's projection learns; the reference's latents are drawn with the step's generator.
    conditions = pipe.reference_conditions(triplet["reference"], size, 1.0, generator)
    t = torch.sigmoid(torch.randn(1, generator=generator)).to(device, dtype)
    mixed = (1 - t) * target + t * noise
    guidance = torch.full([1], 2.5, device=device) if pipe.transformer.config.guidance_embeds else None
    predicted = pipe.transformer(
        hidden_states=torch.cat([mixed, context], dim=1), timestep=t, guidance=guidance, pooled_projections=pooled,
        encoder_hidden_states=prompt, txt_ids=text_ids, img_ids=torch.cat([latent_ids, context_ids], dim=0),
        joint_attention_kwargs=conditions, return_dict=False,
    )[0][:, : mixed.shape[1]]  # fmt: skip
    return F.mse_loss(predicted.float(), (noise - target).float())


def build_parser() -> argparse.ArgumentParser:
    """The command line (the commands in docs/training.md are checked against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triplets", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--model", default="black-forest-labs/FLUX.1-Kontext-dev", help="Hub id, folder, or 'tiny'")
    parser.add_argument("--injector", default="new", help="'new', or an injector to continue training")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--lora-rank", type=int, default=0, help="0: the base transformer stays frozen")
    parser.add_argument("--ema-decay", type=float, default=0.0, help="0: no EMA of the injector")
    parser.add_argument("--validation-steps", type=int, default=28, help="inference steps at each checkpoint; 0: none")
    loop.add_loop_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)

    accelerator = loop.make_accelerator(args)
    pipe = load_makeup_pipeline(args.model, args.injector, loop.weight_dtype(accelerator)).to(accelerator.device)
    pipe.set_progress_bar_config(disable=True)
    lines = args.triplets.read_text().splitlines()
    folder = args.triplets.parent
    triplets = [
        {key: load_image(folder / entry[key]) for key in ("source", "reference", "target")}
        for entry in map(json.loads, filter(str.strip, lines))
    ]
    for triplet in triplets:
        triplet["reference"] = pipe.mask_reference(triplet["reference"])[0]
    for module in (pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        module.requires_grad_(False)
    pipe.injector.requires_grad_(True).train()
    lora = loop.add_lora(pipe.transformer, args.lora_rank, LORA_TARGETS) if args.lora_rank else None
    trainable = list(
        {id(p): p for m in (pipe.injector, pipe.transformer) for p in m.parameters() if p.requires_grad}.values()
    )
    for p in trainable:
        p.data = p.data.float()  # trainable weights stay float32 under mixed precision
    if args.gradient_checkpointing:
        pipe.transformer.enable_gradient_checkpointing()
    # The injector works from inside the transformer's attention, not through a forward of its own, so it is not
    # wrapped for DDP: its gradients (and the LoRA's) are averaged over processes by hand below.
    optimizer = accelerator.prepare(torch.optim.AdamW(trainable, lr=args.lr))
    ema = loop.make_ema(list(pipe.injector.parameters()), args.ema_decay)
    checkpoints = loop.Checkpoints(accelerator, args.output_dir)
    checkpoints.track("injector", pipe.injector)
    checkpoints.track("lora", lora)
    checkpoints.track("ema", ema)
    first = checkpoints.resume(args.resume)
    losses: dict[int, float] = {}
    text = text_conditions(pipe)
    for step in (bar := loop.progress(accelerator, first, args.steps)):
        generator = loop.step_generator(args.seed, loop.process_step(accelerator, step))
        triplet = triplets[int(torch.randint(len(triplets), (1,), generator=generator))]
        with accelerator.autocast():
            loss = flow_matching_loss(pipe, triplet, args.size, generator, text)
        accelerator.backward(loss)
        if accelerator.num_processes > 1:
            for p in trainable:
                p.grad = accelerator.reduce(p.grad, reduction="mean")
        optimizer.step()
        optimizer.zero_grad()
        if ema is not None:
            ema.step(pipe.injector.parameters())
        loop.record_loss(accelerator, losses, step + 1, loss, bar)
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps:
            checkpoints.save(step + 1)
            if accelerator.is_main_process and args.validation_steps:
                with accelerator.autocast():
                    scores = validate(pipe, triplets[0], step + 1, args)
                loop.write_validation(args.output_dir, step + 1, scores)
    if accelerator.is_main_process:
        loop.write_losses(args.output_dir, losses)
        if ema is not None:
            ema.copy_to(pipe.injector.parameters())
        pipe.injector.save_pretrained(args.output_dir / "injector")
        if lora is not None:
            pipe.save_lora_weights(args.output_dir / "lora", transformer_lora_layers=lora.state_dict())
        print(f"trained {args.steps - first} steps; last loss {losses[args.steps]:.4f}; {args.output_dir / 'injector'}")


if __name__ == "__main__":
    main()
