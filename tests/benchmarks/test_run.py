"""The docs' benchmark commands (docs/speed.md) run and print their comparison tables (one repeat, few frames: what is
checked is that the benchmarks work and compare the right things, not the figures); the approximate modes' quality
against exact mode (PSNR, FaceSim, CLIPScore) measures what it says."""

from __future__ import annotations

import argparse
import math
import re
import shlex

import numpy as np
import pytest

from tests import doc_pages
from tests.eval.test_clipscore import tiny_clip  # noqa: F401 (a fixture)


def test_documented_benchmark_commands_print_their_tables(capsys) -> None:
    """Run in this process (`python -m benchmarks.run` only calls `main`), so each skips a fresh torch import."""
    from benchmarks.run import main

    lines = doc_pages.commands("python -m benchmarks.run ")
    assert {re.search(r"--pipeline (\w+)", line).group(1) for line in lines} == {"video", "makeup", "talk", "identity"}
    expected = {
        "video": ["| genface |", "| diffusers |", "time vs diffusers", "| First-Block Cache, threshold 0.1 |"],
        "makeup": ["| genface |", "| diffusers + processor swap |", "Transformer FLOPs", "| PAB, attention every"],
        "talk": ["| diffusers loop |", "| genface model path |", "| genface end to end |", "| 512x512 |"],
        "identity": ["| IdentityEncoder.encode (all of the above) |"],
    }
    skipped = "Skipped: facesim: no --face-encoder weights given; clipscore: no --clip weights given."
    for line in lines:
        pipeline = re.search(r"--pipeline (\w+)", line).group(1)
        if "--approximate" in line:  # the quality column beside the speed-up; judges named when skipped
            expected[pipeline] += ["| speed-up vs exact | PSNR vs exact dB | FaceSim (change) | CLIPScore (change) |",
                                   skipped]  # fmt: skip
        quick = ["--repeats", "1"] + (["--frames", "4", "--batch-size", "4"] if pipeline == "talk" else [])
        command = shlex.split(line, comments=True)
        assert command[:3] == ["python", "-m", "benchmarks.run"]
        capsys.readouterr()
        main([*command[3:], *quick])
        printed = capsys.readouterr().out
        for text in expected[pipeline]:
            assert text in printed, (pipeline, text, printed)


def test_psnr_is_infinite_for_equal_outputs_and_the_formula_over_every_pixel() -> None:
    from benchmarks.harness import psnr_db

    frames = np.random.default_rng(0).random((3, 8, 8, 3))
    assert psnr_db(frames, frames.copy()) == math.inf
    assert psnr_db(frames, frames + 0.01) == pytest.approx(40.0)  # 10 log10(1 / 0.01^2)
    image = np.zeros((4, 5, 3), np.uint8)
    changed = image.copy()
    changed[1, 2, 0] = 10  # one value of 60 off by 10: MSE 100 / 60, peak 255
    assert psnr_db(image, changed) == pytest.approx(10 * math.log10(255**2 * 60 / 100))
    with pytest.raises(ValueError, match="one shape"):
        psnr_db(frames, frames[:2])


def _square(top: int, left: int) -> np.ndarray:
    """A "face" the tiny insightface pack finds at ConsisID's 320 x 320 detection size (tests/eval)."""
    image = np.full((480, 480, 3), 20, dtype=np.uint8)
    image[top : top + 48, left : left + 48] = 255
    return image


def test_quality_judge_scores_facesim_and_clipscore_against_exact_mode(tiny_pack, tiny_clip) -> None:  # noqa: F811
    """Each judge's score of the approximate output and its change from exact mode's, measured on the frames as
    uint8 (float frames in [0, 1] are rounded); without weights, or without a face in the reference, it says why."""
    from benchmarks.harness import QualityJudge, quality_cells
    from genface.eval import clip_score, consisid_faces, facesim_arc

    weights = argparse.Namespace(face_encoder=str(tiny_pack), face_pack="antelopev2", clip=None, device="cpu")
    analyzer = QualityJudge.from_args(weights).analyzer
    judge = QualityJudge(analyzer, tiny_clip)
    reference = _square(96, 144)
    exact = np.stack([_square(96, 144 + 24 * i) for i in range(4)])
    approximate = exact.copy()
    approximate[2:] = _square(200, 300)
    quality = judge.compare(exact / 255, approximate / 255, reference, "a face")

    ref = consisid_faces(reference, analyzer)
    arc = {name: facesim_arc(ref, consisid_faces(frames, analyzer)).mean for name, frames in
           (("exact", exact), ("approximate", approximate))}  # fmt: skip
    clip = {name: clip_score(frames, "a face", *tiny_clip, protocol="standard") for name, frames in
            (("exact", exact), ("approximate", approximate))}  # fmt: skip
    assert quality["facesim"] == pytest.approx(arc["approximate"])
    assert quality["facesim_delta"] == pytest.approx(arc["approximate"] - arc["exact"]) and arc["exact"] > 0
    assert quality["clipscore_delta"] == pytest.approx(clip["approximate"] - clip["exact"])
    assert quality["clipscore_delta"] != 0 and "quality_skipped" not in quality
    assert quality["psnr_db"] == pytest.approx(
        10 * math.log10(255**2 / np.mean((approximate - exact.astype(float)) ** 2))
    )

    unjudged = QualityJudge(analyzer).compare(exact, exact, np.zeros_like(reference), "a face")
    assert unjudged == {"psnr_db": math.inf, "quality_skipped": "facesim: no face found in the reference; "
                        "clipscore: no --clip weights given"}  # fmt: skip
    assert quality_cells(unjudged) == ["inf", "skipped", "skipped"]
