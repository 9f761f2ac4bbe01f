"""FLUX-Makeup reference injector: published layout, published math, clean install/remove on diffusers' Flux."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from diffusers import FluxTransformer2DModel

from genface.errors import MissingWeightsError, UnsafeWeightsError
from genface.models.makeup import MakeupAttnProcessor, MakeupInjector, reference_position_ids

TINY = dict(num_layers=1, num_single_layers=2, inner_dim=32, in_channels=16, rank=8, attention_head_dim=16)


@pytest.fixture()
def transformer() -> FluxTransformer2DModel:
    torch.manual_seed(0)
    return FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
    ).eval()  # fmt: skip


@pytest.fixture()
def injector() -> MakeupInjector:
    torch.manual_seed(1)
    model = MakeupInjector(**TINY)
    with torch.no_grad():  # the published init zeroes the up-projections: make every weight matter
        for param in model.parameters():
            param.normal_(0, 0.3)
    return model.eval()


def _inputs(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    rows, cols = 4, 4
    img_ids = torch.zeros(rows * cols, 3)
    img_ids[:, 1] = torch.arange(rows).repeat_interleave(cols)
    img_ids[:, 2] = torch.arange(cols).repeat(rows)
    return {
        "hidden_states": torch.randn(1, rows * cols, 16, generator=gen),
        "encoder_hidden_states": torch.randn(1, 6, 32, generator=gen),
        "pooled_projections": torch.randn(1, 32, generator=gen),
        "timestep": torch.tensor([0.5]),
        "img_ids": img_ids,
        "txt_ids": torch.zeros(6, 3),
    }


def test_install_without_reference_and_remove_are_bit_identical(transformer, injector) -> None:
    inputs = _inputs()
    keys_before = set(transformer.state_dict())
    with torch.no_grad():
        plain = transformer(**inputs).sample
        injector.install(transformer)
        installed = transformer(**inputs).sample
        injector.install(transformer)  # idempotent
        injector.remove(transformer)
        removed = transformer(**inputs).sample
    assert torch.equal(plain, installed) and torch.equal(plain, removed)
    assert set(transformer.state_dict()) == keys_before  # the injector's weights never enter the transformer
    assert not any(isinstance(getattr(m, "processor", None), MakeupAttnProcessor) for m in transformer.modules())


def _published_layer(attn, weights, hidden, context, rotary, ref, ref_rotary, level) -> torch.Tensor:
    """The published MakeupFluxAttnProcessor's math, written out in its own (batch, heads, tokens, dim) layout."""
    from diffusers.models.embeddings import apply_rotary_emb

    b, heads, d = hidden.shape[0], attn.heads, attn.head_dim

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(b, -1, heads, d).transpose(1, 2)

    q, k, v = attn.norm_q(split(attn.to_q(hidden))), attn.norm_k(split(attn.to_k(hidden))), split(attn.to_v(hidden))
    if context is not None:
        q = torch.cat([attn.norm_added_q(split(attn.add_q_proj(context))), q], dim=2)
        k = torch.cat([attn.norm_added_k(split(attn.add_k_proj(context))), k], dim=2)
        v = torch.cat([split(attn.add_v_proj(context)), v], dim=2)
    q, k = apply_rotary_emb(q, rotary), apply_rotary_emb(k, rotary)
    ref_k = split(weights.ref_to_k_lora_up(weights.ref_to_k_lora_down(ref)) * level)
    ref_v = split(weights.ref_to_v_lora_up(weights.ref_to_v_lora_down(ref)) * level)
    ref_k = apply_rotary_emb(weights.ref_norm_k(ref_k), ref_rotary)
    out = F.scaled_dot_product_attention(q, torch.cat([k, ref_k], dim=2), torch.cat([v, ref_v], dim=2))
    out = out.transpose(1, 2).reshape(b, -1, heads * d)
    if context is None:
        return out
    return attn.to_out[0](out[:, context.shape[1] :])


@pytest.mark.parametrize(
    ("group", "level"), [("transformer_blocks", 1.0), ("single_transformer_blocks", 1.0), ("transformer_blocks", 0.6)]
)
def test_attention_matches_the_published_math(transformer, injector, group, level) -> None:
    injector.install(transformer)
    attn = getattr(transformer, group)[0].attn
    weights = getattr(injector.transformer, group)[0].attn.processor
    gen = torch.Generator().manual_seed(3)
    context = torch.randn(1, 6, 32, generator=gen) if group == "transformer_blocks" else None
    hidden = torch.randn(1, 16 if context is not None else 22, 32, generator=gen)
    ids = torch.arange(22).float()[:, None].repeat(1, 3)  # 6 text + 16 image tokens
    rotary = transformer.pos_embed(ids)
    ref = torch.randn(1, 9, 32, generator=gen)
    ref_rotary = transformer.pos_embed(reference_position_ids(3, 3, shift=4))
    with torch.no_grad():
        ours = attn(hidden_states=hidden, encoder_hidden_states=context, image_rotary_emb=rotary,
                    ref_hidden_states=ref, ref_rotary_emb=ref_rotary, makeup_level=level)  # fmt: skip
        ours = ours[0] if isinstance(ours, tuple) else ours
        expected = _published_layer(attn, weights, hidden, context, rotary, ref, ref_rotary, level)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
        # The reference really matters, and each published detail is load-bearing.
        without = attn(hidden_states=hidden, encoder_hidden_states=context, image_rotary_emb=rotary)
        without = without[0] if isinstance(without, tuple) else without
        assert (ours - without).abs().max() > 1e-3
        shifted = transformer.pos_embed(reference_position_ids(3, 3, shift=0))  # a wrong RoPE offset
        other = attn(hidden_states=hidden, encoder_hidden_states=context, image_rotary_emb=rotary,
                     ref_hidden_states=ref, ref_rotary_emb=shifted, makeup_level=level)  # fmt: skip
        other = other[0] if isinstance(other, tuple) else other
        assert (ours - other).abs().max() > 1e-4


def test_reference_position_ids() -> None:
    ids = reference_position_ids(2, 3, shift=5)
    assert ids.shape == (6, 3)
    assert (ids[:, 0] == 2).all()
    assert ids[:, 1].tolist() == [0, 0, 0, 1, 1, 1] and ids[:, 2].tolist() == [-5, -4, -3, -5, -4, -3]


def test_published_checkpoint_round_trip(injector, tmp_path: Path) -> None:
    state = injector.state_dict()
    assert "ref_image_proj_model.proj.0.weight" in state and "ref_image_proj_model.norm.weight" in state
    assert "transformer.single_transformer_blocks.1.attn.processor.ref_to_v_lora_up.weight" in state
    torch.save(state, tmp_path / "checkpoint.pt")
    loaded = MakeupInjector.from_published_checkpoint(tmp_path / "checkpoint.pt", attention_head_dim=16)
    assert {k: loaded.config[k] for k in TINY} == TINY  # the sizes were read off the checkpoint
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
    loaded.save_pretrained(tmp_path / "converted")  # the one-time conversion to safetensors
    again = MakeupInjector.from_pretrained(tmp_path / "converted")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in state.items())


def test_checkpoints_that_are_not_the_injector_are_refused(injector, tmp_path: Path) -> None:
    state = injector.state_dict()
    state["transformer.x_embedder.weight"] = torch.zeros(2)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(MissingWeightsError, match="outside the reference injector"):
        MakeupInjector.from_published_checkpoint(tmp_path / "extra.pt")

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"ref_image_proj_model.proj.0.weight": Payload()}, handle)
    with pytest.raises(UnsafeWeightsError):
        MakeupInjector.from_published_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("change", [{"num_single_layers": 3}, {"attention_head_dim": 8}])
def test_injector_must_fit_the_transformer(transformer, change) -> None:
    with pytest.raises(ValueError, match="fits"):
        MakeupInjector(**{**TINY, **change}).install(transformer)
