"""LatentSync's 3-D UNet (bytedance/LatentSync ``latentsync/models/unet.py``) on diffusers' blocks.

LatentSync's UNet is Stable Diffusion 1.5's, run on 16-frame clips: every convolution, attention and resampling
works frame by frame (its ``InflatedConv3d``, ``Transformer3DModel``), the ResNet blocks' and the output's group
norms take their statistics over all the clip's frames (plain ``nn.GroupNorm`` on ``(b, c, f, h, w)``, since
``use_inflated_groupnorm`` is off in both published configs), a motion module after each layer of the down and
up blocks attends across frames (AnimateDiff's ``VanillaTemporalModule``), and each frame's transformer
cross-attends to that frame's Whisper window (``add_audio_layer``).

Here the clip is carried as ``(b * f, c, h, w)``: the per-frame parts are diffusers' own
(``Transformer2DModel`` with its ``BasicTransformerBlock``, ``Downsample2D``, ``Upsample2D``, ``Timesteps``,
``TimestepEmbedding``, ``Attention``, ``FeedForward``, ``SinusoidalPositionalEmbedding``); what diffusers has no
block for is written here: the ResNet block whose norms span the clip, and the motion module (diffusers'
``AnimateDiffTransformer3D`` computes its group norm across frames, where AnimateDiff's and LatentSync's take it
per frame, and names its layers differently). Parameter and configuration names are the published ones, so
``latentsync_unet.pt`` loads unchanged with the ``model:`` section of ``configs/unet/stage2_512.yaml`` (v1.6,
512 px) or ``stage2.yaml`` (v1.5, 256 px): the two configurations are the same network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import SinusoidalPositionalEmbedding, TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.resnet import Downsample2D, Upsample2D
from diffusers.models.transformers.transformer_2d import Transformer2DModel
from diffusers.utils import BaseOutput
from torch import nn

from genface.errors import InvalidArgumentError

_ACTIVATIONS = {"silu": nn.SiLU, "swish": nn.SiLU, "mish": nn.Mish}


def clip_group_norm(norm: nn.GroupNorm, hidden: torch.Tensor, frames: int, per_frame: bool = False) -> torch.Tensor:
    """``norm`` on ``(b * f, c, h, w)`` frames with its statistics over each clip's ``frames`` frames together (as
    ``nn.GroupNorm`` on LatentSync's ``(b, c, f, h, w)`` tensor), or over each frame (``per_frame``)."""
    if per_frame:
        return norm(hidden)
    size = hidden.shape
    clip = hidden.view(size[0] // frames, frames, *size[1:]).transpose(1, 2)
    return norm(clip).transpose(1, 2).reshape(size)


class ResnetBlock3D(nn.Module):
    """LatentSync's ``ResnetBlock3D`` ("default" time embedding): SD's ResNet block, convolutions per frame, group
    norms over the clip (per frame with ``inflated_norm``)."""

    def __init__(
        self, in_channels: int, out_channels: int, temb_channels: int, groups: int, eps: float, act_fn: str,
        output_scale_factor: float = 1.0, inflated_norm: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        self.inflated_norm, self.output_scale_factor = inflated_norm, output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.nonlinearity = _ACTIVATIONS[act_fn]()
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )

    def forward(self, hidden: torch.Tensor, temb: torch.Tensor, frames: int) -> torch.Tensor:
        residual = hidden
        hidden = self.conv1(self.nonlinearity(clip_group_norm(self.norm1, hidden, frames, self.inflated_norm)))
        hidden = hidden + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        hidden = self.nonlinearity(clip_group_norm(self.norm2, hidden, frames, self.inflated_norm))
        hidden = self.conv2(self.dropout(hidden))
        if self.conv_shortcut is not None:
            residual = self.conv_shortcut(residual)
        return (residual + hidden) / self.output_scale_factor


class TemporalAttention(Attention):
    """diffusers' ``Attention`` across the frames of each pixel (AnimateDiff's ``VersatileAttention`` in its
    "Temporal" mode), with its sinusoidal position code ``pos_encoder`` added to the frames first."""

    def __init__(self, dim: int, heads: int, head_dim: int, position_encoding: bool, max_frames: int) -> None:
        super().__init__(query_dim=dim, heads=heads, dim_head=head_dim, bias=False)
        self.pos_encoder = SinusoidalPositionalEmbedding(dim, max_frames) if position_encoding else None

    def forward(self, hidden: torch.Tensor, frames: int) -> torch.Tensor:  # (b * f, pixels, c)
        if self.pos_encoder is not None and frames > self.pos_encoder.pe.shape[1]:
            raise InvalidArgumentError(
                f"The motion modules know positions of up to {self.pos_encoder.pe.shape[1]} frames; got {frames}."
            )
        batch_frames, pixels, channels = hidden.shape
        along_time = hidden.view(batch_frames // frames, frames, pixels, channels).transpose(1, 2)
        along_time = along_time.reshape(-1, frames, channels)
        if self.pos_encoder is not None:
            along_time = self.pos_encoder(along_time)
        out = super().forward(along_time)
        return out.view(-1, pixels, frames, channels).transpose(1, 2).reshape(batch_frames, pixels, channels)


class TemporalTransformerBlock(nn.Module):
    """AnimateDiff's temporal block: (layer norm, temporal attention, residual) per attention block, then a
    GEGLU feed-forward."""

    def __init__(self, dim: int, heads: int, head_dim: int, blocks: int, position_encoding: bool, max_frames: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            TemporalAttention(dim, heads, head_dim, position_encoding, max_frames) for _ in range(blocks)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(blocks))
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, hidden: torch.Tensor, frames: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms, strict=True):
            hidden = attention(norm(hidden), frames) + hidden
        return self.ff(self.ff_norm(hidden)) + hidden


class TemporalTransformer3DModel(nn.Module):
    """AnimateDiff's temporal transformer: group norm per frame, linear projections, temporal blocks, residual."""

    def __init__(
        self, channels: int, heads: int, head_dim: int, layers: int, blocks: int, position_encoding: bool,
        max_frames: int,
    ) -> None:  # fmt: skip
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(32, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(inner, heads, head_dim, blocks, position_encoding, max_frames)
            for _ in range(layers)
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, hidden: torch.Tensor, frames: int) -> torch.Tensor:
        batch_frames, channels, height, width = hidden.shape
        residual = hidden
        hidden = self.norm(hidden).permute(0, 2, 3, 1).reshape(batch_frames, height * width, channels)
        hidden = self.proj_in(hidden)
        for block in self.transformer_blocks:
            hidden = block(hidden, frames)
        hidden = self.proj_out(hidden).reshape(batch_frames, height, width, channels).permute(0, 3, 1, 2)
        return hidden.contiguous() + residual


class VanillaTemporalModule(nn.Module):
    """AnimateDiff's "Vanilla" motion module, with LatentSync's ``motion_module_kwargs`` names."""

    def __init__(
        self,
        in_channels: int,
        num_attention_heads: int = 8,
        num_transformer_block: int = 2,
        attention_block_types: tuple[str, ...] = ("Temporal_Self", "Temporal_Self"),
        cross_frame_attention_mode: str | None = None,
        temporal_position_encoding: bool = False,
        temporal_position_encoding_max_len: int = 24,
        temporal_attention_dim_div: int = 1,
        zero_initialize: bool = True,
    ) -> None:
        super().__init__()
        if any(kind != "Temporal_Self" for kind in attention_block_types) or cross_frame_attention_mode is not None:
            raise InvalidArgumentError(
                f"Only temporal self-attention motion modules are supported (LatentSync's); got attention blocks "
                f"{list(attention_block_types)} and cross-frame mode {cross_frame_attention_mode!r}."
            )
        head_dim = in_channels // num_attention_heads // temporal_attention_dim_div
        self.temporal_transformer = TemporalTransformer3DModel(
            in_channels, num_attention_heads, head_dim, num_transformer_block, len(attention_block_types),
            temporal_position_encoding, temporal_position_encoding_max_len,
        )  # fmt: skip
        if zero_initialize:
            nn.init.zeros_(self.temporal_transformer.proj_out.weight)
            nn.init.zeros_(self.temporal_transformer.proj_out.bias)

    def forward(self, hidden: torch.Tensor, frames: int) -> torch.Tensor:
        return self.temporal_transformer(hidden, frames)


@dataclass
class _Level:
    """What one level of blocks is built from (shared by the down, middle and up blocks)."""

    temb: int
    groups: int
    eps: float
    act_fn: str
    heads: int
    cross_attention_dim: int | None
    use_linear_projection: bool
    only_cross_attention: bool
    upcast_attention: bool
    inflated_norm: bool
    motion: Mapping[str, Any] | None  # motion_module_kwargs, None without motion modules

    def resnet(self, in_channels: int, out_channels: int, scale: float = 1.0) -> ResnetBlock3D:
        return ResnetBlock3D(
            in_channels, out_channels, self.temb, self.groups, self.eps, self.act_fn, scale, self.inflated_norm
        )

    def transformer(self, channels: int) -> Transformer2DModel:
        """LatentSync's ``Transformer3DModel`` is diffusers' ``Transformer2DModel`` run on each frame."""
        return Transformer2DModel(
            self.heads, channels // self.heads, in_channels=channels, num_layers=1,
            cross_attention_dim=self.cross_attention_dim, norm_num_groups=self.groups,
            use_linear_projection=self.use_linear_projection, only_cross_attention=self.only_cross_attention,
            upcast_attention=self.upcast_attention,
        )  # fmt: skip

    def motion_module(self, channels: int) -> VanillaTemporalModule | None:
        return None if self.motion is None else VanillaTemporalModule(channels, **self.motion)


class _Layers(nn.Module):
    """A down or up block: per layer a ResNet block, then (cross-attention blocks) a per-frame transformer, then
    (where configured) a motion module; the published ``resnets`` / ``attentions`` / ``motion_modules`` lists."""

    def _build(self, level: _Level, ins: list[int], out: int, attention: bool) -> None:
        self.resnets = nn.ModuleList(level.resnet(channels, out) for channels in ins)
        self.attentions = nn.ModuleList(level.transformer(out) for _ in ins) if attention else nn.ModuleList()
        self.motion_modules = nn.ModuleList()
        for _ in ins:
            self.motion_modules.append(level.motion_module(out))

    def _layer(self, index: int, hidden: torch.Tensor, temb: torch.Tensor, audio: torch.Tensor | None, frames: int):
        hidden = self.resnets[index](hidden, temb, frames)
        if len(self.attentions):
            hidden = self.attentions[index](hidden, encoder_hidden_states=audio, return_dict=False)[0]
        if self.motion_modules[index] is not None:
            hidden = self.motion_modules[index](hidden, frames)
        return hidden


class DownBlock3D(_Layers):
    """``CrossAttnDownBlock3D`` (``attention=True``) or ``DownBlock3D``."""

    def __init__(self, level: _Level, layers: int, in_channels: int, out_channels: int, attention: bool,
                 downsample: bool, padding: int) -> None:  # fmt: skip
        super().__init__()
        self._build(level, [in_channels] + [out_channels] * (layers - 1), out_channels, attention)
        self.downsamplers = (
            nn.ModuleList([Downsample2D(out_channels, use_conv=True, out_channels=out_channels, padding=padding,
                                        name="op")])
            if downsample else None
        )  # fmt: skip

    def forward(self, hidden: torch.Tensor, temb: torch.Tensor, audio: torch.Tensor | None, frames: int):
        states = []
        for index in range(len(self.resnets)):
            hidden = self._layer(index, hidden, temb, audio, frames)
            states.append(hidden)
        if self.downsamplers is not None:
            hidden = self.downsamplers[0](hidden)
            states.append(hidden)
        return hidden, states


class UpBlock3D(_Layers):
    """``CrossAttnUpBlock3D`` (``attention=True``) or ``UpBlock3D``: each layer takes a skip from the down path."""

    def __init__(self, level: _Level, layers: int, in_channels: int, previous: int, out_channels: int,
                 attention: bool, upsample: bool) -> None:  # fmt: skip
        super().__init__()
        ins = [
            (previous if i == 0 else out_channels) + (in_channels if i == layers - 1 else out_channels)
            for i in range(layers)
        ]
        self._build(level, ins, out_channels, attention)
        self.upsamplers = (
            nn.ModuleList([Upsample2D(out_channels, use_conv=True, out_channels=out_channels)]) if upsample else None
        )

    def forward(self, hidden: torch.Tensor, skips: list[torch.Tensor], temb: torch.Tensor,
                audio: torch.Tensor | None, frames: int) -> torch.Tensor:  # fmt: skip
        for index in range(len(self.resnets)):
            hidden = self._layer(index, torch.cat([hidden, skips.pop()], dim=1), temb, audio, frames)
        if self.upsamplers is not None:
            hidden = self.upsamplers[0](hidden)
        return hidden


class UNetMidBlock3DCrossAttn(nn.Module):
    """The middle block: ResNet, then (per-frame transformer, optional motion module, ResNet)."""

    def __init__(self, level: _Level, channels: int, scale: float, motion: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(level.resnet(channels, channels, scale) for _ in range(2))
        self.attentions = nn.ModuleList([level.transformer(channels)])
        self.motion_modules = nn.ModuleList([level.motion_module(channels) if motion else None])

    def forward(self, hidden: torch.Tensor, temb: torch.Tensor, audio: torch.Tensor | None, frames: int):
        hidden = self.resnets[0](hidden, temb, frames)
        hidden = self.attentions[0](hidden, encoder_hidden_states=audio, return_dict=False)[0]
        if self.motion_modules[0] is not None:
            hidden = self.motion_modules[0](hidden, frames)
        return self.resnets[1](hidden, temb, frames)


@dataclass
class LatentSyncUNetOutput(BaseOutput):
    """``sample``: the predicted noise, ``(batch, channels, frames, height, width)``."""

    sample: torch.Tensor


class LatentSyncUNet(ModelMixin, ConfigMixin):
    """LatentSync's ``UNet3DConditionModel`` (configuration names as in ``configs/unet/*.yaml``'s ``model:``).

    ``forward(sample, timestep, encoder_hidden_states)``: ``sample`` is ``(b, c, f, h, w)`` (noisy latents, mask,
    masked-frame latents and reference latents stacked on channels: 13), ``encoder_hidden_states`` the frames'
    audio windows ``(b, f, tokens, width)`` (or ``(b * f, tokens, width)``); returns the noise ``(b, 4, f, h, w)``.
    """

    _supports_gradient_checkpointing = False
    _no_split_modules = ["ResnetBlock3D", "Transformer2DModel", "VanillaTemporalModule"]

    @register_to_config
    def __init__(
        self,
        sample_size: int | None = None,
        in_channels: int = 4,
        out_channels: int = 4,
        center_input_sample: bool = False,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock3D",
            "CrossAttnDownBlock3D",
            "CrossAttnDownBlock3D",
            "DownBlock3D",
        ),  # fmt: skip
        mid_block_type: str = "UNetMidBlock3DCrossAttn",
        up_block_types: tuple[str, ...] = (
            "UpBlock3D",
            "CrossAttnUpBlock3D",
            "CrossAttnUpBlock3D",
            "CrossAttnUpBlock3D",
        ),
        only_cross_attention: bool = False,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1,
        act_fn: str = "silu",
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 1280,
        attention_head_dim: int = 8,
        dual_cross_attention: bool = False,
        use_linear_projection: bool = False,
        class_embed_type: str | None = None,
        num_class_embeds: int | None = None,
        upcast_attention: bool = False,
        resnet_time_scale_shift: str = "default",
        use_inflated_groupnorm: bool = False,
        use_motion_module: bool = False,
        motion_module_resolutions: tuple[int, ...] = (1, 2, 4, 8),
        motion_module_mid_block: bool = False,
        motion_module_decoder_only: bool = False,
        motion_module_type: str | None = None,
        motion_module_kwargs: dict[str, Any] | None = None,
        add_audio_layer: bool = False,
    ) -> None:
        super().__init__()
        unsupported = {
            "class_embed_type": class_embed_type, "num_class_embeds": num_class_embeds,
            "dual_cross_attention": dual_cross_attention or None,
            "resnet_time_scale_shift": None if resnet_time_scale_shift == "default" else resnet_time_scale_shift,
            "mid_block_type": None if mid_block_type == "UNetMidBlock3DCrossAttn" else mid_block_type,
            "motion_module_type": None if motion_module_type in (None, "Vanilla") else motion_module_type,
        }  # fmt: skip
        if given := {name: value for name, value in unsupported.items() if value is not None}:
            raise InvalidArgumentError(f"LatentSync's UNet does not take {given} (the published configs do not).")
        if not isinstance(attention_head_dim, int) or not isinstance(only_cross_attention, bool):
            raise InvalidArgumentError("attention_head_dim and only_cross_attention must be single values here.")
        known = {"CrossAttnDownBlock3D", "DownBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"}
        if unknown := [t for t in (*down_block_types, *up_block_types) if t not in known]:
            raise InvalidArgumentError(f"Unknown block types {unknown}; LatentSync's are {sorted(known)}.")
        channels = list(block_out_channels)
        temb = channels[0] * 4
        motion = dict(motion_module_kwargs or {}) if use_motion_module else None

        def level(motion_here: bool) -> _Level:
            return _Level(
                temb, norm_num_groups, norm_eps, act_fn, attention_head_dim,
                cross_attention_dim if add_audio_layer else None, use_linear_projection, only_cross_attention,
                upcast_attention, use_inflated_groupnorm, motion if motion_here else None,
            )  # fmt: skip

        self.conv_in = nn.Conv2d(in_channels, channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(channels[0], flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        self.down_blocks = nn.ModuleList()
        for i, kind in enumerate(down_block_types):
            here = 2**i in motion_module_resolutions and not motion_module_decoder_only
            self.down_blocks.append(
                DownBlock3D(level(here), layers_per_block, channels[max(i - 1, 0)], channels[i],
                            kind.startswith("CrossAttn"), i < len(channels) - 1, downsample_padding)
            )  # fmt: skip
        self.mid_block = UNetMidBlock3DCrossAttn(
            level(True), channels[-1], mid_block_scale_factor, motion is not None and motion_module_mid_block
        )
        self.up_blocks = nn.ModuleList()
        reversed_channels = channels[::-1]
        for i, kind in enumerate(up_block_types):
            self.up_blocks.append(
                UpBlock3D(level(2 ** (3 - i) in motion_module_resolutions), layers_per_block + 1,
                          reversed_channels[min(i + 1, len(channels) - 1)], reversed_channels[max(i - 1, 0)],
                          reversed_channels[i], kind.startswith("CrossAttn"), i < len(channels) - 1)
            )  # fmt: skip
        self.conv_norm_out = nn.GroupNorm(norm_num_groups, channels[0], eps=norm_eps)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(channels[0], out_channels, kernel_size=3, padding=1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor | None = None,
        return_dict: bool = True,
    ) -> LatentSyncUNetOutput | tuple[torch.Tensor]:
        batch, _, frames, height, width = sample.shape
        hidden = sample.transpose(1, 2).reshape(batch * frames, -1, height, width)
        if self.config.center_input_sample:
            hidden = 2 * hidden - 1.0
        timesteps = torch.as_tensor(timestep, device=sample.device)
        timesteps = timesteps.reshape(-1).expand(batch)
        temb = self.time_embedding(self.time_proj(timesteps).to(self.dtype))
        temb = temb.repeat_interleave(frames, dim=0)
        audio = encoder_hidden_states
        if audio is not None and audio.ndim == 4:
            audio = audio.flatten(0, 1)
        if not self.config.add_audio_layer:
            audio = None
        hidden = self.conv_in(hidden)
        skips = [hidden]
        for block in self.down_blocks:
            hidden, states = block(hidden, temb, audio, frames)
            skips.extend(states)
        hidden = self.mid_block(hidden, temb, audio, frames)
        for block in self.up_blocks:
            taken = len(block.resnets)
            hidden = block(hidden, skips[-taken:], temb, audio, frames)
            del skips[-taken:]
        hidden = clip_group_norm(self.conv_norm_out, hidden, frames, self.config.use_inflated_groupnorm)
        hidden = self.conv_out(self.conv_act(hidden))
        out = hidden.reshape(batch, frames, *hidden.shape[1:]).transpose(1, 2)
        return LatentSyncUNetOutput(sample=out) if return_dict else (out,)
