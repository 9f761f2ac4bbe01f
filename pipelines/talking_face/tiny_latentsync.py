"""A tiny random LatentSync (UNet, VAE, Whisper), built offline (tests, the offline demo, CPU benchmarks).

The model path has LatentSync's shapes where they matter (13 latent channels in, 4 out, 16-frame clips with motion
modules, 8-times smaller latents of the face crop, Whisper windows of 10 positions x all layers, DDIM with
guidance) at toy widths and at 128 px; the face side is the real offline engine (dlib). Its mouths are noise; every
stage of the real pipeline runs.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler
from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

from genface.identity import FaceAnalyzer
from genface.models.latentsync.published import SCHEDULER_CONFIG, UNET_CONFIG
from genface.models.latentsync.unet import LatentSyncUNet

#: The model name that builds it (``load_pipeline("talk", TINY_LATENTSYNC)``).
TINY_LATENTSYNC = "tiny-latentsync"
#: Whisper width of the tiny model (whisper-tiny: 384).
TINY_WIDTH = 16
#: The tiny model's crop side (LatentSync 1.6 runs at 512, 1.5 at 256).
TINY_RESOLUTION = 128
#: The published configuration at toy widths.
TINY_UNET = dict(
    UNET_CONFIG,
    block_out_channels=[32, 32, 32, 32],
    layers_per_block=1,
    cross_attention_dim=TINY_WIDTH,
    attention_head_dim=2,
    sample_size=TINY_RESOLUTION // 8,
    motion_module_kwargs=dict(UNET_CONFIG["motion_module_kwargs"], num_attention_heads=2),
)
#: The pipeline call's size arguments for the tiny model: none (its crops are 128x128).
TINY_CALL: dict[str, int] = {}


def tiny_components(seed: int = 0) -> dict[str, object]:
    torch.manual_seed(seed)
    unet = LatentSyncUNet.from_config(TINY_UNET).eval()
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(4, 4, 4, 4), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=2,
        sample_size=TINY_RESOLUTION,
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
    return {
        "unet": unet,
        "vae": vae,
        "audio_encoder": whisper,
        "feature_extractor": WhisperFeatureExtractor(),
        "scheduler": DDIMScheduler(**SCHEDULER_CONFIG),
    }


def tiny_pipeline(analyzer: FaceAnalyzer | None = None, seed: int = 0):  # -> LatentSyncPipeline
    from genface.pipelines.talking_face.latentsync import LatentSyncPipeline

    pipe = LatentSyncPipeline(
        **tiny_components(seed), resolution=TINY_RESOLUTION, face_analyzer=analyzer or FaceAnalyzer("dlib")
    )
    pipe.register_to_config(_name_or_path=TINY_LATENTSYNC)  # what its marks record as the model
    return pipe
