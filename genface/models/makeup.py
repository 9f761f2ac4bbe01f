"""FLUX-Makeup's reference injector for diffusers' FLUX.1 Kontext transformer.

The makeup reference is VAE-encoded, packed into 64-channel tokens and projected to the transformer width
(``ref_image_proj_model``: MLP + LayerNorm). In every attention layer (19 joint, 38 single blocks) the
reference tokens get their own low-rank key/value projections (rank 1024), the reference keys a
non-affine RMSNorm over the head dimension and rotary embeddings at the reference's positions; they are
appended to the keys and values only (queries unchanged). ``makeup_level`` scales the projected reference
keys and values (as the published ComfyUI node does; the RMSNorm makes the key scale moot).

Parameter names are the published checkpoint's (``checkpoint.pt`` of ``qihoo360/FLUX-Makeup``):
``ref_image_proj_model.*`` and ``transformer.{transformer_blocks,single_transformer_blocks}.N.attn.processor.*``,
so the file loads unchanged (:meth:`MakeupInjector.from_published_checkpoint`) and saves back in that layout.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.hooks.context_parallel import EquipartitionSharder
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import apply_rotary_emb
from diffusers.models.normalization import RMSNorm
from diffusers.models.transformers.transformer_flux import _get_qkv_projections
from torch import nn

from genface.errors import InvalidArgumentError, MissingWeightsError

#: File name of the published injector inside ``qihoo360/FLUX-Makeup``.
PUBLISHED_CHECKPOINT = "checkpoint.pt"


class RefImageProjection(nn.Module):
    """Packed reference latents (64 channels) -> transformer-width tokens (published ``ImageProjModel``)."""

    def __init__(self, in_channels: int, inner_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_channels, inner_dim), nn.GELU(), nn.Linear(inner_dim, inner_dim))
        self.norm = nn.LayerNorm(inner_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(tokens))


class RefKeyValue(nn.Module):
    """One attention layer's reference projections (the weights of the published ``MakeupFluxAttnProcessor``)."""

    def __init__(self, inner_dim: int, rank: int, head_dim: int) -> None:
        super().__init__()
        self.ref_to_k_lora_down = nn.Linear(inner_dim, rank, bias=False)
        self.ref_to_k_lora_up = nn.Linear(rank, inner_dim, bias=False)
        self.ref_to_v_lora_down = nn.Linear(inner_dim, rank, bias=False)
        self.ref_to_v_lora_up = nn.Linear(rank, inner_dim, bias=False)
        self.ref_norm_k = RMSNorm(head_dim, eps=1e-5, elementwise_affine=False)
        self.head_dim = head_dim

    def forward(self, ref: torch.Tensor, level: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reference keys (normalised) and values, (batch, tokens, heads, head_dim). ``level`` (a number or a
        0-d float32 tensor, the same result) multiplies in float32, as PyTorch multiplies a half tensor by a number."""

        def scaled(projected: torch.Tensor) -> torch.Tensor:
            return (projected.float() * level).to(projected.dtype).unflatten(-1, (-1, self.head_dim))

        key = scaled(self.ref_to_k_lora_up(self.ref_to_k_lora_down(ref)))
        value = scaled(self.ref_to_v_lora_up(self.ref_to_v_lora_down(ref)))
        return self.ref_norm_k(key), value


class MakeupAttnProcessor:
    """Flux attention with the reference keys/values appended; without a reference, the original processor.

    A plain object rather than a module, so installing it leaves the transformer's own state dict unchanged.
    """

    def __init__(self, weights: RefKeyValue, original: Any) -> None:
        self.weights = weights
        self.original = original
        self._backend: Any = None
        self._parallel: Any = None

    # diffusers sets these on every processor (set_attention_backend, enable_parallelism); the wrapped original
    # processor, which runs when there is no reference, must follow.
    @property
    def _attention_backend(self) -> Any:
        return self._backend

    @_attention_backend.setter
    def _attention_backend(self, value: Any) -> None:
        self._backend = value
        if hasattr(self.original, "_attention_backend"):
            self.original._attention_backend = value

    @property
    def _parallel_config(self) -> Any:
        return self._parallel

    @_parallel_config.setter
    def _parallel_config(self, value: Any) -> None:
        self._parallel = value
        if hasattr(self.original, "_parallel_config"):
            self.original._parallel_config = value

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        ref_hidden_states: torch.Tensor | None = None,
        ref_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        makeup_level: float | torch.Tensor = 1.0,
    ) -> Any:
        if ref_hidden_states is None:
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)
        if attention_mask is not None:
            raise NotImplementedError("The makeup reference pathway does not take an attention mask.")
        query, key, value, encoder_query, encoder_key, encoder_value = _get_qkv_projections(
            attn, hidden_states, encoder_hidden_states
        )
        query = attn.norm_q(query.unflatten(-1, (-1, attn.head_dim)))
        key = attn.norm_k(key.unflatten(-1, (-1, attn.head_dim)))
        value = value.unflatten(-1, (-1, attn.head_dim))
        if attn.added_kv_proj_dim is not None:
            query = torch.cat([attn.norm_added_q(encoder_query.unflatten(-1, (-1, attn.head_dim))), query], dim=1)
            key = torch.cat([attn.norm_added_k(encoder_key.unflatten(-1, (-1, attn.head_dim))), key], dim=1)
            value = torch.cat([encoder_value.unflatten(-1, (-1, attn.head_dim)), value], dim=1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        ref = ref_hidden_states.to(hidden_states.dtype).expand(hidden_states.shape[0], -1, -1)
        ref_key, ref_value = self.weights(ref, makeup_level)
        if ref_rotary_emb is not None:
            ref_key = apply_rotary_emb(ref_key, ref_rotary_emb, sequence_dim=1)
        context_parallel = getattr(self._parallel_config, "context_parallel_config", None)
        if context_parallel is not None:
            # Under context parallelism each rank holds a shard of the sequence, and attention gathers every
            # rank's keys: each rank contributes its shard of the reference, so that it counts once.
            mesh = context_parallel._flattened_mesh
            ref_key, ref_value = (EquipartitionSharder.shard(t, 1, mesh) for t in (ref_key, ref_value))
        key = torch.cat([key, ref_key.to(key.dtype)], dim=1)
        value = torch.cat([value, ref_value.to(value.dtype)], dim=1)
        out = dispatch_attention_fn(
            query, key, value, backend=self._attention_backend, parallel_config=self._parallel_config
        )
        out = out.flatten(2, 3).to(query.dtype)
        if encoder_hidden_states is None:
            return out
        context, out = out.split_with_sizes(
            [encoder_hidden_states.shape[1], out.shape[1] - encoder_hidden_states.shape[1]], dim=1
        )
        out = attn.to_out[1](attn.to_out[0](out.contiguous()))
        return out, attn.to_add_out(context.contiguous())


class _Layer(nn.Module):
    """Holds one layer's weights at ``attn.processor``, the path they have in the published checkpoint."""

    def __init__(self, weights: RefKeyValue) -> None:
        super().__init__()
        self.attn = nn.Module()
        self.attn.processor = weights


def reference_position_ids(rows: int, cols: int, shift: int) -> torch.Tensor:
    """RoPE position ids of the packed reference tokens: (2, row, col - shift), one row per token.

    The published code puts the reference on its own id plane (2; Kontext's source is on 1) and shifts it
    left by the generated image's packed width (``width // 16``) so that it sits beside the image.
    """
    ids = torch.zeros(rows, cols, 3)
    ids[..., 0] = 2
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(cols)[None, :] - shift
    return ids.reshape(rows * cols, 3)


class MakeupInjector(ModelMixin, ConfigMixin):
    """FLUX-Makeup's reference pathway, installable into (and removable from) a ``FluxTransformer2DModel``."""

    @register_to_config
    def __init__(
        self,
        num_layers: int = 19,
        num_single_layers: int = 38,
        inner_dim: int = 3072,
        in_channels: int = 64,
        rank: int = 1024,
        attention_head_dim: int = 128,
    ) -> None:
        super().__init__()
        if inner_dim % attention_head_dim:
            raise InvalidArgumentError(
                f"inner_dim {inner_dim} is not a multiple of attention_head_dim {attention_head_dim}; for a "
                "checkpoint of another model than FLUX, pass its head size (e.g. genface convert --attention-head-dim)."
            )
        self.ref_image_proj_model = RefImageProjection(in_channels, inner_dim)
        self.transformer = nn.Module()

        def layers(count: int) -> nn.ModuleList:
            return nn.ModuleList(_Layer(RefKeyValue(inner_dim, rank, attention_head_dim)) for _ in range(count))

        self.transformer.transformer_blocks = layers(num_layers)
        self.transformer.single_transformer_blocks = layers(num_single_layers)

    def _pairs(self, transformer: Any) -> list[tuple[Any, RefKeyValue]]:
        config = self.config
        expected = (config.num_layers, config.num_single_layers, config.inner_dim, config.attention_head_dim)
        found = (
            len(transformer.transformer_blocks),
            len(transformer.single_transformer_blocks),
            transformer.inner_dim,
            transformer.config.attention_head_dim,
        )
        if expected != found:
            raise ValueError(
                f"This injector fits (blocks, single blocks, width, head dim) {expected}; the transformer has {found}."
            )
        return [
            (block.attn, layer.attn.processor)
            for group in ("transformer_blocks", "single_transformer_blocks")
            for block, layer in zip(getattr(transformer, group), getattr(self.transformer, group), strict=True)
        ]

    def install(self, transformer: Any) -> None:
        """Route every attention layer of ``transformer`` through the reference pathway (idempotent)."""
        for attn, weights in self._pairs(transformer):
            if not isinstance(attn.processor, MakeupAttnProcessor):
                attn.set_processor(MakeupAttnProcessor(weights, attn.processor))

    @staticmethod
    def remove(transformer: Any) -> None:
        """Give ``transformer`` its original processors back."""
        for module in transformer.modules():
            if isinstance(getattr(module, "processor", None), MakeupAttnProcessor):
                module.set_processor(module.processor.original)

    @classmethod
    def from_published_checkpoint(cls, path: str | os.PathLike, attention_head_dim: int = 128) -> MakeupInjector:
        """Load ``checkpoint.pt`` as published (safely: ``weights_only``); its sizes set the config.

        The head dimension leaves no trace in the weights (the reference-key RMSNorm has none); FLUX's is 128.
        """
        from genface.hub import load_state_dict

        state = load_state_dict(path)
        ours = {k: v for k, v in state.items() if k.startswith("ref_image_proj_model.") or ".attn.processor." in k}
        other = sorted(set(state) - set(ours))
        if other:
            raise MissingWeightsError(
                f"{path} has {len(other)} tensors outside the reference injector (e.g. {other[:3]}); genface does not "
                "apply changes to the base model's weights."
            )

        def count(group: str) -> int:
            blocks = {int(k.split(".")[2]) for k in ours if k.startswith(f"transformer.{group}.")}
            return max(blocks) + 1 if blocks else 0

        sizes = ("transformer.transformer_blocks.0.attn.processor.ref_to_k_lora_down.weight",
                 "ref_image_proj_model.proj.0.weight")  # fmt: skip
        if absent := [key for key in sizes if key not in ours]:
            raise MissingWeightsError(f"{path} is not FLUX-Makeup's checkpoint.pt (or is damaged): it lacks {absent}.")
        k_down = ours["transformer.transformer_blocks.0.attn.processor.ref_to_k_lora_down.weight"]
        config = {
            "num_layers": count("transformer_blocks"),
            "num_single_layers": count("single_transformer_blocks"),
            "inner_dim": k_down.shape[1],
            "rank": k_down.shape[0],
            "in_channels": ours["ref_image_proj_model.proj.0.weight"].shape[1],
            "attention_head_dim": attention_head_dim,
        }
        model = cls(**config)
        result = model.load_state_dict(ours, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise MissingWeightsError(
                f"{path} does not match the injector: missing {result.missing_keys[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}."
            )
        return model.eval()
