"""ConsisID's test set as eval_all_in_once.py pairs it (every face with every caption row, natural order, the woman's
or man's refined prompt with the class filled in), written as generation jobs and a genface eval manifest."""

from __future__ import annotations

import json

import pytest

from genface.eval.consisid_testset import main
from genface.eval.runner import read_items


def test_jobs_and_manifest_of_the_published_layout(tmp_path, capsys) -> None:
    data = tmp_path / "ConsisID-preview-Data"
    (data / "eval" / "face_images").mkdir(parents=True)
    for name in ("10_woman.png", "2_man.jpg"):
        (data / "eval" / "face_images" / name).write_bytes(b"x")
    (data / "video_caption_eval_old.csv").write_text(
        "index,Class,Original_Prompt,Refined_man,Refined_woman\n"
        '0,person,p,"A {class_token} walks, he smiles.","A {class_token} walks, she smiles."\n'
        "7,chef,p,A {class_token} cooks.,The {class_token} cooks.\n"
    )
    videos = tmp_path / "videos"
    (videos / "2_man.jpg--7").mkdir(parents=True)
    (videos / "2_man.jpg--7" / "42_0000.mp4").write_bytes(b"v")  # ConsisID's own layout
    (videos / "10_woman.png--0.mp4").write_bytes(b"v")  # batch_generate's
    jobs, manifest = tmp_path / "jobs.jsonl", tmp_path / "items.jsonl"
    assert main([str(data), str(videos), "--jobs", str(jobs), "--manifest", str(manifest)]) == 0
    assert capsys.readouterr().out == f"4 test cases; 2 videos found in {videos}.\n"

    written = [json.loads(line) for line in jobs.read_text().splitlines()]
    assert [(j["id"], j["prompt"], j["seed"]) for j in written] == [
        ("2_man.jpg--0", "A person walks, he smiles.", 42),
        ("2_man.jpg--7", "A chef cooks.", 42),
        ("10_woman.png--0", "A person walks, she smiles.", 42),
        ("10_woman.png--7", "The chef cooks.", 42),
    ]
    assert written[0]["face"] == str(data / "eval" / "face_images" / "2_man.jpg")
    items = read_items(manifest, "video")
    assert [(i.id, i.fields["video"]) for i in items] == [
        ("2_man.jpg--7", str(videos / "2_man.jpg--7" / "42_0000.mp4")),
        ("10_woman.png--0", str(videos / "10_woman.png--0.mp4")),
    ]
    assert items[0].fields["prompt"] == "A chef cooks." and items[0].fields["reference"].endswith("2_man.jpg")


def test_another_folder_is_refused_in_one_line(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), str(tmp_path)])
    assert exc.value.code == 1
    assert "is not ConsisID's test set" in capsys.readouterr().err
