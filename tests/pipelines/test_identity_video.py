"""IdentityVideoPipeline on tiny random ConsisID components: parity with diffusers, identity handling,
bad input, and a save/load round trip in the Hub repository's layout."""

from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import ConsisIDPipeline
from diffusers.pipelines.consisid.pipeline_output import ConsisIDPipelineOutput

from genface.errors import GenfaceError, MissingWeightsError, NoFaceError
from genface.identity import FaceIdentity, IdentityEncoder
from genface.identity.align import template_points
from genface.identity.encoder import shrink_long_side
from genface.identity.parsing import Parsing
from genface.pipelines import IdentityVideoPipeline
from genface.pipelines.identity_video.tiny import (
    TINY_CALL,
    TINY_FRAMES,
    TINY_HEIGHT,
    TINY_WIDTH,
    tiny_components,
    tiny_pipeline,
)

PROMPT = "a woman smiling"
SIZE = dict(height=TINY_HEIGHT, width=TINY_WIDTH, num_frames=TINY_FRAMES, num_inference_steps=2)
MAX_TEXT = {"max_sequence_length": 16}  # the tiny transformer's text length


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def pipe(dlib_analyzer) -> IdentityVideoPipeline:
    from genface.pipelines.identity_video.tiny import tiny_identity_encoder

    pipeline = tiny_pipeline(tiny_identity_encoder(dlib_analyzer))
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def identity(pipe, astronaut) -> FaceIdentity:
    return pipe.identity_encoder.encode(astronaut)


@pytest.fixture(scope="module")
def parent(pipe) -> ConsisIDPipeline:
    """diffusers' own pipeline on the same modules."""
    reference = ConsisIDPipeline(**{k: v for k, v in pipe.components.items() if k != "identity_encoder"})
    reference.set_progress_bar_config(disable=True)
    return reference


@pytest.fixture(scope="module")
def conditions(pipe, identity) -> dict[str, Any]:
    """ConsisID's precomputed conditions, as a diffusers user passes them."""
    image, id_cond, id_vit_hidden, kps = pipe.identity_conditions(identity, torch.device("cpu"), torch.float32)
    return dict(image=image, id_cond=id_cond, id_vit_hidden=id_vit_hidden, kps_cond=kps)


def _scale_latents(pipeline, step, timestep, tensors):
    return {"latents": tensors["latents"] * 0.5} if step == 0 else {}


def _scale_prompt(pipeline, step, timestep, tensors):
    assert set(tensors) == {"latents", "prompt_embeds"}
    return {"prompt_embeds": tensors["prompt_embeds"] * 0.9}


#: Every parameter of ConsisIDPipeline.__call__ -> a call setting it (from the precomputed conditions).
CONSISID_CASES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "image": lambda c: {"image": c["image"].transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)},
    "prompt": lambda c: {"prompt": "a man laughing"},
    "negative_prompt": lambda c: {"negative_prompt": "blurry"},
    "height": lambda c: {"height": TINY_HEIGHT},  # the tiny transformer's learned positions fix the size
    "width": lambda c: {"width": TINY_WIDTH},
    "num_frames": lambda c: {"num_frames": 5},
    "num_inference_steps": lambda c: {"num_inference_steps": 3},
    "guidance_scale": lambda c: {"guidance_scale": 1.0},
    "use_dynamic_cfg": lambda c: {"use_dynamic_cfg": True},
    "num_videos_per_prompt": lambda c: {"num_videos_per_prompt": 2},
    "eta": lambda c: {"eta": 0.5},
    "generator": lambda c: {"generator": _generator(5)},
    "latents": lambda c: {"latents": torch.randn(1, 3, 4, 8, 8, generator=_generator(6))},
    "prompt_embeds": lambda c: {"prompt": None, "prompt_embeds": torch.randn(1, 16, 32, generator=_generator(7))},
    "negative_prompt_embeds": lambda c: {  # diffusers takes it with prompt_embeds only
        "prompt": None,
        "prompt_embeds": torch.randn(1, 16, 32, generator=_generator(7)),
        "negative_prompt_embeds": torch.randn(1, 16, 32, generator=_generator(8)),
    },  # fmt: skip
    "output_type": lambda c: {"output_type": "latent"},
    "return_dict": lambda c: {"return_dict": False},
    "attention_kwargs": lambda c: {"attention_kwargs": {"scale": 1.0}},
    "callback_on_step_end": lambda c: {"callback_on_step_end": _scale_latents},
    "callback_on_step_end_tensor_inputs": lambda c: {
        "callback_on_step_end": _scale_prompt,
        "callback_on_step_end_tensor_inputs": ["latents", "prompt_embeds"],
    },  # fmt: skip
    "max_sequence_length": lambda c: MAX_TEXT,  # the tiny transformer's learned positions fix it too
    "id_vit_hidden": lambda c: {"id_vit_hidden": [h * 2 for h in c["id_vit_hidden"]]},
    "id_cond": lambda c: {"id_cond": c["id_cond"] * 2},
    "kps_cond": lambda c: {"kps_cond": c["kps_cond"] + 3},
}


def test_call_signature_is_consisids_plus_keyword_extras() -> None:
    """Fails when diffusers adds a parameter genface does not handle (add it here and to CONSISID_CASES)."""
    parent = inspect.signature(ConsisIDPipeline.__call__).parameters
    ours = inspect.signature(IdentityVideoPipeline.__call__).parameters
    assert list(ours)[: len(parent)] == list(parent)  # the same names in the same (positional) order
    extras = [name for name in ours if name not in parent]
    assert extras == ["face_image", "identity", "face_index"]
    assert all(ours[name].kind is inspect.Parameter.KEYWORD_ONLY for name in extras)
    # image may be replaced by face_image / identity; None = the transformer's text length (226 for ConsisID).
    assert {name for name in parent if ours[name].default != parent[name].default} == {"image", "max_sequence_length"}
    assert set(parent) - {"self"} == set(CONSISID_CASES)


@pytest.mark.parametrize("name", sorted(CONSISID_CASES))
def test_every_consisid_argument_gives_diffusers_output(pipe, parent, conditions, name) -> None:
    def run(pipeline):
        base = dict(conditions, prompt=PROMPT, output_type="pt", generator=_generator(), **MAX_TEXT)
        return pipeline(**{**base, **SIZE, **CONSISID_CASES[name](conditions)})

    ours, expected = run(pipe), run(parent)
    if name == "return_dict":
        assert isinstance(ours, tuple) and len(ours) == 1  # diffusers' (frames,)
        ours, expected = ours[0], expected[0]
    else:
        assert isinstance(ours, ConsisIDPipelineOutput) and ours.identity is None
        ours, expected = ours.frames, expected.frames
    assert torch.equal(ours, expected)


CONSISID_README_CALL = """
video = pipe(
    image=image,
    prompt=prompt,
    num_inference_steps=50,
    guidance_scale=6.0,
    use_dynamic_cfg=False,
    id_vit_hidden=id_vit_hidden,
    id_cond=id_cond,
    kps_cond=face_kps,
    generator=torch.Generator("cuda").manual_seed(42),
)
"""


def test_consisid_readme_call_runs_unchanged(pipe, parent, conditions) -> None:
    """The call of ConsisID's README (PKU-YuanGroup/ConsisID, "Diffusers API"), on the CPU in 2 steps at the tiny
    model's size (its defaults, 49 frames at 480x720, do not fit the tiny transformer): the same frames."""
    call = CONSISID_README_CALL.replace('"cuda"', '"cpu"').replace("=50,", f"=2, **{dict(MAX_TEXT, **TINY_CALL)!r},")
    names = dict(torch=torch, prompt=PROMPT, image=conditions["image"], id_cond=conditions["id_cond"],
                 id_vit_hidden=conditions["id_vit_hidden"], face_kps=conditions["kps_cond"])  # fmt: skip
    videos = []
    for pipeline in (pipe, parent):
        scope = dict(names, pipe=pipeline)
        exec(call, scope)  # noqa: S102
        videos.append(scope["video"].frames[0])
    assert len(videos[0]) == TINY_FRAMES and isinstance(videos[0][0], PIL.Image.Image)  # what export_to_video takes
    assert all(np.array_equal(ours, theirs) for ours, theirs in zip(*videos, strict=True))


def test_shortcut_and_precomputed_conditions_are_not_mixed(pipe, conditions, astronaut) -> None:
    from_photo = pipe(PROMPT, face_image=astronaut, generator=_generator(), output_type="pt", **SIZE)
    assert from_photo.identity is not None
    with pytest.raises(ValueError, match=r"face_image / identity .*\(id_cond, image\), not both"):
        pipe(image=conditions["image"], prompt=PROMPT, id_cond=conditions["id_cond"], face_image=astronaut, **SIZE)
    with pytest.raises(ValueError, match="give a photo file as face_image="):
        pipe("me.jpg", PROMPT, **SIZE)
    with pytest.raises(ValueError, match="or ConsisID's precomputed image"):
        pipe(PROMPT, **SIZE)


def test_conditions_follow_consisid(pipe, identity) -> None:
    image, id_cond, id_vit_hidden, kps = pipe.identity_conditions(identity, torch.device("cpu"), torch.float32)
    # id_cond = [raw recognition embedding, unit CLIP embedding]; hidden states one per scale.
    raw = identity.recognition * identity.recognition_norm
    np.testing.assert_allclose(id_cond[0, :128].numpy(), raw, rtol=1e-6)
    np.testing.assert_allclose(id_cond[0, 128:].numpy(), identity.clip_embeds, rtol=1e-6)
    assert [h.shape for h in id_vit_hidden] == [(1, 17, 64)]
    # The global-path image: the aligned crop with every non-face region painted white.
    face = np.asarray(image)
    not_face = Parsing(identity.parsing).mask("not_face")
    assert (face[not_face] == 255).all()
    np.testing.assert_array_equal(face[~not_face], identity.crop[~not_face])
    np.testing.assert_allclose(kps, template_points("ffhq"), atol=15)  # keypoints in crop coordinates


def test_photo_and_saved_identity_give_the_same_video(pipe, astronaut, tmp_path: Path) -> None:
    from_photo = pipe(PROMPT, face_image=astronaut, generator=_generator(3), output_type="np", **SIZE)
    saved = from_photo.identity.save(tmp_path / "me.safetensors")
    from_file = pipe(PROMPT, identity=FaceIdentity.load(saved), generator=_generator(3), output_type="np", **SIZE)
    np.testing.assert_array_equal(from_photo.frames, from_file.frames)
    other_seed = pipe(PROMPT, identity=from_photo.identity, generator=_generator(4), output_type="np", **SIZE)
    assert np.abs(other_seed.frames - from_photo.frames).max() > 1e-3


def test_output_types(pipe, identity) -> None:
    pil = pipe(PROMPT, identity=identity, generator=_generator(), **SIZE).frames
    assert len(pil) == 1 and len(pil[0]) == TINY_FRAMES and pil[0][0].size == (TINY_WIDTH, TINY_HEIGHT)
    latents = pipe(PROMPT, identity=identity, generator=_generator(), output_type="latent", **SIZE).frames
    assert latents.shape == (1, 3, 4, TINY_HEIGHT // 8, TINY_WIDTH // 8)
    (video,) = pipe(PROMPT, identity=identity, generator=_generator(), output_type="np", return_dict=False, **SIZE)
    assert video.shape == (1, TINY_FRAMES, TINY_HEIGHT, TINY_WIDTH, 3)


def test_several_faces_largest_or_face_index(pipe, group) -> None:
    shrunk, scale = shrink_long_side(group, pipe.identity_encoder.max_side)  # faces of the photo as encoded
    faces = pipe.identity_encoder.analyzer.detect(shrunk)
    first = pipe.encode_identity(group, None)
    third = pipe.encode_identity(group, None, face_index=2)
    np.testing.assert_allclose(first.face.bbox, faces[0].bbox / scale, rtol=1e-6)
    np.testing.assert_allclose(third.face.bbox, faces[2].bbox / scale, rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(num_frames=8), ValueError, r"4k\+1 \(got 8\); try 5 or 9"),
        (dict(height=72), ValueError, "multiples of 16"),
        (dict(height=96, width=96), ValueError, "fit 64x64 only"),
        (dict(num_inference_steps=0), ValueError, "at least 1"),
    ],
)
def test_bad_arguments(pipe, identity, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        pipe(PROMPT, identity=identity, **{**SIZE, **kwargs})


def test_no_face_makes_no_video(pipe) -> None:
    with pytest.raises(NoFaceError, match="No face found"):
        pipe(PROMPT, face_image=np.full((128, 128, 3), 90, np.uint8), **SIZE)


def test_identity_inputs_are_checked(pipe, identity, astronaut, monkeypatch) -> None:
    with pytest.raises(ValueError, match="exactly one of face_image"):
        pipe(PROMPT, face_image=astronaut, identity=identity, **SIZE)
    bare = IdentityEncoder(pipe.identity_encoder.analyzer).encode(astronaut)  # as `genface identity --save`
    with monkeypatch.context() as patch:
        patch.setattr(pipe, "identity_encoder", None)
        with pytest.raises(GenfaceError, match=r"lacks \['clip_embeds', 'clip_hidden'\]"):
            pipe(PROMPT, identity=bare, **SIZE)
    other = FaceIdentity(**{**identity.__dict__, "clip_embeds": np.zeros(768, np.float32)})
    with pytest.raises(GenfaceError, match="do not fit this transformer"):
        pipe(PROMPT, identity=other, **SIZE)


def test_a_saved_identity_is_completed_from_its_crop_without_mixing_models(pipe, identity, astronaut) -> None:
    """What the pipeline's encoders add (parsing, CLIP) comes from the stored crop, exactly as from the photo;
    a recognition embedding of another model is replaced by this pipeline's, never combined with it."""
    bare = IdentityEncoder(pipe.identity_encoder.analyzer).encode(astronaut)
    completed = pipe.complete_identity(bare)
    for name in ("recognition", "parsing", "clip_embeds", "clip_hidden"):
        np.testing.assert_array_equal(getattr(completed, name), getattr(identity, name))
    assert completed.clip_model == identity.clip_model
    assert pipe.complete_identity(identity).__dict__ == identity.__dict__  # complete: used as it is
    foreign = dataclasses.replace(identity, recognition=np.full(512, 512**-0.5, np.float32), recognition_model="x")
    mixed = pipe.complete_identity(foreign)
    assert mixed.recognition_model == identity.recognition_model and mixed.recognition.shape == (128,)
    assert float(mixed.recognition @ identity.recognition) > 0.95  # the same face, re-embedded from the crop


def test_nan_latents_stop_the_run_at_their_step(pipe, identity) -> None:
    def poison(pipeline, step, timestep, tensors):
        return {"latents": torch.full_like(tensors["latents"], float("nan"))} if step == 1 else {}

    forwards = []
    hook = pipe.transformer.register_forward_hook(lambda *args: forwards.append(1))
    try:
        with pytest.raises(GenfaceError, match="NaN or infinite at denoising step 2 of 4.*bfloat16"):
            pipe(PROMPT, identity=identity, callback_on_step_end=poison, **{**SIZE, "num_inference_steps": 4})
    finally:
        hook.remove()
    assert len(forwards) == 2  # steps 3 and 4 never ran


def test_save_load_round_trip_in_hub_layout(tiny_pack: Path, astronaut, tmp_path: Path) -> None:
    from genface.identity import BiSeNet, ClipVisionEncoder, EvaClipVisionModel, FaceAnalyzer, FaceParser
    from genface.pipelines.identity_video.tiny import TINY_CLIP
    from tests.tiny_models import planted_face

    torch.manual_seed(0)
    encoder = IdentityEncoder(
        FaceAnalyzer("insightface", model_root=tiny_pack),
        FaceParser(BiSeNet()),
        ClipVisionEncoder(EvaClipVisionModel(**TINY_CLIP)),
    )
    pipeline = IdentityVideoPipeline(**tiny_components(512 + 32, 64, 1), identity_encoder=encoder)
    pipeline.set_progress_bar_config(disable=True)
    pipeline.save_pretrained(tmp_path / "model")

    top = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert top == [
        "README.md",
        "face_encoder",
        "model_index.json",
        "scheduler",
        "text_encoder",
        "tokenizer",
        "transformer",
        "vae",
    ]
    face_files = sorted(
        str(p.relative_to(tmp_path / "model" / "face_encoder"))
        for p in (tmp_path / "model" / "face_encoder").rglob("*")
        if p.is_file()
    )
    assert face_files == [
        "EVA02_CLIP_L_336_psz14_s6B.pt", "models/antelopev2/glintr100.onnx",
        "models/antelopev2/scrfd_10g_bnkps.onnx", "parsing_bisenet.pth",
    ]  # fmt: skip
    assert json.loads((tmp_path / "model" / "model_index.json").read_text())["_class_name"] == "ConsisIDPipeline"

    loaded = IdentityVideoPipeline.from_pretrained(tmp_path / "model")
    loaded.set_progress_bar_config(disable=True)
    image = planted_face()[0]
    before = pipeline(PROMPT, face_image=image, generator=_generator(), output_type="np", **SIZE)
    after = loaded(PROMPT, face_image=image, generator=_generator(), output_type="np", **SIZE)
    np.testing.assert_array_equal(after.identity.clip_hidden, before.identity.clip_hidden)
    for name in ("transformer", "vae", "text_encoder"):
        saved, reloaded = getattr(pipeline, name).state_dict(), getattr(loaded, name).state_dict()
        assert all(torch.equal(saved[k], reloaded[k]) for k in saved)
    # Bit-identical weights; reloaded tensors take other CPU kernels (about 5e-7 per transformer call),
    # which two denoising steps at guidance 6 grow to about 3e-4.
    np.testing.assert_allclose(after.frames, before.frames, atol=1e-3)
    # Plain diffusers reads the same folder, as it reads the Hub repository.
    assert type(ConsisIDPipeline.from_pretrained(tmp_path / "model")) is ConsisIDPipeline


def test_folder_without_face_encoders(pipe, tmp_path: Path, astronaut, caplog) -> None:
    bare = IdentityVideoPipeline(**{k: v for k, v in pipe.components.items() if k != "identity_encoder"})
    bare.save_pretrained(tmp_path / "bare")
    loaded = IdentityVideoPipeline.from_pretrained(tmp_path / "bare")
    assert loaded.identity_encoder is None and "No face encoders loaded" in caplog.text
    with pytest.raises(MissingWeightsError, match="no identity encoder"):
        loaded(PROMPT, face_image=astronaut, **SIZE)


def test_attention_backend_choice(pipe, identity) -> None:
    from genface.errors import InvalidArgumentError

    default = pipe(PROMPT, identity=identity, generator=_generator(), output_type="np", **SIZE).frames
    try:
        # "flash" takes no attention bias: it works only because T5 (which passes one) is not pinned.
        pipe.set_attention_backend("flash")
        pinned = pipe(PROMPT, identity=identity, generator=_generator(), output_type="np", **SIZE).frames
        pipe.set_attention_backend("cudnn")  # a GPU-only kernel: pinning it on the CPU must fail
        with pytest.raises(RuntimeError, match="No viable backend"):
            pipe(PROMPT, identity=identity, **SIZE)
        pipe.set_attention_backend("math")
        np.testing.assert_allclose(
            pipe(PROMPT, identity=identity, generator=_generator(), output_type="np", **SIZE).frames, default, atol=1e-3
        )
    finally:
        pipe.set_attention_backend("sdpa")
    np.testing.assert_allclose(pinned, default, atol=1e-3)  # another kernel: summation-order noise only
    with pytest.raises(InvalidArgumentError, match="choose from"):
        pipe.set_attention_backend("xformers")


def test_cache_hooks_skip_work_and_disabling_restores_exact_mode(pipe, identity) -> None:
    """Approximate mode through diffusers' cache hooks: with First-Block Cache at a threshold nothing passes,
    the second block's attention runs only on the first step; PAB reuses attention on every other step; after
    disable_cache the output is exact mode's, bit for bit."""
    from diffusers.hooks import FirstBlockCacheConfig, PyramidAttentionBroadcastConfig

    from genface.errors import InvalidArgumentError

    run = dict(identity=identity, output_type="np", **{**SIZE, "num_inference_steps": 6})
    exact = pipe(PROMPT, generator=_generator(), **run).frames[0]
    attention = pipe.transformer.transformer_blocks[1].attn1
    calls = []
    original = attention.processor

    class Counting:  # diffusers passes a processor's __call__ only the keyword arguments it names
        def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None):
            calls.append(1)
            return original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)

    attention.processor = Counting()
    try:
        pipe.enable_cache(FirstBlockCacheConfig(threshold=1e9))
        cached = pipe(PROMPT, generator=_generator(), **run).frames[0]
        assert len(calls) == 1 and np.abs(cached - exact).max() > 0
        calls.clear()
        pab = PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=2, spatial_attention_timestep_skip_range=(-1, 1001)
        )
        pipe.enable_cache(pab)  # replaces the first
        pipe(PROMPT, generator=_generator(), **run)
        assert len(calls) == 3  # steps 0, 2, 4
        pipe.disable_cache()
        calls.clear()
        np.testing.assert_array_equal(pipe(PROMPT, generator=_generator(), **run).frames[0], exact)
        assert len(calls) == 6
    finally:
        pipe.disable_cache()
        attention.processor = original
    with pytest.raises(InvalidArgumentError, match="Unsupported cache config"):
        pipe.enable_cache(object())
