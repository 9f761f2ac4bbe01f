"""The parts of the tiny random Wan models (:mod:`.tiny_stand_in`, :mod:`.tiny_vace`), built offline.

Their output is noise; their value is that every stage of the real pipelines runs end to end with no download.
The face side uses the real offline engine (dlib: real detection and a real 128-d recognizer) and a random
BiSeNet at the published size. The shapes follow diffusers' own Wan tests (a head size of 12, so that Wan's
rotary split of each head into frame, row and column parts is the same in Stand-In's code and diffusers').
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import T5TokenizerFast, UMT5Config, UMT5EncoderModel

from genface.identity import BiSeNet, FaceAnalyzer, FaceParser, IdentityEncoder
from genface.models.stand_in import StandInAdapter
from genface.pipelines._tiny import char_tokenizer

#: The pipeline call's size arguments for the tiny models.
TINY_CALL = {"height": 32, "width": 32, "num_frames": 9}
TEXT_DIM = 32
#: Side of the tiny Stand-In's reference image (Stand-In's is 512): 4 x 4 reference tokens.
TINY_REFERENCE = 64
TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
                   text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
                   qk_norm="rms_norm_across_heads", rope_max_seq_len=32)  # fmt: skip


def tiny_text_side(seed: int = 0) -> dict[str, Any]:
    """A character-level tokenizer and a tiny UMT5 encoder (Wan's text side), made with no download."""
    torch.manual_seed(seed)
    config = UMT5Config(vocab_size=100, d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    tokenizer = char_tokenizer(T5TokenizerFast, model_max_length=512, pad_token="<pad>", eos_token="</s>")  # noqa: S106
    return {"tokenizer": tokenizer, "text_encoder": UMT5EncoderModel(config).eval()}


def tiny_vae(seed: int = 0) -> AutoencoderKLWan:
    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])  # fmt: skip
    return vae.eval()


def tiny_transformer(seed: int = 0, **changes: Any) -> WanTransformer3DModel:
    torch.manual_seed(seed)
    return WanTransformer3DModel(**(TRANSFORMER | changes)).eval()


def tiny_adapter(transformer: WanTransformer3DModel, seed: int = 0, **config: Any) -> StandInAdapter:
    """A Stand-In adapter for ``transformer`` with random weights (both halves of each LoRA non-zero, unlike
    Stand-In's initialisation, so that the tests see the adapter)."""
    torch.manual_seed(seed)
    dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    adapter = StandInAdapter(len(transformer.blocks), dim, 8, **config)
    for parameter in adapter.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return adapter.eval()


def tiny_identity_encoder(analyzer: FaceAnalyzer | None = None) -> IdentityEncoder:
    """The offline engine's real detection and recognition, at the photo's own size (as Stand-In and VACE detect)."""
    return IdentityEncoder(analyzer or FaceAnalyzer("dlib"), max_side=None)


def tiny_parser(seed: int = 0) -> FaceParser:
    torch.manual_seed(seed)
    return FaceParser(BiSeNet())
