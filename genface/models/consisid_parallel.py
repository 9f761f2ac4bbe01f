"""Context (sequence) parallelism for ConsisID's transformer through diffusers' own machinery.

diffusers 0.42 ships ``enable_parallelism`` with per-model ``_cp_plan``s, but none for CogVideoX or ConsisID,
whose attention processor also calls PyTorch's SDPA directly (out of reach of diffusers' attention
dispatcher, which is what runs ring and Ulysses attention). This module supplies both:

- :class:`CogVideoXDispatchAttnProcessor`: CogVideoX's joint text-video attention (QK LayerNorm, 3-D RoPE on
  the video tokens) computed through ``dispatch_attention_fn``, so diffusers' attention backends and context
  parallelism reach it. Same result as ``CogVideoXAttnProcessor2_0``.
- :func:`consisid_cp_plan`: the text and video tokens and the video RoPE are split along the sequence when they
  enter the first block, every block and identity cross-attention (the Perceiver's queries are video tokens;
  its keys, the face tokens, are whole on every rank) works on its shard, and both streams are gathered where
  the last block leaves, before the final norm (which indexes the text length).

Equal shards need the text length (226 for ConsisID) and the video tokens divisible by the degree: 2 works;
for more, set ``ring_anything`` or ``ulysses_anything`` in the config (uneven shards).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models._modeling_parallel import ContextParallelInput, ContextParallelOutput
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import apply_rotary_emb


class CogVideoXDispatchAttnProcessor:
    """CogVideoX / ConsisID attention through diffusers' attention dispatcher (backends, context parallelism)."""

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        text_length = encoder_hidden_states.shape[1]
        joint = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        # (batch, sequence, heads, head_dim): the dispatcher's layout
        query, key, value = (proj(joint).unflatten(-1, (attn.heads, -1)) for proj in (attn.to_q, attn.to_k, attn.to_v))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:
            video_query = apply_rotary_emb(query[:, text_length:], image_rotary_emb, sequence_dim=1)
            query = torch.cat([query[:, :text_length], video_query], dim=1)
            if not attn.is_cross_attention:
                video_key = apply_rotary_emb(key[:, text_length:], image_rotary_emb, sequence_dim=1)
                key = torch.cat([key[:, :text_length], video_key], dim=1)
        out = dispatch_attention_fn(
            query,
            key,
            value,
            attn_mask=attention_mask,
            backend=self._attention_backend,
            parallel_config=self._parallel_config,
        )
        out = attn.to_out[1](attn.to_out[0](out.flatten(2, 3).to(query.dtype)))
        return out[:, text_length:], out[:, :text_length]


def consisid_cp_plan(transformer: Any) -> dict[str, Any]:
    """diffusers context-parallel plan for a ``ConsisIDTransformer3DModel`` (see the module's notes)."""
    split = ContextParallelInput(split_dim=1, expected_dims=3, split_output=False)
    rope = ContextParallelInput(split_dim=0, expected_dims=2, split_output=False)
    last = f"transformer_blocks.{transformer.config.num_layers - 1}"
    gather = ContextParallelOutput(gather_dim=1, expected_dims=3)
    return {
        "": {"image_rotary_emb": [rope, rope]},
        "transformer_blocks.0": {"hidden_states": split, "encoder_hidden_states": split},
        last: [gather, gather],
    }


def enable_context_parallel(transformer: Any, config: Any) -> None:
    """Install the dispatching processor on every attention layer and apply diffusers' context parallelism
    (``config``: a ``diffusers.ContextParallelConfig``; ``torch.distributed`` must be initialised)."""
    transformer.set_attn_processor(CogVideoXDispatchAttnProcessor())
    transformer.enable_parallelism(config=config, cp_plan=consisid_cp_plan(transformer))
