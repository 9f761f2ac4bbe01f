"""Exact fast mode on CPU with Inductor at tiny size: compiled and fused equal eager, nothing recompiles across
calls with new inputs, every attention kernel the CPU has gives the default's output (compiled too), and after
disable_fast_mode() the output is bit-identical to never enabling it.

Each pipeline is compiled once (2 steps, tiny models); its test reads what that run recorded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import PIL.Image
import pytest
import torch
from torch._dynamo.utils import counters

from genface.errors import InvalidArgumentError
from genface.models.attention import KERNELS
from genface.models.makeup import RefKeyValue
from genface.pipelines import MakeupPipeline, _speed
from genface.pipelines._speed import FastModeMixin
from genface.pipelines.identity_video.tiny import TINY_CALL, tiny_identity_encoder
from genface.pipelines.identity_video.tiny import tiny_pipeline as tiny_video
from genface.pipelines.identity_video.tiny_stand_in import tiny_pipeline as tiny_stand_in_pipeline
from genface.pipelines.identity_video.tiny_vace import tiny_pipeline as tiny_vace_pipeline
from genface.pipelines.identity_video.tiny_wan import TINY_CALL as WAN_CALL
from genface.pipelines.makeup.tiny import TINY_SIZE
from genface.pipelines.makeup.tiny import tiny_pipeline as tiny_makeup
from genface.pipelines.talking_face.tiny import tiny_pipeline as tiny_talk
from genface.samples import speech_like

NO_GPU = {"cuda_graphs": "skipped: no GPU", "attention": "skipped: no GPU"}


@contextlib.contextmanager
def recorded(module: torch.nn.Module) -> Iterator[list[tuple[tuple, dict, torch.Tensor]]]:
    """Every call of ``module`` while open: (args, kwargs, first output)."""
    calls: list[tuple[tuple, dict, torch.Tensor]] = []

    def hook(_: Any, args: tuple, kwargs: dict, output: Any) -> None:
        calls.append((args, kwargs, output[0] if isinstance(output, tuple) else output.sample))

    handle = module.register_forward_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


@torch.no_grad()
def replay(module: torch.nn.Module, calls: list[tuple[tuple, dict, torch.Tensor]]) -> float:
    """Largest difference between the recorded outputs and ``module`` run again on the recorded inputs, in units
    of the output's largest magnitude where that exceeds 1 (float32 rounding scales with it)."""
    worst = 0.0
    for args, kwargs, expected in calls:
        out = module(*args, **kwargs)
        out = out[0] if isinstance(out, tuple) else out.sample
        worst = max(worst, float((out - expected).abs().max() / expected.abs().max().clamp(min=1)))
    return worst


def state(module: torch.nn.Module) -> tuple[list[str], list[str]]:
    """What fast mode must leave as it found: parameter names and attention processor types."""
    processors = [type(m.processor).__name__ for m in module.modules() if hasattr(m, "processor")]
    return sorted(module.state_dict()), processors


def exercise(
    pipe: Any,
    denoiser: torch.nn.Module,
    run: Callable[..., np.ndarray],
    variants: list[dict],
    around: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict:
    """Everything the test checks, for one pipeline: eager run, fused-only and compiled runs (replaying the eager
    denoiser calls inside ``around()``: what a call sets up besides the denoiser's inputs), calls with new inputs
    under ``error_on_recompile``, and the run after disabling."""
    found = {"state": state(denoiser)}
    with recorded(denoiser) as calls:
        found["eager"] = run()
    found["fused_report"] = pipe.enable_fast_mode(compile=False)
    found["fused_state"] = state(denoiser)
    with around():
        found["fused_difference"] = replay(denoiser, calls)
    found["fused_output"] = run()
    pipe.disable_fast_mode()
    graphs, breaks = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    found["report"] = pipe.enable_fast_mode()
    found["fast_output"] = run()  # compiles
    with around():
        found["compiled_difference"] = replay(denoiser, calls)
    found["graphs"] = counters["stats"]["unique_graphs"] - graphs
    with torch._dynamo.config.patch(error_on_recompile=True):
        for variant in variants:
            run(**variant)
    found["graphs_after_variants"] = counters["stats"]["unique_graphs"] - graphs
    found["graph_breaks"] = sum(counters["graph_break"].values()) - breaks
    pipe.disable_fast_mode()
    found["disabled_state"] = state(denoiser)
    found["disabled_output"] = run()
    return found


@pytest.fixture(scope="module")
def video(dlib_analyzer, portrait, astronaut) -> dict:
    pipe = tiny_video(tiny_identity_encoder(dlib_analyzer))
    pipe.set_progress_bar_config(disable=True)
    person, other = (pipe.identity_encoder.encode(photo) for photo in (portrait, astronaut))

    def run(prompt: str = "a person smiling", seed: int = 0, identity: Any = person) -> np.ndarray:
        generator = torch.Generator().manual_seed(seed)
        return pipe(prompt, identity=identity, num_inference_steps=2, generator=generator, output_type="np",
                    **TINY_CALL).frames  # fmt: skip

    variants = [dict(prompt="a man in the rain", seed=1), dict(identity=other, seed=2)]
    found = exercise(pipe, pipe.transformer, run, variants)
    found["kernels"], found["refused"] = {}, {}
    for kernel in KERNELS:  # attention alone, eager
        try:
            found["kernels"][kernel] = (pipe.enable_fast_mode(compile=False, fuse_qkv=False, attention=kernel), run())
        except InvalidArgumentError as exc:
            found["refused"][kernel] = (str(exc), pipe.fast_mode["attention"])  # what was on before
    graphs, breaks = counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())
    found["forced_report"] = pipe.enable_fast_mode(attention="math")  # compiled again, under another kernel
    found["forced_output"] = run()
    found["forced_graphs"] = counters["stats"]["unique_graphs"] - graphs
    found["forced_breaks"] = sum(counters["graph_break"].values()) - breaks
    pipe.disable_fast_mode()
    return found


@pytest.fixture(scope="module")
def makeup(dlib_analyzer, portrait, astronaut) -> dict:
    pipe: MakeupPipeline = tiny_makeup(dlib_analyzer)
    pipe.set_progress_bar_config(disable=True)
    source, look, other = (np.asarray(PIL.Image.fromarray(photo).resize((TINY_SIZE, TINY_SIZE)))
                           for photo in (astronaut, portrait, astronaut[::-1]))  # fmt: skip

    def run(reference: np.ndarray = look, strength: float = 1.0, seed: int = 0, prompt: str | None = None) -> Any:
        generator = torch.Generator().manual_seed(seed)
        return pipe.edit(source, reference, strength=strength, prompt=prompt, size=TINY_SIZE, num_inference_steps=2,
                         generator=generator)  # fmt: skip

    variants = [dict(strength=0.5, seed=1), dict(strength=1.7, reference=other, prompt="red lips.")]
    return exercise(pipe, pipe.transformer, run, variants)


@pytest.fixture(scope="module")
def talk(dlib_analyzer, astronaut, portrait) -> dict:
    pipe = tiny_talk(dlib_analyzer)
    pipe.set_progress_bar_config(disable=True)
    speech = speech_like(1.0)

    def run(face: np.ndarray = astronaut, seconds: float = 0.2) -> np.ndarray:
        audio = speech[: int(seconds * 16000)]
        return pipe(face, audio, audio_rate=16000, batch_size=3, measure=False).frames  # 5 frames: 3 + 2 (padded)

    variants = [dict(seconds=0.29), dict(face=portrait, seconds=0.12)]  # 7 and 3 frames, another person
    return exercise(pipe, pipe.unet, run, variants)


def _wan(pipe: Any, portrait: np.ndarray, astronaut: np.ndarray, around: Callable = contextlib.nullcontext) -> dict:
    """``exercise`` on a tiny Wan pipeline, with a face; new prompts, seeds and faces as the variants."""
    pipe.set_progress_bar_config(disable=True)

    def run(prompt: str = "a person smiling", seed: int = 0, face: np.ndarray = portrait) -> np.ndarray:
        return pipe(prompt, face_image=face, num_inference_steps=2, generator=torch.Generator().manual_seed(seed),
                    max_sequence_length=16, measure=False, **WAN_CALL).frames  # fmt: skip

    variants = [dict(prompt="a man in the rain", seed=1), dict(face=astronaut, seed=2)]
    return exercise(pipe, pipe.transformer, run, variants, around)


@pytest.fixture(scope="module")
def stand_in(dlib_analyzer, portrait, astronaut) -> dict:
    pipe = tiny_stand_in_pipeline(dlib_analyzer)

    @contextlib.contextmanager
    def referenced() -> Iterator[None]:  # the face's reference tokens, as a call sets them
        identity = pipe.identity_encoder.encode(portrait)
        latents = pipe.reference_latents(pipe.reference_image(portrait, identity.face))
        for reference in pipe.states:
            reference.clear()
            reference.latents = latents
        try:
            yield
        finally:
            for reference in pipe.states:
                reference.latents = None
                reference.clear()

    return _wan(pipe, portrait, astronaut, referenced)


@pytest.fixture(scope="module")
def vace(dlib_analyzer, portrait, astronaut) -> dict:
    return _wan(tiny_vace_pipeline(dlib_analyzer), portrait, astronaut)


PIPELINES = ["video", "makeup", "talk", "stand_in", "vace"]
#: While fused: how many attention layers have a to_qkv projection, and the processors of all attention layers.
FUSED = {
    "video": (2, {"FusedCogVideoXAttnProcessor2_0"}),
    "makeup": (2, {"MakeupAttnProcessor"}),  # the injector's processors, reading FLUX's fused projections
    "talk": (4, {"FusedAttnProcessor2_0"}),
    "stand_in": (2, {"StandInAttnProcessor", "WanAttnProcessor"}),  # Stand-In's self-attention, Wan's cross
    "vace": (5, {"WanAttnProcessor"}),  # 3 blocks and 2 VACE blocks
}
BLOCKS = {
    "video": "applied: 2 blocks (ConsisIDBlock), Inductor, fullgraph",
    "makeup": "applied: 2 blocks (FluxSingleTransformerBlock, FluxTransformerBlock), Inductor, fullgraph",
    "talk": "applied: 5 blocks (CrossAttnDownBlock2D, CrossAttnUpBlock2D, DownBlock2D, UNetMidBlock2DCrossAttn, "
    "UpBlock2D), Inductor, fullgraph",
    "stand_in": "applied: 2 blocks (WanTransformerBlock), Inductor, fullgraph",
    "vace": "applied: 5 blocks (WanTransformerBlock, WanVACETransformerBlock), Inductor, fullgraph",
}


@pytest.mark.parametrize("name", PIPELINES)  # one test per pipeline, so that under xdist each compiles once
def test_fast_mode_is_exact_compiled_once_and_off_bit_exactly(name: str, request: pytest.FixtureRequest) -> None:
    found = request.getfixturevalue(name)
    assert found["report"] == {"fuse_qkv": "applied", "compile": BLOCKS[name], **NO_GPU}
    assert found["fused_report"] == {"fuse_qkv": "applied", "compile": "off (asked)", **NO_GPU}
    # every self-attention reads one fused projection (ConsisID's by hand: its own fuse_qkv_projections skips them)
    parameters, processors = found["fused_state"]
    assert sum(key.endswith("to_qkv.weight") for key in parameters) == FUSED[name][0]
    assert set(processors) == FUSED[name][1]
    # fused = unfused and compiled = eager, for the denoiser on every input of the eager run (float32) ...
    assert found["fused_difference"] <= 1e-5  # float rounding of one matmul instead of three
    assert found["compiled_difference"] <= 1e-5
    # ... and for the whole run (video: float frames after 2 steps; the others uint8)
    for output in ("fused_output", "fast_output"):
        difference = np.abs(np.asarray(found[output], np.float64) - np.asarray(found["eager"], np.float64))
        assert difference.max() <= (1 if name in ("makeup", "talk") else 1e-3), output
    # fullgraph=True compiles refuse graph breaks; new prompts, seeds, strengths, identities, makeup references,
    # faces and audio lengths ran under error_on_recompile, and made no new graph (Stand-In: one graph per block for
    # the first call of a reference, which computes its keys and values, one for the calls that reuse them)
    assert found["graphs"] >= 1 and found["graphs_after_variants"] == found["graphs"]
    assert found["graph_breaks"] == 0
    # off: the default again, bit for bit, with the same parameters and processors
    assert np.array_equal(found["disabled_output"], found["eager"])
    assert found["disabled_state"] == found["state"]


def test_each_attention_kernel_the_cpu_has_gives_the_default_output(video: dict) -> None:
    """Forced kernels: each one the CPU runs matches the default within float rounding, eager and compiled (the
    blocks are traced again under the new kernel, with no graph break); the others are refused in one line that
    changes nothing."""
    assert {"flash", "math"} <= video["kernels"].keys()
    for kernel, (report, frames) in video["kernels"].items():
        assert report["attention"] == f"applied: {kernel} (asked)"
        assert np.abs(frames - video["eager"]).max() <= 1e-3, kernel
    assert video["forced_report"]["attention"] == "applied: math (asked)"
    assert np.abs(video["forced_output"] - video["eager"]).max() <= 1e-3
    assert video["forced_graphs"] >= 1 and video["forced_breaks"] == 0
    refused = video["refused"]
    assert refused["cudnn"] == (
        "Attention kernel 'cudnn' is unavailable here: PyTorch has no cudnn kernel for float32 attention of head "
        "size 16 on cpu.", "applied: flash (asked)"
    )  # fmt: skip
    assert refused["xformers"][0].startswith("Attention kernel 'xformers' does not reach this denoiser")
    assert "\n" not in "".join(message for message, _ in refused.values())


def test_auto_measures_at_the_published_models_attention_shapes() -> None:
    """The shapes fast mode measures kernels at are those of the published configs (and of the device run)."""
    from types import SimpleNamespace

    from benchmarks.device import ATTENTION_SHAPES
    from genface.pipelines import IdentityVideoPipeline

    consisid = dict(sample_frames=49, temporal_compression_ratio=4, sample_height=60, sample_width=90, patch_size=2,
                    max_text_seq_length=226, num_attention_heads=48, attention_head_dim=64)  # fmt: skip
    video = SimpleNamespace(transformer=SimpleNamespace(config=SimpleNamespace(**consisid)))
    assert IdentityVideoPipeline.attention_shape(video) == ATTENTION_SHAPES["full"]["consisid"]
    flux = SimpleNamespace(num_attention_heads=24, attention_head_dim=128)
    makeup = SimpleNamespace(transformer=SimpleNamespace(config=flux), kontext=SimpleNamespace(vae_scale_factor=8))
    assert MakeupPipeline.attention_shape(makeup) == ATTENTION_SHAPES["full"]["flux-kontext"]


@pytest.mark.parametrize("dispatcher", [False, True])
def test_auto_pins_the_kernel_measured_fastest_on_a_gpu(dispatcher: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    asked = []

    def pick(device: torch.device, dtype: torch.dtype, shape: tuple, candidates: tuple) -> tuple:
        asked.append((device.type, dtype, shape, candidates))
        return "cudnn", {"flash": 0.002, "cudnn": 0.001}

    monkeypatch.setattr(_speed, "pick_kernel", pick)
    pipe = _Stub("cuda", False)
    pipe.attention_dispatcher, pipe.attention_shape = dispatcher, lambda: (2, 48, 17776, 64)
    report = pipe.enable_fast_mode()
    assert report["attention"] == "applied: cudnn (fastest at [2, 48, 17776, 64]: flash 2.00 ms, cudnn 1.00 ms)"
    candidates = ("flash", "efficient", "cudnn", "flash4", *(("xformers",) if dispatcher else ()))  # math: never
    assert asked == [("cuda", torch.float32, (2, 48, 17776, 64), candidates)]
    assert len(pipe.block._forward_pre_hooks) == 1 and len(pipe.block._forward_hooks) == 1  # the pin
    pipe.disable_fast_mode()
    assert not pipe.block._forward_pre_hooks and not pipe.block._forward_hooks
    assert pipe.enable_fast_mode(attention=None)["attention"] == "off (asked)"
    with pytest.raises(InvalidArgumentError, match="Attention kernel 'fa3' is unknown; choose 'auto', None or one of"):
        pipe.enable_fast_mode(attention="fa3")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_tensor_strength_scales_as_a_number_does(dtype: torch.dtype) -> None:
    """The makeup strength reaches the injector as a 0-d float32 tensor (no recompile per strength), with the
    result of multiplying by the number (PyTorch scales half tensors by a number in float32)."""
    torch.manual_seed(0)
    weights = RefKeyValue(32, 8, 16).to(dtype)
    ref = torch.randn(1, 5, 32, dtype=dtype)
    with torch.no_grad():
        for level in (0.7, 1.3):
            by_tensor = weights(ref, torch.tensor(level))
            assert all(torch.equal(a, b) for a, b in zip(by_tensor, weights(ref, level), strict=True))
            value = weights.ref_to_v_lora_up(weights.ref_to_v_lora_down(ref)) * level  # the number, as before
            assert torch.equal(by_tensor[1], value.unflatten(-1, (-1, 16)))


class _Stub(FastModeMixin):
    """A pipeline on ``device`` with one block, whose compile calls are recorded instead of run."""

    def __init__(self, device: str, cuda_graphs_by_default: bool) -> None:
        self._execution_device = torch.device(device)
        self.fast_cuda_graphs = cuda_graphs_by_default
        self.block, self.fused, self.compiled = torch.nn.Linear(2, 2), False, []
        self.block.compile = lambda **options: self.compiled.append(options)

    def fast_blocks(self) -> list[torch.nn.Module]:
        return [self.block]

    def fast_denoiser(self) -> torch.nn.Module:
        return self.block

    def fuse_projections(self, fuse: bool) -> None:
        self.fused = fuse


@pytest.mark.parametrize(
    ("device", "by_default", "asked", "mode", "graphs"),
    [
        ("cuda", True, None, "reduce-overhead", "applied (compile mode reduce-overhead)"),
        ("cuda", False, None, None, "skipped: off by default here (long denoising steps; cuda_graphs=True forces it)"),
        ("cuda", False, True, "reduce-overhead", "applied (compile mode reduce-overhead)"),
        ("cuda", True, False, None, "off (asked)"),
        ("cpu", True, True, None, "skipped: no GPU"),
    ],
)
def test_cuda_graphs_only_on_a_gpu_and_where_the_pipeline_or_caller_asks(
    device: str, by_default: bool, asked: bool | None, mode: str | None, graphs: str
) -> None:
    pipe = _Stub(device, by_default)
    report = pipe.enable_fast_mode(cuda_graphs=asked)
    assert pipe.compiled == [dict(fullgraph=True, dynamic=False, mode=mode)] and pipe.fused
    assert report["cuda_graphs"] == graphs
    assert report["attention"] == ("PyTorch's SDPA kernel choice" if device == "cuda" else "skipped: no GPU")
    pipe.disable_fast_mode()
    assert not pipe.fused and pipe.fast_mode is None


def test_saving_is_refused_while_the_projections_are_fused(tmp_path) -> None:
    pipe = tiny_video()
    pipe.identity_encoder = None  # the tiny one is dlib's, which has no published layout to save
    pipe.enable_fast_mode(compile=False)
    with pytest.raises(InvalidArgumentError, match="disable_fast_mode"):
        pipe.save_pretrained(tmp_path / "fused")
    assert not (tmp_path / "fused").exists()
    pipe.disable_fast_mode()
    pipe.save_pretrained(tmp_path / "plain")
    assert (tmp_path / "plain" / "transformer").is_dir()
