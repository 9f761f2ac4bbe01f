"""CLIPScore equals ConsisID's ``eval/get_clipscore.py`` (OpenCV's BGR frames into CLIPProcessor) on a tiny CLIP;
the standard protocol gives CLIP the RGB frames."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from genface.eval import clip_score, load_clip, stride_indices


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = tmp_path_factory.mktemp("clip")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {t: i for i, t in enumerate(letters + [c + "</w>" for c in letters] + ["<|startoftext|>", "<|endoftext|>"])}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 32, "projection_dim": 8,
                     "bos_token_id": vocab["<|startoftext|>"], "eos_token_id": vocab["<|endoftext|>"]},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8, "projection_dim": 8},
        projection_dim=8,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return load_clip(folder)


def _their_clip_score(frames_bgr, model, processor, prompt, num_frames=16):
    total = len(frames_bgr)
    frames = [frames_bgr[int(i * total / num_frames)] for i in range(num_frames)]
    inputs = processor(text=prompt, images=frames, return_tensors="pt", padding=True, truncation=True)
    with torch.no_grad():
        return model(**inputs).logits_per_image.mean().item()


def test_clip_score_equals_consisids_script(tiny_clip):
    model, processor = tiny_clip
    video = np.random.default_rng(0).integers(0, 256, (49, 40, 48, 3), dtype=np.uint8)
    video[..., 0] = 255  # strongly red: BGR and RGB differ
    prompt = "a person smiling"
    got = clip_score(video, prompt, model, processor)
    assert got == pytest.approx(_their_clip_score(list(video[..., ::-1]), model, processor, prompt), abs=1e-5)
    standard = clip_score(video, prompt, model, processor, protocol="standard")
    assert standard == pytest.approx(_their_clip_score(list(video), model, processor, prompt), abs=1e-5)
    assert standard != pytest.approx(got, abs=1e-4)
    assert stride_indices(49)[-1] == 45  # never the last frame


def test_unknown_protocol_is_refused(tiny_clip):
    with pytest.raises(ValueError, match="consisid"):
        clip_score(np.zeros((4, 8, 8, 3), np.uint8), "x", *tiny_clip, protocol="rgb")


def test_load_clip_pins_the_pil_image_processor(tiny_clip, monkeypatch) -> None:
    """Where torchvision is installed transformers picks its torchvision processor; ConsisID's script had PIL's."""
    from transformers import CLIPImageProcessorPil, CLIPProcessor

    model, processor = tiny_clip
    torchvision_pick = SimpleNamespace(image_processor="torchvision's processor")
    monkeypatch.setattr(CLIPProcessor, "from_pretrained", classmethod(lambda cls, *a, **k: torchvision_pick))
    _, loaded = load_clip(model.name_or_path)
    assert type(loaded.image_processor) is CLIPImageProcessorPil
    assert loaded.image_processor.to_dict() == processor.image_processor.to_dict()
