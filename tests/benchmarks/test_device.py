"""The device run works before a GPU is lent: every section runs at tiny size on the CPU and writes its record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.device import ASTRONAUT_BOX, FixedFace, StepClock, main
from benchmarks.talking_face import STAGES
from genface.models.attention import KERNELS

ROW_KEYS = {"pipeline", "contender", "mode", "seconds", "fps", "peak_gib", "time_vs_reference"}


def test_step_clock_splits_a_run_into_before_steps_and_after() -> None:
    clock = StepClock("cpu")
    clock.start, clock.ends, clock.end = 0.0, [3.0, 4.0, 5.5, 6.5], 9.0
    assert clock.split(warmup=1) == {"per_step": 1.0, "before": 2.0, "after": 2.5}
    assert clock.split(warmup=2)["per_step"] == pytest.approx(1.25)  # median of 1.5 and 1.0


def test_the_fixed_face_is_where_dlib_finds_it(dlib_analyzer, astronaut) -> None:
    """The device run's stand-in for detection gives the box and keypoints the offline engine finds."""
    (found,) = dlib_analyzer.detect(astronaut)
    (fixed,) = FixedFace().detect(astronaut)
    np.testing.assert_allclose(fixed.bbox, ASTRONAUT_BOX)
    np.testing.assert_allclose(fixed.bbox, found.bbox, atol=1)
    np.testing.assert_allclose(fixed.kps, found.kps, atol=0.5)
    np.testing.assert_allclose(fixed.landmarks, found.landmarks, atol=0.5)  # LatentSync's crop reads them


def test_the_device_run_records_every_section_at_tiny_size(tmp_path: Path) -> None:
    import torch

    from genface.models.talking.syncnet import SyncNet
    from genface.models.talking.syncnet_v2 import SyncNetV2
    from tests.models.test_talking_syncnet import TINY

    torch.manual_seed(0)
    syncnet = SyncNetV2(audio_channels=(4, 6, 8, 8, 8, 8), lip_channels=(4, 6, 6, 6, 6, 8), embedding_size=16)
    torch.save(syncnet.state_dict(), tmp_path / "syncnet_v2.model")
    SyncNet(**TINY).save_pretrained(tmp_path / "latentsync_syncnet")
    record = main(["--scale", "tiny", "--device", "cpu", "--out", str(tmp_path), "--warmup-steps", "1",
                   "--timed-steps", "2", "--syncnet", str(tmp_path / "syncnet_v2.model"),
                   "--latentsync-syncnet", str(tmp_path / "latentsync_syncnet")])  # fmt: skip
    assert record["skipped"] == {"memory": "offloading needs a GPU"}  # no section failed
    rows = record["rows"]
    assert {row["pipeline"] for row in rows} == {
        "identity_video", "makeup", "talking_face", "talking_portrait", "wan_video"
    }  # fmt: skip
    assert all(ROW_KEYS <= row.keys() and row["seconds"] > 0 for row in rows)
    portrait = {row["measures"].split(",")[0]: row for row in rows if row["pipeline"] == "talking_portrait"}
    assert portrait.keys() == {"offline", "stream"} and all(row["frames"] == 25 for row in portrait.values())
    assert portrait["stream"]["first_frame_seconds"] > 0 and portrait["offline"]["first_frame_seconds"] is None
    references = [
        row for row in rows if row["contender"] in ("diffusers", "diffusers + processor swap", "diffusers loop")
    ]
    assert len(references) == 3 and all(row["time_vs_reference"] == 1.0 for row in references)
    exact = {row["pipeline"]: row for row in rows if row["mode"] == "exact" and row["pipeline"] in ("identity_video",
                                                                                                 "makeup")}  # fmt: skip
    assert exact.keys() == {"identity_video", "makeup"}
    for row in exact.values():  # fast mode on, fused projections only (no compile on the CPU), said in the row
        assert row["contender"] == "genface exact" and row["compile_seconds"] > 0
        assert row["fast_mode"]["fuse_qkv"] == "applied" and row["fast_mode"]["compile"] == "off (asked)"
        assert "compile skipped" in row["note"]
    approximate = {(row["pipeline"], row["mode"]): row for row in rows if row["mode"].startswith("approximate:")}
    assert approximate.keys() == {("identity_video", "approximate:first-block-cache"),
                                  ("identity_video", "approximate:pab"), ("makeup", "approximate:pab")}  # fmt: skip
    for row in approximate.values():  # quality against genface's exact output at the timed run's steps
        assert row["contender"] == "genface" and row["quality_steps"] == 3
        assert row["psnr_db"] == "inf" or row["psnr_db"] > 0
        assert row["quality_skipped"] == "facesim: no --face-encoder weights given; clipscore: no --clip weights given"
    assert not any("psnr_db" in row for row in rows if not row["mode"].startswith("approximate:"))
    # talking faces: a dub, its preparation and the dub from the prepared video, each stage in ms per frame
    talk = {row["contender"]: row for row in rows if "stages_ms_per_frame" in row}
    assert talk.keys() == {"genface dub", "genface prepare", "genface dub, prepared video"}
    assert talk["genface dub, prepared video"]["mode"] == "exact" and talk["genface dub"]["fps"] > 0
    assert all(set(row["stages_ms_per_frame"]) == set(STAGES) for row in talk.values())
    dub, prepare, prepared = (talk[name]["stages_ms_per_frame"] for name in talk)
    assert dub["parse"] > 0 and dub["UNet"] > 0 and dub["encode"] > 0
    assert prepare["parse"] > 0 and prepare["VAE encode"] > 0 and prepare["UNet"] == prepare["encode"] == 0
    assert prepared["decode"] > 0 and prepared["UNet"] > 0 and prepared["parse"] == prepared["VAE encode"] == 0
    # LatentSync: eager, fast mode (fused projections on the CPU: the same frames) and live, judged for lip sync
    latent = {row["contender"]: row for row in rows if row["contender"].startswith("genface latentsync")}
    assert latent.keys() == {"genface latentsync", "genface latentsync exact", "genface latentsync stream"}
    assert all(row["resolution"] == 128 and row["frames"] == 17 and row["fps"] > 0 for row in latent.values())
    exact_dub = latent["genface latentsync exact"]
    assert exact_dub["fast_mode"]["fuse_qkv"] == "applied" and exact_dub["max_diff_vs_eager"] <= 1
    assert latent["genface latentsync stream"]["first_frame_seconds"] > 0
    judged = latent["genface latentsync"]
    assert judged["sync_d"] > 0 and np.isfinite(judged["sync_c"]) and -1 <= judged["latentsync_conf"] <= 1
    assert "sync_skipped" not in judged
    musetalk = {row["contender"]: row for row in rows if row["pipeline"] == "talking_face"}
    assert musetalk["genface stream"]["first_frame_seconds"] > 0
    assert "6 frames" in musetalk["genface end to end"]["sync_skipped"]  # two frames are too few to judge
    steps = {row["pipeline"]: row["steps"] for row in rows if "steps" in row}
    assert steps == {"identity_video": 50, "makeup": 25, "talking_face": 2, "wan_video": 50}
    # Wan: Stand-In (default, exact) and VACE against diffusers' WanPipeline without the adapter, VACE 1.3B also
    # against diffusers' WanVACEPipeline on the same modules (the low-memory row needs a GPU)
    wan = {row["contender"]: row for row in rows if row["pipeline"] == "wan_video"}
    assert list(wan) == ["diffusers WanPipeline", "genface Stand-In", "genface Stand-In exact", "genface VACE 1.3B",
                         "diffusers WanVACEPipeline 1.3B", "genface VACE 14B"]  # fmt: skip
    assert wan["diffusers WanPipeline"]["time_vs_reference"] == 1.0 and all(r["model"] == "tiny" for r in wan.values())
    assert wan["genface Stand-In exact"]["fast_mode"]["fuse_qkv"] == "applied"
    assert wan["diffusers WanVACEPipeline 1.3B"]["time_vs_diffusers_vace"] == 1.0
    assert wan["genface VACE 1.3B"]["time_vs_diffusers_vace"] > 0 and wan["genface VACE 14B"]["time_vs_reference"] > 0
    kernels = {(row["model"], row["kernel"]) for row in record["attention"] if row["ms"] is not None}
    assert {("consisid", "math"), ("flux-kontext", "math")} <= kernels
    # every kernel fast mode knows has a row, timed or saying why not; on a CPU fast mode pins none
    assert [row["kernel"] for row in record["attention"]] == 2 * list(KERNELS)
    assert all((row["ms"] is None) == ("unavailable" in row) and not row["chosen"] for row in record["attention"])
    (written,) = tmp_path.glob("*-cpu.json")
    assert json.loads(written.read_text()) == record
    assert "| identity_video | genface | default |" in written.with_suffix(".md").read_text()
    assert "| UNet |" in written.with_suffix(".md").read_text()  # the talking-face stage table
