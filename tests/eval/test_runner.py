"""The batch runner: items from folders and manifests, resuming after an interruption, summary statistics checked
by hand; and syncnet_python's face crop (``crop_video``, written their way) on the identity stack's boxes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from genface.errors import InvalidArgumentError, NoFaceError
from genface.eval.runner import evaluate, metric_range, read_items, read_records, summarize, summary_markdown
from genface.eval.sync import resample_indices, syncnet_crop


def test_items_from_a_folder_and_from_manifests(tmp_path, monkeypatch) -> None:
    for name in ("b.mp4", "a.mp4", "a.png", "b.jpg", "face.png", "s.wav"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "a.txt").write_text("a prompt\n")
    items = read_items(tmp_path, "video")
    assert [(i.id, sorted(i.fields)) for i in items] == [
        ("a.mp4", ["prompt", "reference", "video"]), ("b.mp4", ["reference", "video"])
    ]  # fmt: skip
    assert items[0].fields["prompt"] == "a prompt" and items[1].fields["reference"] == str(tmp_path / "b.jpg")
    assert "speech" not in read_items(tmp_path, "talk")[0].fields
    monkeypatch.chdir(tmp_path.parent)  # a folder named relative to the working directory
    assert read_items(tmp_path.name, "video")[1].fields == items[1].fields

    (tmp_path / "m.jsonl").write_text('{"video": "a.mp4", "speech": "s.wav"}\n\n{"id": "x", "video": "b.mp4"}\n')
    talk = read_items(tmp_path / "m.jsonl", "talk")
    assert [i.id for i in talk] == ["a.mp4", "x"] and talk[0].fields["speech"] == str(tmp_path / "s.wav")
    (tmp_path / "m.csv").write_text("image,source,reference\na.png,face.png,b.jpg\n")
    assert read_items(tmp_path / "m.csv", "makeup")[0].media == str(tmp_path / "a.png")

    bad = {
        '{"video": "a.mp4"}\n{"video": "a.mp4"}\n': "m.jsonl:2: id 'a.mp4' appears twice",
        '{"video": "none.mp4"}\n': "video none.mp4 is not a file",
        '{"video": "a.mp4", "prompt": "p"}\n': "unknown field",
        '["a.mp4"]\n': "not a JSON object",
        '{"video": 3}\n': "must be a string",
    }
    for text, message in bad.items():
        (tmp_path / "m.jsonl").write_text(text)
        with pytest.raises(InvalidArgumentError, match=message):
            read_items(tmp_path / "m.jsonl", "talk")


def test_summary_statistics_by_hand() -> None:
    records = [
        {"id": "a", "metrics": {"x": 1.0, "y": 0.5}},
        {"id": "b", "metrics": {"x": 2.0, "y": None}},
        {"id": "c", "metrics": {"x": 3.0, "y": float("nan")}},
        {"id": "d", "metrics": {"x": 4.0}},
        {"id": "e", "error": "No face found."},
    ]
    summary = summarize(records, kind="video")
    # mean 2.5, sample std sqrt(5/3), t(0.975, 3 df) = 3.182446: half-width 3.182446 * 1.290994 / 2 = 2.054260
    assert summary["metrics"]["x"]["mean"] == 2.5
    assert summary["metrics"]["x"]["std"] == pytest.approx(1.290994, abs=1e-6)
    assert summary["metrics"]["x"]["ci95"] == pytest.approx([2.5 - 2.054260, 2.5 + 2.054260], abs=1e-5)
    assert summary["metrics"]["y"] == {"n": 1, "mean": 0.5, "std": None, "ci95": None}  # None and NaN left out
    assert (summary["items"], summary["scored"], summary["failed"], summary["kind"]) == (
        5,
        4,
        {"e": "No face found."},
        "video",
    )
    table = summary_markdown(summary)
    assert "| x | 4 | 2.5000 | 0.4457 to 4.5543 |" in table and "| y | 1 | 0.5000 | n/a |" in table
    assert "- failed: e: No face found." in table


def test_intervals_stay_within_each_metrics_range() -> None:
    """Two FaceSims near 1, two FIDs near 0 and a forgery score near 1 gave Student-t intervals past the metric's
    range (FaceSim up to 1.52, FID down to -28); they are cut at its bounds, the mean kept."""
    scores = {"facesim_arc": [0.99, 0.9], "fid": [1.0, 6.0], "forgery": [0.97, 0.6], "makeup_lips": [0.99, 0.7]}
    records = [{"id": str(i), "metrics": {name: values[i] for name, values in scores.items()}} for i in range(2)]
    metrics = summarize(records)["metrics"]
    half = 12.706205 * 0.045  # t(0.975, 1 df) times the standard error of [0.99, 0.9]
    assert metrics["facesim_arc"]["ci95"] == pytest.approx([0.945 - half, 1.0])
    assert metrics["fid"]["ci95"][0] == 0.0 and metrics["fid"]["ci95"][1] == pytest.approx(3.5 + 12.706205 * 2.5)
    assert metrics["forgery"]["ci95"] == pytest.approx([0.0, 1.0]) and metrics["makeup_lips"]["ci95"][1] == 1.0
    assert metrics["facesim_arc"]["mean"] == pytest.approx(0.945)
    assert metric_range("makeup_skin") == (-np.inf, 1.0) and metric_range("clipscore") == (-np.inf, np.inf)
    assert metric_range("opens2v_facesim_cur") == (0.0, 1.0) == metric_range("opens2v_facesim_arc")


def test_video_judge_of_each_protocol(dlib_analyzer) -> None:
    """ConsisID's and the standard protocol judge with VideoJudge on 16 frames, OpenS2V's with its FaceSim-only judge
    on 32; OpenS2V's refuses the other metrics, and an unknown protocol is refused."""
    from genface.eval import OpenS2VJudge, VideoJudge, video_judge

    for protocol in ("consisid", "standard"):
        judge = video_judge(protocol, dlib_analyzer)
        assert type(judge) is VideoJudge and judge.protocol == protocol and judge.num_frames == 16
    judge = video_judge("opens2v", dlib_analyzer, num_frames=8)
    assert type(judge) is OpenS2VJudge and judge.num_frames == 8
    assert video_judge("opens2v", dlib_analyzer).num_frames == 32
    with pytest.raises(InvalidArgumentError, match="FaceSim only .*; clip, inception: ConsisID's"):
        video_judge("opens2v", dlib_analyzer, inception=object(), clip=(None, None), fid_features=None)
    with pytest.raises(InvalidArgumentError, match="Unknown protocol 'opens3v'"):
        video_judge("opens3v", dlib_analyzer)


def test_resuming_refuses_a_file_it_did_not_write_and_leaves_it_whole(tmp_path) -> None:
    """A manifest given as the output (its last line without a newline) is refused, not cut; a whole last record
    without its newline is kept and the next record starts a line of its own."""
    (tmp_path / "a.mp4").write_bytes(b"x")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": "a", "video": "a.mp4"}')
    items = read_items(manifest, "talk")
    with pytest.raises(InvalidArgumentError, match=r"m.jsonl:1 is not a record of genface eval"):
        evaluate(items, [lambda item: pytest.fail("judged")], manifest, progress=False)
    assert manifest.read_text() == '{"id": "a", "video": "a.mp4"}'
    with pytest.raises(InvalidArgumentError, match=r"output .*a.mp4: the name must end in \.jsonl"):
        evaluate(items, [], tmp_path / "a.mp4", progress=False)
    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "b", "metrics": {}}')
    assert read_records(out) == {"b": {"id": "b", "metrics": {}}} and out.read_text().endswith("}\n")
    evaluate(items, [lambda item: {"score": 1.0}], out, progress=False)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["b", "a"]


def test_evaluate_resumes_after_an_interruption(tmp_path) -> None:
    for name in "abcd":
        (tmp_path / f"{name}.mp4").write_bytes(b"x")
    items = read_items(tmp_path, "talk")
    out = tmp_path / "out.jsonl"
    calls: list[str] = []

    def judge(item):
        calls.append(item.id)
        if item.id == "c.mp4" and len(calls) == 3:
            raise KeyboardInterrupt
        if item.id == "b.mp4" and len(calls) < 4:
            raise NoFaceError("No face found in b.")
        return {"score": float(len(item.id))}

    with pytest.raises(KeyboardInterrupt):
        evaluate(items, [judge], out, progress=False)
    with open(out, "a") as file:
        file.write('{"id": "c.mp4", "metr')  # a line cut short by the interruption
    records = evaluate(items, [judge], out, progress=False)
    assert calls == ["a.mp4", "b.mp4", "c.mp4", "b.mp4", "c.mp4", "d.mp4"]  # a was done; b failed, so again
    assert [r["id"] for r in records] == ["a.mp4", "b.mp4", "c.mp4", "d.mp4"]
    assert all(r["metrics"] == {"score": 5.0} for r in records)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in lines] == ["a.mp4", "b.mp4", "b.mp4", "c.mp4", "d.mp4"]
    assert lines[1]["error"] == "No face found in b."
    assert evaluate(items, [judge], out, progress=False) == records and len(calls) == 6


def _their_crop(image, det, crop_scale=0.4):
    """syncnet_python's run_pipeline.py crop_video for one frame (dets before smoothing)."""
    bs = max((det[3] - det[1]), (det[2] - det[0])) / 2
    y, x = (det[1] + det[3]) / 2, (det[0] + det[2]) / 2
    cs = crop_scale
    bsi = int(bs * (1 + 2 * cs))
    frame = np.pad(image, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=(110, 110))
    my, mx = y + bsi, x + bsi
    face = frame[int(my - bs) : int(my + bs * (1 + 2 * cs)), int(mx - bs * (1 + cs)) : int(mx + bs * (1 + cs))]
    return cv2.resize(face, (224, 224))


def test_syncnet_crop_is_syncnet_pythons(astronaut) -> None:
    for box in ([180.3, 60.7, 290.2, 200.9], [0.0, 0.0, 90.0, 120.0], [400.5, 380.0, 512.0, 512.0]):
        np.testing.assert_array_equal(syncnet_crop(astronaut, np.array(box)), _their_crop(astronaut, box))
    assert syncnet_crop(astronaut, np.array([0.0, 0.0, 90.0, 120.0]))[0, 0].tolist() == [110, 110, 110]
    np.testing.assert_array_equal(resample_indices(10, 25), np.arange(10))
    np.testing.assert_array_equal(resample_indices(10, 50), [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(resample_indices(6, 30), [0, 1, 2, 4, 5])  # 30 fps: each 6th frame dropped
