"""ConsisID's test set as eval_all_in_once.py pairs it (every face with every caption row, natural order, the woman's
or man's refined prompt with the class filled in), written as generation jobs and a genface eval manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genface.errors import InvalidArgumentError
from genface.eval.consisid_testset import write_consisid_files
from genface.eval.runner import read_items


def consisid_layout(root: Path) -> tuple[Path, Path]:
    """A tiny copy of the published test set (two faces, two caption rows) and a folder with two of its four videos,
    one as batch_generate writes it and one as ConsisID's script does."""
    data = root / "ConsisID-preview-Data"
    (data / "eval" / "face_images").mkdir(parents=True)
    for name in ("10_woman.png", "2_man.jpg"):
        (data / "eval" / "face_images" / name).write_bytes(b"x")
    (data / "video_caption_eval_old.csv").write_text(
        "index,Class,Original_Prompt,Refined_man,Refined_woman\n"
        '0,person,p,"A {class_token} walks, he smiles.","A {class_token} walks, she smiles."\n'
        "7,chef,p,A {class_token} cooks.,The {class_token} cooks.\n"
    )
    videos = root / "videos"
    (videos / "2_man.jpg--7").mkdir(parents=True)
    (videos / "2_man.jpg--7" / "42_0000.mp4").write_bytes(b"v")  # ConsisID's own layout
    (videos / "10_woman.png--0.mp4").write_bytes(b"v")  # batch_generate's
    return data, videos


def test_jobs_and_manifest_of_the_published_layout(tmp_path) -> None:
    data, videos = consisid_layout(tmp_path)
    jobs, manifest = tmp_path / "jobs.jsonl", tmp_path / "items.jsonl"
    assert write_consisid_files(data, videos, jobs, manifest) == (4, 2)

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


def test_wrong_folders_are_refused_before_anything_is_written(tmp_path) -> None:
    data, _ = consisid_layout(tmp_path)
    jobs, manifest = tmp_path / "jobs.jsonl", tmp_path / "items.jsonl"
    with pytest.raises(InvalidArgumentError, match="is not ConsisID's test set"):
        write_consisid_files(tmp_path, tmp_path, jobs, manifest)
    with pytest.raises(InvalidArgumentError, match=r"holds none of the test set's 4 videos .*2_man.jpg--0.mp4"):
        write_consisid_files(data, data, jobs, manifest)
    assert not jobs.exists() and not manifest.exists()
