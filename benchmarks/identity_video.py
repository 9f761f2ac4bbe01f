"""IdentityVideoPipeline against diffusers' ConsisIDPipeline, same weights, alternating in one process.

    python -m benchmarks.identity_video --scale tiny|full --device cpu|cuda [--steps N] [--repeats N]
                                        [--memory-modes] [--approximate [--face-encoder DIR] [--clip DIR]] [--record]

``tiny``: the random tiny model (any machine; measures pipeline overhead). ``full``: random weights at
ConsisID's published sizes (CogVideoX-5B-I2V transformer with ConsisID's identity modules, its VAE,
T5-v1.1-XXL), 49 frames at 480x720, bf16; needs a large GPU. Prints seconds per step, end-to-end
seconds, peak GPU memory, achieved TFLOP/s (transformer only, counted below) and genface/diffusers
ratios. ``--memory-modes`` also measures each ``enable_low_memory`` mode (CUDA only). ``--approximate`` also times
each cache hook and what it costs against exact mode on the same seed: PSNR always; FaceSim-Arc to the identity's
face and CLIPScore when ``--face-encoder`` / ``--clip`` give the judges' weights (on random pipeline weights the
frames hold no face, so FaceSim says so).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
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


def transformer_flops_per_step(pipe: Any, height: int, width: int, frames: int, cfg: bool) -> float:
    """Matmul FLOPs of one denoising step of the DiT: per block 24*N*D^2 (projections and a 4x MLP)
    + 4*N^2*D (attention scores and values), N text+video tokens of width D; x2 with CFG.
    ConsisID at 480x720x49: N = 226 + 13*30*45 = 17776, D = 3072, 42 blocks -> 3.3e16 for 50 steps."""
    config = pipe.transformer.config
    width_d = config.num_attention_heads * config.attention_head_dim
    latent_frames = (frames - 1) // pipe.vae_scale_factor_temporal + 1
    patches = (height // pipe.vae_scale_factor_spatial // config.patch_size) * (
        width // pipe.vae_scale_factor_spatial // config.patch_size
    )
    tokens = config.max_text_seq_length + latent_frames * patches
    per_block = 24 * tokens * width_d**2 + 4 * tokens**2 * width_d
    return config.num_layers * per_block * (2 if cfg else 1)


def full_components(dtype: torch.dtype) -> dict[str, Any]:
    """Random weights at the published sizes (no download): the shapes are what matter for speed."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, ConsisIDTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    from genface.pipelines.identity_video.tiny import tiny_tokenizer

    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        transformer = ConsisIDTransformer3DModel(
            num_attention_heads=48, attention_head_dim=64, in_channels=32, out_channels=16, num_layers=42,
            text_embed_dim=4096, time_embed_dim=512, use_rotary_positional_embeddings=True,
            use_learned_positional_embeddings=True, is_train_face=True, is_kps=False, cross_attn_interval=2,
        ).to(dtype).eval()  # fmt: skip
        vae = AutoencoderKLCogVideoX(scaling_factor=0.7).to(dtype).eval()
        text_encoder = T5EncoderModel(
            T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                     feed_forward_proj="gated-gelu", is_gated_act=True)
        ).to(dtype).eval()  # fmt: skip
    scheduler = CogVideoXDPMScheduler(timestep_spacing="trailing", snr_shift_scale=1.0)
    return {"tokenizer": tiny_tokenizer(), "text_encoder": text_encoder, "vae": vae, "transformer": transformer,
            "scheduler": scheduler}  # fmt: skip


def random_identity(id_dim: int, clip_dim: int, scales: int, vit_dim: int, tokens: int):
    """A FaceIdentity with random features of the right sizes (encoding is not what is timed here)."""
    from genface.identity import Face, FaceIdentity
    from genface.identity.align import template_points

    rng = np.random.default_rng(0)
    kps = template_points("ffhq")
    unit = lambda n: (v := rng.standard_normal(n).astype(np.float32)) / np.linalg.norm(v)  # noqa: E731
    return FaceIdentity(
        face=Face([150, 180, 360, 420], 0.99, kps), image_size=(512, 512),
        crop=rng.integers(0, 256, (512, 512, 3), dtype=np.uint8), crop_matrix=np.eye(2, 3, dtype=np.float32),
        crop_template="ffhq", recognition=unit(id_dim - clip_dim), recognition_norm=20.0,
        recognition_model="random", clip_embeds=unit(clip_dim),
        clip_hidden=rng.standard_normal((scales, tokens, vit_dim)).astype(np.float32), clip_model="random",
        parsing=np.ones((512, 512), np.uint8),
    )  # fmt: skip


def contenders(scale: str, device: str) -> tuple[Any, Any, Any, dict[str, Any], dict[str, Any]]:
    """genface's pipeline and diffusers' ConsisIDPipeline on the same modules at ``scale``, a random identity,
    the call's size, and the keyword arguments that give diffusers' pipeline the same identity conditions."""
    from diffusers import ConsisIDPipeline

    from genface.pipelines import IdentityVideoPipeline
    from genface.pipelines.identity_video import tiny

    if scale == "tiny":
        components = tiny.tiny_components(id_dim=512 + 32, vit_dim=64, num_scales=1)
        size = dict(height=tiny.TINY_HEIGHT, width=tiny.TINY_WIDTH, num_frames=tiny.TINY_FRAMES)
        identity = random_identity(512 + 32, 32, 1, 64, 17)
    else:
        components = full_components(torch.bfloat16)
        size = dict(height=480, width=720, num_frames=49)
        identity = random_identity(1280, 768, 5, 1024, 577)
    ours = IdentityVideoPipeline(**components).to(device)
    reference = ConsisIDPipeline(**components).to(device)
    for pipe in (ours, reference):
        pipe.set_progress_bar_config(disable=True)
    image, id_cond, id_vit_hidden, kps = ours.identity_conditions(
        identity, torch.device(device), ours.transformer.dtype
    )
    conditions = dict(
        image=image, id_cond=id_cond, id_vit_hidden=id_vit_hidden, kps_cond=kps,
        max_sequence_length=ours.transformer.config.max_text_seq_length,
    )  # fmt: skip
    return ours, reference, identity, size, conditions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=["tiny", "full"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=None, help="default: 4 (tiny), 50 (full)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-modes", action="store_true")
    parser.add_argument(
        "--approximate", action="store_true",
        help="also time the cache hooks (approximate mode) and measure their quality against exact mode",
    )  # fmt: skip
    QualityJudge.add_arguments(parser)
    parser.add_argument("--record", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    from genface.pipelines import IdentityVideoPipeline

    ours, reference, identity, size, conditions = contenders(args.scale, args.device)
    steps = args.steps or (4 if args.scale == "tiny" else 50)
    common = dict(prompt="a person smiling", num_inference_steps=steps, output_type="np", **size)
    runs = {
        "genface": lambda: ours(identity=identity, generator=torch.Generator().manual_seed(0), **common),
        "diffusers": lambda: reference(generator=torch.Generator().manual_seed(0), **conditions, **common),
    }
    timings = time_alternating(runs, args.repeats, args.device)
    flops = transformer_flops_per_step(ours, size["height"], size["width"], size["num_frames"], cfg=True) * steps
    base = timings.median("diffusers")
    rows = []
    for name in runs:
        seconds = timings.median(name)
        peak = f"{timings.peak_gib[name]:.1f}" if name in timings.peak_gib else "n/a"
        rate = flops / seconds / 1e12
        rows.append([name, f"{seconds:.3f}", f"{seconds / steps:.4f}", peak, f"{rate:.2f}", f"{seconds / base:.3f}"])
    header = ["pipeline", "end-to-end s", "s/step", "peak GPU GiB", "transformer TFLOP/s", "time vs diffusers"]
    title = (
        f"identity_video {args.scale} on {device_line(args.device)}; {steps} steps, {size['num_frames']} frames "
        f"{size['height']}x{size['width']}, median of {args.repeats}"
    )
    report(title, f"Transformer FLOPs for the run (CFG): {flops:.3e}\n\n" + markdown_table(header, rows), args.record)
    if args.approximate:
        table = approximate_table(
            approximate_modes(ours), lambda: runs["genface"]().frames[0], args.repeats, args.device,
            QualityJudge.from_args(args), identity.crop, common["prompt"],
        )  # fmt: skip
        report(f"identity_video {args.scale} approximate modes on {device_line(args.device)}, {steps} steps", table,
               args.record)  # fmt: skip
    if args.memory_modes and args.device.startswith("cuda"):
        rows = []
        for mode in ("model", "group", "sequential"):
            pipe = IdentityVideoPipeline(
                **{k: v.to("cpu") if hasattr(v, "to") else v for k, v in ours.components.items()}
            )
            pipe.set_progress_bar_config(disable=True)
            pipe.enable_low_memory(mode)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            pipe(identity=identity, generator=torch.Generator().manual_seed(0), **common)
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**30
            rows.append([mode, f"{time.perf_counter() - start:.1f}", f"{peak:.1f}"])
        report(f"identity_video low-memory modes on {device_line(args.device)}",
               markdown_table(["mode", "end-to-end s", "peak GPU GiB"], rows), args.record)  # fmt: skip


def approximate_modes(pipe: Any) -> dict[str, ApproximateMode]:
    """The approximate modes of identity video: diffusers' cache hooks through ``pipe.enable_cache``."""
    from diffusers.hooks import FirstBlockCacheConfig, PyramidAttentionBroadcastConfig

    pab = lambda: PyramidAttentionBroadcastConfig(  # noqa: E731
        spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(100, 800)
    )
    configs = {
        "first-block-cache": ("First-Block Cache, threshold 0.1", lambda: FirstBlockCacheConfig(threshold=0.1)),
        "pab": ("PAB, attention every 2nd step in t 100-800", pab),
    }
    return {
        name: ApproximateMode(description, lambda config=config: pipe.enable_cache(config()), pipe.disable_cache)
        for name, (description, config) in configs.items()
    }


if __name__ == "__main__":
    main()
