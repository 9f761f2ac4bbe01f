"""MakeupPipeline against diffusers' FluxKontextPipeline with the injector's processors swapped in (the
published FLUX-Makeup approach), same weights, alternating in one process.

    python -m benchmarks.makeup --scale tiny|full --device cpu|cuda [--steps N] [--repeats N]
                                [--approximate [--face-encoder DIR] [--clip DIR]] [--record]

``tiny``: the random tiny Kontext (any machine; measures pipeline overhead). ``full``: random weights at
FLUX.1 Kontext's sizes (12B transformer, bf16, 1024x1024) plus the injector; CUDA only. ``--approximate`` also
times each approximate mode and what it costs against exact mode on the same seed: PSNR always; FaceSim-Arc to the
source face and CLIPScore for the edit's prompt when ``--face-encoder`` / ``--clip`` give the judges' weights.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import PIL.Image
import torch

from benchmarks.harness import (
    ApproximateMode,
    QualityJudge,
    approximate_table,
    device_line,
    markdown_table,
    report,
    time_alternating,
)


def transformer_flops_per_step(transformer: Any, image_tokens: int, text_tokens: int, reference_tokens: int) -> float:
    """Matmul FLOPs of one Kontext step: every block costs 24*N*D^2 (QKV, output and 4x MLP projections, in
    both streams of a double block or fused in a single one) + 4*N^2*D (scores and values) for N tokens
    (text + the generated image + the source image as context) of width D; the reference tokens add
    4*N*R*D as extra keys and values. FLUX.1 at 1024x1024: N = 512 + 4096 + 4096, D = 3072, 57 blocks."""
    config = transformer.config
    width = config.num_attention_heads * config.attention_head_dim
    tokens = text_tokens + 2 * image_tokens
    per_block = 24 * tokens * width**2 + 4 * tokens**2 * width + 4 * tokens * reference_tokens * width
    return (config.num_layers + config.num_single_layers) * per_block


def full_components(device: str) -> dict[str, Any]:
    """FLUX.1 Kontext [dev] at its published sizes with random weights, and a published-size injector."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from genface.models.makeup import MakeupInjector
    from genface.pipelines.makeup.tiny import tiny_components

    parts = tiny_components()  # scheduler and tokenizers; the models are replaced
    with torch.device(device):
        parts["transformer"] = FluxTransformer2DModel(guidance_embeds=True).to(torch.bfloat16).eval()
        parts["vae"] = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=16, use_quant_conv=False,
            use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611,
        ).to(torch.bfloat16).eval()  # fmt: skip
        parts["text_encoder"] = CLIPTextModel(CLIPTextConfig(projection_dim=768)).to(torch.bfloat16).eval()
        parts["text_encoder_2"] = (
            T5EncoderModel(
                T5Config(d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64, feed_forward_proj="gated-gelu")
            )
            .to(torch.bfloat16)
            .eval()
        )
        injector = MakeupInjector().to(torch.bfloat16).eval()
    return {**parts, "injector": injector}


def contenders(scale: str, device: str) -> tuple[Any, Any, int]:
    """genface's MakeupPipeline and diffusers' FluxKontextPipeline on the same modules (the reference gets the
    injector's processors through ours), and the working size."""
    from diffusers import FluxKontextPipeline

    from genface.pipelines import MakeupPipeline
    from genface.pipelines.makeup import tiny

    if scale == "tiny":
        components, size = {**tiny.tiny_components(), "injector": tiny.tiny_injector()}, tiny.TINY_SIZE
    else:
        components, size = full_components(device), 1024
    injector = components.pop("injector")
    ours = MakeupPipeline(**components, injector=injector).to(device)
    reference = FluxKontextPipeline(**components).to(device)  # the same modules: processors swapped by ours
    for pipe in (ours, reference):
        pipe.set_progress_bar_config(disable=True)
    return ours, reference, size


def reference_inputs(ours: Any, source: np.ndarray, makeup: np.ndarray, size: int) -> dict[str, Any]:
    """FluxKontextPipeline's arguments for the edit ``ours.edit(source, makeup, size=size)`` makes."""
    from genface.pipelines.makeup.pipeline import DEFAULT_PROMPT

    return dict(
        image=PIL.Image.fromarray(source), prompt=DEFAULT_PROMPT, height=size, width=size, max_area=size * size,
        _auto_resize=False, joint_attention_kwargs=ours.reference_conditions(makeup, size, 1.0), output_type="np",
    )  # fmt: skip


def approximate_modes(pipe: Any) -> dict[str, ApproximateMode]:
    """The approximate modes of makeup: PAB on FLUX's transformer (its ``CacheMixin``), the cache hook that runs
    without a cache context; FluxKontextPipeline (diffusers 0.42) sets none, which First-Block Cache and MagCache
    need."""
    from diffusers.hooks import PyramidAttentionBroadcastConfig

    pab = lambda: PyramidAttentionBroadcastConfig(  # noqa: E731
        spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(100, 800),
        current_timestep_callback=lambda: pipe.kontext.current_timestep,
    )  # fmt: skip
    return {
        "pab": ApproximateMode(
            "PAB, attention every 2nd step in t 100-800",
            lambda: pipe.transformer.enable_cache(pab()),
            pipe.transformer.disable_cache,
        )
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=None, help="default: 4 (tiny), 25 (full: FLUX-Makeup's)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--approximate", action="store_true",
        help="also time the approximate modes and measure their quality against exact mode",
    )  # fmt: skip
    QualityJudge.add_arguments(parser)
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    if args.scale == "full" and not args.device.startswith("cuda"):
        raise SystemExit("--scale full builds FLUX.1 Kontext's 12B transformer: run it on a CUDA device.")
    ours, reference, size = contenders(args.scale, args.device)
    steps = args.steps or (4 if args.scale == "tiny" else 25)
    rng = np.random.default_rng(0)
    source, makeup = (rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2))
    conditions = ours.reference_conditions(makeup, size, 1.0)
    common = dict(num_inference_steps=steps, guidance_scale=2.5)
    runs = {
        "genface": lambda: ours.edit(source, makeup, size=size, generator=torch.Generator().manual_seed(0), **common),
        "diffusers + processor swap": lambda: reference(
            **reference_inputs(ours, source, makeup, size), generator=torch.Generator().manual_seed(0), **common
        ),
    }
    timings = time_alternating(runs, args.repeats, args.device)
    image_tokens = (size // ours.kontext.vae_scale_factor // 2) ** 2
    text_tokens = 512
    flops = transformer_flops_per_step(
        ours.transformer, image_tokens, text_tokens, conditions["ref_hidden_states"].shape[1]
    )
    base = timings.median("diffusers + processor swap")
    rows = []
    for name in runs:
        median = timings.median(name)
        peak = f"{timings.peak_gib[name]:.1f}" if name in timings.peak_gib else "n/a"
        rate = flops * steps / median / 1e12
        rows.append([name, f"{median:.3f}", f"{median / steps:.4f}", peak, f"{rate:.2f}", f"{median / base:.3f}"])
    header = ["pipeline", "end-to-end s", "s/step", "peak GPU GiB", "transformer TFLOP/s", "time vs diffusers"]
    title = (
        f"makeup {args.scale} on {device_line(args.device)}; {steps} steps at {size}x{size}, median of {args.repeats}"
    )
    body = f"Transformer FLOPs for the run: {flops * steps:.3e}\n\n" + markdown_table(header, rows)
    report(title, body, args.record)
    if args.approximate:
        from genface.pipelines.makeup.pipeline import DEFAULT_PROMPT

        table = approximate_table(
            approximate_modes(ours), runs["genface"], args.repeats, args.device, QualityJudge.from_args(args), source,
            DEFAULT_PROMPT,
        )  # fmt: skip
        report(f"makeup {args.scale} approximate modes on {device_line(args.device)}, {steps} steps", table,
               args.record)  # fmt: skip


if __name__ == "__main__":
    main()
