"""Stand-In on diffusers' Wan: the published checkpoint layout, the published computation (frames of Stand-In's
own code, restated below, against genface's with the same tiny weights), its key/value cache as an exact lever,
and a clean install / remove."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import WanPipeline

from genface.errors import InvalidArgumentError, MissingWeightsError, UnsafeWeightsError
from genface.models.stand_in import StandInAdapter, StandInAttnProcessor, checkpoint_version
from genface.pipelines.identity_video.stand_in import StandInPipeline
from genface.pipelines.identity_video.tiny_stand_in import tiny_pipeline as tiny_stand_in_pipeline
from genface.pipelines.identity_video.tiny_wan import TINY_CALL, tiny_adapter, tiny_transformer

# --------------------------------------------------------------------------------------------------------------
# Stand-In's computation, restated from WeChatCV/Stand-In (their package cannot be installed): models/wan_video_dit.py
# (SelfAttention with q/k/v LoRA and kv_cache, DiTBlock, Head, rope and sinusoid), pipelines/wan_video.py
# (model_fn_wan_video, the denoising loop: ip_image on the first call only, the switch to dit2 at 0.875) and
# schedulers/flow_match.py (FlowMatchScheduler(shift=5, sigma_min=0, extra_one_step=True)). Their SDPA fallback is
# the attention (the path without flash-attn). Weights come from diffusers' transformer through their
# WanModelStateDictConverter.from_diffusers names, and the LoRA through their load_lora_weights_into_dit (strict).
# --------------------------------------------------------------------------------------------------------------


def sinusoidal_embedding_1d(dim, position):
    sinusoid = torch.outer(
        position.type(torch.float64),
        torch.pow(10000, -torch.arange(dim // 2, dtype=torch.float64, device=position.device).div(dim // 2)),
    )
    x = torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)
    return x.to(position.dtype)


def precompute_freqs_cis(dim, end=1024, theta=10000.0):
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].double() / dim))
    positions = torch.arange(-1, end, device=freqs.device)  # "add f = -1"
    return torch.polar(torch.ones_like(torch.outer(positions, freqs)), torch.outer(positions, freqs))


def precompute_freqs_cis_3d(dim, end=1024, theta=10000.0):
    return (precompute_freqs_cis(dim - 2 * (dim // 3), end + 1, theta), precompute_freqs_cis(dim // 3, end, theta),
            precompute_freqs_cis(dim // 3, end, theta))  # fmt: skip


def rope_apply(x, freqs, num_heads):
    x = x.unflatten(2, (num_heads, -1))
    x_out = torch.view_as_complex(x.to(torch.float64).reshape(x.shape[0], x.shape[1], x.shape[2], -1, 2))
    return torch.view_as_real(x_out * freqs).flatten(2).to(x.dtype)


def attention(q, k, v, num_heads):
    q, k, v = (t.unflatten(2, (num_heads, -1)).transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return (x.float() * torch.rsqrt(x.float().pow(2).mean(dim=-1, keepdim=True) + self.eps)).to(
            x.dtype
        ) * self.weight


class LoRALinearLayer(nn.Module):
    def __init__(self, in_features, out_features, rank):
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=False)

    def forward(self, hidden_states):
        return self.up(self.down(hidden_states.to(self.down.weight.dtype))).to(hidden_states.dtype)


class SelfAttention(nn.Module):
    def __init__(self, dim, num_heads, eps=1e-6):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(dim, eps=eps), RMSNorm(dim, eps=eps)
        self.kv_cache = self.cond_size = None

    def init_lora(self, rank):
        dim = self.q.in_features
        self.q_loras, self.k_loras, self.v_loras = (LoRALinearLayer(dim, dim, rank) for _ in range(3))

    def forward(self, x, freqs):
        n = self.num_heads
        if self.cond_size is not None:
            if self.kv_cache is None:
                x_main, x_ip = x[:, : -self.cond_size], x[:, -self.cond_size :]
                split_point = freqs.shape[0] - self.cond_size
                freqs_main, freqs_ip = freqs[:split_point], freqs[split_point:]
                q_main = rope_apply(self.norm_q(self.q(x_main)), freqs_main, n)
                k_main = rope_apply(self.norm_k(self.k(x_main)), freqs_main, n)
                v_main = self.v(x_main)
                q_ip = rope_apply(self.norm_q(self.q(x_ip) + self.q_loras(x_ip)), freqs_ip, n)
                k_ip = rope_apply(self.norm_k(self.k(x_ip) + self.k_loras(x_ip)), freqs_ip, n)
                v_ip = self.v(x_ip) + self.v_loras(x_ip)
                self.kv_cache = {"k_ip": k_ip.detach(), "v_ip": v_ip.detach()}
                cond_out = attention(q_ip, k_ip, v_ip, n)
                main_out = attention(q_main, torch.concat([k_main, k_ip], 1), torch.concat([v_main, v_ip], 1), n)
                return self.o(torch.concat([main_out, cond_out], dim=1))
            k_ip, v_ip = self.kv_cache["k_ip"], self.kv_cache["v_ip"]
            q_main = rope_apply(self.norm_q(self.q(x)), freqs, n)
            k_main = rope_apply(self.norm_k(self.k(x)), freqs, n)
            return self.o(attention(q_main, torch.concat([k_main, k_ip], 1), torch.concat([self.v(x), v_ip], 1), n))
        q, k = rope_apply(self.norm_q(self.q(x)), freqs, n), rope_apply(self.norm_k(self.k(x)), freqs, n)
        return self.o(attention(q, k, self.v(x), n))


class CrossAttention(nn.Module):
    def __init__(self, dim, num_heads, eps=1e-6):
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(dim, eps=eps), RMSNorm(dim, eps=eps)

    def forward(self, x, y):
        return self.o(attention(self.norm_q(self.q(x)), self.norm_k(self.k(y)), self.v(y), self.num_heads))


def modulate(x, shift, scale):
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    def __init__(self, dim, num_heads, ffn_dim, eps=1e-6):
        super().__init__()
        self.self_attn = SelfAttention(dim, num_heads, eps)
        self.cross_attn = CrossAttention(dim, num_heads, eps)
        self.norm1 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.norm3 = nn.LayerNorm(dim, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(self, x, context, t_mod, freqs, x_ip=None, t_mod_ip=None):
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (self.modulation + t_mod).chunk(6, dim=1)
        input_x = modulate(self.norm1(x), shift_msa, scale_msa)
        if x_ip is not None:
            shift_msa_ip, scale_msa_ip, gate_msa_ip, shift_mlp_ip, scale_mlp_ip, gate_mlp_ip = (
                self.modulation + t_mod_ip
            ).chunk(6, dim=1)
            input_x_ip = modulate(self.norm1(x_ip), shift_msa_ip, scale_msa_ip)
            self.self_attn.cond_size = input_x_ip.shape[1]
            input_x = torch.concat([input_x, input_x_ip], dim=1)
            self.self_attn.kv_cache = None
        attn_out = self.self_attn(input_x, freqs)
        if x_ip is not None:
            attn_out, attn_out_ip = attn_out[:, : -self.self_attn.cond_size], attn_out[:, -self.self_attn.cond_size :]
        x = x + gate_msa * attn_out
        x = x + self.cross_attn(self.norm3(x), context)
        x = x + gate_mlp * self.ffn(modulate(self.norm2(x), shift_mlp, scale_mlp))
        if x_ip is not None:
            x_ip = x_ip + gate_msa_ip * attn_out_ip
            x_ip = x_ip + gate_mlp_ip * self.ffn(modulate(self.norm2(x_ip), shift_mlp_ip, scale_mlp_ip))
        return x, x_ip


class Head(nn.Module):
    def __init__(self, dim, out_dim, patch_size, eps):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out_dim * math.prod(patch_size))
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x, t_mod):
        shift, scale = (self.modulation + t_mod).chunk(2, dim=1)
        return self.head(self.norm(x) * (1 + scale) + shift)


class WanModel(nn.Module):
    def __init__(self, dim, in_dim, ffn_dim, out_dim, text_dim, freq_dim, eps, patch_size, num_heads, num_layers):
        super().__init__()
        self.dim, self.freq_dim, self.patch_size = dim, freq_dim, patch_size
        self.patch_embedding = nn.Conv3d(in_dim, dim, kernel_size=patch_size, stride=patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim * 6))
        self.blocks = nn.ModuleList(DiTBlock(dim, num_heads, ffn_dim, eps) for _ in range(num_layers))
        self.head = Head(dim, out_dim, patch_size, eps)
        self.freqs = precompute_freqs_cis_3d(dim // num_heads)

    def patchify(self, x):
        x = self.patch_embedding(x)
        return x.flatten(2).transpose(1, 2).contiguous(), x.shape[2:]

    def unpatchify(self, x, grid_size):
        f, h, w = grid_size
        x = x.reshape(x.shape[0], f, h, w, *self.patch_size, -1)
        return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(x.shape[0], -1, f * self.patch_size[0],
                                                         h * self.patch_size[1], w * self.patch_size[2])  # fmt: skip


def model_fn_wan_video(dit, latents, timestep, context, ip_image=None):
    x_ip = t_mod_ip = None
    t = dit.time_embedding(sinusoidal_embedding_1d(dit.freq_dim, timestep))
    t_mod = dit.time_projection(t).unflatten(1, (6, dit.dim))
    if ip_image is not None:
        t_ip = dit.time_embedding(sinusoidal_embedding_1d(dit.freq_dim, torch.zeros_like(timestep)))
        t_mod_ip = dit.time_projection(t_ip).unflatten(1, (6, dit.dim))
    context = dit.text_embedding(context)
    x, (f, h, w) = dit.patchify(latents)
    offset = 1
    freqs = torch.cat([
        dit.freqs[0][offset : f + offset].view(f, 1, 1, -1).expand(f, h, w, -1),
        dit.freqs[1][offset : h + offset].view(1, h, 1, -1).expand(f, h, w, -1),
        dit.freqs[2][offset : w + offset].view(1, 1, w, -1).expand(f, h, w, -1),
    ], dim=-1).reshape(f * h * w, 1, -1)  # fmt: skip
    if ip_image is not None:
        x_ip, (f_ip, h_ip, w_ip) = dit.patchify(ip_image)
        freqs_ip = torch.cat([
            dit.freqs[0][0].view(f_ip, 1, 1, -1).expand(f_ip, h_ip, w_ip, -1),
            dit.freqs[1][h + offset : h + offset + h_ip].view(1, h_ip, 1, -1).expand(f_ip, h_ip, w_ip, -1),
            dit.freqs[2][w + offset : w + offset + w_ip].view(1, 1, w_ip, -1).expand(f_ip, h_ip, w_ip, -1),
        ], dim=-1).reshape(f_ip * h_ip * w_ip, 1, -1)  # fmt: skip
        freqs = torch.cat([freqs, freqs_ip], dim=0)
    for block in dit.blocks:
        x, x_ip = block(x, context, t_mod, freqs, x_ip=x_ip, t_mod_ip=t_mod_ip)
    return dit.unpatchify(dit.head(x, t), (f, h, w))


class FlowMatchScheduler:
    def __init__(self, shift=5, num_train_timesteps=1000):
        self.shift, self.num_train_timesteps = shift, num_train_timesteps

    def set_timesteps(self, num_inference_steps):
        sigmas = torch.linspace(1.0, 0.0, num_inference_steps + 1)[:-1]
        self.sigmas = self.shift * sigmas / (1 + (self.shift - 1) * sigmas)
        self.timesteps = self.sigmas * self.num_train_timesteps

    def step(self, model_output, timestep, sample):
        timestep_id = torch.argmin((self.timesteps - timestep).abs())
        sigma_ = 0 if timestep_id + 1 >= len(self.timesteps) else self.sigmas[timestep_id + 1]
        return sample + model_output * (sigma_ - self.sigmas[timestep_id])


def their_denoise(dit, dit2, latents, context, context_nega, ip_latents, steps, cfg_scale=5.0, boundary=0.875):
    """Their pipeline's loop: ip_image on the first call (and on the first call of dit2), the cache after."""
    scheduler = FlowMatchScheduler(shift=5)
    scheduler.set_timesteps(steps)
    model, ip_image = dit, ip_latents
    for progress_id, timestep in enumerate(scheduler.timesteps):
        if timestep.item() < boundary * scheduler.num_train_timesteps and dit2 is not None and model is not dit2:
            model, ip_image = dit2, ip_latents
        timestep = timestep.unsqueeze(0)
        posi = model_fn_wan_video(model, latents, timestep, context, ip_image=ip_image)
        ip_image = None
        nega = model_fn_wan_video(model, latents, timestep, context_nega, ip_image=ip_image)
        latents = scheduler.step(nega + cfg_scale * (posi - nega), scheduler.timesteps[progress_id], latents)
    return latents


def from_diffusers(state_dict):
    """WanModelStateDictConverter.from_diffusers: diffusers' names -> theirs."""
    rename = {
        "attn1.norm_k.weight": "self_attn.norm_k.weight", "attn1.norm_q.weight": "self_attn.norm_q.weight",
        "attn1.to_k.bias": "self_attn.k.bias", "attn1.to_k.weight": "self_attn.k.weight",
        "attn1.to_out.0.bias": "self_attn.o.bias", "attn1.to_out.0.weight": "self_attn.o.weight",
        "attn1.to_q.bias": "self_attn.q.bias", "attn1.to_q.weight": "self_attn.q.weight",
        "attn1.to_v.bias": "self_attn.v.bias", "attn1.to_v.weight": "self_attn.v.weight",
        "attn2.norm_k.weight": "cross_attn.norm_k.weight", "attn2.norm_q.weight": "cross_attn.norm_q.weight",
        "attn2.to_k.bias": "cross_attn.k.bias", "attn2.to_k.weight": "cross_attn.k.weight",
        "attn2.to_out.0.bias": "cross_attn.o.bias", "attn2.to_out.0.weight": "cross_attn.o.weight",
        "attn2.to_q.bias": "cross_attn.q.bias", "attn2.to_q.weight": "cross_attn.q.weight",
        "attn2.to_v.bias": "cross_attn.v.bias", "attn2.to_v.weight": "cross_attn.v.weight",
        "ffn.net.0.proj.bias": "ffn.0.bias", "ffn.net.0.proj.weight": "ffn.0.weight",
        "ffn.net.2.bias": "ffn.2.bias", "ffn.net.2.weight": "ffn.2.weight",
        "norm2.bias": "norm3.bias", "norm2.weight": "norm3.weight", "scale_shift_table": "modulation",
    }  # fmt: skip
    top = {
        "condition_embedder.text_embedder.linear_1": "text_embedding.0",
        "condition_embedder.text_embedder.linear_2": "text_embedding.2",
        "condition_embedder.time_embedder.linear_1": "time_embedding.0",
        "condition_embedder.time_embedder.linear_2": "time_embedding.2",
        "condition_embedder.time_proj": "time_projection.1", "patch_embedding": "patch_embedding",
        "proj_out": "head.head",
    }  # fmt: skip
    out = {}
    for name, param in state_dict.items():
        if name == "scale_shift_table":
            out["head.modulation"] = param
        elif name.startswith("blocks."):
            _, index, rest = name.split(".", 2)
            out[f"blocks.{index}.{rename[rest]}"] = param
        else:
            prefix, leaf = name.rsplit(".", 1)
            out[f"{top[prefix]}.{leaf}"] = param
    return out


def load_lora_weights_into_dit(dit, state_dict):
    """Their strict loader: every key must name a LoRA weight of the model, every LoRA weight must be there."""
    model = {f"blocks.{i}.self_attn.{name}.{sub}.weight": getattr(getattr(block.self_attn, name), sub).weight
             for i, block in enumerate(dit.blocks) for name in ("q_loras", "k_loras", "v_loras")
             for sub in ("down", "up")}  # fmt: skip
    assert set(state_dict) == set(model)
    for key, param in state_dict.items():
        assert model[key].shape == param.shape
        model[key].data.copy_(param)


def their_dit(transformer, adapter) -> WanModel:
    config = transformer.config
    dim = config.num_attention_heads * config.attention_head_dim
    dit = WanModel(dim, config.in_channels, config.ffn_dim, config.out_channels, config.text_dim, config.freq_dim,
                   config.eps, tuple(config.patch_size), config.num_attention_heads, config.num_layers)  # fmt: skip
    dit.load_state_dict(from_diffusers(transformer.state_dict()), strict=True)
    for block in dit.blocks:
        block.self_attn.init_lora(adapter.config.rank)
    load_lora_weights_into_dit(dit, adapter.state_dict())
    return dit.eval()


# --------------------------------------------------------------------------------------------------------------


def _ckpt(adapter: StandInAdapter) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in adapter.state_dict().items()}


def test_their_checkpoint_layout_loads_unchanged_with_weights_only(tmp_path: Path) -> None:
    adapter = tiny_adapter(tiny_transformer())
    state = _ckpt(adapter)
    assert sorted(state)[:2] == ["blocks.0.self_attn.k_loras.down.weight", "blocks.0.self_attn.k_loras.up.weight"]
    for name, content in (("Stand-In_wan2.1_T2V_14B.ckpt", state), ("Stand-In_wan2.2_T2V_A14B_low.ckpt",
                                                                     {"state_dict": state})):  # fmt: skip
        torch.save(content, tmp_path / name)
        loaded = StandInAdapter.from_checkpoint(tmp_path / name)
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
        assert (loaded.config.num_layers, loaded.config.dim, loaded.config.rank) == (2, 24, 8)
        assert (loaded.config.wan_version, loaded.config.expert) == checkpoint_version(name)
    assert checkpoint_version("Stand-In_wan2.2_T2V_A14B_high.ckpt") == ("2.2", "high")
    assert checkpoint_version("Stand-In_wan2.1_T2V_14B.ckpt") == ("2.1", None)
    torch.save({**state, "blocks.0.self_attn.o_loras.up.weight": torch.zeros(1)}, tmp_path / "extra.ckpt")
    with pytest.raises(MissingWeightsError, match="unexpected \\['blocks.0.self_attn.o_loras.up.weight'\\]"):
        StandInAdapter.from_checkpoint(tmp_path / "extra.ckpt")
    torch.save({"net": state}, tmp_path / "other.ckpt")
    with pytest.raises(MissingWeightsError, match="not a Stand-In checkpoint"):
        StandInAdapter.from_checkpoint(tmp_path / "other.ckpt")
    with open(tmp_path / "code.ckpt", "wb") as handle:
        pickle.dump({"blocks.0": print}, handle)  # a pickle that would call code
    with pytest.raises(UnsafeWeightsError, match="weights_only"):
        StandInAdapter.from_checkpoint(tmp_path / "code.ckpt")


def test_install_without_reference_and_remove_leave_diffusers_wan(dlib_analyzer) -> None:
    """Without a face the installed processors are Wan's own: the frames of diffusers' WanPipeline, bit for bit;
    the adapter's weights never enter the transformer."""
    pipe = tiny_stand_in_pipeline(dlib_analyzer)
    pipe.set_progress_bar_config(disable=True)
    wan = WanPipeline(**{k: v for k, v in pipe.components.items() if not k.startswith("stand_in")})
    wan.set_progress_bar_config(disable=True)
    keys = set(pipe.transformer.state_dict())
    run = dict(prompt="a person", num_inference_steps=2, output_type="np", max_sequence_length=16, **TINY_CALL)
    ours = pipe(**run, generator=torch.Generator().manual_seed(0)).frames
    theirs = wan(**run, generator=torch.Generator().manual_seed(0)).frames
    np.testing.assert_array_equal(ours, theirs)
    assert set(pipe.transformer.state_dict()) == keys
    StandInAdapter.remove(pipe.transformer)
    assert not any(isinstance(b.attn1.processor, StandInAttnProcessor) for b in pipe.transformer.blocks)
    np.testing.assert_array_equal(wan(**run, generator=torch.Generator().manual_seed(0)).frames, theirs)


@pytest.fixture(scope="module")
def face(portrait) -> np.ndarray:
    return portrait


def _their_frames(pipe, prompt_embeds, negative_embeds, latents, reference, steps) -> np.ndarray:
    """Their loop on their model with the reference's latents (encoded by the same VAE), decoded by the same VAE."""
    dits = [their_dit(t, a) for t, a in ((pipe.transformer, pipe.stand_in), (pipe.transformer_2, pipe.stand_in_2))
            if t is not None]  # fmt: skip
    vae = pipe.vae
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    with torch.no_grad():  # their encode_ip_image: [-1, 1] pixels, the posterior's mean, (mu - mean) / std
        pixels = torch.tensor(np.array(reference)).permute(2, 0, 1).float() / 255.0
        ip_latents = (vae.encode(pixels.unsqueeze(1).unsqueeze(0) * 2 - 1).latent_dist.mode() - mean) / std
        out = their_denoise(dits[0], dits[1] if len(dits) > 1 else None, latents, prompt_embeds, negative_embeds,
                            ip_latents, steps)  # fmt: skip
        video = vae.decode(out * std + mean, return_dict=False)[0]
    return pipe.video_processor.postprocess_video(video, output_type="np")


@pytest.mark.parametrize("wan22", [False, True], ids=["wan2.1", "wan2.2"])
def test_frames_equal_stand_ins_own_computation(dlib_analyzer, face, wan22) -> None:
    """The same tiny weights in the published layouts, the same face, noise and prompt embeddings: Stand-In's code
    and genface's give the same frames (float32 rounding: their rotary and time embeddings run in float64)."""
    pipe = tiny_stand_in_pipeline(dlib_analyzer, wan22=wan22)
    pipe.set_progress_bar_config(disable=True)
    steps = 4  # with Wan 2.2's boundary at 0.875 the first step is the high-noise expert's, the rest the low one's
    gen = torch.Generator().manual_seed(3)
    prompt_embeds, negative_embeds = torch.randn(1, 16, 32, generator=gen), torch.randn(1, 16, 32, generator=gen)
    latents = torch.randn(1, 16, 3, 4, 4, generator=gen)
    ours = pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, latents=latents, face_image=face,
                num_inference_steps=steps, measure=False, **TINY_CALL)  # fmt: skip
    theirs = _their_frames(pipe, prompt_embeds, negative_embeds, latents, ours.reference, steps)
    plain = pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds, latents=latents,
                 num_inference_steps=steps, **TINY_CALL).frames  # fmt: skip
    assert np.abs(plain - theirs).max() > 1e-2  # the face changes the frames...
    np.testing.assert_allclose(ours.frames, theirs, atol=1e-6)  # ...as Stand-In's own code does (1.2e-7 here)
    assert [state.reference_passes for state in pipe.states] == [1] * (2 if wan22 else 1)


def test_the_reference_cache_is_exact(dlib_analyzer, face) -> None:
    """Stand-In's key/value cache: the reference tokens pass through the blocks once per transformer and call
    (cached) or on every transformer call (off); the frames are identical."""
    pipe = tiny_stand_in_pipeline(dlib_analyzer)
    pipe.set_progress_bar_config(disable=True)
    run = dict(prompt="a person", face_image=face, num_inference_steps=3, output_type="np", max_sequence_length=16,
               measure=False, **TINY_CALL)  # fmt: skip
    cached = pipe(**run, generator=torch.Generator().manual_seed(0)).frames
    assert pipe.states[0].reference_passes == 1
    pipe.reference_cache = False
    try:
        uncached = pipe(**run, generator=torch.Generator().manual_seed(0)).frames
    finally:
        pipe.reference_cache = True
    assert pipe.states[0].reference_passes == 1 + 6  # 3 steps x 2 guidance passes
    np.testing.assert_array_equal(cached, uncached)


def test_an_adapter_of_another_size_or_version_is_refused(dlib_analyzer) -> None:
    transformer = tiny_transformer()
    wide = tiny_transformer(num_attention_heads=4)
    with pytest.raises(InvalidArgumentError, match="fits a Wan transformer of 2 blocks of width 24"):
        tiny_adapter(transformer).install(wide)
    pipe = tiny_stand_in_pipeline(dlib_analyzer)
    components = {k: v for k, v in pipe.components.items() if k != "stand_in"}
    with pytest.raises(InvalidArgumentError, match="for Wan 2.2 \\(high-noise expert\\); the pipeline is Wan 2.1"):
        StandInPipeline(**components, stand_in=tiny_adapter(transformer, wan_version="2.2", expert="high"))
