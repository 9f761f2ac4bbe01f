"""A tiny random MuseTalk (UNet, VAE, Whisper), built offline (tests, the offline demo, CPU benchmarks).

The model path has MuseTalk's shapes where they matter (8 latent channels in, 4 out, 32x32 latents of
256x256 crops, Whisper windows of 10 feature frames) at toy widths; the face side is the real offline engine
(dlib) and a random BiSeNet. Its mouths are noise; every stage of the real pipeline runs.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from genface.identity import BiSeNet, FaceAnalyzer, FaceParser
from genface.pipelines._load import TINY

#: Whisper width of the tiny model (whisper-tiny: 384).
TINY_WIDTH = 16
#: The pipeline call's size arguments for the tiny model: none (crops are always 256x256).
TINY_CALL: dict[str, int] = {}


def tiny_components(seed: int = 0) -> dict[str, object]:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=8, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TINY_WIDTH, attention_head_dim=2, norm_num_groups=4,
    ).eval()  # fmt: skip
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(4, 4, 4, 4), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=2,
        sample_size=256,
    ).eval()  # fmt: skip
    torch.manual_seed(seed)
    whisper = WhisperModel(
        WhisperConfig(
            vocab_size=100, d_model=TINY_WIDTH, encoder_layers=2, encoder_attention_heads=2, decoder_layers=1,
            decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
            max_source_positions=1500, max_target_positions=64, pad_token_id=1, bos_token_id=0, eos_token_id=2,
            decoder_start_token_id=0,
        )
    ).eval()  # fmt: skip
    return {"unet": unet, "vae": vae, "audio_encoder": whisper, "feature_extractor": WhisperFeatureExtractor()}


def tiny_pipeline(analyzer: FaceAnalyzer | None = None, seed: int = 0, parser: bool = True):  # -> TalkingFacePipeline
    from genface.pipelines.talking_face.pipeline import TalkingFacePipeline

    torch.manual_seed(seed)
    pipe = TalkingFacePipeline(
        **tiny_components(seed),
        face_analyzer=analyzer or FaceAnalyzer("dlib"),
        face_parser=FaceParser(BiSeNet()) if parser else None,
    )
    pipe.register_to_config(_name_or_path=TINY)  # what its marks record as the model
    return pipe
