"""Stand-In (WeChatCV, CVPR 2026) on diffusers' ``WanTransformer3DModel``, with no fork of diffusers.

Stand-In conditions Wan text-to-video on a reference face: the face image's VAE latents are patch-embedded into
extra tokens that run through every block beside the video's, at timestep 0, with low-rank (rank 128) additions to
the self-attention's query, key and value projections and no cross-attention. The attention is restricted: video
tokens attend to video and reference tokens, reference tokens only to reference tokens. So the reference tokens
never see the video, the prompt or the timestep, and their keys and values are the same at every denoising step
and in both guidance passes; Stand-In computes them on the first call and reuses them after (its ``kv_cache``),
an exact lever here too (:attr:`StandInState.cache`). Their rotary positions are frame -1 and rows / columns just
past the video's (``models/wan_video_dit.py`` of WeChatCV/Stand-In).

Parameter names are the published checkpoints' (``Stand-In_wan2.1_T2V_14B.ckpt``, and the Wan2.2-T2V-A14B pair
``Stand-In_wan2.2_T2V_A14B_high.ckpt`` / ``_low.ckpt`` of ``BowenXue/Stand-In``):
``blocks.N.self_attn.{q,k,v}_loras.{down,up}.weight``, so they load unchanged (:meth:`StandInAdapter.from_checkpoint`,
``torch.load(weights_only=True)``). The adapter runs in its own dtype (float32 by default, as Stand-In creates
its LoRA layers in float32 beside a bf16 model).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.models.transformers.transformer_wan import WanAttnProcessor, _get_qkv_projections
from torch import nn

from genface.errors import InvalidArgumentError, MissingWeightsError

#: Hub repository of the published checkpoints.
HUB_REPO = "BowenXue/Stand-In"
#: Published file names: Wan 2.1 (one transformer) and the Wan 2.2 A14B pair (high-noise, low-noise expert).
CHECKPOINTS = {
    "2.1": ("Stand-In_wan2.1_T2V_14B.ckpt",),
    "2.2": ("Stand-In_wan2.2_T2V_A14B_high.ckpt", "Stand-In_wan2.2_T2V_A14B_low.ckpt"),
}
RANK = 128
_PROJECTIONS = ("q_loras", "k_loras", "v_loras")


def checkpoint_version(path: str | os.PathLike) -> tuple[str | None, str | None]:
    """(Wan version, noise expert) a Stand-In checkpoint's file name declares, as the published names do:
    ``("2.1", None)``, ``("2.2", "high")``, ``("2.2", "low")``; ``(None, None)`` for a name that says neither (the
    tensors are the same shape in every version, so only the name tells them apart)."""
    name = Path(path).name.lower()
    version = re.search(r"wan_?(2\.[12])", name)
    expert = re.search(r"_(high|low)(?=_|$)", Path(name).stem)
    return (version.group(1) if version else None), (expert.group(1) if expert else None)


class LoRALinear(nn.Module):
    """Stand-In's ``LoRALinearLayer``: ``up(down(x))`` without biases, computed in the layer's own dtype and cast
    back to the input's."""

    def __init__(self, features: int, rank: int = RANK) -> None:
        super().__init__()
        self.down = nn.Linear(features, rank, bias=False)
        self.up = nn.Linear(rank, features, bias=False)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(hidden_states.to(self.down.weight.dtype))).to(hidden_states.dtype)


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        for name in _PROJECTIONS:
            setattr(self, name, LoRALinear(dim, rank))


class _Block(nn.Module):
    """One block's weights at ``self_attn.*``, the path they have in the published checkpoint."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.self_attn = _SelfAttention(dim, rank)


@dataclass
class StandInState:
    """What one transformer's Stand-In processors share during a call.

    ``latents``: the reference face's VAE latents (1 x C x 1 x H x W), None for plain Wan. ``cache``: keep the
    reference keys and values of the first transformer call and reuse them (exact; Stand-In's ``kv_cache``); off,
    every call recomputes them.
    """

    latents: torch.Tensor | None = None
    cache: bool = True
    grid: tuple[int, int] | None = None
    processors: list[StandInAttnProcessor] = field(default_factory=list)
    kv_grid: tuple[int, int] | None = None
    compute: bool = False
    hidden: torch.Tensor | None = None
    temb: torch.Tensor | None = None
    rotary: tuple[torch.Tensor, torch.Tensor] | None = None
    reference_passes: int = 0

    def clear(self) -> None:
        """Forget the cached keys and values (a new reference, or the end of a call)."""
        self.kv_grid, self.hidden, self.temb, self.rotary = None, None, None, None
        for processor in self.processors:
            processor.kv = None


def _rotate(hidden_states: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's rotary embedding, as ``WanAttnProcessor`` applies it."""
    x1, x2 = hidden_states.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(hidden_states)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(hidden_states)


def reference_rotary(rope: Any, grid: tuple[int, int], size: tuple[int, int], device: torch.device) -> tuple:
    """cos / sin of the reference tokens' positions: frame -1, rows ``grid[0]..``, columns ``grid[1]..`` (just past
    the video's ``grid`` of patch rows and columns), as Stand-In's ``freqs_ip``; shaped like Wan's rotary
    embedding (1 x tokens x 1 x head size)."""
    rows, cols = size
    positions = (torch.tensor([-1]), torch.arange(grid[0], grid[0] + rows), torch.arange(grid[1], grid[1] + cols))
    parts = [
        get_1d_rotary_pos_embed(dim, pos, 10000.0, use_real=True, repeat_interleave_real=True,
                                freqs_dtype=torch.float64)
        for dim, pos in zip((rope.t_dim, rope.h_dim, rope.w_dim), positions, strict=True)
    ]  # fmt: skip
    out = []
    for which in (0, 1):
        t, h, w = (part[which] for part in parts)
        grid_freqs = torch.cat(
            [
                t.view(1, 1, 1, -1).expand(1, rows, cols, -1),
                h.view(1, rows, 1, -1).expand(1, rows, cols, -1),
                w.view(1, 1, cols, -1).expand(1, rows, cols, -1),
            ],
            dim=-1,
        )
        out.append(grid_freqs.reshape(1, rows * cols, 1, -1).to(device))
    return tuple(out)


class StandInAttnProcessor(WanAttnProcessor):
    """Wan self-attention with the reference tokens' keys and values appended; the reference tokens' own pass
    through the block (norm, restricted attention, feed-forward) is run here on the calls that compute them.

    A plain object rather than a module, so installing it leaves the transformer's state dict unchanged; without a
    reference it is ``WanAttnProcessor`` itself.
    """

    def __init__(self, state: StandInState, first: bool, lora: _SelfAttention, block: Any, transformer: Any) -> None:
        super().__init__()
        # a flag rather than the block's index: compiled blocks share one graph per value of what they read
        self.state, self.first, self.lora = state, first, lora
        self.kv: tuple[torch.Tensor, torch.Tensor] | None = None
        # plain references (not submodules): the transformer already owns the block
        self._block, self._transformer = block, transformer

    def _start(self, dtype: torch.dtype) -> None:
        """The reference tokens entering the first block: patch embedding, timestep-0 modulation, positions."""
        state, transformer = self.state, self._transformer
        latents = state.latents.to(transformer.patch_embedding.weight.device, dtype)
        hidden = transformer.patch_embedding(latents)
        rows, cols = hidden.shape[-2:]
        state.hidden = hidden.flatten(2).transpose(1, 2).contiguous()
        embedder = transformer.condition_embedder
        zero = torch.zeros(1, device=hidden.device)
        timestep = embedder.timesteps_proj(zero)
        time_dtype = next(iter(embedder.time_embedder.parameters())).dtype
        if timestep.dtype != time_dtype and time_dtype != torch.int8:
            timestep = timestep.to(time_dtype)
        temb = embedder.time_embedder(timestep).type_as(state.hidden)
        state.temb = embedder.time_proj(embedder.act_fn(temb)).unflatten(1, (6, -1))
        state.rotary = reference_rotary(transformer.rope, state.grid, (rows, cols), hidden.device)

    def _reference_pass(self, attn: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """This block for the reference tokens (Stand-In's ``x_ip`` path); returns their keys and values."""
        state, block = self.state, self._block
        hidden = state.hidden
        shift, scale, gate, c_shift, c_scale, c_gate = (block.scale_shift_table + state.temb.float()).chunk(6, dim=1)
        norm = (block.norm1(hidden.float()) * (1 + scale) + shift).type_as(hidden)
        query, key, value = _get_qkv_projections(attn, norm, None)
        query = attn.norm_q(query + self.lora.q_loras(norm))
        key = attn.norm_k(key + self.lora.k_loras(norm))
        value = value + self.lora.v_loras(norm)
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))
        query, key = _rotate(query, *state.rotary), _rotate(key, *state.rotary)
        out = dispatch_attention_fn(query, key, value, backend=self._attention_backend, parallel_config=None)
        out = attn.to_out[1](attn.to_out[0](out.flatten(2, 3).type_as(query)))
        hidden = (hidden.float() + out * gate).type_as(hidden)
        norm = (block.norm3(hidden.float()) * (1 + c_scale) + c_shift).type_as(hidden)
        state.hidden = (hidden.float() + block.ffn(norm).float() * c_gate).type_as(hidden)
        return key, value

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        state = self.state
        if state.latents is None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        if self._parallel_config is not None:
            raise InvalidArgumentError(
                "Stand-In's reference tokens do not run under context parallelism; disable it on the transformer."
            )
        if state.compute:
            if self.first:
                self._start(hidden_states.dtype)
            ref_key, ref_value = self._reference_pass(attn)
            if state.cache:
                self.kv = (ref_key, ref_value)
        else:
            ref_key, ref_value = self.kv
        query, key, value = _get_qkv_projections(attn, hidden_states, None)
        query, key = attn.norm_q(query), attn.norm_k(key)
        query, key, value = (t.unflatten(2, (attn.heads, -1)) for t in (query, key, value))
        if rotary_emb is not None:
            query, key = _rotate(query, *rotary_emb), _rotate(key, *rotary_emb)
        batch = hidden_states.shape[0]
        key = torch.cat([key, ref_key.to(key.dtype).expand(batch, -1, -1, -1)], dim=1)
        value = torch.cat([value, ref_value.to(value.dtype).expand(batch, -1, -1, -1)], dim=1)
        out = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, backend=self._attention_backend, parallel_config=None
        )
        return attn.to_out[1](attn.to_out[0](out.flatten(2, 3).type_as(query)))


def _enter(state: StandInState, patch: tuple[int, ...]) -> Any:
    """The transformer's forward pre-hook: note the video's patch grid, and whether this call computes the
    reference keys and values (no cache, no cache yet, or another grid) or reuses them."""

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        if state.latents is None:
            return
        hidden_states = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        state.grid = (hidden_states.shape[-2] // patch[1], hidden_states.shape[-1] // patch[2])
        state.compute = not (state.cache and state.kv_grid == state.grid)
        if state.compute:
            state.clear()
            state.kv_grid = state.grid if state.cache else None
            state.reference_passes += 1  # counted here, outside the (compilable) blocks

    return hook


def _leave(state: StandInState) -> Any:
    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        state.hidden = state.temb = state.rotary = None  # the reference tokens' activations are not kept

    return hook


class StandInAdapter(ModelMixin, ConfigMixin):
    """Stand-In's weights (the LoRA on each block's self-attention), installable into (and removable from) a
    ``WanTransformer3DModel``."""

    # Stand-In runs its LoRA in float32 beside a bf16 model: diffusers' from_pretrained(torch_dtype=...) keeps it so.
    _keep_in_fp32_modules = ["blocks"]

    @register_to_config
    def __init__(
        self,
        num_layers: int = 40,
        dim: int = 5120,
        rank: int = RANK,
        wan_version: str | None = None,
        expert: str | None = None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_Block(dim, rank) for _ in range(num_layers))

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> StandInAdapter:
        """Load a published ``.ckpt`` unchanged (``torch.load(weights_only=True)``; a top-level ``state_dict`` is
        unwrapped, as Stand-In's loader does); the sizes come from the tensors, the Wan version and noise expert
        from the file name (:func:`checkpoint_version`)."""
        from genface.hub import load_state_dict

        state = load_state_dict(path)
        if isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        down = state.get("blocks.0.self_attn.q_loras.down.weight")
        if not isinstance(down, torch.Tensor):
            raise MissingWeightsError(
                f"{path} is not a Stand-In checkpoint: no blocks.0.self_attn.q_loras.down.weight among its "
                f"{len(state)} entries (e.g. {sorted(state)[:3]})."
            )
        layers = 1 + max(int(key.split(".")[1]) for key in state if key.startswith("blocks."))
        version, expert = checkpoint_version(path)
        model = cls(layers, down.shape[1], down.shape[0], version, expert)
        expected = model.state_dict()
        missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
        wrong = [k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape]
        if missing or unexpected or wrong:
            raise MissingWeightsError(
                f"{path} does not match Stand-In's layout: missing {missing[:3]}, unexpected {unexpected[:3]}, "
                f"wrong shapes {wrong[:3]}."
            )
        model.load_state_dict(state)
        model.register_to_config(_name_or_path=str(path))
        # nn.Module's cast: diffusers' ModelMixin.to warns on every dtype cast (its fp32-modules list is never None)
        return nn.Module.to(model, dtype).eval()

    def check_fits(self, transformer: Any) -> None:
        """Refuse a transformer of another size, in one line."""
        found = (
            len(transformer.blocks),
            transformer.config.num_attention_heads * transformer.config.attention_head_dim,
        )
        if found != (self.config.num_layers, self.config.dim):
            raise InvalidArgumentError(
                f"This Stand-In checkpoint fits a Wan transformer of {self.config.num_layers} blocks of width "
                f"{self.config.dim} (Wan-14B); the transformer has {found[0]} of {found[1]}."
            )

    def install(self, transformer: Any) -> StandInState:
        """Route every self-attention of ``transformer`` through Stand-In's processors; returns the state they
        share (set ``state.latents`` to condition on a face). Installing again replaces the previous install."""
        self.check_fits(transformer)
        self.remove(transformer)
        state = StandInState()
        for index, (block, weights) in enumerate(zip(transformer.blocks, self.blocks, strict=True)):
            state.processors.append(StandInAttnProcessor(state, index == 0, weights.self_attn, block, transformer))
            block.attn1.set_processor(state.processors[-1])
        patch = tuple(transformer.config.patch_size)
        transformer._stand_in_hooks = [
            transformer.register_forward_pre_hook(_enter(state, patch), with_kwargs=True),
            transformer.register_forward_hook(_leave(state), with_kwargs=True, always_call=True),
        ]
        return state

    @staticmethod
    def remove(transformer: Any) -> None:
        """Give ``transformer`` plain Wan processors back."""
        for handle in getattr(transformer, "_stand_in_hooks", []):
            handle.remove()
        transformer._stand_in_hooks = []
        for block in transformer.blocks:
            if isinstance(block.attn1.processor, StandInAttnProcessor):
                processor = WanAttnProcessor()
                processor._attention_backend = block.attn1.processor._attention_backend
                block.attn1.set_processor(processor)
