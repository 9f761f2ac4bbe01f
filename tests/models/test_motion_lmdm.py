"""Ditto's LMDM, its windowed generation, condition vector and HuBERT features against their computation written
their way (ditto-talkinghead: core/models/modules/LMDM.py, lmdm_modules/model.py, atomic_components/
audio2motion.py, condition_handler.py, wav2feat.py, stream_pipeline_offline.py, stream_pipeline_online.py,
inference.py), on tiny random weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from genface.errors import InvalidArgumentError
from genface.models.motion.audio import HubertFeatures
from genface.models.motion.lmdm import (
    LMDM,
    MotionConditions,
    MotionGenerator,
    emotion_probabilities,
    generate_motion,
    motion_bounds,
)

HEADS = 2


@pytest.fixture(scope="module")
def lmdm() -> LMDM:
    torch.manual_seed(0)
    model = LMDM(**LMDM.tiny_config()).eval()
    with torch.no_grad():  # LayerNorms and biases away from their 1 / 0 defaults
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return model


# ---- their computation, written functionally on the state dict --------------------------------------------------


def _rotate(x: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """rotary_embedding_torch: freqs per position, repeated '(n r)', rotate_half on interleaved pairs."""
    angles = torch.einsum("i,f->if", torch.arange(x.shape[-2]).float(), freqs).repeat_interleave(2, dim=-1)
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    half = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).reshape(x.shape)
    return x * angles.cos() + half * angles.sin()


def _mha(sd: dict, prefix: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    w, b = sd[f"{prefix}.in_proj_weight"], sd[f"{prefix}.in_proj_bias"]
    d, heads = q.shape[-1], sd["num_heads"]
    qs, ks, vs = (F.linear(t, w[i * d : (i + 1) * d], b[i * d : (i + 1) * d]) for i, t in enumerate((q, k, v)))
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    attn = torch.softmax(split(qs) @ split(ks).transpose(-1, -2) / math.sqrt(d // heads), dim=-1) @ split(vs)
    return F.linear(
        attn.transpose(1, 2).reshape(q.shape), sd[f"{prefix}.out_proj.weight"], sd[f"{prefix}.out_proj.bias"]
    )


def _ln(sd: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"])


def _lin(sd: dict, prefix: str, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, sd[f"{prefix}.weight"], sd[f"{prefix}.bias"])


def _ff(sd: dict, p: str, x: torch.Tensor) -> torch.Tensor:
    return _lin(sd, f"{p}.linear2", F.gelu(_lin(sd, f"{p}.linear1", x)))


def _film(sd: dict, prefix: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    scale, shift = _lin(sd, f"{prefix}.block.1", F.mish(t)).unsqueeze(1).chunk(2, dim=-1)
    return (scale + 1) * x + shift


def their_decoder(sd: dict, x, cond_frame, cond_embed, times, cond_drop_prob: float) -> torch.Tensor:
    """MotionDecoder.forward (rotary, norm_first layers, FiLM decoder), cond_drop_prob 0 or 1."""
    freqs = sd["rotary.freqs"]
    b = x.shape[0]
    x = _lin(sd, "input_projection", torch.cat([x, cond_frame.unsqueeze(1).repeat(1, x.shape[1], 1)], dim=-1))
    keep = torch.ones(b, dtype=torch.bool) if cond_drop_prob == 0 else torch.zeros(b, dtype=torch.bool)
    tokens = _lin(sd, "cond_projection", cond_embed)
    for i in range(2):
        p = f"cond_encoder.{i}"
        h = _ln(sd, f"{p}.norm1", tokens)
        qk = _rotate(h, freqs)
        tokens = tokens + _mha(sd, f"{p}.self_attn", qk, qk, h)
        tokens = tokens + _ff(sd, p, _ln(sd, f"{p}.norm2", tokens))
    tokens = torch.where(keep[:, None, None], tokens, sd["null_cond_embed"])
    pooled = tokens.mean(dim=-2)
    cond_hidden = _lin(sd, "non_attn_cond_projection.3", F.silu(_lin(sd, "non_attn_cond_projection.1",
                       _ln(sd, "non_attn_cond_projection.0", pooled))))  # fmt: skip
    half = sd["time_mlp.1.weight"].shape[1] // 2
    emb = math.log(10000) / (half - 1)
    emb = torch.exp(torch.arange(half) * -emb)
    emb = times[:, None] * emb[None, :]
    t_hidden = F.mish(_lin(sd, "time_mlp.1", torch.cat((emb.sin(), emb.cos()), dim=-1)))
    t = _lin(sd, "to_time_cond.0", t_hidden)
    t_tokens = _lin(sd, "to_time_tokens.0", t_hidden).reshape(b, 2, -1)
    t = t + torch.where(keep[:, None], cond_hidden, sd["null_cond_hidden"])
    memory = _ln(sd, "norm_cond", torch.cat((tokens, t_tokens), dim=-2))
    layers = len({k.split(".")[2] for k in sd if k.startswith("seqTransDecoder.stack.")})
    for i in range(layers):
        p = f"seqTransDecoder.stack.{i}"
        h = _ln(sd, f"{p}.norm1", x)
        qk = _rotate(h, freqs)
        x = x + _film(sd, f"{p}.film1", _mha(sd, f"{p}.self_attn", qk, qk, h), t)
        h = _ln(sd, f"{p}.norm2", x)
        x = x + _film(sd, f"{p}.film2", _mha(sd, f"{p}.multihead_attn", _rotate(h, freqs), _rotate(memory, freqs),
                                              memory), t)  # fmt: skip
        x = x + _film(sd, f"{p}.film3", _ff(sd, p, _ln(sd, f"{p}.norm3", x)), t)
    return _lin(sd, "final_layer", x)


class TheirLMDM:
    """LMDM.setup / model_predictions / ddim_sample with the noises given instead of drawn."""

    def __init__(self, sd: dict, seq_frames: int, dim: int, sampling_timesteps: int, step_noise: list) -> None:
        self.sd, self.shape = sd, (1, seq_frames, dim)
        steps = torch.arange(1001, dtype=torch.float64) / 1000 + 8e-3
        alphas = torch.cos(steps / (1 + 8e-3) * np.pi / 2).pow(2)
        alphas = alphas / alphas[0]
        betas = torch.Tensor(np.clip((1 - alphas[1:] / alphas[:-1]).numpy(), a_min=0, a_max=0.999))
        self.alphas_cumprod = torch.cumprod(1.0 - betas, axis=0)
        self.sqrt_recipm1 = torch.sqrt(1.0 / self.alphas_cumprod - 1)
        self.sqrt_recip1m = torch.sqrt(1.0 / (1.0 - self.alphas_cumprod))
        times = list(reversed(torch.linspace(-1, 999, steps=sampling_timesteps + 1).int().tolist()))
        self.time_pairs = list(zip(times[:-1], times[1:], strict=True))
        self.step_noise = step_noise

    def predictions(self, x, cond_frame, cond, t: int):
        time = torch.full((1,), t, dtype=torch.long)
        unc = their_decoder(self.sd, x, cond_frame, cond, time, 1)
        conditioned = their_decoder(self.sd, x, cond_frame, cond, time, 0)
        x_start = unc + (conditioned - unc) * 2
        pred_noise = self.sqrt_recip1m[t] * x - x_start / self.sqrt_recipm1[t]
        return pred_noise, x_start

    def one_step(self, x, cond_frame, cond, i: int):
        t, t_next = self.time_pairs[i]
        pred_noise, x_start = self.predictions(x, cond_frame, cond, t)
        if t_next < 0:
            return x_start
        alpha, alpha_next = self.alphas_cumprod[t], self.alphas_cumprod[t_next]
        sigma = ((1 - alpha / alpha_next) * (1 - alpha_next) / (1 - alpha)).sqrt()
        c = (1 - alpha_next - sigma**2).sqrt()
        return x_start * alpha_next.sqrt() + c * pred_noise + sigma * self.step_noise[i]

    def __call__(self, cond_frame, cond, x):
        for i in range(len(self.time_pairs)):
            x = self.one_step(x, cond_frame, cond, i)
        return x


class TheirAudio2Motion:
    """Audio2Motion (setup / _fuse / _smo / _update_kp_cond / __call__, smo_k_d=3), noises in genface's order."""

    def __init__(self, lmdm: LMDM, source, overlap, steps, generator, online=False, fix_kp_cond=0, fix_dim=None):
        c = lmdm.config
        self.seq, self.overlap, self.valid = c.seq_frames, overlap, c.seq_frames - overlap
        self.fuse = min(overlap, self.valid) if online else overlap
        self.shape, self.generator = (1, self.seq, c.motion_feat_dim), generator
        step_noise = [torch.randn(self.shape, generator=generator) for _ in range(steps - 1)]
        self.lmdm = TheirLMDM(_their_state(lmdm), self.seq, c.motion_feat_dim, steps, step_noise)
        self.fuse_alpha = torch.arange(self.fuse, dtype=torch.float32).reshape(1, -1, 1) / self.fuse
        self.source, self.kp_cond = source[None].clone(), source[None].clone()
        self.fix_kp_cond, self.fix_dim, self.clip_idx = fix_kp_cond, fix_dim, 0

    @staticmethod
    def smo(res, s, e):
        new = res.clone()
        for i in range(s, e):
            res[:, i, :202] = new[:, max(0, i - 1) : min(res.shape[1], i + 2), :202].mean(dim=1)
        return res

    def __call__(self, aud, res):
        pred = self.lmdm(self.kp_cond, aud, torch.randn(self.shape, generator=self.generator))
        if res is None:
            res = self.smo(pred, 0, pred.shape[1])
        else:
            r1s, r2s = res.shape[1] - self.fuse, self.seq - self.valid - self.fuse
            res[:, r1s:] = res[:, r1s:] * (1 - self.fuse_alpha) + pred[:, r2s : r2s + self.fuse] * self.fuse_alpha
            res = torch.cat([res, pred[:, self.seq - self.valid :]], 1)
            res = self.smo(res, res.shape[1] - self.valid - self.fuse, res.shape[1] - self.valid + 1)
        self.clip_idx += 1
        i = res.shape[1] - self.overlap
        if self.fix_kp_cond > 0 and self.clip_idx % self.fix_kp_cond == 0:
            self.kp_cond = self.source.clone()
            if self.fix_dim is not None:
                self.kp_cond[:, self.fix_dim[0] : self.fix_dim[1]] = res[:, i - 1, self.fix_dim[0] : self.fix_dim[1]]
        else:
            self.kp_cond = res[:, i - 1]
        return res


def _pad(aud, seq):
    return torch.cat([aud, torch.stack([aud[:, -1]] * (seq - aud.shape[1]), 1)], 1) if aud.shape[1] < seq else aud


def their_offline(a2m: TheirAudio2Motion, conds):
    """stream_pipeline_offline._audio2motion_offline."""
    res, idx = None, 0
    while idx < len(conds):
        res = a2m(_pad(conds[idx : idx + a2m.seq][None], a2m.seq), res)
        idx += a2m.valid
    return a2m.smo(res[:, : len(conds)], 0, len(conds))[0]


def their_clip(motion, v_min_max_for_clip):
    """Audio2Motion.cvt_fmt's clamp: rows 0 and 1 of v_min_max_for_clip are the lower and upper bounds."""
    if v_min_max_for_clip is None:
        return motion
    return torch.from_numpy(np.clip(motion.numpy(), v_min_max_for_clip[0][None], v_min_max_for_clip[1][None]))


def their_online(a2m: TheirAudio2Motion, conds):
    """stream_pipeline_online._audio2motion_worker, every feature in and the stream ended: the motion returned and
    d0, frame 0 of the first window (``self.motion_stitch.d0 = cvt_fmt(res_kp_seq[0:1])[0]``), both unclamped."""
    res, start, local, out, d0 = None, None, 0, [], None
    while True:
        aud, real_valid = conds[local : local + a2m.seq], a2m.valid
        if len(aud) == 0:
            break
        if len(aud) < a2m.seq:
            real_valid = len(aud)
        res = a2m(_pad(aud[None], a2m.seq), res)
        if start is None:
            start, d0 = res.shape[1] - a2m.fuse, res[0, 0].clone()
        else:
            out.append(res[0, start : start + real_valid])
            start += real_valid
        local += real_valid
        if local >= len(conds):
            break
    return torch.cat(out), d0


# ---- tests -------------------------------------------------------------------------------------------------------


def _inputs(lmdm: LMDM, batch: int = 1, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    c = lmdm.config
    return (
        torch.randn(batch, c.seq_frames, c.motion_feat_dim, generator=g),
        torch.randn(batch, c.motion_feat_dim, generator=g),
        torch.randn(batch, c.seq_frames, c.cond_feat_dim, generator=g),
    )


def _their_state(lmdm: LMDM) -> dict:
    """The decoder's state dict, and its head count (which a state dict cannot tell)."""
    return {k.removeprefix("model."): v for k, v in lmdm.state_dict().items()} | {"num_heads": lmdm.config.num_heads}


@torch.no_grad()
def test_decoder_matches_ditto(lmdm: LMDM) -> None:
    x, frame, cond = _inputs(lmdm, batch=2)
    times = torch.tensor([999, 17])
    for keep, drop in ((True, 0), (False, 1)):
        ours = lmdm.model(x, frame, cond, times, torch.full((2,), keep))
        theirs = their_decoder(_their_state(lmdm), x, frame, cond, times.float(), drop)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_ddim_step_and_sampling_match_ditto(lmdm: LMDM) -> None:
    x, frame, cond = _inputs(lmdm)
    g = torch.Generator().manual_seed(3)
    noise = [torch.randn(lmdm.step_noise_shape(), generator=g) for _ in range(9)]
    theirs = TheirLMDM(_their_state(lmdm), lmdm.config.seq_frames, lmdm.config.motion_feat_dim, 10, noise)
    times = lmdm.timesteps(10)
    assert times == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99, -1]
    x0 = lmdm.guided_x0(x, frame, cond, times[0], 2.0)
    one = lmdm.step(x, x0, 999, 899, noise[0])
    torch.testing.assert_close(one, theirs.one_step(x, frame, cond, 0), atol=1e-5, rtol=1e-5)
    ours = lmdm.sample(frame, cond, 10, noise=x, step_noise=noise)
    torch.testing.assert_close(ours, theirs(frame, cond, x), atol=1e-5, rtol=1e-5)
    # Ditto's float32 schedule gives NaN at 5 steps (1 - a' - sigma^2 rounds below 0); genface clamps it
    assert torch.isfinite(lmdm.sample(frame, cond, 5, generator=g)).all()
    # a generator makes it reproducible
    a = lmdm.sample(frame, cond, 3, generator=torch.Generator().manual_seed(7))
    b = lmdm.sample(frame, cond, 3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


@pytest.mark.parametrize("chunks", [[21], [5, 7, 9]])
def test_windowed_generation_matches_ditto_offline(lmdm: LMDM, chunks: list[int]) -> None:
    c = lmdm.config
    g = torch.Generator().manual_seed(5)
    source = torch.randn(c.motion_feat_dim, generator=g)
    conds = torch.randn(sum(chunks), c.cond_feat_dim, generator=g)  # 21 frames: 4 windows of 8, overlap 2
    parts = torch.split(conds, chunks)
    # 10 steps: Ditto's float32 schedule at 3 steps takes the square root of -6e-8 on some CPUs (NaN), of +0 on
    # others; at 10 it is 1.2e-7 or more
    ours = torch.cat(list(generate_motion(lmdm, source, parts, overlap=2, num_steps=10,
                                          generator=torch.Generator().manual_seed(9))))  # fmt: skip
    theirs = their_offline(TheirAudio2Motion(lmdm, source, 2, 10, torch.Generator().manual_seed(9)), conds)
    assert ours.shape == (21, c.motion_feat_dim)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_windowed_generation_reset_condition_matches_ditto(lmdm: LMDM) -> None:
    c = lmdm.config
    g = torch.Generator().manual_seed(6)
    source = torch.randn(c.motion_feat_dim, generator=g)
    conds = torch.randn(17, c.cond_feat_dim, generator=g)
    options = {"overlap": 3, "num_steps": 2}
    ours = torch.cat(list(generate_motion(lmdm, source, [conds], reset_every=2, keep_dims=(0, 4), **options,
                                          generator=torch.Generator().manual_seed(1))))  # fmt: skip
    a2m = TheirAudio2Motion(lmdm, source, 3, 2, torch.Generator().manual_seed(1), fix_kp_cond=2, fix_dim=(0, 4))
    theirs = their_offline(a2m, conds)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("total", [19, 21])
def test_online_generation_matches_ditto(lmdm: LMDM, total: int) -> None:
    c = lmdm.config
    g = torch.Generator().manual_seed(8)
    source = torch.randn(c.motion_feat_dim, generator=g)
    conds = torch.randn(total, c.cond_feat_dim, generator=g)  # 5 lead-in frames, then the speech's
    options = {"online": True, "reset_every": 1, "keep_dims": (0, 5)}
    ours = torch.cat(list(generate_motion(lmdm, source, torch.split(conds, 4), overlap=5, num_steps=2, **options,
                                          generator=torch.Generator().manual_seed(4))))  # fmt: skip
    a2m = TheirAudio2Motion(lmdm, source, 5, 2, torch.Generator().manual_seed(4), True, 1, (0, 5))
    theirs, _ = their_online(a2m, conds)
    assert ours.shape[0] == total - 5 <= theirs.shape[0]  # Ditto's online loop goes on past the end
    torch.testing.assert_close(ours, theirs[: total - 5], atol=1e-5, rtol=1e-5)


def test_clamp_and_reference_are_dittos_cvt_fmt(lmdm: LMDM) -> None:
    c = lmdm.config
    g = torch.Generator().manual_seed(8)
    source = torch.randn(c.motion_feat_dim, generator=g)
    conds = torch.randn(19, c.cond_feat_dim, generator=g)
    # Ditto's configuration has 4 rows; cvt_fmt clamps with the first two
    bounds = np.zeros((4, c.motion_feat_dim), np.float32)
    bounds[0], bounds[1] = -0.5, 0.4
    options = {"online": True, "reset_every": 1, "keep_dims": (0, 5), "overlap": 5, "num_steps": 2}
    stream = MotionGenerator(lmdm, source, clip=bounds, generator=torch.Generator().manual_seed(4), **options)
    ours = torch.cat([stream.push(conds), stream.flush()])
    a2m = TheirAudio2Motion(lmdm, source, 5, 2, torch.Generator().manual_seed(4), True, 1, (0, 5))
    theirs, d0 = their_online(a2m, conds)
    torch.testing.assert_close(ours, their_clip(theirs[:14], bounds), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(stream.reference, their_clip(d0[None], bounds)[0], atol=1e-5, rtol=1e-5)
    assert ours.min() >= -0.5 and ours.max() <= 0.4 and (ours == 0.4).any()
    offline = torch.cat(list(generate_motion(lmdm, source, [conds], overlap=3, num_steps=2, clip=bounds[:2],
                                             generator=torch.Generator().manual_seed(1))))  # fmt: skip
    theirs = their_offline(TheirAudio2Motion(lmdm, source, 3, 2, torch.Generator().manual_seed(1)), conds)
    torch.testing.assert_close(offline, their_clip(theirs, bounds), atol=1e-5, rtol=1e-5)
    with pytest.raises(InvalidArgumentError, match="lower bound"):
        motion_bounds(bounds[[1, 0]], c.motion_feat_dim)
    with pytest.raises(InvalidArgumentError, match=r"\(2, 12\)"):
        motion_bounds(np.zeros((2, 10)), c.motion_feat_dim)


def test_streaming_is_memory_bounded_and_online_drops_the_lead_in(lmdm: LMDM) -> None:
    c = lmdm.config
    g = torch.Generator().manual_seed(2)
    source = torch.randn(c.motion_feat_dim, generator=g)
    stream = MotionGenerator(lmdm, source, overlap=5, num_steps=1, online=True, generator=g)
    total = 0
    for _ in range(40):
        total += stream.push(torch.randn(3, c.cond_feat_dim, generator=g)).shape[0]
        assert stream.result.shape[0] <= 2 * c.seq_frames and stream.conds.shape[0] <= 2 * c.seq_frames
    total += stream.flush().shape[0]
    assert total == 40 * 3 - 5


def test_published_key_layout() -> None:
    """lmdm_v0.4_hubert.pth's ``model_state_dict``: names and shapes from Ditto's MotionDecoder definition."""
    with torch.device("meta"):
        model = LMDM()
    state = {k.removeprefix("model."): tuple(v.shape) for k, v in model.state_dict().items()}
    expected: dict[str, tuple[int, ...]] = {}

    def linear(name: str, out: int, inp: int) -> None:
        expected.update({f"{name}.weight": (out, inp), f"{name}.bias": (out,)})

    def norm(name: str) -> None:
        expected.update({f"{name}.weight": (512,), f"{name}.bias": (512,)})

    def attention(name: str) -> None:
        expected.update({f"{name}.in_proj_weight": (1536, 512), f"{name}.in_proj_bias": (1536,)})
        linear(f"{name}.out_proj", 512, 512)

    def layer(name: str, decoder: bool) -> None:
        expected[f"{name}.rotary.freqs"] = (256,)
        attention(f"{name}.self_attn")
        linear(f"{name}.linear1", 1024, 512)
        linear(f"{name}.linear2", 512, 1024)
        for n in (1, 2, 3) if decoder else (1, 2):
            norm(f"{name}.norm{n}")
        if decoder:
            attention(f"{name}.multihead_attn")
            for n in (1, 2, 3):
                linear(f"{name}.film{n}.block.1", 1024, 512)

    expected |= {"rotary.freqs": (256,), "null_cond_embed": (1, 80, 512), "null_cond_hidden": (1, 512)}
    linear("time_mlp.1", 2048, 512)
    linear("to_time_cond.0", 512, 2048)
    linear("to_time_tokens.0", 1024, 2048)
    norm("norm_cond")
    linear("input_projection", 512, 530)
    linear("cond_projection", 512, 1103)
    norm("non_attn_cond_projection.0")
    linear("non_attn_cond_projection.1", 512, 512)
    linear("non_attn_cond_projection.3", 512, 512)
    linear("final_layer", 265, 512)
    for i in range(2):
        layer(f"cond_encoder.{i}", decoder=False)
    for i in range(8):
        layer(f"seqTransDecoder.stack.{i}", decoder=True)
    assert state == expected
    config = LMDM.config_from_state_dict(dict(model.model.state_dict()))
    assert config == {"motion_feat_dim": 265, "cond_feat_dim": 1103, "seq_frames": 80, "latent_dim": 512,
                      "ff_size": 1024, "num_layers": 8, "multi_cond_frame": False}  # fmt: skip


def test_checkpoint_round_trip(lmdm: LMDM, tmp_path) -> None:
    path = tmp_path / "lmdm.pth"
    torch.save({"model_state_dict": lmdm.model.state_dict()}, path)
    loaded = LMDM.from_checkpoint(path, num_heads=HEADS)
    x, frame, cond = _inputs(lmdm)
    steps = [torch.randn(lmdm.step_noise_shape())]
    torch.testing.assert_close(loaded.sample(frame, cond, 2, noise=x, step_noise=steps),
                               lmdm.sample(frame, cond, 2, noise=x, step_noise=steps))  # fmt: skip
    with pytest.raises(InvalidArgumentError, match="not an LMDM"):
        LMDM.from_state_dict({"weight": torch.zeros(1)})


def test_condition_vector_layout() -> None:
    kp = torch.arange(63.0)
    eye_open = [[0.3, 0.4], [0.5, 0.6], [0.7, 0.8]]
    eye_ball = torch.arange(6.0)
    conditions = MotionConditions(kp, eye_open, eye_ball, emotion=[["happy"], ["sad", 0]])
    assert conditions.width == 79
    audio = torch.randn(7, 1024)
    out = conditions(audio, start=-1)
    assert out.shape == (7, 1103)
    torch.testing.assert_close(out[:, :1024], audio)
    happy = torch.softmax(torch.tensor([0, 0, 0, 8.0, 0, 0, 0, 0]), 0)
    torch.testing.assert_close(out[0, 1024:1032], happy)  # frame -1 counts as 0
    torch.testing.assert_close(out[2, 1024:1032], emotion_probabilities([["sad", "angry"]])[0])
    # eye rows ping-pong over the 3 source frames: frames -1, 0 .. 5 -> 0, 0, 1, 2, 2, 1, 0
    assert out[:, 1032].tolist() == pytest.approx([0.3, 0.3, 0.5, 0.7, 0.7, 0.5, 0.3])
    torch.testing.assert_close(out[:, 1034:1040], eye_ball.expand(7, 6))
    torch.testing.assert_close(out[:, 1040:], kp.expand(7, 63))
    assert emotion_probabilities("Neutral").argmax() == 4
    assert emotion_probabilities(np.full(8, 0.125)).shape == (1, 8)
    assert MotionConditions(kp, [1, 1], eye_ball, use_emotion=False, use_eye_ball=False).width == 65


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"emotion": "happpy"}, "emotion must be one of angry"),
        ({"emotion": [0.5] * 7}, "got shape"),
        ({"emotion": 9}, "got 9"),
        ({"emotion": [float("nan")] * 8}, "finite"),
        ({"eye_open": [1, 2, 3]}, "eye_open must be 2 numbers"),
        ({"eye_ball": [float("inf")] * 6}, "eye_ball must be finite"),
        ({"source_keypoints": torch.zeros(20, 3)}, "source_keypoints must be 63"),
    ],
)
def test_condition_argument_errors(kwargs: dict, match: str) -> None:
    args = {"source_keypoints": torch.zeros(21, 3), "eye_open": [0.3, 0.3], "eye_ball": torch.zeros(6)} | kwargs
    with pytest.raises(InvalidArgumentError, match=match) as info:
        MotionConditions(**args)
    assert "\n" not in str(info.value)


def test_sampler_argument_errors(lmdm: LMDM) -> None:
    x, frame, cond = _inputs(lmdm)
    with pytest.raises(InvalidArgumentError, match="conditions must be"):
        lmdm.sample(frame, cond[:, :3], 2)
    with pytest.raises(InvalidArgumentError, match="num_steps"):
        lmdm.sample(frame, cond, 0)
    with pytest.raises(InvalidArgumentError, match="overlap"):
        MotionGenerator(lmdm, frame[0], overlap=8)
    with pytest.raises(InvalidArgumentError, match="Online generation"):
        MotionGenerator(lmdm, frame[0], overlap=2, online=True)
    with pytest.raises(InvalidArgumentError, match="source_motion"):
        MotionGenerator(lmdm, torch.zeros(3), overlap=2)


# ---- HuBERT features ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hubert() -> torch.nn.Module:
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    config = HubertConfig(
        hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )  # fmt: skip
    return HubertModel(config).eval()


@torch.no_grad()
def their_wav2feat(model: torch.nn.Module, audio: np.ndarray, chunksize=(3, 5, 2)) -> np.ndarray:
    """Wav2FeatHubert.wav2feat, one chunk per model call."""
    num_f = math.ceil(len(audio) / 16000 * 25)
    split_len = int(sum(chunksize) * 0.04 * 16000) + 80
    pad = np.concatenate([np.zeros((split_len - int(sum(chunksize[1:]) * 0.04 * 16000),), dtype=audio.dtype), audio,
                          np.zeros((split_len,), dtype=audio.dtype)])  # fmt: skip
    res, i = [], 0
    while i < num_f:
        start = int(i * 0.04 * 16000)
        chunk = torch.from_numpy(pad[start : start + split_len]).reshape(1, -1)
        encoding = model(chunk).last_hidden_state[0].numpy()
        valid = encoding[-sum(chunksize[1:]) * 2 : -chunksize[2] * 2]
        res.append(valid.reshape(chunksize[1], 2, -1).mean(1))
        i += chunksize[1]
    return np.concatenate(res, 0)[:num_f]


@torch.no_grad()
def their_online_features(model: torch.nn.Module, audio: np.ndarray, chunksize=(3, 5, 2)) -> np.ndarray:
    """inference.py's online loop (chunksize[0] * 640 zeros in front, chunks of 6480 every 3200 samples, the last
    padded with zeros) through Wav2FeatHubert.__call__ (one chunk per call)."""
    audio = np.concatenate([np.zeros((chunksize[0] * 640,), dtype=np.float32), audio], 0)
    split_len = int(sum(chunksize) * 0.04 * 16000) + 80
    res = []
    for i in range(0, len(audio), chunksize[1] * 640):
        audio_chunk = audio[i : i + split_len]
        if len(audio_chunk) < split_len:
            audio_chunk = np.pad(audio_chunk, (0, split_len - len(audio_chunk)), mode="constant")
        encoding = model(torch.from_numpy(audio_chunk).reshape(1, -1)).last_hidden_state[0].numpy()
        valid = encoding[-sum(chunksize[1:]) * 2 : -chunksize[2] * 2]
        res.append(valid.reshape(chunksize[1], 2, -1).mean(1))
    return np.concatenate(res, 0)


def test_hubert_online_features_match_dittos_online_path(hubert: torch.nn.Module) -> None:
    audio = np.random.default_rng(1).standard_normal(16000 + 333).astype(np.float32) * 0.1
    theirs = torch.from_numpy(their_online_features(hubert, audio))
    assert theirs.shape[0] == 30 > HubertFeatures.frame_count(audio.size) == 26  # Ditto's run on past the speech
    online = HubertFeatures(hubert, batch_size=1, online=True)
    ours = torch.cat(list(online.live(np.split(audio, [1000, 7000]))))
    assert ours.shape == (30, 16) and online.speech_frames == 26
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    offline_lead = torch.cat(list(HubertFeatures(hubert, batch_size=1).live([audio])))  # 80 samples earlier
    assert (offline_lead - theirs[:26]).abs().max() > 1e-3


def test_hubert_features_match_ditto_windowing(hubert: torch.nn.Module) -> None:
    audio = np.random.default_rng(0).standard_normal(16000 + 333).astype(np.float32) * 0.1
    features = HubertFeatures(hubert, batch_size=4)
    ours = features(audio)
    assert ours.shape == (HubertFeatures.frame_count(audio.size), 16) == (26, 16)
    torch.testing.assert_close(ours, torch.from_numpy(their_wav2feat(hubert, audio)), atol=1e-5, rtol=1e-5)
    with pytest.raises(InvalidArgumentError, match="Chunks must be"):
        features.encode_chunks(np.zeros((1, 100)))
