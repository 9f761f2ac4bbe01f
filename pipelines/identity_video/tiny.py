"""A tiny random ConsisID, built offline: for tests, the offline demo and CPU benchmarks.

Its output is noise; its value is that every stage of the real pipeline runs end to end with no download.
The face side uses the real offline engine (dlib: real detection and a real 128-d recognizer), a random
BiSeNet at the published size and a tiny random EVA-CLIP tower.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, ConsisIDTransformer3DModel
from transformers import T5Config, T5EncoderModel, T5TokenizerFast

from genface.identity import BiSeNet, ClipVisionEncoder, EvaClipVisionModel, FaceAnalyzer, FaceParser, IdentityEncoder
from genface.pipelines._tiny import char_tokenizer

#: Pixel size and frame count the tiny transformer takes (learned positional embeddings fix the size).
TINY_HEIGHT = TINY_WIDTH = 64
TINY_FRAMES = 9
#: The pipeline call's size arguments for the tiny model.
TINY_CALL = {"height": TINY_HEIGHT, "width": TINY_WIDTH, "num_frames": TINY_FRAMES}
TINY_CLIP = dict(image_size=28, patch_size=7, width=64, layers=5, head_width=64, embed_dim=32, hidden_state_layers=[4])
TEXT_DIM = 32


def tiny_tokenizer() -> T5TokenizerFast:
    """A character-level T5 tokenizer made on the spot (no vocabulary download)."""
    return char_tokenizer(T5TokenizerFast, model_max_length=226, pad_token="<pad>", eos_token="</s>")  # noqa: S106


def tiny_components(id_dim: int, vit_dim: int, num_scales: int, seed: int = 0) -> dict[str, object]:
    """ConsisID's five components at toy sizes (the shapes of diffusers' own ConsisID tests)."""
    heads, head_dim = 2, 16
    torch.manual_seed(seed)
    transformer = ConsisIDTransformer3DModel(
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        in_channels=8,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=TEXT_DIM,
        num_layers=2,
        sample_width=TINY_WIDTH // 8,
        sample_height=TINY_HEIGHT // 8,
        sample_frames=TINY_FRAMES,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=16,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
        cross_attn_interval=1,
        is_kps=False,
        is_train_face=True,
        cross_attn_dim_head=8,
        cross_attn_num_heads=2,
        LFE_id_dim=id_dim,
        LFE_vit_dim=vit_dim,
        LFE_depth=2,
        LFE_dim_head=8,
        LFE_num_heads=2,
        LFE_num_id_token=2,
        LFE_num_querie=4,
        # The perceiver's key/value width is tied to the transformer's: 2/3 of it (2048 of 3072 in ConsisID).
        LFE_output_dim=int(heads * head_dim / 3 * 2),
        LFE_ff_mult=1,
        LFE_num_scale=num_scales,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    torch.manual_seed(seed)
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=100, d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4)
    ).eval()
    scheduler = CogVideoXDPMScheduler(timestep_spacing="trailing")
    return {
        "tokenizer": tiny_tokenizer(),
        "text_encoder": text_encoder,
        "vae": vae.eval(),
        "transformer": transformer.eval(),
        "scheduler": scheduler,
    }


def tiny_identity_encoder(analyzer: FaceAnalyzer | None = None, seed: int = 0) -> IdentityEncoder:
    """The offline engine's real detection and recognition, with random parsing and a tiny CLIP tower."""
    torch.manual_seed(seed)
    clip = ClipVisionEncoder(EvaClipVisionModel(**TINY_CLIP))
    return IdentityEncoder(analyzer or FaceAnalyzer("dlib"), FaceParser(BiSeNet()), clip)


def tiny_pipeline(identity_encoder: IdentityEncoder | None = None, seed: int = 0):  # -> IdentityVideoPipeline
    """A whole tiny pipeline whose transformer fits ``identity_encoder``'s features."""
    from genface.pipelines.identity_video.pipeline import IdentityVideoPipeline

    encoder = identity_encoder or tiny_identity_encoder(seed=seed)
    id_dim = encoder.analyzer.recognizer.dim + encoder.clip.model.config.embed_dim
    scales = len(encoder.clip.model.config.hidden_state_layers)
    components = tiny_components(id_dim, encoder.clip.model.config.width, scales, seed)
    return IdentityVideoPipeline(**components, identity_encoder=encoder)
