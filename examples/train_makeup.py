"""Train FLUX-Makeup's reference injector (and optionally a LoRA on FLUX.1 Kontext) from triplets, with accelerate.

    accelerate launch examples/train_makeup.py --triplets triplets.jsonl --output-dir my-injector/
        [--model black-forest-labs/FLUX.1-Kontext-dev | tiny] [--injector qihoo360/FLUX-Makeup | new]
        [--size 512] [--steps 5000] [--lr 1e-4] [--lora-rank 0] [--ema-decay 0.999] [--checkpoint-every 500]
        [--resume latest]
        [--mixed-precision bf16] [--gradient-checkpointing]

``triplets.jsonl`` holds one example per line: ``{"source": "bare.png", "reference": "look.png", "target":
"bare_with_look.png"}``, face crops as ``MakeupPipeline.edit`` takes them (the pipeline's own square crops).
The reference is masked to its face regions as at inference. The objective is Kontext's flow matching:
the target's latents are mixed with noise at a logit-normal time ``t``, and the transformer, given the
source as Kontext's context image and the reference through the injector, predicts the velocity
``noise - target``; the loss is its mean squared error. The transformer's own weights stay frozen unless
``--lora-rank`` adds a PEFT LoRA to its attention projections.

Checkpoints and ``--resume`` as in ``train_talking_face.py`` (same batches after a resume). The result,
``<output-dir>/injector`` (safetensors, the published checkpoint's parameter names), loads with
``MakeupPipeline.from_pretrained(base, injector=<output-dir>/injector)``; a LoRA is saved beside it
(``<output-dir>/lora``, for ``pipe.load_lora_weights``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

from genface.media import load_image
from genface.pipelines.makeup.pipeline import DEFAULT_PROMPT
from genface.training import loop


def load_pipeline(model: str, injector: str) -> Any:
    if model == "tiny":
        from genface.pipelines.makeup.tiny import tiny_pipeline

        return tiny_pipeline()
    from genface.pipelines import MakeupPipeline

    pipe = MakeupPipeline.from_pretrained(model, injector=None if injector == "new" else injector)
    if pipe.injector is None:
        from genface.models.makeup import MakeupInjector

        pipe.injector = MakeupInjector()  # the published initialisation: zero up-projections
        pipe.injector.install(pipe.transformer)
    return pipe


@torch.no_grad()
def text_conditions(pipe: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fixed prompt's T5 and CLIP embeddings and text ids, encoded once for the whole run."""
    return pipe.encode_prompt(DEFAULT_PROMPT, None, device=pipe._execution_device)


def flow_matching_loss(
    pipe: Any, triplet: dict[str, np.ndarray], size: int, generator: torch.Generator, text: tuple[torch.Tensor, ...]
) -> Any:
    """Kontext's training objective on one (source, reference, target) triplet; ``text``: :func:`text_conditions`."""
    device, dtype = pipe._execution_device, pipe.transformer.dtype

    def pixels(image: np.ndarray) -> torch.Tensor:
        return pipe.image_processor.preprocess(PIL.Image.fromarray(image), size, size).to(device, pipe.vae.dtype)

    channels = pipe.transformer.config.in_channels // 4
    with torch.no_grad():
        noise, context, latent_ids, context_ids = pipe.prepare_latents(
            pixels(triplet["source"]), 1, channels, size, size, dtype, device, generator
        )
        target = pipe._encode_vae_image(pixels(triplet["target"]), generator)
        target = pipe._pack_latents(target, 1, channels, *target.shape[2:])
    prompt, pooled, text_ids = text
    conditions = pipe.reference_conditions(triplet["reference"], size, 1.0)  # the injector's projection learns
    t = torch.sigmoid(torch.randn(1, generator=generator)).to(device, dtype)
    mixed = (1 - t) * target + t * noise
    guidance = torch.full([1], 2.5, device=device) if pipe.transformer.config.guidance_embeds else None
    predicted = pipe.transformer(
        hidden_states=torch.cat([mixed, context], dim=1), timestep=t, guidance=guidance, pooled_projections=pooled,
        encoder_hidden_states=prompt, txt_ids=text_ids, img_ids=torch.cat([latent_ids, context_ids], dim=0),
        joint_attention_kwargs=conditions, return_dict=False,
    )[0][:, : mixed.shape[1]]  # fmt: skip
    return F.mse_loss(predicted.float(), (noise - target).float())


def main(argv: list[str] | None = None) -> None:
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
    loop.add_loop_arguments(parser)
    args = parser.parse_args(argv)

    accelerator = loop.make_accelerator(args)
    pipe = load_pipeline(args.model, args.injector).to(accelerator.device)
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
    trainable = list(pipe.injector.parameters())
    if args.lora_rank:
        from peft import LoraConfig

        pipe.transformer.add_adapter(
            LoraConfig(r=args.lora_rank, lora_alpha=args.lora_rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
        )
        trainable += [p for p in pipe.transformer.parameters() if p.requires_grad]
    if args.gradient_checkpointing:
        pipe.transformer.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(trainable, lr=args.lr)
    pipe.injector, optimizer = accelerator.prepare(pipe.injector, optimizer)
    if args.lora_rank:
        accelerator.register_for_checkpointing(pipe.transformer)
    ema = loop.make_ema(accelerator, list(accelerator.unwrap_model(pipe.injector).parameters()), args.ema_decay)
    first = loop.resume(accelerator, args.output_dir, args.resume)
    losses: dict[int, float] = {}
    text = text_conditions(pipe)
    for step in range(first, args.steps):
        generator = loop.step_generator(args.seed, step)
        triplet = triplets[int(torch.randint(len(triplets), (1,), generator=generator))]
        loss = flow_matching_loss(pipe, triplet, args.size, generator, text)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        if ema is not None:
            ema.step(accelerator.unwrap_model(pipe.injector).parameters())
        loop.record_loss(accelerator, losses, step + 1, loss)
        if (step + 1) % args.checkpoint_every == 0 or step + 1 == args.steps:
            loop.save_checkpoint(accelerator, args.output_dir, step + 1)
    if accelerator.is_main_process:
        loop.write_losses(args.output_dir, losses)
        injector = accelerator.unwrap_model(pipe.injector)
        if ema is not None:
            ema.copy_to(injector.parameters())
        injector.save_pretrained(args.output_dir / "injector")
        if args.lora_rank:
            from peft.utils import get_peft_model_state_dict

            pipe.save_lora_weights(
                args.output_dir / "lora", transformer_lora_layers=get_peft_model_state_dict(pipe.transformer)
            )
        print(f"trained {args.steps - first} steps; last loss {losses[args.steps]:.4f}; {args.output_dir / 'injector'}")


if __name__ == "__main__":
    main()
