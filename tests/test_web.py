"""`genface serve --model tiny` driven in headless Chromium (Playwright with Debian's chromium): a real face
photo through every tab, screenshots checked against those in docs/; the web jobs against their pipelines."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from genface.media import load_image, save_image
from tests import doc_pages
from tests.distributed import free_port

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium (apt-get install chromium).")
    port = free_port()
    (line,) = doc_pages.commands("genface serve ")  # the docs' command, as written (docs/web.md)
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "genface", *shlex.split(line)[1:], "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"genface serve did not start:\n{process.stdout.read()}")
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


def _similar(ours: Path, checked_in: Path) -> bool:
    """Same size, and close once reduced to coarse grey thumbnails (fonts and anti-aliasing may differ)."""
    a, b = Image.open(ours).convert("L"), Image.open(checked_in).convert("L")
    if a.size != b.size:
        return False
    size = (max(1, a.width // 16), max(1, a.height // 16))
    difference = np.abs(np.asarray(a.resize(size), float) - np.asarray(b.resize(size), float))
    return float(difference.mean()) < 12


def _first_frame(page: Any, selector: str) -> None:
    """Pause the video player in ``selector`` on its first frame."""
    player = page.locator(f"{selector} video")
    expect(player).to_have_count(1)
    player.evaluate("v => new Promise(done => { v.pause(); v.onseeked = done; v.currentTime = 0; })")


def test_every_tab_in_a_real_browser(server, astronaut, portrait, tmp_path: Path) -> None:
    """A real face photo through all four tabs: a mistake is said in the tab's status line (no toast, no error
    badges) and cleared by the next run; results sit beside their inputs at a bounded size with their info
    line in view; the talking-face tab previews its face and shows the pipeline's progress."""
    from playwright.sync_api import sync_playwright

    me, mirrored = save_image(astronaut, tmp_path / "me.jpg"), save_image(astronaut[:, ::-1], tmp_path / "me_m.jpg")
    look = save_image(portrait, tmp_path / "look.jpg")
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "hi.wav"), "Hi."], check=True)  # noqa: S603, S607
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(server)
        expect(page.get_by_text("tiny random models")).to_be_visible()

        page.locator("#identity-reference input[type=file]").set_input_files(me)
        page.locator("#identity-run").click()
        expect(page.locator("#identity-result")).to_contain_text("Error: Give two photos", timeout=60_000)
        expect(page.locator(".toast-body")).to_have_count(0)
        expect(page.locator("span.error")).to_have_count(0)
        page.locator("#identity-target input[type=file]").set_input_files(mirrored)
        page.locator("#identity-run").click()
        expect(page.locator("#identity-result")).to_contain_text("same person", timeout=120_000)
        result = page.locator("#identity-result").inner_text()
        assert "Error" not in result and "not proof" in result
        for photo in ("Reference", "Compared"):  # each photo's score, said plainly to be noise
            assert f"{photo} photo: forgery score (tiny random FSFM: its score is noise): 0." in result
        page.screenshot(path=tmp_path / "identity.png", full_page=True)

        page.get_by_role("tab", name="Video").click()
        page.locator("#video-face input[type=file]").set_input_files(me)
        page.locator("#video-run").click()
        expect(page.locator("#video-info")).to_contain_text("9 frames, 64x64", timeout=180_000)
        _first_frame(page, "#video-result")
        assert page.locator("#video-result video").bounding_box()["height"] <= 400
        expect(page.locator("#video-info")).to_be_in_viewport()
        page.screenshot(path=tmp_path / "video.png", full_page=True)

        page.get_by_role("tab", name="Makeup").click()
        page.locator("#makeup-face input[type=file]").set_input_files(me)
        page.locator("#makeup-reference input[type=file]").set_input_files(look)
        page.locator("#makeup-run").click()
        expect(page.locator("#makeup-result img")).to_have_count(1, timeout=180_000)
        expect(page.locator("#makeup-info")).to_be_in_viewport()
        page.screenshot(path=tmp_path / "makeup.png", full_page=True)

        page.get_by_role("tab", name="Talking face").click()
        page.locator("#talk-photo input[type=file]").set_input_files(me)
        expect(page.locator("#talk-photo img")).to_have_count(1)  # the face is previewed
        page.locator("#talk-speech input[type=file]").set_input_files(tmp_path / "hi.wav")
        page.locator("#talk-run").click()
        expect(page.locator("#talk-result").get_by_text("Lip-syncing frames")).to_be_visible(timeout=180_000)
        page.screenshot(path=tmp_path / "progress.png")
        expect(page.locator("#talk-info")).to_contain_text("15 frames at 25 fps", timeout=180_000)
        _first_frame(page, "#talk-result")
        page.screenshot(path=tmp_path / "talk.png", full_page=True)
        browser.close()

    for name in ("identity.png", "video.png", "makeup.png", "talk.png"):
        if os.environ.get("GENFACE_UPDATE_SCREENSHOTS") == "1":
            SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / name, SHOTS / name)
        assert _similar(tmp_path / name, SHOTS / name), f"{name} differs from docs/screenshots/{name}"


def test_jobs_refuse_bad_input_with_messages(tmp_path: Path, astronaut) -> None:
    """What the tabs say for bad input, as the CLI would: a GenfaceError with the reason (shown in the tab's
    status line), or a plain verdict; numbers outside the controls' ranges are refused too (API callers)."""
    from genface.errors import GenfaceError
    from genface.web import Jobs

    jobs = Jobs("tiny", "cpu", tmp_path)
    me = str(save_image(astronaut, tmp_path / "me.jpg"))
    wall = str(save_image(np.full((256, 256, 3), 90, np.uint8), tmp_path / "wall.jpg"))
    with pytest.raises(GenfaceError, match="Give two photos"):
        jobs.identity(me, None)
    *drawn, verdict = jobs.identity(me, wall)
    assert (
        verdict.startswith("No face found in the second photo.\n\n") and load_image(drawn[0]).shape == astronaut.shape
    )
    assert "Compared photo: forgery score (tiny random FSFM: its score is noise): none (No face found" in verdict
    assert (load_image(drawn[0]) != astronaut).any() and (load_image(drawn[1]) == 90).all()  # boxes where faces are
    with pytest.raises(GenfaceError, match="Give a face photo"):
        jobs.video(None, "a person", 1, 0)
    for steps, seed, refusal in [(0, 0, "Steps must be a whole number from 1 to 100"), (101, 0, "got 101"),
                                 (2.5, 0, "Steps"), (1, -1, "Seed must be a whole number from 0 to 4,294,967,295"),
                                 (1, 2**32, "Seed"), (1, "x", "got 'x'"), (1, None, "got None")]:  # fmt: skip
        with pytest.raises(GenfaceError, match=refusal):
            jobs.video(me, "a person", steps, seed)
    with pytest.raises(GenfaceError, match="Strength must be a number from 0 to 2, got 2.5"):
        jobs.makeup(me, me, 2.5, 1, 0)
    with pytest.raises(GenfaceError, match="Steps must be a whole number from 1 to 50"):
        jobs.makeup(me, me, 1.0, 51, 0)
    with pytest.raises(GenfaceError, match="a photo or a video, not both"):
        jobs.talk(me, me, me)
    with pytest.raises(GenfaceError, match="a speech recording"):
        jobs.talk(me, None, None)
    assert not (tmp_path / "local" / "video.mp4").exists()


def test_web_jobs_give_the_pipelines_own_output(tmp_path: Path, astronaut, portrait) -> None:
    """Each tab's result is what its pipeline returns for the same inputs and seed, marked as the CLI marks it:
    the drawn faces and FaceSim of the identity tab exactly; the video frames exactly (64x64: too small for the
    watermark); the made-up photo up to the watermark only (it was blown out to white once); the talking
    face exactly as the pipeline writes it."""
    import torch

    from genface.forensics import FORGERY_CAUTION, ForgeryDetector, tiny_fsfm
    from genface.identity import FaceAnalyzer, face_similarity
    from genface.media import read_video, to_uint8
    from genface.pipelines import default_size, load_pipeline
    from genface.provenance import read_mark, watermark, write_marked_video
    from genface.web import Jobs, draw_faces

    jobs = Jobs("tiny", "cpu", tmp_path / "out")
    me = str(save_image(astronaut, tmp_path / "me.png"))
    look = str(save_image(portrait, tmp_path / "look.png"))

    *drawn, verdict = jobs.identity(me, look)
    analyzer = FaceAnalyzer("auto")
    for path, image in zip(drawn, (astronaut, portrait), strict=True):
        assert (load_image(path) == draw_faces(image, analyzer.detect(image))).all()
    assert verdict.startswith(f"FaceSim {face_similarity(astronaut, portrait, analyzer=analyzer).mean:.3f} ")
    detector = ForgeryDetector(tiny_fsfm())  # the same tiny weights, on the same photos
    for photo, path in (("Reference", me), ("Compared", look)):
        score = detector.score(path)
        assert len(score.faces) == 1
        line = (
            f"{photo} photo: forgery score (tiny random FSFM: its score is noise): {score.probability:.2f} for its face"
        )
        assert line in verdict.split("\n\n")
    assert verdict.endswith(f"*Each score is {FORGERY_CAUTION}.*") and "not proof" in FORGERY_CAUTION

    video, info = jobs.video(me, "a person", 3, 7)
    output = load_pipeline("video", "tiny")(
        "a person", face_image=me, num_inference_steps=3, output_type="np",
        generator=torch.Generator().manual_seed(7), **default_size("video", "tiny"),
    )  # fmt: skip
    expected = to_uint8(output.frames[0])
    reference = write_marked_video(tmp_path / "video.mp4", expected, 8, "identity_video", "tiny")
    assert (read_video(video)[0] == read_video(reference)[0]).all() and read_mark(video)["seed"] == 7
    assert info == f"{len(expected)} frames, 64x64; seed 7"

    image, _ = jobs.makeup(me, look, 0.5, 2, 3)
    output = load_pipeline("makeup", "tiny")(
        me, look, strength=0.5, num_inference_steps=2, output_type="np",
        generator=torch.Generator().manual_seed(3), **default_size("makeup", "tiny"),
    )  # fmt: skip
    assert (load_image(image) == watermark(output.images[0])).all() and read_mark(image)["pipeline"] == "makeup"

    subprocess.run(["espeak-ng", "-w", str(tmp_path / "hi.wav"), "Hi."], check=True)  # noqa: S603, S607
    talked, info = jobs.talk(me, None, str(tmp_path / "hi.wav"))
    output = load_pipeline("talk", "tiny")(me, str(tmp_path / "hi.wav"), output_path=tmp_path / "talk.mp4")
    assert (read_video(talked)[0] == read_video(output.path)[0]).all()
    assert read_mark(talked)["pipeline"] == "talking_face" and info == f"{len(output.pitch)} frames at 25 fps"


def test_portrait_tab_gives_the_pipelines_own_video_and_refuses_bad_input(tmp_path: Path, astronaut) -> None:
    """The talking-portrait tab writes what the pipeline writes for the same photo, speech, emotion, head motion
    and seed, and refuses a missing input, an unknown emotion and an out-of-range head motion."""
    import torch

    from genface.errors import GenfaceError
    from genface.media import read_video
    from genface.pipelines import load_pipeline
    from genface.provenance import read_mark
    from genface.web import Jobs

    jobs = Jobs("tiny", "cpu", tmp_path / "out")
    me = str(save_image(astronaut, tmp_path / "me.png"))
    subprocess.run(["espeak-ng", "-w", str(tmp_path / "hi.wav"), "Hi."], check=True)  # noqa: S603, S607
    animated, info = jobs.portrait(me, str(tmp_path / "hi.wav"), "happy", 0.5, 4)
    output = load_pipeline("portrait", "tiny")(
        me, str(tmp_path / "hi.wav"), emotion="happy", head_motion=0.5, generator=torch.Generator().manual_seed(4),
        output_path=tmp_path / "portrait.mp4",
    )  # fmt: skip
    assert (read_video(animated)[0] == read_video(output.path)[0]).all()
    assert read_mark(animated)["pipeline"] == "talking_portrait" and info.startswith(f"{len(output.head_pose)} frames")
    for args, refusal in [((me, None, "happy", 1, 0), "speech recording"),
                          ((me, me, "bored", 1, 0), "Emotion must be one of angry, .*, got 'bored'"),
                          ((me, me, "happy", 4, 0), "Head motion must be a number from 0 to 3")]:  # fmt: skip
        with pytest.raises(GenfaceError, match=refusal):
            jobs.portrait(*args)


def test_identity_tab_without_forgery_weights_says_so_in_one_line(tmp_path: Path, astronaut, monkeypatch) -> None:
    """Offline with no cached checkpoint, the published model's identity tab still gives FaceSim, and one line
    saying there is no forgery detector."""
    import huggingface_hub

    from genface.web import Jobs

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    me = str(save_image(astronaut, tmp_path / "me.png"))
    *_, verdict = Jobs("hub", "cpu", tmp_path / "out").identity(me, me)
    facesim, note = verdict.split("\n\n")
    assert facesim.startswith("FaceSim 1.000 ") and "same person" in facesim
    assert note.startswith("No forgery score: the FSFM deepfake detector is not available (") and "\n" not in note


def test_a_session_s_files_are_deleted_when_it_ends(tmp_path: Path, astronaut) -> None:
    """Outputs live in a folder per session, removed when the session ends, with the uploads its jobs read;
    an upload another open session has used stays until that session ends too."""
    from genface.web import Jobs

    uploads = tmp_path / "uploads"
    jobs = Jobs("tiny", "cpu", uploads / "genface", uploads)
    shared = save_image(astronaut, uploads / "a1" / "me.png")
    mine = save_image(astronaut[::2, ::2], uploads / "b2" / "small.png")
    elsewhere = save_image(astronaut, tmp_path / "not-an-upload.png")
    for session, inputs in (("one", (shared, mine, elsewhere)), ("two", (shared,))):
        jobs.track(session, [str(p) for p in inputs] + ["a prompt", None, 3])
        jobs.identity(str(shared), str(inputs[-1]), session=session)  # writes the drawn faces
    assert (uploads / "genface" / "one").is_dir() and (uploads / "genface" / "two").is_dir()
    jobs.end_session("one")
    assert not (uploads / "genface" / "one").exists() and not (uploads / "b2").exists()
    assert shared.is_file() and elsewhere.is_file() and any((uploads / "genface" / "two").rglob("*.png"))
    jobs.end_session("two")
    assert not shared.exists() and not (uploads / "a1").exists() and elsewhere.is_file()
    assert not list((uploads / "genface").iterdir())
