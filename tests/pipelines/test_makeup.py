"""MakeupPipeline on tiny random FLUX Kontext components: parity with diffusers' FluxKontextPipeline,
strength and regions, paste-back into the full photo, metrics, bad input and loading."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import FluxKontextPipeline

from genface.errors import FaceTooSmallError, InvalidArgumentError, NoFaceError
from genface.media import to_uint8
from genface.pipelines import MakeupPipeline
from genface.pipelines.makeup.tiny import TINY_SIZE, tiny_components, tiny_injector, tiny_pipeline

RUN = dict(size=TINY_SIZE, num_inference_steps=2)
#: The tiny model's size as Kontext's arguments (its VAE does not downsample: 1024x1024 would not fit).
TINY_KONTEXT = dict(height=TINY_SIZE, width=TINY_SIZE, max_area=TINY_SIZE**2, _auto_resize=False)


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def pipe(dlib_analyzer) -> MakeupPipeline:
    pipeline = tiny_pipeline(dlib_analyzer)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def crops(astronaut, portrait) -> tuple[np.ndarray, np.ndarray]:
    source = np.asarray(PIL.Image.fromarray(astronaut).resize((TINY_SIZE, TINY_SIZE)))
    reference = np.asarray(PIL.Image.fromarray(portrait).resize((TINY_SIZE, TINY_SIZE)))
    return source, reference


def _kontext(pipe: MakeupPipeline, crop: np.ndarray, seed: int = 0) -> np.ndarray:
    components = {k: v for k, v in pipe.components.items() if k != "injector"}
    reference = FluxKontextPipeline(**components)
    reference.set_progress_bar_config(disable=True)
    pipe.injector.remove(pipe.transformer)  # the plain transformer, as diffusers ships it
    try:
        image = reference(
            image=PIL.Image.fromarray(crop), prompt="makeup.", height=TINY_SIZE, width=TINY_SIZE,
            num_inference_steps=2, guidance_scale=2.5, generator=_generator(seed), output_type="np",
            max_area=TINY_SIZE**2, _auto_resize=False,
        ).images[0]  # fmt: skip
    finally:
        pipe.injector.install(pipe.transformer)
    return to_uint8(image)


def test_strength_zero_and_no_reference_equal_plain_kontext(pipe, crops) -> None:
    source, reference = crops
    expected = _kontext(pipe, source)
    strength_zero = pipe.edit(source, reference, strength=0.0, generator=_generator(), **RUN)
    no_reference = pipe.edit(source, None, generator=_generator(), **RUN)
    np.testing.assert_array_equal(strength_zero, expected)
    np.testing.assert_array_equal(no_reference, expected)
    with_makeup = pipe.edit(source, reference, strength=1.0, generator=_generator(), **RUN)
    assert np.abs(with_makeup.astype(int) - expected.astype(int)).max() > 0


def test_strength_and_reference_change_the_result(pipe, crops) -> None:
    source, reference = crops
    base = pipe.edit(source, reference, strength=1.0, generator=_generator(), **RUN)
    stronger = pipe.edit(source, reference, strength=2.0, generator=_generator(), **RUN)
    other_reference = pipe.edit(source, reference[::-1], strength=1.0, generator=_generator(), **RUN)
    assert np.abs(stronger.astype(int) - base.astype(int)).max() > 0
    assert np.abs(other_reference.astype(int) - base.astype(int)).max() > 0
    again = pipe.edit(source, reference, strength=1.0, generator=_generator(), **RUN)
    np.testing.assert_array_equal(again, base)  # deterministic under a seed


@pytest.fixture(scope="module")
def bare(dlib_analyzer) -> tuple[MakeupPipeline, FluxKontextPipeline]:
    """A makeup pipeline without injector and diffusers' Kontext on the same modules."""
    components = tiny_components()
    ours = MakeupPipeline(**components, face_analyzer=dlib_analyzer)
    kontext = FluxKontextPipeline(**components)
    for pipeline in (ours, kontext):
        pipeline.set_progress_bar_config(disable=True)
    return ours, kontext


def _scale_latents(pipeline, step, timestep, tensors):
    return {"latents": tensors["latents"] * 0.5} if step == 0 else {}


def _scale_prompt(pipeline, step, timestep, tensors):
    return {"prompt_embeds": tensors["prompt_embeds"] * 0.9}


def _embeds(seed: int) -> dict[str, torch.Tensor]:
    return {"prompt_embeds": torch.randn(1, 8, 32, generator=_generator(seed)),
            "pooled_prompt_embeds": torch.randn(1, 32, generator=_generator(seed + 1))}  # fmt: skip


#: Every Kontext argument the makeup edit passes on -> a call setting it.
KONTEXT_CASES: dict[str, dict[str, Any]] = {
    "prompt_2": {"prompt_2": "red lipstick"},
    "negative_prompt": {"negative_prompt": "blurry", "true_cfg_scale": 2.0},
    "negative_prompt_2": {"negative_prompt": "blurry", "negative_prompt_2": "dark", "true_cfg_scale": 2.0},
    "true_cfg_scale": {"true_cfg_scale": 1.5, "negative_prompt": "pale"},
    "sigmas": {"sigmas": [1.0, 0.4]},
    "latents": {"latents": torch.randn(1, (TINY_SIZE // 2) ** 2, 4, generator=_generator(3))},
    "prompt_embeds": {"prompt": None, **_embeds(4)},
    "pooled_prompt_embeds": {"prompt": None, **_embeds(6)},
    "ip_adapter_image": {"ip_adapter_image": PIL.Image.new("RGB", (TINY_SIZE, TINY_SIZE))},
    "ip_adapter_image_embeds": {"ip_adapter_image_embeds": [torch.zeros(1, 1, 32)]},
    "negative_ip_adapter_image": {"negative_ip_adapter_image": PIL.Image.new("RGB", (TINY_SIZE, TINY_SIZE))},
    "negative_ip_adapter_image_embeds": {"negative_ip_adapter_image_embeds": [torch.zeros(1, 1, 32)]},
    "negative_prompt_embeds": {
        "true_cfg_scale": 2.0,
        "negative_prompt_embeds": _embeds(8)["prompt_embeds"],
        "negative_pooled_prompt_embeds": _embeds(8)["pooled_prompt_embeds"],
    },  # fmt: skip
    "negative_pooled_prompt_embeds": {
        "true_cfg_scale": 2.0,
        "negative_prompt_embeds": _embeds(10)["prompt_embeds"],
        "negative_pooled_prompt_embeds": _embeds(10)["pooled_prompt_embeds"],
    },  # fmt: skip
    "joint_attention_kwargs": {"joint_attention_kwargs": {"scale": 1.0}},
    "callback_on_step_end": {"callback_on_step_end": _scale_latents},
    "callback_on_step_end_tensor_inputs": {
        "callback_on_step_end": _scale_prompt,
        "callback_on_step_end_tensor_inputs": ["latents", "prompt_embeds"],
    },  # fmt: skip
    "max_sequence_length": {"max_sequence_length": 64},
}


def test_makeup_is_not_a_kontext_pipeline_but_handles_every_kontext_argument(pipe) -> None:
    """Fails when diffusers adds a Kontext argument genface does not handle (forward it or refuse it)."""
    from genface.pipelines.makeup.pipeline import KONTEXT_FORWARDED, KONTEXT_SET_HERE

    assert not isinstance(pipe, FluxKontextPipeline) and isinstance(pipe.kontext, FluxKontextPipeline)
    kontext = set(inspect.signature(FluxKontextPipeline.__call__).parameters) - {"self"}
    named = set(inspect.signature(MakeupPipeline.__call__).parameters)
    assert not set(KONTEXT_FORWARDED) & set(KONTEXT_SET_HERE)
    assert set(KONTEXT_FORWARDED) | set(KONTEXT_SET_HERE) <= kontext
    assert kontext <= named | set(KONTEXT_FORWARDED) | set(KONTEXT_SET_HERE)
    assert set(KONTEXT_FORWARDED) == set(KONTEXT_CASES)


def _outcome(run: Callable[[], np.ndarray]) -> tuple:
    """The result, or the error diffusers raised (the IP-Adapter inputs need an IP-Adapter loaded)."""
    try:
        return ("image", run())
    except Exception as error:  # noqa: BLE001 (compared with diffusers' own outcome)
        return ("error", type(error), str(error))


@pytest.mark.parametrize("name", sorted(KONTEXT_CASES))
def test_every_forwarded_kontext_argument_acts_as_in_diffusers(bare, crops, name) -> None:
    ours, kontext = bare
    source = crops[0]
    case = {"prompt": "makeup.", "num_inference_steps": 2, "guidance_scale": 2.5, **KONTEXT_CASES[name]}
    expected = _outcome(lambda: to_uint8(kontext(
        image=PIL.Image.fromarray(source), height=TINY_SIZE, width=TINY_SIZE, max_area=TINY_SIZE**2,
        _auto_resize=False, output_type="np", generator=_generator(), **case,
    ).images[0]))  # fmt: skip
    result = _outcome(lambda: ours.edit(source, size=TINY_SIZE, generator=_generator(), **case))
    assert result[0] == expected[0] and (
        np.array_equal(result[1], expected[1]) if result[0] == "image" else result == expected
    )


@pytest.mark.parametrize("name", ["image", "height", "width", "max_area", "_auto_resize", "num_images_per_prompt"])
def test_kontext_arguments_the_makeup_call_sets_are_refused(pipe, astronaut, portrait, crops, name) -> None:
    with pytest.raises(InvalidArgumentError, match=f"sets Kontext's {name} itself"):
        pipe(astronaut, portrait, **RUN, **{name: 1})
    with pytest.raises(InvalidArgumentError, match=f"sets Kontext's {name} itself"):
        pipe.edit(*crops, **RUN, **{name: 1})
    with pytest.raises(TypeError, match="unexpected keyword argument 'refrence'"):
        pipe(astronaut, portrait, refrence=portrait, **RUN)
    with pytest.raises(InvalidArgumentError, match="sets Kontext's output_type itself"):
        pipe.edit(*crops, output_type="pil", **RUN)


KONTEXT_DOCS_CALL = """
image = pipe(
    image=image,
    prompt=prompt,
    guidance_scale=2.5,
    generator=torch.Generator().manual_seed(42),
).images[0]
"""


def test_kontext_docs_call_runs_unchanged_on_pipe_kontext(pipe, crops) -> None:
    """diffusers' FluxKontextPipeline example, on MakeupPipeline.kontext (the injector installed) and on diffusers'
    own pipeline (the injector removed), in 2 steps at the tiny model's size: the same image."""
    call = KONTEXT_DOCS_CALL.replace("=2.5,", f"=2.5, num_inference_steps=2, **{TINY_KONTEXT!r},")
    scope = dict(torch=torch, prompt="Make Pikachu hold a sign", image=PIL.Image.fromarray(crops[0]))
    ours = dict(scope, pipe=pipe.kontext)
    exec(call, ours)  # noqa: S102
    reference = FluxKontextPipeline(**{k: v for k, v in pipe.components.items() if k != "injector"})
    reference.set_progress_bar_config(disable=True)
    pipe.injector.remove(pipe.transformer)
    try:
        theirs = dict(scope, pipe=reference)
        exec(call, theirs)  # noqa: S102
    finally:
        pipe.injector.install(pipe.transformer)
    assert isinstance(ours["image"], PIL.Image.Image)
    np.testing.assert_array_equal(np.asarray(ours["image"]), np.asarray(theirs["image"]))


def test_return_dict_false_gives_diffusers_tuple(pipe, astronaut, portrait) -> None:
    out = pipe(astronaut, portrait, generator=_generator(), output_type="np", **RUN)
    (images,) = pipe(astronaut, portrait, generator=_generator(), output_type="np", return_dict=False, **RUN)
    np.testing.assert_array_equal(images[0], out.images[0])
    with pytest.raises(InvalidArgumentError, match="output_type must be 'pil' or 'np'"):
        pipe(astronaut, portrait, output_type="latent", **RUN)


def _away_from_the_face(pipe: MakeupPipeline, image: np.ndarray) -> np.ndarray:
    """Pixels outside the pasted square (twice the face box) and its feathered edge."""
    face = pipe.face_analyzer.get(image)
    half = max(face.width, face.height) + 6  # half the square, plus the feathered edge
    cx, cy = (face.bbox[0] + face.bbox[2]) / 2, (face.bbox[1] + face.bbox[3]) / 2
    ys, xs = np.mgrid[: image.shape[0], : image.shape[1]]
    return (np.abs(xs - cx) > half) | (np.abs(ys - cy) > half)


def test_full_photo_changes_only_around_the_face(pipe, astronaut, portrait) -> None:
    out = pipe(astronaut, portrait, generator=_generator(), output_type="np", **RUN)
    result = out.images[0]
    assert result.shape == astronaut.shape and result.dtype == np.uint8
    changed = np.abs(result.astype(int) - astronaut.astype(int)).sum(-1) > 0
    assert not changed[_away_from_the_face(pipe, astronaut)].any()
    assert changed.sum() > 1000
    assert set(out.makeup_similarity) <= {"lips", "skin", "brows"}
    assert all(0.0 <= v <= 1.0 for v in out.makeup_similarity.values())
    assert out.facesim is None or -1.0 <= out.facesim <= 1.0


def test_written_file_adds_only_the_watermark_spread_over_the_photo(pipe, group, portrait, tmp_path) -> None:
    """The README's claim: the result keeps the photo exactly away from the face; the file that genface makeup
    and the web demo write differs from it only by the invisible watermark, which touches most pixels there."""
    from genface.media import load_image
    from genface.provenance import save_marked_image, watermark

    result = pipe(group, portrait, generator=_generator(), output_type="np", **RUN).images[0]
    away = _away_from_the_face(pipe, group)
    assert away.mean() > 0.9 and np.array_equal(result[away], group[away])
    written = load_image(save_marked_image(tmp_path / "made_up.png", result, "makeup", "tiny"))
    np.testing.assert_array_equal(written, watermark(result))
    difference = written[away].astype(float) - group[away]
    assert (difference != 0).any(-1).mean() > 0.8
    assert 35 < 10 * np.log10(255**2 / (difference**2).mean()) < 45  # PSNR, dB


def test_regions_confine_the_change(pipe, astronaut, portrait) -> None:
    everything = pipe(astronaut, portrait, generator=_generator(), output_type="np", **RUN).images[0]
    lips_only = pipe(astronaut, portrait, regions=["lips"], generator=_generator(), output_type="np", **RUN).images[0]
    changed_all = (np.abs(everything.astype(int) - astronaut.astype(int)).sum(-1) > 0).sum()
    changed_lips = np.abs(lips_only.astype(int) - astronaut.astype(int)).sum(-1) > 0
    assert 0 < changed_lips.sum() < changed_all
    # Outside the (feathered) parsed region of the crop, the source is untouched.
    from genface.pipelines.makeup.pipeline import _feather, square_crop_matrix

    face = pipe.face_analyzer.get(astronaut)
    matrix = square_crop_matrix(face, astronaut.shape, TINY_SIZE)
    import cv2

    crop = cv2.warpAffine(
        astronaut, matrix, (TINY_SIZE, TINY_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    mask = _feather(pipe.face_parser.parse(crop).mask("lips"), TINY_SIZE)
    full = cv2.warpAffine(mask, cv2.invertAffineTransform(matrix), astronaut.shape[1::-1], flags=cv2.INTER_LINEAR)
    assert not changed_lips[full == 0].any()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(regions=["lips", "tattoo"]), InvalidArgumentError, r"Unknown face regions \['tattoo'\]; choose from"),
        (dict(strength=-1.0), InvalidArgumentError, "strength must be from 0.0 to 2.0, got -1.0"),
    ],
)
def test_bad_arguments(pipe, astronaut, portrait, kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        pipe(astronaut, portrait, **RUN, **kwargs)


def test_faces_are_required_in_both_photos(pipe, astronaut) -> None:
    blank = np.full((128, 128, 3), 90, np.uint8)
    with pytest.raises(NoFaceError, match="the source photo"):
        pipe(blank, astronaut, **RUN)
    with pytest.raises(NoFaceError, match="the reference photo"):
        pipe(astronaut, blank, **RUN)


def test_small_faces_are_refused(pipe, astronaut, portrait) -> None:
    floor = pipe.face_analyzer.min_face_size
    pipe.face_analyzer.min_face_size = 120  # the astronaut's face box is about 90 px
    try:
        with pytest.raises(FaceTooSmallError, match="the source photo"):
            pipe(astronaut, portrait, **RUN)
    finally:
        pipe.face_analyzer.min_face_size = floor


def test_from_pretrained_with_local_folders(pipe, tmp_path: Path, astronaut, portrait) -> None:
    base = MakeupPipeline(**tiny_components())
    base.save_pretrained(tmp_path / "kontext")
    (tmp_path / "makeup").mkdir()
    torch.save(tiny_injector().state_dict(), tmp_path / "makeup" / "checkpoint.pt")  # the published layout
    with pytest.raises(InvalidArgumentError, match="attention_head_dim"):  # read at FLUX's head size, 128
        MakeupPipeline.from_pretrained(tmp_path / "kontext", injector=tmp_path / "makeup", face_parser=None)
    converted = tmp_path / "converted"
    from genface.models.makeup import MakeupInjector

    MakeupInjector.from_published_checkpoint(
        tmp_path / "makeup" / "checkpoint.pt", attention_head_dim=16
    ).save_pretrained(converted)
    loaded = MakeupPipeline.from_pretrained(
        tmp_path / "kontext", injector=converted, face_analyzer=pipe.face_analyzer, face_parser=pipe.face_parser
    )
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(
        loaded(astronaut, portrait, generator=_generator(), output_type="np", **RUN).images[0],
        pipe(astronaut, portrait, generator=_generator(), output_type="np", **RUN).images[0],
    )


def test_reference_without_makeup_regions_warns(pipe, astronaut, portrait, monkeypatch, caplog) -> None:
    from genface.identity.parsing import Parsing

    real_parse = pipe.face_parser.parse
    calls = []

    def parse(crop):  # the reference is parsed first: make it all background
        calls.append(1)
        return Parsing(np.zeros(crop.shape[:2], np.uint8)) if len(calls) == 1 else real_parse(crop)

    monkeypatch.setattr(pipe.face_parser, "parse", parse)
    pipe(astronaut, portrait, generator=_generator(), **RUN)
    assert "no visible lips or skin" in caplog.text


def test_reference_enters_as_flux_makeup_eval_py(pipe, astronaut, portrait, monkeypatch) -> None:
    """eval.py resizes the whole reference photo to the model's size (PIL's default filter) and masks it."""
    photo = np.pad(astronaut, ((0, 0), (0, 200), (0, 0)), mode="edge")  # not square: eval.py stretches it
    given = []
    real = pipe.reference_conditions
    monkeypatch.setattr(pipe, "reference_conditions", lambda crop, *args: given.append(crop) or real(crop, *args))
    pipe(portrait, photo, generator=_generator(), **RUN)
    expected = np.array(PIL.Image.fromarray(photo).resize((TINY_SIZE, TINY_SIZE)).convert("RGB"))
    np.testing.assert_array_equal(given[0], pipe.mask_reference(expected)[0])
    pipe(portrait, photo, generator=_generator(), reference_framing="face", **RUN)  # the square around the face
    assert given[1].shape == (TINY_SIZE, TINY_SIZE, 3) and not np.array_equal(given[1], given[0])
    with pytest.raises(InvalidArgumentError, match="reference_framing"):
        pipe(portrait, photo, reference_framing="crop", **RUN)


def test_reference_latents_are_drawn_from_the_vae_posterior(pipe, crops) -> None:
    from einops import rearrange

    _, reference = crops
    # eval.py: ToTensor, Normalize(0.5, 0.5), vae.encode(...).latent_dist.sample(), shift and scale, 2x2 patches.
    pixels = (torch.tensor(reference).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    latents = pipe.vae.encode(pixels).latent_dist.sample(_generator(7))
    latents = (latents - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor
    expected = pipe.injector.ref_image_proj_model(
        rearrange(latents, "b c (h ph) (w pw) -> b (h w) (c ph pw)", ph=2, pw=2)
    )
    conditions = pipe.reference_conditions(reference, TINY_SIZE, 1.0, _generator(7))
    torch.testing.assert_close(conditions["ref_hidden_states"], expected, atol=1e-5, rtol=1e-5)


def test_published_defaults_run_25_steps(pipe, astronaut, portrait) -> None:
    from genface.cli import build_parser

    steps = []
    pipe(astronaut, portrait, size=TINY_SIZE, callback_on_step_end=lambda p, i, t, kw: steps.append(i) or kw)
    assert len(steps) == 25  # eval.py's num_inference_steps
    args = build_parser().parse_args(["makeup", "--face", "a.jpg", "--reference", "b.jpg", "--out", "c.png"])
    assert args.steps == 25


def test_unreachable_hub_says_how_to_work_offline(monkeypatch, tmp_path: Path) -> None:
    import huggingface_hub.constants

    from genface.errors import OfflineError
    from genface.pipelines.makeup.tiny import tiny_injector

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OfflineError, match="hf download qihoo360/FLUX-Makeup"):
        MakeupPipeline.from_pretrained(tmp_path)  # the injector's repository is fetched first
    tiny_injector().save_pretrained(tmp_path / "injector")
    with pytest.raises(OfflineError, match=r"hf download black-forest-labs/FLUX.1-Kontext-dev --local-dir DIR"):
        MakeupPipeline.from_pretrained(injector=tmp_path / "injector", face_parser=None)
