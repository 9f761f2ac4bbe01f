"""CLIPScore as ConsisID's ``eval/get_clipscore.py`` computes it, and the same score on RGB frames.

``logits_per_image`` of ``openai/clip-vit-base-patch32`` (100 x the cosine of the image and prompt embeddings)
for 16 frames at ``int(i * total / 16)``, averaged. ConsisID reads the frames with OpenCV and hands them to
``CLIPProcessor`` as they are, so CLIP sees them in BGR order: ``protocol="consisid"`` reproduces that;
``protocol="standard"`` gives CLIP the RGB frames it was trained on (everything else the same).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from genface.eval.frames import NUM_FRAMES, load_frames, stride_indices

CLIP_REPO = "openai/clip-vit-base-patch32"
PROTOCOLS = ("consisid", "standard")


def load_clip(path_or_repo: str | os.PathLike = CLIP_REPO) -> tuple[Any, Any]:
    """(``CLIPModel``, ``CLIPProcessor``) from a folder or Hub id, in eval mode.

    The processor's image half is always the PIL one (``CLIPImageProcessorPil``), as ConsisID's script had:
    where torchvision is installed, transformers would otherwise pick its torchvision processor, whose resize
    moves pixel inputs by up to about one grey level."""
    from transformers import AutoTokenizer, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    from genface.hub import load_or_explain

    model = load_or_explain(CLIPModel.from_pretrained, path_or_repo)
    images = load_or_explain(CLIPImageProcessorPil.from_pretrained, path_or_repo)
    tokenizer = load_or_explain(AutoTokenizer.from_pretrained, path_or_repo)
    return model.eval(), CLIPProcessor(image_processor=images, tokenizer=tokenizer)


@torch.no_grad()
def clip_score(
    video: str | os.PathLike | np.ndarray,
    prompt: str,
    model: Any,
    processor: Any,
    *,
    protocol: str = "consisid",
    num_frames: int = NUM_FRAMES,
) -> float:
    """Mean CLIP logit of ``num_frames`` frames of ``video`` (a file or T x H x W x 3 RGB array) for ``prompt``."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown CLIPScore protocol {protocol!r}; choose from {PROTOCOLS}.")
    frames = load_frames(video)
    frames = frames[stride_indices(len(frames), num_frames)]
    if protocol == "consisid":
        frames = frames[..., ::-1]
    inputs = processor(
        text=prompt, images=list(np.ascontiguousarray(frames)), return_tensors="pt", padding=True, truncation=True
    )
    return model(**inputs.to(model.device)).logits_per_image.mean().item()
