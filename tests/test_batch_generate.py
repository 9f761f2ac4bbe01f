"""examples/batch_generate.py: jobs split over 2 processes (torch.distributed through accelerate), gathered,
and resumed without redoing finished work."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genface.provenance import read_mark
from genface.samples import sample_path
from tests import doc_pages

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "batch_generate.py"


def _jobs(path: Path) -> Path:
    faces = [sample_path("astronaut"), sample_path("portrait"), sample_path("astronaut")]
    lines = [
        {"id": name, "face": str(face), "prompt": f"a person, {name}"} for name, face in zip("abc", faces, strict=True)
    ]
    lines[0]["seed"] = 3
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def _run(launcher: list[str], jobs: Path, out: Path) -> str:
    command = [*launcher, str(SCRIPT), "--jobs", str(jobs), "--out-dir", str(out), "--model", "tiny", "--steps", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)  # noqa: S603
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_batch_is_split_over_processes_gathered_and_resumed(tmp_path: Path) -> None:
    """The docs' CPU demo (docs/identity-video.md), on this test's jobs and folder."""
    if shutil.which("torchrun") is None:
        pytest.fail("torchrun (installed with torch) is not on PATH")
    (line,) = doc_pages.commands("torchrun --nproc-per-node 2 examples/batch_generate.py ")
    command = shlex.split(line, comments=True)
    launcher = command[: command.index("examples/batch_generate.py")]
    assert command[len(launcher) + 1 :] == ["--jobs", "jobs.jsonl", "--out-dir", "videos/", "--model", "tiny"]
    jobs, out = _jobs(tmp_path / "jobs.jsonl"), tmp_path / "videos"
    printed = _run(launcher, jobs, out)
    assert "0 of 3 jobs already done; 3 over 2" in printed
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["a", "b", "c"] and [r["seed"] for r in records] == [3, 0, 0]
    assert {r["process"] for r in records} == {0, 1}  # both processes worked
    for record in records:
        assert read_mark(out / record["video"])["pipeline"] == "identity_video"
    assert sorted(p.name for p in out.iterdir()) == [
        "a.json",
        "a.mp4",
        "b.json",
        "b.mp4",
        "c.json",
        "c.mp4",
        "results.jsonl",
    ]

    (out / "b.json").unlink()  # as if the run had stopped during job b
    kept = {name: (out / f"{name}.mp4").stat().st_mtime_ns for name in "ac"}
    printed = _run([sys.executable], jobs, out)
    assert "2 of 3 jobs already done; 1 over 1" in printed
    assert {name: (out / f"{name}.mp4").stat().st_mtime_ns for name in "ac"} == kept  # finished work untouched
    assert len((out / "results.jsonl").read_text().splitlines()) == 3 and (out / "b.json").is_file()


def test_bad_job_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "jobs.jsonl").write_text('{"id": "a", "face": "x.jpg"}\n')
    done = subprocess.run(  # noqa: S603
        [sys.executable, str(SCRIPT), "--jobs", str(tmp_path / "jobs.jsonl"), "--out-dir", str(tmp_path / "o")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0 and "lines [1] need an id, a face and a prompt" in done.stderr
