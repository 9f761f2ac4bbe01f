"""`genface eval video|talk|makeup` end to end on tiny judges saved in the published layouts (an insightface pack,
CurricularFace's .bin, syncnet_v2.model, a BiSeNet .pth, a tiny CLIP and FSFM folder): records, summary, resume,
and one-line errors; `genface eval consisid-testset` writing the manifest the runner reads."""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from genface.cli import main
from genface.eval import latentsync_crops, latentsync_scores, load_latentsync_syncnet
from genface.eval.runner import read_items
from genface.forensics import tiny_fsfm
from genface.identity import FaceAnalyzer
from genface.media import load_audio, read_video, save_image, write_video
from genface.models.curricularface import CurricularFaceIR
from genface.models.talking.syncnet import SyncNet
from genface.models.talking.syncnet_v2 import SyncNetV2
from tests.eval.test_consisid_testset import consisid_layout
from tests.models.test_talking_syncnet import TINY
from tests.tiny_models import planted_face, save_tiny_insightface_pack


def _square(size: int, top: int, left: int, side: int) -> np.ndarray:
    """A "face" the tiny detector finds at ConsisID's 320 x 320 detection size (tests/eval)."""
    image = np.full((size, size, 3), 20, dtype=np.uint8)
    image[top : top + side, left : left + side] = 255
    return image


@pytest.fixture(scope="module")
def judges(tmp_path_factory) -> Path:
    """One folder as ConsisID's face_encoder/ (models/buffalo_l + the CurricularFace .bin) and the other judges."""
    from genface.identity import BiSeNet

    root = tmp_path_factory.mktemp("judges")
    save_tiny_insightface_pack(root / "face_encoder" / "models" / "buffalo_l")
    torch.manual_seed(0)
    curricular = CurricularFaceIR(units=(1, 1, 1, 1), channels=(8, 12, 16, 20), embedding_size=16)
    torch.save(curricular.state_dict(), root / "face_encoder" / "glint360k_curricular_face_r101_backbone.bin")
    syncnet = SyncNetV2(audio_channels=(4, 6, 8, 8, 8, 8), lip_channels=(4, 6, 6, 6, 6, 8), embedding_size=16)
    torch.save(syncnet.state_dict(), root / "syncnet_v2.model")
    SyncNet(**TINY).save_pretrained(root / "latentsync")
    torch.save(BiSeNet().state_dict(), root / "parsing_bisenet.pth")
    tiny_fsfm().save_pretrained(root / "fsfm")
    return root


@pytest.fixture(scope="module")
def opens2v_judges(tmp_path_factory) -> Path:
    """OpenS2V-Weight's layout: the insightface pack in face_extractor/models/buffalo_l, CurricularFace's .bin at the
    root."""
    root = tmp_path_factory.mktemp("opens2v")
    save_tiny_insightface_pack(root / "face_extractor" / "models" / "buffalo_l")
    torch.manual_seed(1)
    curricular = CurricularFaceIR(units=(1, 1, 1, 1), channels=(8, 12, 16, 20), embedding_size=16)
    torch.save(curricular.state_dict(), root / "glint360k_curricular_face_r101_backbone.bin")
    return root


def _video_items(folder: Path) -> Path:
    folder.mkdir()
    frames = np.stack([_square(480, 96, 144 + 48 * (i % 3), 48) for i in range(6)])
    for name in ("a", "b"):
        write_video(folder / f"{name}.mp4", frames[::-1] if name == "b" else frames, fps=8)
        save_image(_square(480, 96, 144, 48), folder / f"{name}.png")
    (folder / "a.txt").write_text("a person smiling\n")
    write_video(folder / "noface.mp4", np.zeros((4, 64, 64, 3), np.uint8), fps=8)
    save_image(np.zeros((64, 64, 3), np.uint8), folder / "noface.png")
    return folder


def test_eval_video_scores_records_summary_and_resumes(judges, tmp_path, capsys) -> None:
    items = _video_items(tmp_path / "videos")
    out = tmp_path / "scores.jsonl"
    args = ["eval", "video", str(items), "--out", str(out), "--face-encoder", str(judges), "--clip", "none"]
    args += ["--frames", "4"]
    assert main([*args, "--detector", "deepfake", "--detector-weights", str(judges / "fsfm")]) == 0
    printed = capsys.readouterr().out
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["a.mp4", "b.mp4", "noface.mp4"]
    assert records[0]["prompt"] == "a person smiling" and records[0]["reference"].endswith("a.png")
    metrics = records[0]["metrics"]
    assert set(metrics) == {"facesim_arc", "facesim_cur", "frames_with_face", "forgery"}
    assert metrics["forgery"] is None  # FSFM's dlib detector sees no face in the tiny detector's squares
    assert 0 <= metrics["facesim_arc"] <= 1 and metrics["frames_with_face"] == 4
    assert records[2]["error"].startswith("No face found in the reference image")

    summary = json.loads(out.with_suffix(".summary.json").read_text())
    arc = [r["metrics"]["facesim_arc"] for r in records[:2]]
    assert summary["metrics"]["facesim_arc"]["mean"] == pytest.approx(np.mean(arc))
    assert summary["scored"] == 2 and list(summary["failed"]) == ["noface.mp4"] and summary["protocol"] == "consisid"
    assert "| facesim_arc | 2 |" in printed and "| facesim_arc | 2 |" in out.with_suffix(".summary.md").read_text()

    # A rerun loads no judge for scored items and tries the failed one again.
    lines = out.read_text().splitlines()
    assert main([*args, "--json", "--face-encoder", str(tmp_path / "missing")]) == 1  # one item left: judges load
    assert "does not exist" in capsys.readouterr().err
    (items / "noface.mp4").unlink()
    (items / "noface.png").unlink()
    assert main([*args, "--json", "--face-encoder", str(tmp_path / "missing")]) == 0
    assert json.loads(capsys.readouterr().out)["scored"] == 2
    assert out.read_text().splitlines() == lines


def test_eval_video_set_level_fid_against_the_references_or_a_real_folder(judges, tmp_path, capsys, monkeypatch):
    from genface.eval import consisid_analyzer, consisid_faces, load_inception
    from genface.eval.fid import fid_features
    from genface.models.inception import InceptionV3

    # frechet_distance is pytorch-fid's (tests/eval/test_fid.py); here: which statistics it is given.
    given = []
    monkeypatch.setattr("genface.eval.fid.frechet_distance", lambda *stats: given.append(stats) or 7.0 * len(given))
    torch.manual_seed(0)
    torch.save(InceptionV3.for_fid().state_dict(), tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    items = _video_items(tmp_path / "videos")
    (items / "noface.mp4").unlink()
    real = tmp_path / "real"
    real.mkdir()
    for i in range(3):
        save_image(_square(480, 96, 144 + 48 * i, 48), real / f"{i}.png")
    save_image(np.zeros((64, 64, 3), np.uint8), real / "blank.png")  # no face: left out
    out = tmp_path / "scores.jsonl"
    args = ["eval", "video", str(items), "--out", str(out), "--face-encoder", str(judges), "--clip", "none"]
    args += ["--frames", "4", "--protocol", "standard", "--curricularface", "none", "--json"]
    args += ["--fid-inception", str(tmp_path / "pt_inception-2015-12-05-6726825d.pth")]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["fid_set"] == {"value": 7.0, "real": 2, "fake": 8, "items": 2}
    assert "Set-level FID (pytorch-fid): 7.0000, 2 real faces against 8 frames of 2 item(s)." in (
        out.with_suffix(".summary.md").read_text()
    )

    # Resumed: the kept features give the same sets with no judge loaded; a folder of real faces replaces the set.
    assert main([*args, "--face-encoder", str(tmp_path / "missing")]) == 0
    assert json.loads(capsys.readouterr().out)["fid_set"] == {"value": 14.0, "real": 2, "fake": 8, "items": 2}
    assert main([*args, "--fid-real", str(real)]) == 0
    assert json.loads(capsys.readouterr().out)["fid_set"]["real"] == 3

    analyzer = consisid_analyzer(judges, "face_encoder")
    model = load_inception(tmp_path / "pt_inception-2015-12-05-6726825d.pth", fid=True)
    references = [consisid_faces(str(items / f"{n}.png"), analyzer).crops[0] for n in "ab"]
    frames = [c for n in "ab" for c in consisid_faces(str(items / f"{n}.mp4"), analyzer, 4).crops]
    faces = [consisid_faces(str(real / f"{i}.png"), analyzer).crops[0] for i in range(3)]
    fake = fid_features(frames, model)
    for stats, real_set in zip(given, (references, references, faces), strict=True):
        features = fid_features(real_set, model)
        expected = (features.mean(0), np.cov(features, rowvar=False), fake.mean(0), np.cov(fake, rowvar=False))
        for got, want in zip(stats, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_eval_video_opens2v_scores_their_facesim_from_their_layout(opens2v_judges, tmp_path, capsys) -> None:
    """--protocol opens2v: the judges from OpenS2V-Weight's layout by default paths, OpenS2V's FaceSim of each item
    (as OpenS2VJudge gives it, tested against their script in tests/eval) and nothing else: no CLIPScore for the
    prompt."""
    from genface.eval import OpenS2VJudge, load_opens2v_curricularface, opens2v_analyzer

    items = _video_items(tmp_path / "videos")
    out = tmp_path / "opens2v.jsonl"
    args = ["eval", "video", str(items), "--out", str(out), "--face-encoder", str(opens2v_judges), "--protocol"]
    assert main([*args, "opens2v", "--frames", "4", "--json"]) == 0  # their 32 by default (tests/eval)
    summary = json.loads(capsys.readouterr().out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    judge = OpenS2VJudge(opens2v_analyzer(opens2v_judges), load_opens2v_curricularface(opens2v_judges), num_frames=4)
    for record, item in zip(records[:2], read_items(items, "video")[:2], strict=True):
        assert record["metrics"] == pytest.approx(judge(item), abs=1e-12)
    assert set(records[0]["metrics"]) == {"opens2v_facesim_arc", "opens2v_facesim_cur", "opens2v_frames_with_face"}
    assert records[0]["metrics"]["opens2v_frames_with_face"] == 4 and 0 < records[0]["metrics"]["opens2v_facesim_arc"]
    assert records[2]["error"].startswith("No face found in the reference image")
    assert summary["protocol"] == "opens2v" and summary["metrics"]["opens2v_facesim_cur"]["n"] == 2
    assert summary["weights"]["face_encoder"] == f"{opens2v_judges} (buffalo_l)"
    assert summary["weights"]["curricularface"] == str(opens2v_judges)


def test_eval_video_opens2v_runs_offline_on_tiny_judges_and_a_tiny_generated_video(tmp_path, capsys, monkeypatch):
    """The offline path end to end: a tiny Stand-In video of the sample photo, scored by OpenS2V's protocol on tiny
    judges. The video is noise, so no frame has a face: OpenS2V scores it 0.0."""
    import huggingface_hub

    from genface.samples import sample_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    folder = tmp_path / "generated"
    folder.mkdir()
    face = save_image(FaceAnalyzer("dlib").load(sample_path("astronaut")), folder / "me.png")
    video = ["video", "--model", "tiny-stand-in", "--steps", "1", "--prompt", "a person", "--face", str(face)]
    assert main([*video, "--out", str(folder / "me.mp4")]) == 0
    capsys.readouterr()
    out = tmp_path / "tiny.jsonl"
    args = ["eval", "video", str(folder), "--out", str(out), "--protocol", "opens2v", "--judges", "tiny"]
    assert main([*args, "--backend", "dlib", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["id"] == "me.mp4" and record["reference"] == str(face)
    assert record["metrics"] == {"opens2v_facesim_arc": 0.0, "opens2v_frames_with_face": 0, "opens2v_facesim_cur": 0.0}
    assert summary["protocol"] == "opens2v" and set(summary["metrics"]) == set(record["metrics"])
    assert summary["weights"]["curricularface"] == "tiny" and summary["weights"]["face_engine"] == "dlib"


def test_eval_talk_syncs_the_tracked_face_with_the_speech(judges, tmp_path, capsys) -> None:
    face = planted_face()[0]
    folder = tmp_path / "talk"
    folder.mkdir()
    write_video(folder / "clip.mp4", np.stack([face] * 20), fps=25)
    speech = (np.sin(np.linspace(0, 400, 16000 * 20 // 25)) * 0.3).astype(np.float32)
    write_video(folder / "own.mp4", np.stack([face] * 20), fps=50, audio=speech)  # its audio track, 50 fps
    with wave.open(str(folder / "clip.wav"), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(16000)
        handle.writeframes((speech * 32767).astype("<i2").tobytes())
    out = tmp_path / "sync.jsonl"
    base = ["eval", "talk", str(folder), "--out", str(out), "--syncnet", str(judges / "syncnet_v2.model")]
    pack = judges / "face_encoder" / "models" / "buffalo_l"
    assert main([*base, "--backend", "insightface", "--weights", str(pack), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["clip.mp4", "own.mp4"] and records[0]["speech"].endswith("clip.wav")
    for record in records:
        assert set(record["metrics"]) == {"sync_c", "sync_d", "offset"} and record["metrics"]["sync_d"] > 0
    assert summary["metrics"]["sync_c"]["n"] == 2 and summary["kind"] == "talk"

    # LatentSync's SyncNet alone: its scores of the 20-frame clip and its speech file; the other is 10 frames at 25 fps.
    out = tmp_path / "latentsync.jsonl"
    base = ["eval", "talk", str(folder), "--out", str(out), "--latentsync-syncnet", str(judges / "latentsync")]
    assert main([*base, "--backend", "insightface", "--weights", str(pack), "--json"]) == 0
    clip, own = (json.loads(line) for line in out.read_text().splitlines())
    crops = latentsync_crops(read_video(folder / "clip.mp4")[0], FaceAnalyzer("insightface", model_root=pack), 25)
    heard = load_audio(folder / "clip.wav", 16000)
    expected = latentsync_scores(crops, heard, load_latentsync_syncnet(judges / "latentsync"))
    scores = {"latentsync_conf": expected.confidence, "latentsync_acc": expected.accuracy}
    assert clip["metrics"] == pytest.approx(scores)
    assert "needs 16 frames" in own["error"]


def test_eval_makeup_reports_the_pipelines_figures(judges, tmp_path, capsys, astronaut) -> None:
    save_image(astronaut, tmp_path / "source.png")
    save_image(astronaut, tmp_path / "result.png")
    save_image(astronaut[:, ::-1], tmp_path / "look.png")
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("id,image,source,reference\nfirst,result.png,source.png,look.png\n")
    out = tmp_path / "makeup.jsonl"
    args = ["eval", "makeup", str(manifest), "--out", str(out), "--parser", str(judges / "parsing_bisenet.pth")]
    detector = ["--detector", "diffusion", "--detector-weights", str(judges / "fsfm")]
    assert main([*args, *detector, "--backend", "dlib", "--json"]) == 0
    record = json.loads(out.read_text())
    assert record["id"] == "first" and record["metrics"]["facesim"] == pytest.approx(1.0, abs=1e-5)
    assert set(record["metrics"]) - {"facesim", "forgery"} <= {"makeup_lips", "makeup_skin", "makeup_brows"}
    assert 0 <= record["metrics"]["forgery"] <= 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["metrics"]["facesim"]["n"] == 1 and summary["metrics"]["facesim"]["ci95"] is None
    assert summary["weights"]["detector"] == f"FSFM diffusion ({judges / 'fsfm'})"


def test_eval_consisid_testset_writes_the_jobs_then_the_manifest_the_runner_reads(tmp_path, capsys) -> None:
    data, videos = consisid_layout(tmp_path)
    jobs, manifest = tmp_path / "jobs.jsonl", tmp_path / "items.jsonl"
    assert main(["eval", "consisid-testset", str(data), "--jobs", str(jobs), "--seed", "7"]) == 0
    assert capsys.readouterr().out == f"4 test cases; generation jobs: {jobs} (seed 7)\n"
    assert [json.loads(line)["seed"] for line in jobs.read_text().splitlines()] == [7] * 4
    assert not manifest.exists()

    assert main(["eval", "consisid-testset", str(data), "--videos", str(videos), "--out", str(manifest), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {"cases": 4, "jobs": None, "videos": str(videos), "videos_found": 2, "manifest": str(manifest)}
    items = read_items(manifest, "video")
    assert [item.id for item in items] == ["2_man.jpg--7", "10_woman.png--0"]
    assert items[1].fields == {"video": str(videos / "10_woman.png--0.mp4"), "prompt": "A person walks, she smiles.",
                               "reference": str(data / "eval" / "face_images" / "10_woman.png")}  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["video", "{t}/none", "--out", "{t}/o.jsonl"], "does not exist; give a folder or a manifest"),
        (["video", "{t}/items.jsonl", "--out", "{t}/o.json"], r"end in \.jsonl"),
        (["video", "{t}/items.jsonl", "--out", "{t}/items.jsonl"], "also an input"),
        (["video", "{t}/items.jsonl", "--out", "{t}/o.jsonl", "--frames", "0"], "--frames: must be from 1 to 1000"),
        (["makeup", "{t}", "--out", "{t}/o.jsonl"], "reads a manifest"),
        (["talk", "{t}/items.jsonl", "--out", "{t}/o.jsonl"], "needs --syncnet"),
        (["talk", "{t}/items.jsonl", "--out", "{t}/o.jsonl", "--syncnet", "s.model"], "unknown field"),
        (["video", "{t}/bad.jsonl", "--out", "{t}/o.jsonl"], r"bad.jsonl:2: no reference"),
        (["video", "{t}", "--out", "{t}/o.jsonl"], r"clip\.mp4: no face photo beside it; .* \(clip\.png, \.jpg"),
        (["video", "{t}/items.jsonl", "--out", "{t}/garbage.jsonl"], "not a record of genface eval"),
        (["video", "{t}/items.jsonl", "--out", "{t}/o.jsonl", "--detector-weights", "{t}/no"], "--detector"),
        (["video", "{t}/items.jsonl", "--out", "{t}/o.jsonl", "--fid-real", "{t}"], "with --fid-inception"),
        (["video", "{t}/items.jsonl", "--out", "{t}/o.jsonl", "--protocol", "opens3v"], "invalid choice: 'opens3v'"),
        (
            [
                "video",
                "{t}/items.jsonl",
                "--out",
                "{t}/o.jsonl",
                "--protocol",
                "opens2v",
                "--inception",
                "i.pth",
                "--clip",
                "c",
            ],
            "--protocol opens2v scores OpenS2V-Eval's FaceSim only; --inception, --clip: use --protocol",
        ),
        (
            [
                "video",
                "{t}/items.jsonl",
                "--out",
                "{t}/o.jsonl",
                "--protocol",
                "opens2v",
                "--fid-inception",
                "f.pth",
                "--fid-real",
                "{t}",
            ],
            "FaceSim only; --fid-inception, --fid-real",
        ),
        (["video", "{t}/items.jsonl"], "needs --out FILE.jsonl"),
        (["consisid-testset", "{t}"], "writes --jobs FILE.jsonl"),
        (["consisid-testset", "{t}", "--out", "{t}/o.jsonl"], "give --videos DIR"),
        (["consisid-testset", "{t}", "--out", "{t}/o.jsonl", "--videos", "{t}/clip.mp4"], "is not a folder"),
        (["consisid-testset", "{t}", "--jobs", "{t}/jobs.json"], r"end in \.jsonl"),
        (["consisid-testset", "{t}", "--jobs", "{t}/o.jsonl", "--out", "{t}/o.jsonl", "--videos", "{t}"], "two files"),
        (["consisid-testset", "{t}", "--jobs", "{t}/o.jsonl", "--seed", "-1"], "--seed: must be from 0"),
        (["consisid-testset", "{t}", "--jobs", "{t}/o.jsonl"], "is not ConsisID's test set"),
    ],
)
def test_eval_refuses_bad_input_in_one_line(tmp_path, capsys, argv, message) -> None:
    save_image(_square(64, 8, 8, 16), tmp_path / "face.png")
    write_video(tmp_path / "clip.mp4", np.zeros((2, 32, 32, 3), np.uint8))
    (tmp_path / "items.jsonl").write_text('{"video": "clip.mp4", "reference": "face.png", "prompt": "p"}\n')
    (tmp_path / "bad.jsonl").write_text('{"video": "clip.mp4", "reference": "face.png"}\n{"video": "clip.mp4"}\n')
    (tmp_path / "garbage.jsonl").write_text("not json\n")
    argv = [a.format(t=tmp_path) for a in ["eval", *argv]]
    if "--detector-weights" in argv:
        argv += ["--detector", "deepfake"]
    before = sorted(p.name for p in tmp_path.iterdir())
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(r"genface( eval)?: error:", err), err
    assert re.search(message, err), err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_eval_offline_without_the_published_judges_points_to_the_tiny_ones(tmp_path, monkeypatch, capsys) -> None:
    """The published judges, not cached and offline: the one line ends with --judges tiny (as --model tiny for the
    generating commands)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    save_image(_square(64, 8, 8, 16), tmp_path / "clip.png")
    write_video(tmp_path / "clip.mp4", np.zeros((2, 32, 32, 3), np.uint8))
    assert main(["eval", "video", str(tmp_path), "--out", str(tmp_path / "o.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "BestWishYsh/ConsisID-preview" in err, err
    assert err.endswith("(their scores are noise): --judges tiny.\n") and not (tmp_path / "o.jsonl").exists()
