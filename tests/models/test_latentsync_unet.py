"""LatentSync's UNet (genface.models.latentsync) against their computation, the published files and the versions.

The parity test writes their ``UNet3DConditionModel`` their way (``latentsync/models/unet.py``, ``unet_blocks.py``,
``resnet.py``, ``attention.py``, ``motion_module.py``): a 5-D ``(b, c, f, h, w)`` tensor, ``InflatedConv3d`` and
``Transformer3DModel`` frame by frame, ``nn.GroupNorm`` on the 5-D tensor (statistics over the clip), the motion
modules' group norm per frame; on the published state dict's names. First checked against their own code
(installed outside the repo): 7e-7 apart on these tiny weights, and the same 1246 tensor names and shapes at the
published size.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.embeddings import get_timestep_embedding

from genface.errors import InvalidArgumentError, MissingWeightsError
from genface.models.latentsync.published import (
    UNET_CONFIG,
    load_openai_whisper,
    load_unet,
    read_config,
)
from genface.models.latentsync.unet import LatentSyncUNet

#: The published configuration at toy widths (the tiny model's, pipelines/talking_face/tiny_latentsync.py).
TINY = dict(
    UNET_CONFIG,
    block_out_channels=[32, 32, 64, 64],
    cross_attention_dim=16,
    attention_head_dim=2,
    sample_size=8,
    motion_module_kwargs=dict(UNET_CONFIG["motion_module_kwargs"], num_attention_heads=2),
)


def _random_state(config: dict, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random weights in the published layout (zero-initialised outputs too, so every path counts)."""
    torch.manual_seed(seed)
    state = LatentSyncUNet.from_config(config).state_dict()
    return {k: v if k.endswith(".pe") else torch.randn_like(v) * 0.1 for k, v in state.items()}


# -- their UNet3DConditionModel, written their way ------------------------------------------------------------------


def _frames(x: torch.Tensor, fn) -> torch.Tensor:
    """rearrange "b c f h w -> (b f) c h w", fn, and back (InflatedConv3d, Transformer3DModel)."""
    b, c, f, h, w = x.shape
    y = fn(x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w))
    return y.reshape(b, f, *y.shape[1:]).permute(0, 2, 1, 3, 4)


def _conv(x, sd, p, stride=1, padding=1):
    return _frames(x, lambda t: F.conv2d(t, sd[p + ".weight"], sd[p + ".bias"], stride, padding))


def _resnet(x, temb, sd, p, groups, eps):
    h = F.silu(F.group_norm(x, groups, sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps))  # nn.GroupNorm on 5-D
    h = _conv(h, sd, p + "conv1")
    h = h + F.linear(F.silu(temb), sd[p + "time_emb_proj.weight"], sd[p + "time_emb_proj.bias"])[:, :, None, None, None]
    h = _conv(F.silu(F.group_norm(h, groups, sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps)), sd, p + "conv2")
    if p + "conv_shortcut.weight" in sd:
        x = _conv(x, sd, p + "conv_shortcut", padding=0)
    return x + h


def _attention(x, context, sd, p, heads):
    """Their Attention: to_q/k/v, split heads, F.scaled_dot_product_attention, concat, to_out."""

    def split(t):
        return t.reshape(t.shape[0], t.shape[1], heads, -1).permute(0, 2, 1, 3)

    q, k, v = (
        split(F.linear(s, sd[p + n + ".weight"])) for s, n in ((x, "to_q"), (context, "to_k"), (context, "to_v"))
    )
    out = F.scaled_dot_product_attention(q, k, v).permute(0, 2, 1, 3).flatten(2)
    return F.linear(out, sd[p + "to_out.0.weight"], sd[p + "to_out.0.bias"])


def _ff(x, sd, p):
    hidden, gate = F.linear(x, sd[p + "net.0.proj.weight"], sd[p + "net.0.proj.bias"]).chunk(2, dim=-1)
    return F.linear(hidden * F.gelu(gate), sd[p + "net.2.weight"], sd[p + "net.2.bias"])


def _ln(x, sd, p):
    return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"])


def _transformer3d(x, audio, sd, p, heads, groups):
    def per_frame(t):
        bf, c, h, w = t.shape
        y = F.group_norm(t, groups, sd[p + "norm.weight"], sd[p + "norm.bias"], 1e-6)
        y = F.conv2d(y, sd[p + "proj_in.weight"], sd[p + "proj_in.bias"]).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        q = p + "transformer_blocks.0."
        y = _attention(_ln(y, sd, q + "norm1"), _ln(y, sd, q + "norm1"), sd, q + "attn1.", heads) + y
        y = _attention(_ln(y, sd, q + "norm2"), audio, sd, q + "attn2.", heads) + y
        y = _ff(_ln(y, sd, q + "norm3"), sd, q + "ff.") + y
        y = y.reshape(bf, h, w, c).permute(0, 3, 1, 2)
        return F.conv2d(y, sd[p + "proj_out.weight"], sd[p + "proj_out.bias"]) + t

    return _frames(x, per_frame)


def _motion(x, sd, p, heads):
    p = p + "temporal_transformer."
    f = x.shape[2]

    def per_frame(t):
        bf, c, h, w = t.shape
        y = F.group_norm(t, 32, sd[p + "norm.weight"], sd[p + "norm.bias"], 1e-6).permute(0, 2, 3, 1)
        y = F.linear(y.reshape(bf, h * w, c), sd[p + "proj_in.weight"], sd[p + "proj_in.bias"])
        q = p + "transformer_blocks.0."
        for j in range(2):  # two Temporal_Self attention blocks, each with its position code
            n = _ln(y, sd, f"{q}norms.{j}")
            n = n.reshape(bf // f, f, h * w, c).permute(0, 2, 1, 3).reshape(-1, f, c)  # (b f) s c -> (b s) f c
            n = n + sd[f"{q}attention_blocks.{j}.pos_encoder.pe"][:, :f]
            o = _attention(n, n, sd, f"{q}attention_blocks.{j}.", heads)
            y = o.reshape(bf // f, h * w, f, c).permute(0, 2, 1, 3).reshape(bf, h * w, c) + y
        y = _ff(_ln(y, sd, q + "ff_norm"), sd, q + "ff.") + y
        y = F.linear(y, sd[p + "proj_out.weight"], sd[p + "proj_out.bias"])
        return y.reshape(bf, h, w, c).permute(0, 3, 1, 2) + t

    return _frames(x, per_frame)


def _their_unet(sd, config, sample, t, audio):
    groups, eps, heads = config["norm_num_groups"], config["norm_eps"], config["attention_head_dim"]
    motion_heads = config["motion_module_kwargs"]["num_attention_heads"]
    temb = get_timestep_embedding(torch.tensor([t]).expand(sample.shape[0]), config["block_out_channels"][0], True, 0)
    temb = F.linear(F.silu(F.linear(temb, sd["time_embedding.linear_1.weight"], sd["time_embedding.linear_1.bias"])),
                    sd["time_embedding.linear_2.weight"], sd["time_embedding.linear_2.bias"])  # fmt: skip
    audio = audio.flatten(0, 1)  # "b f s d -> (b f) s d"
    x = _conv(sample, sd, "conv_in")
    skips = [x]
    for i, kind in enumerate(config["down_block_types"]):
        for j in range(config["layers_per_block"]):
            p = f"down_blocks.{i}."
            x = _resnet(x, temb, sd, f"{p}resnets.{j}.", groups, eps)
            if kind.startswith("CrossAttn"):
                x = _transformer3d(x, audio, sd, f"{p}attentions.{j}.", heads, groups)
            x = _motion(x, sd, f"{p}motion_modules.{j}.", motion_heads)
            skips.append(x)
        if i < len(config["down_block_types"]) - 1:
            x = _conv(x, sd, f"down_blocks.{i}.downsamplers.0.conv", stride=2)
            skips.append(x)
    x = _resnet(x, temb, sd, "mid_block.resnets.0.", groups, eps)
    x = _transformer3d(x, audio, sd, "mid_block.attentions.0.", heads, groups)
    x = _resnet(x, temb, sd, "mid_block.resnets.1.", groups, eps)
    for i, kind in enumerate(config["up_block_types"]):
        for j in range(config["layers_per_block"] + 1):
            p = f"up_blocks.{i}."
            x = _resnet(torch.cat([x, skips.pop()], dim=1), temb, sd, f"{p}resnets.{j}.", groups, eps)
            if kind.startswith("CrossAttn"):
                x = _transformer3d(x, audio, sd, f"{p}attentions.{j}.", heads, groups)
            x = _motion(x, sd, f"{p}motion_modules.{j}.", motion_heads)
        if i < len(config["up_block_types"]) - 1:
            x = F.interpolate(x, scale_factor=[1.0, 2.0, 2.0], mode="nearest")
            x = _conv(x, sd, f"up_blocks.{i}.upsamplers.0.conv")
    x = F.silu(F.group_norm(x, groups, sd["conv_norm_out.weight"], sd["conv_norm_out.bias"], eps))
    return _conv(x, sd, "conv_out")


def test_unet_equals_their_computation_on_the_published_layout() -> None:
    state = _random_state(TINY)
    unet = LatentSyncUNet.from_config(TINY).eval()
    unet.load_state_dict(state)  # the published names, unchanged
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 13, 5, 16, 16, generator=generator)
    audio = torch.randn(2, 5, 50, 16, generator=generator)
    with torch.no_grad():
        ours = unet(sample, torch.tensor(801), encoder_hidden_states=audio).sample
        theirs = _their_unet(state, TINY, sample, 801, audio)
        single = unet(sample[:, :, :1], 801, encoder_hidden_states=audio[:, :1]).sample
    assert ours.shape == (2, 4, 5, 16, 16)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=2e-5)
    # the clip's frames depend on each other (group norms over the clip, motion modules): one frame alone differs
    assert (single[:, :, 0] - ours[:, :, 0]).abs().max() > 1e-3


def test_the_published_size_has_their_tensor_names() -> None:
    """Counted on their code at configs/unet/stage2_512.yaml's model: 1246 tensors holding 1,267,944,644 values."""
    with torch.device("meta"):
        state = LatentSyncUNet.from_config(UNET_CONFIG).state_dict()
    assert len(state) == 1246 and sum(t.numel() for t in state.values()) == 1_267_944_644
    for name in (
        "down_blocks.0.motion_modules.1.temporal_transformer.transformer_blocks.0.attention_blocks.1.pos_encoder.pe",
        "up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_k.weight",
        "down_blocks.3.resnets.1.time_emb_proj.weight",
        "up_blocks.0.upsamplers.0.conv.weight",
        "mid_block.attentions.0.proj_in.weight",
    ):
        assert name in state, name
    assert state["down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"].shape == (640, 384)
    assert not any(k.startswith("mid_block.motion_modules") for k in state)


def test_published_checkpoint_loads_with_weights_only_and_wrong_files_are_refused(tmp_path) -> None:
    state = _random_state(TINY)
    path = tmp_path / "latentsync_unet.pt"
    torch.save({"state_dict": state, "global_step": 7}, path)
    unet, resolution = load_unet(path, TINY)
    assert resolution == 512 and all(torch.equal(unet.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(MissingWeightsError, match="does not fit the LatentSync UNet config"):
        load_unet(path, dict(TINY, cross_attention_dim=8))
    with pytest.raises(InvalidArgumentError, match="multiple of 64"):
        load_unet(path, TINY, resolution=300)


def test_a_published_checkpoint_with_the_other_versions_config_is_refused_before_reading(tmp_path) -> None:
    """The two versions are one network: their published files are told apart by size, before anything is read."""
    version_15 = tmp_path / "v15" / "latentsync_unet.pt"
    version_15.parent.mkdir()
    with open(version_15, "wb") as f:  # a sparse file of 1.5's size holding no pickle at all
        f.truncate(5_072_348_184)
    config = tmp_path / "stage2_512.yaml"
    config.write_text(
        "data:\n  num_frames: 16\n  resolution: 512\n  audio_feat_length: [2, 2]\nmodel:\n  in_channels: 13\n"
    )
    with pytest.raises(InvalidArgumentError, match=r"LatentSync 1.5's checkpoint \(trained at 256 px\).*stage2\.yaml"):
        load_unet(version_15, config)
    with pytest.raises(InvalidArgumentError, match="LatentSync 1.5's checkpoint"):
        load_unet(version_15, resolution=512)
    assert read_config(config) == ({"in_channels": 13}, 512)
    config.write_text("data:\n  num_frames: 8\nmodel:\n  in_channels: 13\n")
    with pytest.raises(InvalidArgumentError, match="clips of 16 frames"):
        read_config(config)


def _their_whisper_encoder(state: dict, mel: torch.Tensor, heads: int) -> list[torch.Tensor]:
    """OpenAI Whisper's AudioEncoder(include_embeddings=True) (latentsync/whisper/whisper/model.py): the input
    embeddings and each ResidualAttentionBlock's output."""
    x = F.gelu(F.conv1d(mel, state["encoder.conv1.weight"], state["encoder.conv1.bias"], padding=1))
    x = F.gelu(F.conv1d(x, state["encoder.conv2.weight"], state["encoder.conv2.bias"], stride=2, padding=1))
    x = x.permute(0, 2, 1) + state["encoder.positional_embedding"]
    out = [x]
    for i in range(2):
        p = f"encoder.blocks.{i}."

        def lin(t, name, bias=True, p=p):
            return F.linear(t, state[p + name + ".weight"], state[p + name + ".bias"] if bias else None)

        h = F.layer_norm(x, x.shape[-1:], state[p + "attn_ln.weight"], state[p + "attn_ln.bias"])
        scale = (h.shape[-1] // heads) ** -0.25
        q, k, v = lin(h, "attn.query") * scale, lin(h, "attn.key", False) * scale, lin(h, "attn.value")
        q, k, v = (t.view(*t.shape[:2], heads, -1).permute(0, 2, 1, 3) for t in (q, k, v))
        w = (q @ k.transpose(-1, -2)).softmax(-1)
        x = x + lin((w @ v).permute(0, 2, 1, 3).flatten(2), "attn.out")
        h = F.layer_norm(x, x.shape[-1:], state[p + "mlp_ln.weight"], state[p + "mlp_ln.bias"])
        x = x + lin(F.gelu(lin(h, "mlp.0")), "mlp.2")
        out.append(x)
    return out


def test_openai_whisper_checkpoint_gives_their_encoder_states(tmp_path) -> None:
    """LatentSync's whisper/tiny.pt layout (OpenAI's: dims + model_state_dict) at toy size, random weights."""
    from transformers import WhisperFeatureExtractor

    from genface.models.latentsync.audio import LatentSyncWhisper

    width, layers, heads, vocab, text = 16, 2, 2, 100, 8
    shapes = {
        "encoder.conv1.weight": (width, 80, 3), "encoder.conv1.bias": (width,),
        "encoder.conv2.weight": (width, width, 3), "encoder.conv2.bias": (width,),
        "encoder.positional_embedding": (1500, width), "encoder.ln_post.weight": (width,),
        "encoder.ln_post.bias": (width,), "decoder.token_embedding.weight": (vocab, width),
        "decoder.positional_embedding": (text, width), "decoder.ln.weight": (width,), "decoder.ln.bias": (width,),
    }  # fmt: skip
    block = {"attn.query.weight": (width, width), "attn.query.bias": (width,), "attn.key.weight": (width, width),
             "attn.value.weight": (width, width), "attn.value.bias": (width,), "attn.out.weight": (width, width),
             "attn.out.bias": (width,), "attn_ln.weight": (width,), "attn_ln.bias": (width,),
             "mlp.0.weight": (4 * width, width), "mlp.0.bias": (4 * width,), "mlp.2.weight": (width, 4 * width),
             "mlp.2.bias": (width,), "mlp_ln.weight": (width,), "mlp_ln.bias": (width,)}  # fmt: skip
    cross = {k.replace("attn", "cross_attn"): v for k, v in block.items() if "attn" in k}
    for i in range(layers):
        shapes.update({f"encoder.blocks.{i}.{k}": v for k, v in block.items()})
    shapes.update({f"decoder.blocks.0.{k}": v for k, v in {**block, **cross}.items()})
    generator = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v, generator=generator) * 0.2 for k, v in shapes.items()}
    dims = dict(n_mels=80, n_audio_ctx=1500, n_audio_state=width, n_audio_head=heads, n_audio_layer=layers,
                n_vocab=vocab, n_text_ctx=text, n_text_state=width, n_text_head=heads, n_text_layer=1)  # fmt: skip
    torch.save({"dims": dims, "model_state_dict": state}, tmp_path / "tiny.pt")
    whisper = LatentSyncWhisper(load_openai_whisper(tmp_path / "tiny.pt"), WhisperFeatureExtractor())
    mel = torch.randn(80, 1400, generator=generator)
    padded = F.pad(mel, (0, 1600))  # pad_or_trim: the piece zero-padded to 3000 mel frames
    theirs = torch.stack(_their_whisper_encoder(state, padded[None], heads), dim=2)[0, :700]
    torch.testing.assert_close(whisper.encode(mel), theirs, rtol=1e-4, atol=1e-4)
