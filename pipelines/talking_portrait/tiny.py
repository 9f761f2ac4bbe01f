"""A tiny random Ditto (renderer, motion extractor, stitching, LMDM, HuBERT), built offline (tests, the offline
demo, CPU benchmarks).

Shapes match the published model where the pipeline depends on them (21 keypoints, the 265-d motion, renders
pasted back at 512 px, HuBERT's 50 Hz frames) at toy widths; the face side is the real offline engine (dlib). Its
faces are noise; every stage of the real pipeline runs.
"""

from __future__ import annotations

import torch
from transformers import HubertConfig, HubertModel

from genface.identity import FaceAnalyzer
from genface.models.motion.extractor import MotionExtractor, StitchingNetwork
from genface.models.motion.lmdm import LMDM
from genface.models.motion.renderer import AppearanceFeatureExtractor, SPADEDecoder, WarpingNetwork
from genface.pipelines._load import TINY

#: HuBERT width of the tiny model (hubert-large: 1024).
TINY_WIDTH = 16
#: The extractors' input size of the tiny model (published: 256): 16 x 16 features, 128-px renders.
TINY_INPUT_SIZE = 64
#: The pipeline call's size arguments for the tiny model: none (renders are always 512 x 512).
TINY_CALL: dict[str, int] = {}


def tiny_components(seed: int = 0) -> dict[str, torch.nn.Module]:
    torch.manual_seed(seed)
    warping = WarpingNetwork(**{**WarpingNetwork.tiny_config(), "num_kp": 21})
    decoder = SPADEDecoder(**SPADEDecoder.tiny_config())
    with torch.no_grad():  # settle the spectral norms' power iteration, so the random decoder's output is tame
        decoder.train()
        for _ in range(5):
            decoder(torch.zeros(1, decoder.config.max_features, 8, 8))
    # The published motion and window sizes and head count (a state dict cannot tell the heads) at a toy width.
    lmdm_config = {**LMDM.tiny_config(), "motion_feat_dim": 265, "cond_feat_dim": TINY_WIDTH + 79, "seq_frames": 80}
    lmdm_config["num_heads"] = 8
    hubert = HubertModel(
        HubertConfig(
            hidden_size=TINY_WIDTH, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
            conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
            do_stable_layer_norm=True,
        )
    )  # fmt: skip
    return {
        "appearance_extractor": AppearanceFeatureExtractor(**AppearanceFeatureExtractor.tiny_config()).eval(),
        "motion_extractor": MotionExtractor(**MotionExtractor.tiny_config()).eval(),
        "warping_network": warping.eval(),
        "decoder": decoder.eval(),
        "stitching_network": StitchingNetwork(**StitchingNetwork.tiny_config()).eval(),
        "lmdm": LMDM(**lmdm_config).eval(),
        "audio_encoder": hubert.eval(),
    }


def tiny_pipeline(analyzer: FaceAnalyzer | None = None, seed: int = 0):  # -> TalkingPortraitPipeline
    from genface.pipelines.talking_portrait.pipeline import TalkingPortraitPipeline

    pipe = TalkingPortraitPipeline(
        **tiny_components(seed), face_analyzer=analyzer or FaceAnalyzer("dlib"), input_size=TINY_INPUT_SIZE
    )
    pipe.register_to_config(_name_or_path=TINY)  # what its marks record as the model
    return pipe
