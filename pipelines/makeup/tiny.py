"""A tiny random FLUX Kontext + makeup injector, built offline (tests, the offline demo, CPU benchmarks).

The sizes are those of diffusers' own Kontext tests; the face side is the real offline engine (dlib) and a
random BiSeNet. Its images are noise; every stage of the real pipeline runs.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    PreTrainedTokenizerFast,
    T5Config,
    T5EncoderModel,
    T5TokenizerFast,
)

from genface.identity import BiSeNet, FaceAnalyzer, FaceParser
from genface.models.makeup import MakeupInjector
from genface.pipelines._tiny import char_tokenizer

#: Working resolution of the tiny model (pixels; its VAE does not downsample).
TINY_SIZE = 32
#: The pipeline call's size arguments for the tiny model.
TINY_CALL = {"size": TINY_SIZE}
TINY_INJECTOR = dict(num_layers=1, num_single_layers=1, inner_dim=32, in_channels=4, rank=8, attention_head_dim=16)


def tiny_components(seed: int = 0) -> dict[str, Any]:
    """FLUX.1 Kontext's components at toy sizes."""
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=4, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
    ).eval()  # fmt: skip
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(bos_token_id=0, eos_token_id=2, hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05,
                       num_attention_heads=4, num_hidden_layers=5, pad_token_id=1, vocab_size=1000, hidden_act="gelu",
                       projection_dim=32)
    ).eval()  # fmt: skip
    torch.manual_seed(seed)
    text_encoder_2 = T5EncoderModel(
        T5Config(vocab_size=100, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    ).eval()
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1, latent_channels=1,
        norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035,
    ).eval()  # fmt: skip
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": char_tokenizer(PreTrainedTokenizerFast, 77, bos_token="<s>", pad_token="<pad>", eos_token="</s>"),  # noqa: S106
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": char_tokenizer(T5TokenizerFast, 512, pad_token="<pad>", eos_token="</s>"),  # noqa: S106
        "transformer": transformer,
        "image_encoder": None,
        "feature_extractor": None,
    }


def tiny_injector(seed: int = 0) -> MakeupInjector:
    """A random injector; unlike the published initialisation (zero up-projections), every weight acts."""
    torch.manual_seed(seed)
    injector = MakeupInjector(**TINY_INJECTOR)
    with torch.no_grad():
        for param in injector.parameters():
            param.normal_(0, 0.3)
    return injector.eval()


def tiny_pipeline(analyzer: FaceAnalyzer | None = None, seed: int = 0):  # -> MakeupPipeline
    from genface.pipelines.makeup.pipeline import MakeupPipeline

    torch.manual_seed(seed)
    parser = FaceParser(BiSeNet())
    return MakeupPipeline(
        **tiny_components(seed),
        injector=tiny_injector(seed),
        face_analyzer=analyzer or FaceAnalyzer("dlib"),
        face_parser=parser,
    )
