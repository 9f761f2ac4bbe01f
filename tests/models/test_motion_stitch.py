"""Motion-vector math (genface.models.motion.stitch, .crop) against Ditto's / LivePortrait's computations,
restated here their way in numpy (motion_stitch.py, audio2motion.py, crop.py, get_mask.py,
stream_pipeline_offline.py)."""

from __future__ import annotations

import copy

import cv2
import numpy as np
import pytest
import torch
from scipy.special import softmax

from genface.errors import InvalidArgumentError
from genface.identity.align import paste_back
from genface.models.motion.crop import crop_face, crop_matrix, eye_lip_axis, paste_mask, paste_render
from genface.models.motion.extractor import StitchingNetwork
from genface.models.motion.stitch import (
    MOTION_DIM,
    FrameControls,
    Motion,
    MotionStitcher,
    StitchConfig,
    bins_to_degrees,
    blink_schedule,
    fade_alphas,
    keypoint_jitter,
    lle_project,
    mean_filter,
    rotation_matrix,
    smooth,
    transform_keypoint,
)

TOL = dict(rtol=1e-5, atol=1e-6)


# ---- Ditto's computation, their way (numpy, per frame) ----
def ref_degree(pred):
    if pred.ndim > 1 and pred.shape[1] == 66:
        return np.sum(softmax(pred, axis=1) * np.arange(66).astype(np.float32), axis=1) * 3 - 97.5
    return pred


def ref_rotation(pitch_, yaw_, roll_):
    x, y, z = (a / 180 * np.pi for a in (pitch_, yaw_, roll_))
    x, y, z = (a[:, None] if a.ndim == 1 else a for a in (x, y, z))
    bs = x.shape[0]
    one, zero = np.ones((bs, 1), np.float32), np.zeros((bs, 1), np.float32)
    rx = np.concatenate([one, zero, zero, zero, np.cos(x), -np.sin(x), zero, np.sin(x), np.cos(x)], 1).reshape(bs, 3, 3)
    ry = np.concatenate([np.cos(y), zero, np.sin(y), zero, one, zero, -np.sin(y), zero, np.cos(y)], 1).reshape(bs, 3, 3)
    rz = np.concatenate([np.cos(z), -np.sin(z), zero, np.sin(z), np.cos(z), zero, zero, zero, one], 1).reshape(bs, 3, 3)
    return np.transpose(np.matmul(np.matmul(rz, ry), rx), (0, 2, 1))


def ref_transform(info):
    kp, bs = info["kp"], info["kp"].shape[0]
    rot = ref_rotation(ref_degree(info["pitch"]), ref_degree(info["yaw"]), ref_degree(info["roll"]))
    out = np.matmul(kp.reshape(bs, -1, 3), rot) + info["exp"].reshape(bs, -1, 3)
    out *= info["scale"][..., None]
    out[:, :, 0:2] += info["t"][:, None, 0:2]
    return out


LAYOUT = [["scale", 1], ["pitch", 66], ["yaw", 66], ["roll", 66], ["t", 3], ["exp", 63], ["kp", 63]]


def ref_arr2dic(arr):
    dic, s = {}, 0
    for k, ss in LAYOUT:
        v = arr[s : s + ss].reshape(1, ss)
        dic[k] = v + 1 if k == "scale" else v
        s += ss
        if s >= len(arr):
            break
    return dic


def ref_blink_idx(N, blink_n, open_n):
    idx = [0] * N
    open_ns = [open_n] if isinstance(open_n, int) else open_n
    start_n, end_n = open_ns[0], open_ns[-1]
    max_i, cur_i, cur_n_i = N - max(end_n, blink_n), start_n, 1
    while cur_i < max_i:
        idx[cur_i : cur_i + blink_n] = list(range(blink_n))
        cur_n = open_ns[cur_n_i % len(open_ns)]
        cur_n_i += 1
        cur_i = cur_i + blink_n + cur_n
    return idx


def ref_fade_alpha(N_d, fade_in, fade_out):
    ctrl = {}
    for i in range(fade_in):
        ctrl[i] = i / fade_in
    ss, ee = N_d - fade_out - 1, N_d - 1
    for i in range(ss, N_d):
        ctrl[i] = max((ee - i) / (ee - ss), 0)
    return ctrl


class RefStitch:
    """Ditto's MotionStitch (relative_d, delta_eye_arr, fade; a photo source, or a video's with is_image=False),
    one frame per call; d0 may be set before the first (the online path's)."""

    def __init__(
        self, x_s_info, use_d_keys, drive_eye, delta_eye_arr, idx_list, fade_type, fade_keys, stitch, is_image=True
    ):
        eye, lip = [11, 13, 15, 16, 18], [6, 12, 14, 17, 19, 20]
        a1 = np.zeros((21, 3), np.float32)
        a1[lip] = 1
        a2 = 0
        if drive_eye:
            if delta_eye_arr is None:
                a1[eye] = 1
            else:
                a2 = np.zeros((21, 3), np.float32)
                a2[eye] = 1
                a2 = a2.reshape(1, -1)
        a1 = a1.reshape(1, -1)
        self.a = (a1 * (1 - a2), (1 - a1) + a1 * a2, a2)
        self.use_d_keys, self.drive_eye, self.delta_eye_arr = use_d_keys, drive_eye, delta_eye_arr
        self.idx_list = idx_list
        self.fade_type, self.fade_keys, self.stitch = fade_type, fade_keys, stitch
        self.pose_s = [ref_degree(x_s_info["yaw"]).item(), ref_degree(x_s_info["pitch"]).item()]
        self.x_s = ref_transform(x_s_info)
        self.fade_dst = copy.deepcopy(x_s_info) if fade_type == "s" and is_image else None
        self.d0, self.idx, self.is_image = None, 0, is_image

    def __call__(self, x_s_info, x_d_info, **kw):
        if self.d0 is None:
            self.d0 = copy.deepcopy(x_d_info)
        w = self.use_d_keys
        x_d_info = {k: x_s_info[k] + (v - self.d0[k]) * w.get(k, 1) for k, v in x_d_info.items()}
        for k, v in x_s_info.items():
            if k not in x_d_info or k not in w:
                x_d_info[k] = v
        delta_eye = 0
        if self.drive_eye and self.delta_eye_arr is not None:
            delta_eye = self.delta_eye_arr[self.idx_list[self.idx % len(self.idx_list)]][None]
        a1, a2, a3 = self.a
        x_d_info["exp"] = x_d_info["exp"] * a1 + x_s_info["exp"] * a2 + delta_eye * a3
        if kw.get("vad_alpha", 1) < 1:
            x_d_info["exp"] = x_d_info["exp"] * kw["vad_alpha"] + x_s_info["exp"] * (1 - kw["vad_alpha"])
        for kk in ["delta_pitch", "delta_yaw", "delta_roll"]:
            if kk in kw:
                x_d_info[kk[6:]] = ref_degree(x_d_info[kk[6:]]) + kw[kk]
        for kk in ["alpha_pitch", "alpha_yaw", "alpha_roll"]:
            if kk in kw:
                x_d_info[kk[6:]] = x_d_info[kk[6:]] * kw[kk]
        if "delta_exp" in kw:
            x_d_info["exp"] = x_d_info["exp"] + kw["delta_exp"]
        if self.fade_type == "d0" and self.fade_dst is None:
            self.fade_dst = copy.deepcopy(x_d_info)
        if "fade_alpha" in kw and self.fade_type:
            fade_dst = self.fade_dst if self.fade_dst is not None else copy.deepcopy(x_s_info)
            for k in self.fade_keys:
                x_d_info[k] = x_d_info[k] * kw["fade_alpha"] + fade_dst[k] * (1 - kw["fade_alpha"])
        if self.drive_eye:
            dx = (ref_degree(x_d_info["yaw"]).item() - self.pose_s[0]) * 0.26
            dy = (ref_degree(x_d_info["pitch"]).item() - self.pose_s[1]) * 0.28
            exp = x_d_info["exp"]
            exp[0, 33] += dx * 0.0007 if dx > 0 else dx * 0.001
            exp[0, 45] += dx * 0.001 if dx > 0 else dx * 0.0007
            exp[0, 34] += dy * -0.001
            exp[0, 46] += dy * -0.001
        x_s = self.x_s if self.is_image else ref_transform(x_s_info)
        x_d = ref_transform(x_d_info)
        x_d = self.stitch(x_s, x_d)
        self.idx += 1
        return x_s, x_d


def ref_stitching(state):
    """LivePortrait's stitching (Linear/ReLU MLP on the concatenated flat keypoints), numpy."""
    ws = [(state[f"mlp.{i}.weight"].numpy(), state[f"mlp.{i}.bias"].numpy()) for i in (0, 2, 4)]

    def run(kp_source, kp_driving):
        bs, k = kp_source.shape[:2]
        h = np.concatenate([kp_source.reshape(bs, -1), kp_driving.reshape(bs, -1)], 1)
        for j, (w, b) in enumerate(ws):
            h = h @ w.T + b
            h = np.maximum(h, 0) if j < len(ws) - 1 else h
        out = kp_driving.copy()
        out += h[..., : 3 * k].reshape(bs, k, 3)
        out[..., :2] += h[..., 3 * k : 3 * k + 2].reshape(bs, 1, 2)
        return out

    return run


# ---- fixtures ----
def random_motion(n: int, g: torch.Generator, kp: bool = False) -> Motion:
    vec = torch.randn(n, MOTION_DIM + (63 if kp else 0), generator=g)
    vec[:, 0] *= 0.1
    vec[:, -63:] *= 0.3
    return Motion.unpack(vec)


def to_info(m: Motion, i: int = 0) -> dict[str, np.ndarray]:
    return {k: v[i : i + 1].numpy().copy() for k, v in m.items() if v is not None}


@pytest.fixture
def stitch_net() -> StitchingNetwork:
    torch.manual_seed(0)
    return StitchingNetwork(**StitchingNetwork.tiny_config()).eval()


# ---- formulas ----
def test_pose_rotation_transform_match_liveportrait():
    g = torch.Generator().manual_seed(1)
    m = random_motion(6, g, kp=True)
    for key in ("pitch", "yaw", "roll"):
        deg = bins_to_degrees(m.get(key))
        assert deg.shape == (6, 1)
        np.testing.assert_allclose(deg[:, 0].numpy(), ref_degree(m.get(key).numpy()), **TOL)
    degs = [torch.rand(6, generator=g) * 180 - 90 for _ in range(3)]
    np.testing.assert_allclose(rotation_matrix(*degs).numpy(), ref_rotation(*(d.numpy() for d in degs)), **TOL)
    info = {k: v.numpy() for k, v in m.items()}
    np.testing.assert_allclose(m.keypoints().numpy(), ref_transform(info), **TOL)
    # the functional form, and degrees passing through
    rot = rotation_matrix(*(bins_to_degrees(m.get(k)) for k in ("pitch", "yaw", "roll")))
    np.testing.assert_allclose(transform_keypoint(m.kp, rot, m.exp, m.scale, m.t), m.keypoints(), **TOL)
    np.testing.assert_allclose(m.in_degrees().keypoints(), m.keypoints(), **TOL)


def test_pack_unpack_is_dittos_layout():
    g = torch.Generator().manual_seed(2)
    vec = torch.randn(3, MOTION_DIM + 63, generator=g)
    for width in (MOTION_DIM, MOTION_DIM + 63):
        m = Motion.unpack(vec[:, :width])
        ref = ref_arr2dic(vec[1, :width].numpy())
        assert set(ref) == {k for k, v in m.items() if v is not None}
        for k, v in ref.items():
            np.testing.assert_array_equal(m.get(k)[1:2].numpy(), v)
        torch.testing.assert_close(m.pack(), vec[:, :width], rtol=0, atol=1e-7)
    with pytest.raises(InvalidArgumentError, match="265"):
        Motion.unpack(vec[:, :100])
    with pytest.raises(InvalidArgumentError, match="bins"):
        Motion.unpack(vec).in_degrees().pack()


# ---- motion_stitch.py ----
@pytest.mark.parametrize(
    ("fade_type", "blink", "weights"),
    [("d0", True, None), ("s", False, {"exp": 1.0, "pitch": 0.5, "yaw": 1.5, "roll": 1.0, "t": 0.7})],
)
def test_stitcher_matches_dittos_motion_stitch(stitch_net, fade_type, blink, weights):
    g = torch.Generator().manual_seed(3)
    n, blink_n = 9, 4
    source, driving = random_motion(1, g, kp=True), random_motion(n, g)
    delta_eye = torch.randn(blink_n, 63, generator=g) * 0.05 if blink else None
    idx = [0, 0, 1, 2, 3, 0, 0, 1, 2]
    controls = FrameControls(
        delta_pitch=torch.randn(n, generator=g) * 5,
        delta_yaw=torch.randn(n, generator=g) * 5,
        delta_roll=torch.randn(n, generator=g) * 5,
        delta_exp=torch.randn(n, 63, generator=g) * 0.01,
        fade_alpha=fade_alphas(n, 3, 3),
        vad_alpha=torch.tensor([1, 0.5, 1, 1, 0.2, 1, 1, 1, 0.9]),
    )
    config = StitchConfig(use_d_keys=weights, fade_type=fade_type, fade_keys=("exp", "t"))
    ours = MotionStitcher(
        source, config, stitching=stitch_net, blink=delta_eye, blink_index=torch.tensor(idx) if blink else None
    )
    use = weights or dict.fromkeys(("exp", "pitch", "yaw", "roll", "t"), 1)
    state = {k: v.detach() for k, v in stitch_net.state_dict().items()}
    ref = RefStitch(to_info(source), use, True, None if delta_eye is None else delta_eye.numpy(), idx, fade_type,
                    ("exp", "t"), ref_stitching(state))  # fmt: skip
    x_d_ref = []
    for i in range(n):
        kw = {k: v[i].numpy() if v.ndim > 1 else float(v[i]) for k, v in vars(controls).items() if v is not None}
        x_s_ref, x_d = ref(to_info(source), to_info(driving, i), **kw)
        x_d_ref.append(x_d)
    with torch.no_grad():  # two chunks: the stitcher keeps d0, the fade target and the blink clock across calls
        first = ours(driving.frames(slice(0, 4)), controls.frames(slice(0, 4)))
        second = ours(driving.frames(slice(4, n)), controls.frames(slice(4, n)))
    np.testing.assert_allclose(first[0].numpy(), x_s_ref, **TOL)
    np.testing.assert_allclose(torch.cat([first[1], second[1]]).numpy(), np.concatenate(x_d_ref), **TOL)


@pytest.mark.parametrize("with_offsets", [False, True])
def test_pose_factors_are_dittos_ctrl_motion(stitch_net, with_offsets):
    """alpha_* multiply the offset pose in degrees, or without an offset the pose's bin logits (ctrl_motion)."""
    g = torch.Generator().manual_seed(9)
    n = 5
    source, driving = random_motion(1, g, kp=True), random_motion(n, g)
    controls = FrameControls(
        alpha_pitch=torch.tensor([0.0, 0.5, 1.0, 2.0, 3.0]),
        alpha_yaw=torch.full((n,), 0.7),
        delta_yaw=torch.linspace(-5, 5, n) if with_offsets else None,
        delta_roll=torch.full((n,), 2.0) if with_offsets else None,
        alpha_roll=torch.full((n,), 1.5) if with_offsets else None,
    )
    ours = MotionStitcher(source, StitchConfig(), stitching=stitch_net)
    use = dict.fromkeys(("exp", "pitch", "yaw", "roll", "t"), 1)
    state = {k: v.detach() for k, v in stitch_net.state_dict().items()}
    ref = RefStitch(to_info(source), use, True, None, [0], "", (), ref_stitching(state))
    theirs = []
    for i in range(n):
        kw = {k: float(v[i]) for k, v in vars(controls).items() if v is not None}
        theirs.append(ref(to_info(source), to_info(driving, i), **kw)[1])
    with torch.no_grad():
        np.testing.assert_allclose(ours(driving, controls)[1].numpy(), np.concatenate(theirs), **TOL)
    pose = MotionStitcher(source, StitchConfig(stitching=False)).motion(driving, controls)
    if with_offsets:  # an offset angle times 1.5
        plain = MotionStitcher(source, StitchConfig(stitching=False)).motion(driving)
        torch.testing.assert_close(pose.roll, (plain.roll + 2) * 1.5)
    else:  # a factor 0 flattens the bins: 0 degrees
        torch.testing.assert_close(pose.pitch[0], torch.zeros(1), atol=1e-5, rtol=0)


def test_no_offsets_keep_bins_path_and_stitching_off():
    g = torch.Generator().manual_seed(4)
    source, driving = random_motion(1, g, kp=True), random_motion(5, g)
    ours = MotionStitcher(source, StitchConfig(stitching=False, drive_eye=False))
    ref = RefStitch(to_info(source), dict.fromkeys(("exp", "pitch", "yaw", "roll", "t"), 1), False, None, [0], "",
                    (), lambda s, d: d)  # fmt: skip
    x_d = ours(driving)[1]
    for i in range(5):
        np.testing.assert_allclose(x_d[i : i + 1].numpy(), ref(to_info(source), to_info(driving, i))[1], **TOL)
    with pytest.raises(InvalidArgumentError, match="stitching network"):
        MotionStitcher(source)
    with pytest.raises(InvalidArgumentError, match="frames"):
        MotionStitcher(source, StitchConfig(stitching=False))(driving, FrameControls(delta_yaw=torch.zeros(3)))
    with pytest.raises(InvalidArgumentError, match="amplitude"):
        MotionStitcher(source, StitchConfig(stitching=False, head_motion=-1))
    with pytest.raises(InvalidArgumentError, match="63"):
        MotionStitcher(source, StitchConfig(stitching=False), blink=torch.zeros(5, 20))


def test_amplitude_zero_freezes_head_and_offsets_shift_pose():
    g = torch.Generator().manual_seed(5)
    source, driving = random_motion(1, g, kp=True), random_motion(8, g)
    still = MotionStitcher(source, StitchConfig(head_motion=0.0, stitching=False)).motion(driving)
    src = source.in_degrees()
    for key in ("pitch", "yaw", "roll", "t", "scale"):
        torch.testing.assert_close(still.get(key), src.get(key).expand_as(still.get(key)))
    assert not torch.allclose(still.exp, source.exp.expand_as(still.exp))  # the lips still move
    moving = MotionStitcher(source, StitchConfig(stitching=False)).motion(driving)
    assert (moving.yaw - src.yaw).abs().max() > 1
    offsets = FrameControls(delta_pitch=torch.full((8,), 5.0), delta_yaw=torch.linspace(-10, 10, 8))
    shifted = MotionStitcher(source, StitchConfig(stitching=False, drive_eye=False)).motion(driving, offsets)
    plain = MotionStitcher(source, StitchConfig(stitching=False, drive_eye=False)).motion(driving)
    torch.testing.assert_close(shifted.pitch - plain.pitch, torch.full((8, 1), 5.0))
    torch.testing.assert_close(shifted.yaw - plain.yaw, torch.linspace(-10, 10, 8)[:, None])
    torch.testing.assert_close(shifted.roll, plain.roll)
    # a video source: only the expression follows the driving motion, the pose is each source frame's
    frames = random_motion(8, g, kp=True)
    video = MotionStitcher(source, StitchConfig(stitching=False), is_image=False).motion(driving, source=frames)
    for key in ("pitch", "yaw", "roll", "t"):
        torch.testing.assert_close(video.get(key), frames.in_degrees().get(key))


def test_blink_schedule():
    for open_n in (7, [5, 9, 3], 20):
        ref = ref_blink_idx(60, 4, open_n)
        assert blink_schedule(60, 4, open_n, short_clips=False).tolist() == ref
    assert blink_schedule(50, 4, -1).eq(0).all()
    # random 60-100 frame gaps: a long clip blinks at that spacing, reproducibly under a seed
    idx = blink_schedule(1000, 10, generator=torch.Generator().manual_seed(0))
    starts = torch.nonzero(idx == 1).flatten() - 1
    gaps = starts.diff() - 10
    assert len(starts) >= 8 and gaps.min() >= 60 and gaps.max() <= 100 and starts[0] >= 60
    assert torch.equal(idx, blink_schedule(1000, 10, generator=torch.Generator().manual_seed(0)))
    # a 4 s clip at 25 fps: Ditto's rule gives none, ours one in the middle
    four_s = blink_schedule(100, 10, generator=torch.Generator().manual_seed(0))
    assert (four_s == 1).sum() == 1 and four_s[0] == 0 and four_s[-1] == 0
    assert blink_schedule(100, 10, generator=torch.Generator().manual_seed(0), short_clips=False).eq(0).all()
    # the blink animation reaches the eyes' expression, nothing else
    g = torch.Generator().manual_seed(6)
    source, driving = random_motion(1, g, kp=True), random_motion(100, g)
    blink = torch.zeros(10, 63)
    blink[1:] = 0.1
    config = StitchConfig(stitching=False)
    blinking = MotionStitcher(source, config, blink=blink, num_frames=100, generator=g).motion(driving)
    open_eyes = MotionStitcher(source, config, blink=torch.zeros(10, 63), num_frames=100).motion(driving)
    changed = (blinking.exp - open_eyes.exp).abs().amax(0).reshape(21, 3).amax(1) > 0
    assert changed.nonzero().flatten().tolist() == [11, 13, 15, 16, 18]


def test_fades_match_ditto():
    for n, fin, fout in ((20, 5, 4), (10, 3, -1), (10, -1, 12)):
        ref = ref_fade_alpha(n, max(fin, 0), fout) if fout > 0 else {i: i / fin for i in range(fin)}
        ours = fade_alphas(n, fin, fout)
        for i in range(n):
            assert ours[i].item() == pytest.approx(ref.get(i, 1.0), abs=1e-7)


# ---- smoothing, LLE, jitter ----
def test_mean_filter_and_smoothing():
    x = torch.randn(11, 4, 3, generator=torch.Generator().manual_seed(7))
    for k in (3, 4, 13):
        half = k // 2
        ref = np.stack([x[max(0, i - half) : min(11, i + half + 1)].numpy().mean(0) for i in range(11)])
        np.testing.assert_allclose(mean_filter(x, k).numpy(), ref, **TOL)
    assert smooth(x, 0).equal(x) and keypoint_jitter(smooth(x, 2.0)) < 0.5 * keypoint_jitter(x)


def test_lle_projection_lowers_jitter():
    g = torch.Generator().manual_seed(8)
    # real expressions live on a 2-D manifold in 63-D; the driving sequence walks it with noise
    basis = torch.randn(3, 63, generator=g)
    t = torch.linspace(0, 2 * np.pi, 400)
    bank = torch.stack([t.sin(), t.cos(), (2 * t).sin()], 1) @ basis
    s = torch.linspace(0, np.pi, 50)
    clean = torch.stack([s.sin(), s.cos(), (2 * s).sin()], 1) @ basis
    noisy = clean + 0.05 * torch.randn(clean.shape, generator=g)
    projected = lle_project(noisy, bank, k=10)
    before, after = keypoint_jitter(noisy), keypoint_jitter(projected)
    assert after < 0.5 * before
    assert (projected - clean).norm() < (noisy - clean).norm()
    torch.testing.assert_close(lle_project(noisy, bank, weight=0.0), noisy)
    # the driving data as its own bank: each frame rebuilt from its nearest other frames
    assert torch.equal(lle_project(noisy, noisy, k=1), noisy)  # itself, without leave_out
    assert keypoint_jitter(lle_project(noisy, noisy, leave_out=True)) < 0.5 * before


# ---- the crop ----
def ref_crop_m_inv(pts, pt2, dsize=512, scale=2.3, vx_ratio=0, vy_ratio=-0.125):
    """LivePortrait's parse_rect_from_landmark + _estimate_similar_transform_from_pts (their order)."""
    uy = pt2[1] - pt2[0]
    uy = uy / np.linalg.norm(uy)
    ux = np.array((uy[1], -uy[0]))
    angle = np.arccos(ux[0]) * (-1 if ux[1] < 0 else 1)
    M = np.array([ux, uy])
    center0 = np.mean(pts, axis=0)
    rpts = (pts - center0) @ M.T
    lt, rb = np.min(rpts, 0), np.max(rpts, 0)
    center1 = (lt + rb) / 2
    size = np.full(2, max(rb - lt)) * scale
    center = center0 + ux * center1[0] + uy * center1[1]
    center = center + ux * (vx_ratio * size) + uy * (vy_ratio * size)
    s, c, sn = dsize / size[0], np.cos(angle), np.sin(angle)
    cx, cy = center
    return np.array(
        [[s * c, s * sn, dsize / 2 - s * (c * cx + sn * cy)], [-s * sn, s * c, dsize / 2 - s * (-sn * cx + c * cy)]]
    )


@pytest.mark.parametrize("count", [68, 106])
def test_crop_matches_liveportrait(count):
    rng = np.random.default_rng(count)
    pts = rng.uniform(100, 300, (count, 2))
    if count == 68:
        pt2 = np.stack([(pts[[36, 39]].mean(0) + pts[[42, 45]].mean(0)) / 2, (pts[48] + pts[54]) / 2])
    else:
        pt2 = np.stack([(pts[[33, 35, 40, 39]].mean(0) + pts[[87, 89, 94, 93]].mean(0)) / 2, (pts[52] + pts[61]) / 2])
    np.testing.assert_allclose(crop_matrix(pts), ref_crop_m_inv(pts, pt2), rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(eye_lip_axis(pts), pt2)
    with pytest.raises(InvalidArgumentError, match="5, 68 or 106"):
        crop_matrix(pts[:30])


def test_crop_and_paste_back_on_a_photo(portrait, dlib_analyzer):
    face = dlib_analyzer.get(portrait)
    crop, matrix = crop_face(portrait, face)
    assert crop.shape == (512, 512, 3)
    # five keypoints only: the calibrated square lands near the 68-point one (within a quarter of its side)
    corners = np.array([[0, 0, 1], [512, 512, 1.0]]).T
    near = np.linalg.inv(np.vstack([matrix, [0, 0, 1]])) @ corners
    far = np.linalg.inv(np.vstack([crop_matrix(face.kps), [0, 0, 1]])) @ corners
    side = np.linalg.norm(near[:2, 1] - near[:2, 0]) / np.sqrt(2)
    assert np.abs(near - far).max() < 0.25 * side
    # paste-back of the untouched crop restores the photo inside the mask
    out = paste_render(portrait, crop, matrix)
    inside = paste_render(np.zeros_like(portrait), np.full_like(crop, 255), matrix) == 255
    assert np.abs(out[inside].astype(int) - portrait[inside]).mean() < 3


def their_putback(frame_rgb, render_image, M_c2o, mask):
    """putback.py's PutBack with blend_impl.c: the float render and the mask warped into the frame (the mask
    clipped to [0, 1]), blended in float32 and truncated to uint8."""
    h, w = frame_rgb.shape[:2]
    mask_warped = cv2.warpAffine(mask, M_c2o[:2, :], dsize=(w, h), flags=cv2.INTER_LINEAR).clip(0, 1)
    frame_warped = cv2.warpAffine(render_image, M_c2o[:2, :], dsize=(w, h), flags=cv2.INTER_LINEAR)
    m = mask_warped[..., None]
    blended = m * frame_warped + (np.float32(1.0) - m) * frame_rgb.astype(np.float32)
    return np.where(blended > 255, 255, np.where(blended < 0, 0, blended)).astype(np.uint8)


def test_paste_back_is_dittos_putback(astronaut, dlib_analyzer):
    matrix = crop_matrix(dlib_analyzer.get(astronaut).landmarks)
    rng = np.random.default_rng(0)
    render = cv2.GaussianBlur(rng.uniform(-20, 275, (512, 512, 3)).astype(np.float32), (0, 0), 3).clip(0, 255)
    M_c2o = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))  # Ditto's crop.py inverts the 3x3 matrix
    theirs = their_putback(astronaut, render, M_c2o, paste_mask(512))
    np.testing.assert_array_equal(paste_render(astronaut, render, matrix), theirs)
    # genface before: the render rounded to 8 bits and the blend rounded: 2 levels off here, on 9% of the values
    rounded = paste_back(astronaut, (render + 0.5).astype(np.uint8), matrix, paste_mask(512))
    assert np.abs(rounded.astype(int) - theirs).max() == 2


def test_paste_mask_is_dittos():
    W = H = 64
    w = h = int(W * 0.9)
    x1, y1 = (W - w) // 2, (H - h) // 2
    x2, y2 = x1 + w, y1 + h
    ref = np.ones((H, W), np.float32)
    ref[0:y1, x1:x2] = np.linspace(0, 1, y1)[:, None]
    ref[y2:H, x1:x2] = np.linspace(1, 0, H - y2)[:, None]
    ref[y1:y2, 0:x1] = np.linspace(0, 1, x1)[None]
    ref[y1:y2, x2:W] = np.linspace(1, 0, W - x2)[None]
    for rs, cs, r, c in [
        (slice(0, y1), slice(0, x1), np.linspace(1, 0, x1), np.linspace(1, 0, y1)),
        (slice(0, y1), slice(x2, W), np.linspace(0, 1, W - x2), np.linspace(1, 0, y1)),
        (slice(y2, H), slice(0, x1), np.linspace(1, 0, x1), np.linspace(0, 1, H - y2)),
        (slice(y2, H), slice(x2, W), np.linspace(0, 1, W - x2), np.linspace(0, 1, H - y2)),
    ]:
        ref[rs, cs] = 1 - np.clip(np.sqrt(r[None] ** 2 + c[:, None] ** 2), 0, 1)
    np.testing.assert_allclose(paste_mask(64), ref, atol=1e-6)
