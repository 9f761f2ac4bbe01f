"""Ditto's audio-to-motion diffusion model (LMDM): a FiLM transformer that denoises 80 frames of LivePortrait
motion, conditioned on the source motion frame and per-frame audio/control features, sampled with DDIM and
classifier-free guidance; and the windowed generation of Ditto's ``audio2motion.py`` for speech of any length.

Motion frames are 265-d, in Ditto's order: ``scale - 1`` (1), pitch / yaw / roll bin logits (66 each), translation
``t`` (3), expression ``exp`` (21 x 3 = 63); the first 202 entries (scale to t) are the ones smoothed over time.
Conditions are 1103-d per frame (:class:`MotionConditions`: HuBERT 1024, emotion 8, eye openness 2, eyeball 6,
source keypoints 63).

Parameter names follow Ditto's ``MotionDecoder``, so ``lmdm_v0.4_hubert.pth`` (``{"model_state_dict": ...}``)
loads unchanged with :meth:`LMDM.from_checkpoint` (read with ``weights_only``).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import apply_rotary_emb
from torch import nn

from genface.errors import InvalidArgumentError

#: Leading motion entries (scale, pitch, yaw, roll, t) that Ditto smooths with a moving average.
SMOOTHED_DIMS = 202


class RotaryEmbedding(nn.Module):
    """Interleaved rotary position code over the whole feature width; ``freqs`` is a saved buffer in Ditto."""

    def __init__(self, dim: int, theta: float = 10000.0) -> None:
        super().__init__()
        self.register_buffer("freqs", 1.0 / theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` (batch, sequence, dim) by its positions 0, 1, ... along the sequence."""
        angles = torch.arange(x.shape[-2], device=x.device, dtype=self.freqs.dtype)[:, None] * self.freqs
        angles = angles.repeat_interleave(2, dim=-1)
        return apply_rotary_emb(x[:, None], (angles.cos(), angles.sin()))[:, 0]


class TimestepEmbedding(nn.Module):
    """Sinusoidal embedding of diffusion steps, ``[sin(t w), cos(t w)]`` with ``w_i = 10000^(-i / (half - 1))``
    (computed in Ditto's operation order; diffusers' ``get_timestep_embedding`` rounds differently)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, device=timesteps.device) * -(math.log(10000) / (half - 1)))
        angles = timesteps[:, None] * freqs[None, :]
        return torch.cat((angles.sin(), angles.cos()), dim=-1)


class FiLM(nn.Module):
    """Scale and shift (``(1 + scale) * x + shift``) predicted from the step embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Mish(), nn.Linear(dim, dim * 2))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        scale, shift = self.block(t)[:, None].chunk(2, dim=-1)
        return (scale + 1) * x + shift


class EncoderLayer(nn.Module):
    """Pre-norm self-attention + GELU feed-forward; the rotary code rotates queries and keys, not values."""

    def __init__(self, dim: int, heads: int, ff_size: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.linear1 = nn.Linear(dim, ff_size)
        self.linear2 = nn.Linear(ff_size, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.rotary = RotaryEmbedding(dim)

    def _self_attention(self, x: torch.Tensor) -> torch.Tensor:
        qk = self.rotary(x)
        return self.self_attn(qk, qk, x, need_weights=False)[0]

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(F.gelu(self.linear1(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._self_attention(self.norm1(x))
        return x + self._feed_forward(self.norm2(x))


class DecoderLayer(EncoderLayer):
    """Pre-norm self-attention, cross-attention to the condition tokens and feed-forward, each FiLM-modulated by
    the step embedding before its residual."""

    def __init__(self, dim: int, heads: int, ff_size: int) -> None:
        super().__init__(dim, heads, ff_size)
        self.multihead_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm3 = nn.LayerNorm(dim)
        self.film1, self.film2, self.film3 = FiLM(dim), FiLM(dim), FiLM(dim)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = x + self.film1(self._self_attention(self.norm1(x)), t)
        h = self.norm2(x)
        cross = self.multihead_attn(self.rotary(h), self.rotary(memory), memory, need_weights=False)[0]
        x = x + self.film2(cross, t)
        return x + self.film3(self._feed_forward(self.norm3(x)), t)


class LayerStack(nn.Module):
    """Holds the decoder layers under Ditto's name (``seqTransDecoder.stack.N``)."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.stack = nn.ModuleList(layers)


class MotionDecoder(nn.Module):
    """Ditto's denoiser: predicts the clean motion sequence (x0) from a noisy one.

    The source frame is concatenated to every noisy frame; the conditions go through a projection and two
    self-attention layers into 80 tokens (replaced by learned null tokens when dropped, for guidance), whose mean
    joins the step embedding as the FiLM signal; the decoder layers cross-attend to the tokens plus two step
    tokens.
    """

    def __init__(
        self,
        nfeats: int = 265,
        seq_len: int = 80,
        latent_dim: int = 512,
        ff_size: int = 1024,
        num_layers: int = 8,
        num_heads: int = 8,
        cond_feature_dim: int = 1103,
        multi_cond_frame: bool = False,
    ) -> None:
        super().__init__()
        self.multi_cond_frame = multi_cond_frame
        self.rotary = RotaryEmbedding(latent_dim)  # Ditto shares one; its buffer is saved under every layer
        self.time_mlp = nn.Sequential(TimestepEmbedding(latent_dim), nn.Linear(latent_dim, latent_dim * 4), nn.Mish())
        self.to_time_cond = nn.Sequential(nn.Linear(latent_dim * 4, latent_dim))
        self.to_time_tokens = nn.Sequential(
            nn.Linear(latent_dim * 4, latent_dim * 2), nn.Unflatten(-1, (2, latent_dim))
        )
        self.null_cond_embed = nn.Parameter(torch.randn(1, seq_len, latent_dim))
        self.null_cond_hidden = nn.Parameter(torch.randn(1, latent_dim))
        self.norm_cond = nn.LayerNorm(latent_dim)
        self.input_projection = nn.Linear(nfeats * 2 + int(multi_cond_frame), latent_dim)
        self.cond_encoder = nn.Sequential(*(EncoderLayer(latent_dim, num_heads, ff_size) for _ in range(2)))
        self.cond_projection = nn.Linear(cond_feature_dim, latent_dim)
        self.non_attn_cond_projection = nn.Sequential(
            nn.LayerNorm(latent_dim), nn.Linear(latent_dim, latent_dim), nn.SiLU(), nn.Linear(latent_dim, latent_dim)
        )
        self.seqTransDecoder = LayerStack([DecoderLayer(latent_dim, num_heads, ff_size) for _ in range(num_layers)])
        self.final_layer = nn.Linear(latent_dim, nfeats)

    def forward(
        self,
        sample: torch.Tensor,
        cond_frame: torch.Tensor,
        cond: torch.Tensor,
        timestep: torch.Tensor,
        keep_cond: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted clean motion (B, N, nfeats).

        ``sample``: noisy motion (B, N, nfeats); ``cond_frame``: the motion frame to continue from (B, nfeats), or
        with ``multi_cond_frame`` per-frame (B, N, nfeats + 1); ``cond``: conditions (B, N, cond_feature_dim);
        ``timestep``: (B,) diffusion steps; ``keep_cond``: (B,) bool, False rows use the null condition.
        """
        if not self.multi_cond_frame:
            cond_frame = cond_frame[:, None].expand(-1, sample.shape[1], -1)
        x = self.input_projection(torch.cat([sample, cond_frame], dim=-1))
        tokens = self.cond_encoder(self.cond_projection(cond))
        if keep_cond is not None:
            tokens = torch.where(keep_cond[:, None, None], tokens, self.null_cond_embed.to(tokens.dtype))
        cond_hidden = self.non_attn_cond_projection(tokens.mean(dim=-2))
        embedding, linear, mish = self.time_mlp  # the sinusoids in float32, then the model's dtype
        t_hidden = mish(linear(embedding(timestep).to(x.dtype)))
        t = self.to_time_cond(t_hidden)
        if keep_cond is not None:
            cond_hidden = torch.where(keep_cond[:, None], cond_hidden, self.null_cond_hidden.to(t.dtype))
        t = t + cond_hidden
        memory = self.norm_cond(torch.cat((tokens, self.to_time_tokens(t_hidden)), dim=-2))
        for layer in self.seqTransDecoder.stack:
            x = layer(x, memory, t)
        return self.final_layer(x)


def cosine_betas(num_steps: int = 1000, s: float = 8e-3) -> torch.Tensor:
    """The cosine noise schedule (Nichol & Dhariwal) in float64, betas clipped to [0, 0.999], as Ditto builds it."""
    steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps + s
    alphas = torch.cos(steps / (1 + s) * math.pi / 2).pow(2)
    alphas = alphas / alphas[0]
    return (1 - alphas[1:] / alphas[:-1]).clamp(0, 0.999)


class LMDM(ModelMixin, ConfigMixin):
    """Ditto's latent motion diffusion model: :class:`MotionDecoder` (``model``) and its DDIM sampler.

    Defaults are the published sizes (``lmdm_v0.4_hubert.pth``): 265-d motion, 1103-d conditions, 80 frames,
    width 512, 8 decoder layers of 8 heads, 1000 training steps, guidance weight 2.

    Sampling follows Ditto's ``ddim_sample``: steps ``int(linspace(-1, T - 1, n + 1))`` from T - 1 down; at each the
    guided clean estimate ``x0 = u + w (c - u)`` (u: null condition, c: condition) gives the noise estimate, and
    ``x <- sqrt(a') x0 + sqrt(1 - a' - s^2) eps + s z`` with ``s = eta sqrt((1 - a/a')(1 - a')/(1 - a))``; the last
    step returns x0. (diffusers' ``DDIMScheduler`` spaces the steps the same way only when n divides T.)
    """

    @register_to_config
    def __init__(
        self,
        motion_feat_dim: int = 265,
        cond_feat_dim: int = 1103,
        seq_frames: int = 80,
        latent_dim: int = 512,
        ff_size: int = 1024,
        num_layers: int = 8,
        num_heads: int = 8,
        multi_cond_frame: bool = False,
        num_train_timesteps: int = 1000,
        guidance_scale: float = 2.0,
    ) -> None:
        super().__init__()
        self.model = MotionDecoder(
            motion_feat_dim, seq_frames, latent_dim, ff_size, num_layers, num_heads, cond_feat_dim, multi_cond_frame
        )
        # float32 on the CPU whatever the model's device and dtype: indexed by step, used as scalars
        self.alphas_cumprod = torch.cumprod(1.0 - cosine_betas(num_train_timesteps).float(), dim=0)

    @staticmethod
    def tiny_config() -> dict[str, object]:
        """Sizes of a tiny model for tests (milliseconds on CPU)."""
        return {
            "motion_feat_dim": 12,
            "cond_feat_dim": 10,
            "seq_frames": 8,
            "latent_dim": 16,
            "ff_size": 24,
            "num_layers": 2,
            "num_heads": 2,
        }

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict[str, object]:
        """Sizes read off a ``MotionDecoder`` state dict (the head count cannot be; it stays 8 unless given)."""
        nfeats = state["final_layer.weight"].shape[0]
        return {
            "motion_feat_dim": nfeats,
            "cond_feat_dim": state["cond_projection.weight"].shape[1],
            "seq_frames": state["null_cond_embed"].shape[1],
            "latent_dim": state["null_cond_embed"].shape[2],
            "ff_size": state["seqTransDecoder.stack.0.linear1.weight"].shape[0],
            "num_layers": len({k.split(".")[2] for k in state if k.startswith("seqTransDecoder.stack.")}),
            "multi_cond_frame": state["input_projection.weight"].shape[1] == 2 * nfeats + 1,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor], what: str = "LMDM weights", **config: object) -> LMDM:
        """Load Ditto's checkpoint contents: ``{"model_state_dict": ...}``, the decoder's state dict, or this
        module's (``model.``-prefixed); sizes are inferred unless ``config`` gives them."""
        from genface.hub import load_checked

        if isinstance(state.get("model_state_dict"), dict):
            state = state["model_state_dict"]
        state = {k.removeprefix("model."): v for k, v in state.items()}
        if "final_layer.weight" not in state:
            raise InvalidArgumentError(f"{what} are not an LMDM MotionDecoder state dict (no final_layer.weight).")
        config = {**cls.config_from_state_dict(state), **config}
        state = {f"model.{k}": v for k, v in state.items()}
        return load_checked(lambda: cls(**config), state, f"{what} do not match LMDM {config}")

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, **config: object) -> LMDM:
        """Load ``lmdm_v0.4_hubert.pth`` (read with ``weights_only``) or a ``.safetensors`` of its state dict."""
        from genface.hub import load_state_dict

        return cls.from_state_dict(load_state_dict(path), what=str(path), **config)

    def timesteps(self, num_steps: int) -> list[int]:
        """Ditto's descending sampling steps, ending with -1 (the step that returns x0)."""
        total = self.config.num_train_timesteps
        if not 1 <= num_steps <= total:
            raise InvalidArgumentError(f"num_steps must be between 1 and {total}, got {num_steps}.")
        return list(reversed(torch.linspace(-1, total - 1, steps=num_steps + 1).int().tolist()))

    def guided_x0(
        self, sample: torch.Tensor, cond_frame: torch.Tensor, cond: torch.Tensor, timestep: int, guidance_scale: float
    ) -> torch.Tensor:
        """Classifier-free-guided clean estimate (float32): null and real conditions run as one batch, in the
        model's dtype."""
        batch, dtype = sample.shape[0], self.model.final_layer.weight.dtype
        keep = torch.arange(2 * batch, device=sample.device) >= batch
        steps = torch.full((2 * batch,), timestep, device=sample.device, dtype=torch.long)
        frames = cond_frame.repeat(2, *([1] * (cond_frame.ndim - 1)))
        both = self.model(
            sample.repeat(2, 1, 1).to(dtype), frames.to(dtype), cond.repeat(2, 1, 1).to(dtype), steps, keep
        )
        unconditional, conditional = both.float().chunk(2)
        return unconditional + (conditional - unconditional) * guidance_scale

    def step(
        self,
        sample: torch.Tensor,
        x0: torch.Tensor,
        timestep: int,
        next_timestep: int,
        noise: torch.Tensor | None,
        eta: float = 1.0,
    ) -> torch.Tensor:
        """One DDIM update from ``timestep`` to ``next_timestep`` given the clean estimate; x0 when next < 0."""
        if next_timestep < 0:
            return x0
        alpha, alpha_next = self.alphas_cumprod[timestep], self.alphas_cumprod[next_timestep]
        eps = (1.0 / (1.0 - alpha)).sqrt() * sample - x0 / (1.0 / alpha - 1).sqrt()
        sigma = eta * ((1 - alpha / alpha_next) * (1 - alpha_next) / (1 - alpha)).sqrt()
        c = (1 - alpha_next - sigma**2).clamp(min=0).sqrt()  # Ditto's float32 gives NaN here at e.g. 5 steps
        out = x0 * alpha_next.sqrt() + c * eps
        return out + sigma * noise if noise is not None and eta else out

    def step_noise_shape(self, batch: int = 1) -> tuple[int, int, int]:
        return (batch, self.config.seq_frames, self.config.motion_feat_dim)

    @torch.no_grad()
    def sample(
        self,
        cond_frame: torch.Tensor,
        cond: torch.Tensor,
        num_steps: int = 50,
        *,
        guidance_scale: float | None = None,
        eta: float = 1.0,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
        step_noise: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Sample a motion window (B, seq_frames, motion_feat_dim).

        ``cond_frame``: (B, motion_feat_dim) the frame to continue from; ``cond``: (B, seq_frames, cond_feat_dim).
        ``noise`` is the starting sample and ``step_noise`` the ``num_steps - 1`` noises of the stochastic steps;
        those not given are drawn from ``generator`` (starting noise first). Ditto draws the step noises once and
        reuses them for every window (:class:`MotionGenerator` does the same).
        """
        param = self.model.final_layer.weight
        cond_frame, cond = cond_frame.to(param.device, torch.float32), cond.to(param.device, torch.float32)
        self._check(cond_frame, cond)
        times = self.timesteps(num_steps)
        shape = self.step_noise_shape(cond.shape[0])
        x = noise if noise is not None else torch.randn(shape, generator=generator, device=param.device)
        if step_noise is None:
            step_noise = [torch.randn(shape, generator=generator, device=param.device) for _ in times[2:]]
        if len(step_noise) != len(times) - 2:
            raise InvalidArgumentError(f"step_noise needs {len(times) - 2} tensors for {num_steps} steps.")
        weight = self.config.guidance_scale if guidance_scale is None else guidance_scale
        x = x.to(param.device, torch.float32)
        for i, (t, t_next) in enumerate(itertools.pairwise(times)):
            x0 = self.guided_x0(x, cond_frame, cond, t, weight)
            x = self.step(x, x0, t, t_next, step_noise[i] if t_next >= 0 else None, eta)
        return x

    def _check(self, cond_frame: torch.Tensor, cond: torch.Tensor) -> None:
        c = self.config
        frame_shape = (c.seq_frames, c.motion_feat_dim + 1) if c.multi_cond_frame else (c.motion_feat_dim,)
        if cond.ndim != 3 or tuple(cond.shape[1:]) != (c.seq_frames, c.cond_feat_dim):
            raise InvalidArgumentError(
                f"LMDM conditions must be (batch, {c.seq_frames}, {c.cond_feat_dim}), got {tuple(cond.shape)}."
            )
        if tuple(cond_frame.shape) != (cond.shape[0], *frame_shape):
            raise InvalidArgumentError(
                f"LMDM cond_frame must be {(cond.shape[0], *frame_shape)}, got {tuple(cond_frame.shape)}."
            )


class MotionGenerator:
    """Ditto's windowed audio-to-motion (``audio2motion.py`` with ``stream_pipeline_offline/online``), streaming.

    Conditions arrive in chunks (:meth:`push`); windows of ``seq_frames`` start every ``seq_frames - overlap``
    frames and run as soon as their conditions are in (the last one, at :meth:`flush`, is padded with its last
    row). Each window continues from a motion frame of the result so far (``cond_frame``): the frame just before
    the next window (``fix_kp_cond=0``), or every ``reset_every`` windows the source motion with only
    ``keep_dims`` taken from that frame. A new window is cross-faded into the result over ``fuse`` frames with
    weights ``k / fuse`` (k = 0 .. fuse - 1) for the new one, and the first 202 entries (scale .. t) around the
    seam get a ``smooth``-frame moving average.

    ``online=False`` (offline): ``fuse = overlap``; all frames get the moving average once more at the end (Ditto
    smooths the whole sequence after generating it), done here as frames become final.
    ``online=True``: ``fuse = min(overlap, seq_frames - overlap)``, no final smoothing, and the stream ends with
    the first padded window; the first ``overlap`` pushed frames are a lead-in (Ditto feeds the features of
    ``overlap * 640`` silent samples) and produce no output; frame 0 of the first window is kept as
    :attr:`reference`, the frame Ditto's online path makes the motion relative to (``motion_stitch.d0``).
    genface returns exactly one motion frame per pushed frame after the lead-in. Ditto's online loop does not: its
    last, padded window returns its cross-faded frames too, so with the features ``inference.py`` computes (in
    chunks of 5 frames) it returns up to 17 frames past the end of the speech (up to 10 past its last feature),
    and none for speech under 2 frames.
    Ditto's online preset: ``overlap=70, num_steps=10, reset_every=1, keep_dims=(0, 202)``; offline: overlap 10,
    50 steps.

    ``clip``: (2, motion_feat_dim) lower and upper bounds (Ditto's ``v_min_max_for_clip`` rows 0 and 1) applied,
    as Ditto's ``cvt_fmt``, to the motion returned (and to :attr:`reference`), not to the frames later windows
    continue from.

    Pushed in chunks, memory stays bounded (about two windows of conditions and motion) whatever the length; one
    push of everything returns everything. The step noises are drawn
    once (as Ditto does), then each window's starting noise, from ``generator``.
    """

    def __init__(
        self,
        lmdm: LMDM,
        source_motion: torch.Tensor,
        *,
        overlap: int = 10,
        num_steps: int = 50,
        online: bool = False,
        reset_every: int = 0,
        keep_dims: tuple[int, int] | None = None,
        smooth: int = 3,
        guidance_scale: float | None = None,
        eta: float = 1.0,
        generator: torch.Generator | None = None,
        clip: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        frames, dim = lmdm.config.seq_frames, lmdm.config.motion_feat_dim
        if not 0 <= overlap < frames:
            raise InvalidArgumentError(f"overlap must be between 0 and {frames - 1} frames, got {overlap}.")
        valid = frames - overlap
        if online and overlap < valid:
            raise InvalidArgumentError(
                f"Online generation needs overlap >= seq_frames - overlap (at least {math.ceil(frames / 2)}), "
                f"got {overlap}."
            )
        if reset_every < 0 or smooth < 1:
            raise InvalidArgumentError("reset_every must be >= 0 and smooth >= 1.")
        source_motion = torch.as_tensor(source_motion, dtype=torch.float32).reshape(-1)
        if source_motion.numel() != dim:
            raise InvalidArgumentError(f"source_motion must have {dim} values, got {source_motion.numel()}.")
        self.lmdm, self.num_steps, self.online = lmdm, num_steps, online
        self.frames, self.overlap, self.valid = frames, overlap, valid
        self.fuse = min(overlap, valid) if online else overlap
        self.reset_every, self.keep_dims, self.smooth = reset_every, keep_dims, smooth
        self.guidance_scale, self.eta, self.generator = guidance_scale, eta, generator
        device = lmdm.model.final_layer.weight.device
        self.source = source_motion.to(device)
        self.clip = None if clip is None else motion_bounds(clip, dim).to(device)
        self.reference: torch.Tensor | None = None
        self.cond_frame = self.source.clone()
        shape = lmdm.step_noise_shape()
        self.step_noise = [torch.randn(shape, generator=generator, device=device) for _ in range(num_steps - 1)]
        self.conds = torch.zeros(0, lmdm.config.cond_feat_dim, device=device)
        self.cond_start = 0  # global index of self.conds[0]
        self.next_window = 0  # global start of the next window
        self.result = torch.zeros(0, dim, device=device)  # motion before the final smoothing
        self.result_start = 0
        self.emitted = overlap if online else 0  # global index of the next frame to return
        self.windows = 0
        self.total = 0

    def push(self, conditions: torch.Tensor) -> torch.Tensor:
        """Add conditions (n, cond_feat_dim); returns the motion frames now final (m, motion_feat_dim)."""
        conditions = torch.as_tensor(conditions, dtype=torch.float32).to(self.conds.device)
        if conditions.ndim != 2 or conditions.shape[1] != self.conds.shape[1]:
            raise InvalidArgumentError(
                f"Conditions must be (frames, {self.conds.shape[1]}), got {tuple(conditions.shape)}."
            )
        self.conds = torch.cat([self.conds, conditions])
        self.total += conditions.shape[0]
        while self.next_window + self.frames <= self.total:
            self._run_window()
        return self._emit(final=False)

    def flush(self) -> torch.Tensor:
        """Run the remaining (padded) windows; returns the rest of the motion."""
        while self.next_window < self.total:
            padded = self.next_window + self.frames > self.total
            self._run_window()
            if padded and self.online:  # Ditto's online loop ends with its first padded window
                break
        return self._emit(final=True)

    def _run_window(self) -> None:
        local = self.next_window - self.cond_start
        window = self.conds[local : local + self.frames]
        if window.shape[0] < self.frames:
            window = torch.cat([window, window[-1:].expand(self.frames - window.shape[0], -1)])
        pred = self.lmdm.sample(
            self.cond_frame[None], window[None], self.num_steps, guidance_scale=self.guidance_scale,
            eta=self.eta, generator=self.generator, step_noise=self.step_noise,
        )[0]  # fmt: skip
        if self.windows == 0:
            self.result = pred
            self._smooth(0, self.frames)
            if self.online:
                self.reference = self._clipped(self.result[0].clone())
        else:
            end = self.result.shape[0]
            weights = torch.arange(self.fuse, device=pred.device, dtype=pred.dtype)[:, None] / max(self.fuse, 1)
            seam = self.frames - self.valid
            blended = self.result[end - self.fuse :] * (1 - weights) + pred[seam - self.fuse : seam] * weights
            self.result = torch.cat([self.result[: end - self.fuse], blended, pred[seam:]])
            length = self.result.shape[0]
            self._smooth(length - self.valid - self.fuse, length - self.valid + 1)
        self.windows += 1
        self._update_cond_frame()
        self.next_window += self.valid
        self._trim()

    def _smooth(self, start: int, end: int) -> None:
        """Ditto's moving average of the first 202 entries over local frames [start, end) (edges truncated)."""
        if self.smooth <= 1:
            return
        self.result[:, :SMOOTHED_DIMS] = _moving_average(self.result[:, :SMOOTHED_DIMS], self.smooth, start, end)

    def _update_cond_frame(self) -> None:
        previous = self.result[self.result.shape[0] - self.overlap - 1]
        if self.reset_every > 0 and self.windows % self.reset_every == 0:
            # Ditto counts the windows run so far (this one included) and resets when the count is a multiple.
            self.cond_frame = self.source.clone()
            if self.keep_dims is not None:
                start, end = self.keep_dims
                self.cond_frame[start:end] = previous[start:end]
        else:
            self.cond_frame = previous.clone()

    def _final_bound(self) -> int:
        """Global index before which result frames can no longer change."""
        return self.result_start + self.result.shape[0] - self.fuse

    def _emit(self, final: bool) -> torch.Tensor:
        end_total = self.total
        if final:
            stop = end_total
        elif self.online:
            stop = min(self._final_bound(), end_total)
        else:  # the final smoothing of frame i reads frames up to i + smooth // 2
            half = self.smooth // 2
            stop = min(self._final_bound() - half, end_total - half)
        stop = max(stop, self.emitted)
        lo, hi = self.emitted - self.result_start, stop - self.result_start
        if self.online or self.smooth <= 1:
            out = self.result[lo:hi].clone()
        else:
            # The final smoothing over frames [0, total): edges at the sequence start and end are truncated.
            half = self.smooth // 2
            base, upto = max(lo - half, 0), min(hi + half, end_total - self.result_start)
            part = self.result[base:upto]
            smoothed = part.clone()
            smoothed[:, :SMOOTHED_DIMS] = _moving_average(part[:, :SMOOTHED_DIMS], self.smooth, lo - base, hi - base)
            out = smoothed[lo - base : hi - base]
        self.emitted = stop
        return self._clipped(out)

    def _clipped(self, motion: torch.Tensor) -> torch.Tensor:
        return motion if self.clip is None else torch.minimum(torch.maximum(motion, self.clip[0]), self.clip[1])

    def _trim(self) -> None:
        """Drop motion and conditions no later step reads."""
        keep_from = min(
            self.emitted - self.smooth // 2 - 1,
            self._final_bound() - self.smooth // 2 - 1,
            self.result_start + self.result.shape[0] - self.overlap - 1,
        )
        drop = max(0, keep_from - self.result_start)
        self.result, self.result_start = self.result[drop:], self.result_start + drop
        drop = max(0, self.next_window - self.cond_start)
        self.conds, self.cond_start = self.conds[drop:], self.cond_start + drop


def motion_bounds(bounds: object, dim: int) -> torch.Tensor:
    """Ditto's ``v_min_max_for_clip`` (two or more rows of ``dim`` values: lower, upper, ...) as the (2, dim)
    lower and upper bounds, or a one-line error."""
    try:
        rows = torch.as_tensor(np.asarray(bounds, dtype=np.float32))
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"v_min_max_for_clip must be rows of {dim} numbers (lower, upper).") from None
    if rows.ndim != 2 or rows.shape[0] < 2 or rows.shape[1] != dim:
        raise InvalidArgumentError(
            f"v_min_max_for_clip must be (2, {dim}): lower and upper bounds of the motion; got {tuple(rows.shape)}."
        )
    rows = rows[:2]
    if not torch.isfinite(rows).all() or (rows[0] > rows[1]).any():
        raise InvalidArgumentError("v_min_max_for_clip must be finite, each lower bound at most its upper bound.")
    return rows


def _moving_average(x: torch.Tensor, kernel: int, start: int, end: int) -> torch.Tensor:
    """``x`` with rows [start, end) replaced by the mean of rows within ``kernel // 2`` of them (of the rows
    before the replacement), the window cut at the ends of ``x``."""
    half = kernel // 2
    out = x.clone()
    for i in range(start, end):
        out[i] = x[max(0, i - half) : min(x.shape[0], i + half + 1)].mean(dim=0)
    return out


def generate_motion(
    lmdm: LMDM, source_motion: torch.Tensor, conditions: Iterable[torch.Tensor], **options: object
) -> Iterator[torch.Tensor]:
    """Motion chunks (m, motion_feat_dim) for condition chunks (n, cond_feat_dim), as they become final;
    ``options`` are :class:`MotionGenerator`'s. Offline, the chunks add up to one motion frame per condition
    frame; online, to that minus the ``overlap`` lead-in frames."""
    generator = MotionGenerator(lmdm, source_motion, **options)
    for chunk in conditions:
        out = generator.push(chunk)
        if out.shape[0]:
            yield out
    out = generator.flush()
    if out.shape[0]:
        yield out


#: Ditto's emotion classes, in the order of the condition's 8 emotion entries.
EMOTIONS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "contempt")
_EMOTION_HELP = f"one of {', '.join(EMOTIONS)} (or 0-{len(EMOTIONS) - 1}), several of them, or 8 probabilities"
Emotion = str | int | Sequence[object] | torch.Tensor | np.ndarray


def emotion_probabilities(emotion: Emotion) -> torch.Tensor:
    """Emotion conditions (m, 8): one row, or one per frame (cycled over the frames).

    A name or index gives Ditto's label vector, ``softmax`` of 8 at that class (0.998) and 0 elsewhere; several
    names mix them the same way (8 at each); a list of such lists gives one row per frame; a tensor or array (or
    list of numbers) of 8 values, or (m, 8), is used as it is (e.g. an emotion recogniser's probabilities).
    """
    if isinstance(emotion, (str, int)) and not isinstance(emotion, bool):
        return _label_vector([emotion])
    if isinstance(emotion, (list, tuple)) and emotion and all(isinstance(e, (list, tuple)) for e in emotion):
        return torch.cat([_label_vector(e) for e in emotion])
    labels = isinstance(emotion, (list, tuple)) and all(isinstance(e, str) or type(e) is int for e in emotion)
    if labels and (len(emotion) < len(EMOTIONS) or any(isinstance(e, str) for e in emotion)):
        return _label_vector(emotion)
    try:
        values = torch.as_tensor(np.asarray(emotion, dtype=np.float32))
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"emotion must be {_EMOTION_HELP}; got {emotion!r}.") from None
    if values.ndim == 1:
        values = values[None]
    if values.ndim != 2 or values.shape[1] != len(EMOTIONS) or values.shape[0] == 0:
        raise InvalidArgumentError(f"emotion must be {_EMOTION_HELP}; got shape {tuple(values.shape)}.")
    if not torch.isfinite(values).all() or (values < 0).any():
        raise InvalidArgumentError("emotion probabilities must be finite and non-negative.")
    return values


def _label_vector(labels: Sequence[object]) -> torch.Tensor:
    logits = torch.zeros(len(EMOTIONS))
    if not labels:
        raise InvalidArgumentError(f"emotion must be {_EMOTION_HELP}; got an empty list.")
    for label in labels:
        if isinstance(label, str) and label.strip().lower() in EMOTIONS:
            logits[EMOTIONS.index(label.strip().lower())] = 8
        elif type(label) is int and 0 <= label < len(EMOTIONS):
            logits[label] = 8
        else:
            raise InvalidArgumentError(f"emotion must be {_EMOTION_HELP}; got {label!r}.")
    return logits.softmax(dim=0)[None]


def _rows(value: object, width: int, name: str, meaning: str) -> torch.Tensor:
    """``value`` as finite rows (m, width): one row or one per source frame."""
    try:
        rows = torch.as_tensor(np.asarray(value, dtype=np.float32))
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"{name} must be {width} numbers ({meaning}) or (frames, {width}).") from None
    rows = rows.reshape(1, -1) if rows.numel() == width else rows
    if rows.ndim != 2 or rows.shape[1] != width or rows.shape[0] == 0:
        raise InvalidArgumentError(
            f"{name} must be {width} numbers ({meaning}) or (frames, {width}); got shape {tuple(rows.shape)}."
        )
    if not torch.isfinite(rows).all():
        raise InvalidArgumentError(f"{name} must be finite numbers.")
    return rows


def mirror_index(indices: torch.Tensor, size: int) -> torch.Tensor:
    """Ditto's ping-pong index over ``size`` source frames (0 .. size - 1, size - 1 .. 0, ...)."""
    turn, rest = indices // size, indices % size
    return torch.where(turn % 2 == 0, rest, size - rest - 1)


class MotionConditions:
    """Ditto's per-frame condition vector (``condition_handler.py``): ``[audio | emotion 8 | eye_open 2 |
    eye_ball 6 | source keypoints 63]``, 1024 + 79 = 1103 wide with HuBERT-large features.

    - ``emotion``: see :func:`emotion_probabilities` (default ``"neutral"``, Ditto's default label 4); a
      per-frame sequence is cycled.
    - ``eye_open``: left and right eye openness, (upper-lower lid distance at three points summed) / eye width,
      from MediaPipe's 478 landmarks on the 512 crop; (2,) or per source frame (m, 2).
    - ``eye_ball``: left and right iris offsets from the eye centre, minus the eye's own direction, times the
      distance, stacked as ``[x_L, x_R, y_L, y_R, z_L, z_R]``; (6,) or (m, 6).
    - ``source_keypoints``: the source's canonical keypoints ``kp`` (21 x 3 = 63) from the motion extractor.

    Per-source-frame eye rows are read ping-pong (frame i uses row ``mirror(max(i, 0))``), as Ditto does for a
    video source; negative frame indices (online lead-in) use row 0. ``use_*`` drop parts, as Ditto's config can.
    """

    def __init__(
        self,
        source_keypoints: object,
        eye_open: object,
        eye_ball: object,
        emotion: Emotion = "neutral",
        *,
        use_emotion: bool = True,
        use_eye_open: bool = True,
        use_eye_ball: bool = True,
        use_source_keypoints: bool = True,
    ) -> None:
        self.parts: list[tuple[torch.Tensor, bool]] = []  # (rows, ping-pong) in Ditto's order
        if use_emotion:
            self.parts.append((emotion_probabilities(emotion), False))
        if use_eye_open:
            self.parts.append((_rows(eye_open, 2, "eye_open", "left and right eye openness"), True))
        if use_eye_ball:
            self.parts.append((_rows(eye_ball, 6, "eye_ball", "x, y, z of the left and right iris, interleaved"), True))
        if use_source_keypoints:
            keypoints = _rows(source_keypoints, 63, "source_keypoints", "21 canonical keypoints x 3")
            self.parts.append((keypoints[:1], False))

    @property
    def width(self) -> int:
        """Entries added to each audio feature frame (79 with every part)."""
        return sum(rows.shape[1] for rows, _ in self.parts)

    def __call__(self, audio_features: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Conditions (n, features + width) of frames ``start`` .. ``start + n - 1`` from their audio features."""
        audio_features = torch.as_tensor(audio_features, dtype=torch.float32)
        if audio_features.ndim != 2:
            raise InvalidArgumentError(f"audio_features must be (frames, width), got {tuple(audio_features.shape)}.")
        frames = torch.arange(start, start + audio_features.shape[0]).clamp(min=0)
        columns = [audio_features]
        for rows, ping_pong in self.parts:
            index = mirror_index(frames, rows.shape[0]) if ping_pong else frames % rows.shape[0]
            columns.append(rows[index].to(audio_features.device))
        return torch.cat(columns, dim=1)
