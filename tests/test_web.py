"""`genface serve --model tiny` driven in headless Chromium (Playwright with Debian's chromium): a real face
photo through every tab, screenshots checked against those in docs/; a real user's page (two pages on one photo,
one closed; Stop mid-run and a double click; a text file named like a photo; a face chosen in a group photo; the
page closed mid-run), with no session file left; the web jobs against their pipelines, and their refusals."""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
import wave
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from genface.media import load_image, save_image
from genface.samples import speech_like
from tests import doc_pages
from tests.distributed import free_port

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
#: What a one-line message in the page must never hold: a server folder, an errno code, a traceback.
LEAKS = ("/tmp", "/gradio", "Errno", "Traceback", "\n")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The docs' serve command (with -v, so stops and ignored clicks are logged), its uploads and outputs in a
    folder of its own, sessions ending half a second after their page closes (Gradio's heartbeat)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium (apt-get install chromium).")
    port, folder = free_port(), tmp_path_factory.mktemp("serve")
    (line,) = doc_pages.commands("genface serve ")  # the docs' command, as written (docs/web.md)
    env = dict(os.environ, GRADIO_TEMP_DIR=str(folder / "temp"), GRADIO_HEARTBEAT_INTERVAL="0.5")
    log = folder / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "genface", "-v", *shlex.split(line)[1:], "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env,
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
                pytest.fail(f"genface serve did not start:\n{log.read_text()}")
            time.sleep(0.5)
    yield SimpleNamespace(url=url, temp=folder / "temp", log=log)
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


def _wav(path: Path, seconds: float, rate: int, pause: float = 0.0) -> Path:
    """A speech-like tone (genface.samples.speech_like) as 16-bit mono wav at ``rate``, then ``pause`` seconds of
    silence."""
    samples = np.concatenate([speech_like(seconds, rate), np.zeros(int(pause * rate), np.float32)])
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


def _upload(page: Any, box: str, path: Path | str, said: str) -> None:
    """Drop ``path`` in the photo box ``box`` and wait for the tab's status line to say ``said``."""
    page.locator(f"#{box} input[type=file]").set_input_files(path)
    expect(page.locator(f"#{box.split('-')[0]}-{'result' if box.startswith('identity') else 'info'}")).to_contain_text(
        said, timeout=120_000
    )


def _choose(page: Any, dropdown: str, option: str) -> None:
    """Choose ``option`` in the dropdown ``dropdown``."""
    page.locator(f"#{dropdown} input").click()
    page.get_by_role("option", name=option).click()


def _click_face(page: Any, gallery: str, index: int) -> None:
    """Click the middle of face ``index`` in a face gallery (genface.web.face_gallery), shown scaled to fit."""
    from genface.web import FACE_GAP, FACE_THUMB, FACES_PER_ROW

    image = page.locator(gallery)
    box = image.bounding_box()
    width, height = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    scale = min(box["width"] / width, box["height"] / height)
    cell = FACE_THUMB + FACE_GAP
    x, y = FACE_GAP + index % FACES_PER_ROW * cell + FACE_THUMB / 2, FACE_GAP + index // FACES_PER_ROW * cell + 48
    image.click(position={"x": (box["width"] - width * scale) / 2 + x * scale,
                          "y": (box["height"] - height * scale) / 2 + y * scale})  # fmt: skip


def _shown(page: Any, image: str) -> np.ndarray:
    """The pixels of the image the page shows in ``image`` (fetched from the server as the browser does)."""
    source = page.locator(image).get_attribute("src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(source).body())).convert("RGB"))


def _files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def _settled(folder: Path, keep: int = 0, seconds: float = 30) -> list[Path]:
    """Wait (up to ``seconds``) for at most ``keep`` session folders of outputs, and no file when ``keep`` is 0;
    the files left."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sessions = [p for p in (folder / "genface").glob("*") if p.is_dir()] if (folder / "genface").is_dir() else []
        if len(sessions) <= keep and (keep or not _files(folder)):
            break
        time.sleep(0.2)
    return _files(folder)


def test_a_real_user_s_page_in_a_real_browser(server, astronaut, group, tmp_path: Path) -> None:
    """Two pages show one group photo; the first compares and closes, the second still compares (nothing to upload
    again) with a face chosen in the gallery, and the drawn faces are the pixels expected; a text file named like
    a photo is refused in one line and clears the result; a 1000-step video double-clicked runs once, shows
    progress at once and stops at Stop; a page closed mid-run stops its running and queued jobs. Nothing is left
    of any session, and the server logged no traceback."""
    from playwright.sync_api import sync_playwright

    from genface.identity import FaceAnalyzer
    from genface.web import draw_faces, face_gallery, face_thumbnail

    photo, me = save_image(group, tmp_path / "group.jpg"), save_image(astronaut, tmp_path / "me.jpg")
    picture = load_image(photo)  # as stored (JPEG)
    faces = FaceAnalyzer("auto").detect(picture)
    x1, y1, x2, y2 = (int(v) for v in faces[3].bbox)
    side = x2 - x1
    reference = save_image(picture[max(y1 - side, 0) : y2 + side, max(x1 - side, 0) : x2 + side], tmp_path / "him.png")
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a photo\n" * 40)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        first, second = (browser.new_page(viewport={"width": 1200, "height": 1100}) for _ in range(2))
        for page in (first, second):
            page.goto(server.url)
            _upload(page, "identity-target", photo, "6 faces found in group.jpg: face 0 (the largest) is used")
            _upload(page, "identity-reference", reference, "1 face found in him.png")
        first.locator("#identity-run").click()
        expect(first.locator("#identity-result")).to_contain_text("different people", timeout=120_000)
        first.close()  # its session ends: its files go, the photo the second page shows stays
        assert _settled(server.temp, keep=1) and (server.temp / "genface").is_dir()

        page = second
        _click_face(page, "#identity-target-faces img", 3)
        expect(page.locator("#identity-target-face input")).to_have_value("3")
        framed = face_gallery([face_thumbnail(picture, face) for face in faces], 3)
        deadline = time.monotonic() + 30  # the gallery is drawn again with face 3 framed
        while not np.array_equal(_shown(page, "#identity-target-faces img"), framed) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert np.array_equal(_shown(page, "#identity-target-faces img"), framed)
        page.locator("#identity-run").click()
        expect(page.locator("#identity-result")).to_contain_text("same person", timeout=120_000)
        assert "upload it again" not in page.locator("#identity-result").inner_text()
        assert (_shown(page, "#identity-faces-1 img") == draw_faces(picture, faces, 3)).all()  # face 3 boxed

        _upload(page, "identity-target", notes, "Error: Face to compare: notes.jpg is not an image file PIL can decode")
        said = page.locator("#identity-result").inner_text()
        assert not any(leak in said.strip() for leak in LEAKS), said
        expect(page.locator("#identity-faces-1 img")).to_have_count(0)  # the previous result is cleared
        expect(page.locator(".toast-body")).to_have_count(0)
        expect(page.locator("span.error")).to_have_count(0)

        page.get_by_role("tab", name="Video").click()
        _upload(page, "video-face", me, "1 face found in me.jpg.")
        page.locator("#video-steps input").fill("1000")
        page.locator("#video-run").dblclick()
        # progress from the first second: the model loading (a first run), or the steps
        expect(page.locator("#video-result")).to_contain_text(re.compile("Loading|Preparing|Denoising"), timeout=5_000)
        expect(page.locator("#video-result").get_by_text("Denoising")).to_be_visible(timeout=180_000)
        page.locator("#video-stop").click()
        expect(page.locator("#video-info")).to_have_text("Stopped. Nothing was written.", timeout=60_000)
        page.get_by_role("tab", name="Identity check").click()
        _upload(page, "identity-target", photo, "6 faces found")
        page.locator("#identity-run").click()  # the worker is free: no second 1000-step video was queued
        expect(page.locator("#identity-result")).to_contain_text("different people", timeout=120_000)

        third = browser.new_page(viewport={"width": 1200, "height": 1100})
        third.goto(server.url)
        third.get_by_role("tab", name="Video").click()
        _upload(third, "video-face", me, "1 face found in me.jpg.")
        third.locator("#video-steps input").fill("1000")
        third.locator("#video-run").click()
        expect(third.locator("#video-result").get_by_text("Denoising")).to_be_visible(timeout=180_000)
        third.get_by_role("tab", name="Identity check").click()
        _upload(third, "identity-reference", me, "1 face found in me.jpg.")
        _upload(third, "identity-target", me, "1 face found in me.jpg.")
        third.locator("#identity-run").click()  # queued behind the video
        third.close()
        second.close()
        browser.close()
    assert _settled(server.temp) == [], "files outlived their sessions"
    log = server.log.read_text()
    assert "Traceback" not in log
    assert log.count("video job stopped") == 2, log  # the double click ran one job; the closed page's stopped
    assert "video job stopped: its page was closed" in log


def test_every_tab_in_a_real_browser(server, astronaut, portrait, tmp_path: Path) -> None:
    """A real face photo through all four tabs: a mistake is said in the tab's status line (no toast, no error
    badges) and cleared by the next run; results sit beside their inputs at a bounded size with their numbers
    (FaceSim, makeup similarity, lip-sync) in view; choosing a video model sets its settings, and LatentSync's
    numbers show for LatentSync only; the talking-face tab takes 48 kHz speech, previews its face and shows the
    pipeline's progress."""
    from playwright.sync_api import sync_playwright

    me, mirrored = save_image(astronaut, tmp_path / "me.jpg"), save_image(astronaut[:, ::-1], tmp_path / "me_m.jpg")
    look = save_image(portrait, tmp_path / "look.jpg")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(server.url)
        expect(page.get_by_text("tiny random models")).to_be_visible()

        _upload(page, "identity-reference", me, "1 face found in me.jpg.")
        page.locator("#identity-run").click()
        expect(page.locator("#identity-result")).to_contain_text("Error: Give two photos", timeout=60_000)
        expect(page.locator(".toast-body")).to_have_count(0)
        expect(page.locator("span.error")).to_have_count(0)
        _upload(page, "identity-target", mirrored, "1 face found in me_m.jpg.")
        page.locator("#identity-run").click()
        expect(page.locator("#identity-result")).to_contain_text("same person", timeout=120_000)
        result = page.locator("#identity-result").inner_text()
        assert "Error" not in result and "not proof" in result
        for photo in ("Reference", "Compared"):  # each photo's score, said plainly to be noise
            assert f"{photo} photo: forgery score (tiny random FSFM: its score is noise): 0." in result
        page.screenshot(path=tmp_path / "identity.png", full_page=True)

        page.get_by_role("tab", name="Video").click()
        _upload(page, "video-face", me, "1 face found in me.jpg.")
        page.locator("#video-run").click()
        expect(page.locator("#video-info")).to_contain_text("9 frames, 64x64 at 8 fps; seed 42", timeout=180_000)
        expect(page.locator("#video-info")).to_contain_text("FaceSim")
        _first_frame(page, "#video-result")
        assert page.locator("#video-result video").bounding_box()["height"] <= 400
        expect(page.locator("#video-info")).to_be_in_viewport()
        page.screenshot(path=tmp_path / "video.png", full_page=True)
        _choose(page, "video-model", "Stand-In (Wan2.1-14B)")  # its settings replace ConsisID's
        page.get_by_text("More settings").click()
        for box, value in (("guidance", "5"), ("frames", "9"), ("fps", "16")):
            expect(page.locator(f"#video-{box} input")).to_have_value(value)

        page.get_by_role("tab", name="Makeup").click()
        _upload(page, "makeup-face", me, "1 face found in me.jpg.")
        page.locator("#makeup-reference input[type=file]").set_input_files(look)
        page.locator("#makeup-run").click()
        expect(page.locator("#makeup-result img")).to_have_count(1, timeout=180_000)
        expect(page.locator("#makeup-info")).to_contain_text("makeup similarity, lips: ")
        expect(page.locator("#makeup-info")).to_be_in_viewport()
        page.screenshot(path=tmp_path / "makeup.png", full_page=True)

        page.get_by_role("tab", name="Talking face").click()
        expect(page.locator("#talk-steps")).to_be_hidden()  # LatentSync's numbers: MuseTalk has none
        _choose(page, "talk-model", "LatentSync 1.6")
        expect(page.locator("#talk-steps")).to_be_visible()
        expect(page.locator("#talk-guidance input")).to_have_value("1.5")
        _choose(page, "talk-model", "MuseTalk")
        expect(page.locator("#talk-steps")).to_be_hidden()
        _upload(page, "talk-photo", me, "1 face found in me.jpg.")
        expect(page.locator("#talk-photo img")).to_have_count(1)  # the face is previewed
        page.locator("#talk-speech input[type=file]").set_input_files(_wav(tmp_path / "hi.wav", 0.6, 48000))
        page.locator("#talk-run").click()
        expect(page.locator("#talk-result").get_by_text("Lip-syncing frames")).to_be_visible(timeout=180_000)
        page.screenshot(path=tmp_path / "progress.png")
        expect(page.locator("#talk-info")).to_contain_text("15 frames at 25 fps", timeout=180_000)
        expect(page.locator("#talk-info")).to_contain_text("lip-sync proxy")
        _first_frame(page, "#talk-result")
        page.screenshot(path=tmp_path / "talk.png", full_page=True)
        browser.close()

    for name in ("identity.png", "video.png", "makeup.png", "talk.png"):
        if os.environ.get("GENFACE_UPDATE_SCREENSHOTS") == "1":
            SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / name, SHOTS / name)
        assert _similar(tmp_path / name, SHOTS / name), f"{name} differs from docs/screenshots/{name}"


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One set of web jobs for the tests below (each pipeline loads once)."""
    from genface.web import Jobs

    return Jobs("tiny", "cpu", tmp_path_factory.mktemp("out"))


def _outputs(jobs: Any, session: str = "local") -> list[Path]:
    return (
        [p for p in (jobs.output_dir / session).rglob("*") if p.is_file()]
        if (jobs.output_dir / session).exists()
        else []
    )


def test_bounds_are_the_cli_s_and_nothing_is_clamped_or_rounded() -> None:
    """The page's numbers take the CLI's ranges (the seed all of 0..2^63-1, exactly, as text); a number out of
    range, a fraction where a whole number goes, text, NaN or an empty box are refused in one line."""
    from genface.errors import GenfaceError
    from genface.web import bounded

    assert bounded("9223372036854775807", "Seed") == 2**63 - 1 and bounded(2**63 - 1, "Seed") == 2**63 - 1
    assert bounded(" 7 ", "Seed") == 7 and bounded(7.0, "Steps") == 7 and bounded("1e3", "Steps") == 1000
    assert bounded(2, "Strength") == 2.0 and bounded("0.5", "Head motion") == 0.5 and bounded(50, "Guidance") == 50
    assert [bounded(v, "Frames") for v in (1, "81", 257.0)] == [1, 81, 257] and bounded(1.5, "Lip-sync guidance") == 1.5
    for value, name, refusal in [
        ("9223372036854775808", "Seed", "Seed must be a whole number from 0 to 9,223,372,036,854,775,807, got"),
        (-1, "Seed", "got -1"), (1.5, "Seed", "got 1.5"), (2.0**60, "Seed", "got 1.152921504606847e+18"),
        (0, "Steps", "Steps must be a whole number from 1 to 1,000, got 0."), (1001, "Steps", "got 1001"),
        (2.5, "Steps", "got 2.5"), ("x", "Steps", "got 'x'"), (True, "Steps", "got True"),
        ("", "Steps", "Steps is empty; give a whole number from 1 to 1,000."), (None, "Seed", "Seed is empty"),
        (float("nan"), "Guidance", "Guidance must be a number from 0 to 50, got nan."), (50.5, "Guidance", "50.5"),
        (2.05, "Strength", "Strength must be a number from 0 to 2, got 2.05."), (1000, "Face", "from 0 to 999"),
        (10, "Frames", "Frames must be of the form 4k+1, got 10; try 9 or 13."), (0, "Frames", "from 1 to 257"),
        (261, "Frames", "Frames must be a whole number from 1 to 257, got 261."),
        (0.5, "Frame rate", "Frame rate must be a number from 1 to 120, got 0.5."),
        (20.5, "Lip-sync guidance", "Lip-sync guidance must be a number from 0 to 20, got 20.5."),
    ]:  # fmt: skip
        with pytest.raises(GenfaceError, match=refusal.replace("(", r"\(").replace(".", r"\.").replace("+", r"\+")):
            bounded(value, name)


def test_jobs_refuse_bad_input_in_one_line_before_any_model_loads(tmp_path: Path, astronaut) -> None:
    """What the tabs say for bad input, before any model work: a missing input, a number out of range, an upload
    gone from the server (upload it again), a text or wav file named like a photo, a truncated photo, a text file
    named like speech or a video; one line each, with the file's name but no folder and no errno."""
    from genface.errors import GenfaceError
    from genface.web import Jobs

    jobs = Jobs("tiny", "cpu", tmp_path / "out")
    me = str(save_image(astronaut, tmp_path / "me.jpg"))
    (tmp_path / "notes.jpg").write_text("not a photo\n" * 40)
    _wav(tmp_path / "speech.jpg", 0.5, 48000)
    (tmp_path / "half.jpg").write_bytes((tmp_path / "me.jpg").read_bytes()[:4000])
    (tmp_path / "notes.wav").write_text("not speech")
    (tmp_path / "notes.mp4").write_text("not a video")
    speech = str(_wav(tmp_path / "hi.wav", 0.5, 48000))
    cases = [
        (lambda: jobs.identity(me, 0, None, 0), "Give two photos: a reference face and a face to compare with it."),
        (lambda: jobs.video(None), "Give a face photo."),
        (lambda: jobs.video(me, 0, "a", 0, 6, 0), "Steps must be a whole number from 1 to 1,000, got 0."),
        (lambda: jobs.video(me, 0, "a", 2, 6, -1), "Seed must be a whole number from 0 to 9,223,372,036,854,775,807"),
        (lambda: jobs.video(me, -1), "Face must be a whole number from 0 to 999, got -1."),
        (lambda: jobs.video(me, 0, "a", 2, 5, 0, "wan"), "Model must be one of consisid, stand-in, vace, vace-1.3b, "
                                                         "got 'wan'."),
        (lambda: jobs.video(me, 0, "a", 2, 5, 0, "stand-in", "", 10), "Frames must be of the form 4k+1, got 10; try "
                                                                      "9 or 13."),
        (lambda: jobs.video(me, 0, "a", 2, 5, 0, "vace", "", 9, 0), "Frame rate must be a number from 1 to 120"),
        (lambda: jobs.video(str(tmp_path / "gone.jpg")), "Face photo gone.jpg is no longer on the server; upload it "
                                                          "again."),
        (lambda: jobs.video(str(tmp_path / "notes.jpg")), "Face photo: notes.jpg is not an image file PIL can decode "
                                                          "(corrupt, or another file type)."),
        (lambda: jobs.identity(me, 0, str(tmp_path / "speech.jpg")), "Face to compare: speech.jpg is not an image"),
        (lambda: jobs.makeup(me, 0, str(tmp_path / "half.jpg")), "Makeup reference: half.jpg could not be decoded "
                                                                 "(truncated or corrupt file?)"),
        (lambda: jobs.makeup(me, 0, me, 2.5), "Strength must be a number from 0 to 2, got 2.5."),
        (lambda: jobs.talk(me, me, 0, speech), "a photo or a video, not both"),
        (lambda: jobs.talk(me, None, 0, None), "a speech recording"),
        (lambda: jobs.talk(me, None, 0, speech, "wav2lip"), "Model must be one of musetalk, latentsync, got 'wav2lip"),
        (lambda: jobs.talk(me, None, 0, speech, "musetalk", "quiet"), "Silence must be one of animate, source, closed, "
                                                                      "got 'quiet'."),
        (lambda: jobs.talk(me, None, 0, speech, "latentsync", "closed", 20, 25), "Lip-sync guidance must be a number "
                                                                                 "from 0 to 20, got 25."),
        (lambda: jobs.talk(me, None, 0, speech, "latentsync", "closed", 0), "Steps must be a whole number from 1"),
        (lambda: jobs.talk(me, None, 0, str(tmp_path / "notes.wav")), "Speech: notes.wav could not be decoded as "
                                                                      "audio: Invalid data found"),
        (lambda: jobs.talk(None, str(tmp_path / "notes.mp4"), 0, speech), "Face video: notes.mp4 could not be "
                                                                          "decoded as video"),
        (lambda: jobs.portrait(me, 0, speech, "bored"), re.compile("Emotion must be one of angry, .*, got 'bored'")),
        (lambda: jobs.portrait(me, 0, speech, "happy", 4), "Head motion must be a number from 0 to 3, got 4."),
        (lambda: jobs.portrait(me, 0, speech, "happy", 1, 42, 1, 4), "Yaw factor must be a number from 0 to 3, got 4."),
        (lambda: jobs.portrait(me, 0, speech, "happy", 1, 42, 1, 1, 1, -0.5), "Voice activity must be a number from 0 "
                                                                              "to 1, got -0.5."),
        (lambda: jobs.portrait(me, 0, speech, "happy", 1, 42, 1, 1, 1, 1, 2.5), "Fade in must be a whole number from "
                                                                                "-1 to 90,000, got 2.5."),
        (lambda: jobs.portrait(me, 0, speech, "happy", 1, 42, 1, 1, 1, 1, -1, -1, "d1"), "Fade type must be one of "
                                                                                         "default, d0, s, got 'd1'."),
    ]  # fmt: skip
    for call, refusal in cases:
        with pytest.raises(GenfaceError) as raised:
            call()
        message = str(raised.value)
        assert refusal.search(message) if isinstance(refusal, re.Pattern) else refusal in message, message
        assert not any(leak in message for leak in LEAKS), message
    assert not jobs._pipes and _outputs(jobs) == []  # refused before any model loaded, nothing written


def test_the_web_handler_says_every_failure_in_one_line(jobs, caplog) -> None:
    """Through the Gradio handler: an upload gone from the server, a stop and ffmpeg's refusal (as 192 kHz speech
    gets from the AAC encoder) each end as one line in the tab's status line, the other outputs cleared, logged
    without a traceback; a bug is one line in the page, its traceback in the log only."""
    import av

    from genface.web import STOPPED, _web_job

    def ffmpeg(*_: Any, run: Any) -> tuple:
        raise av.error.ArgumentError(22, "Invalid argument", 'avcodec_open2("aac", {})')

    def stop(*_: Any, run: Any) -> tuple:
        jobs.stop(run.session, run.tab)
        return run.check()

    def bug(*_: Any, run: Any) -> tuple:
        raise KeyError("oops")

    request = SimpleNamespace(session_hash="handler")
    for function, said, logged in [
        (jobs.video, "**Error:** Face photo x.jpg is no longer on the server; upload it again.", "video job refused"),
        (
            ffmpeg,
            "**Error:** ffmpeg could not encode or decode the media (Invalid argument); nothing was written.",
            "ffmpeg job failed in",
        ),
        (stop, STOPPED, ""),
        (bug, "**Error:** Unexpected error on the server (KeyError); the job did not finish. Please report it.", "bug"),
    ]:
        caplog.clear()
        with caplog.at_level("INFO", logger="genface.web"):
            outputs = _web_job(jobs, function, 2)({"path": "/tmp/gone/x.jpg"}, 0, "a", 2, 6, "1", request, None)
        assert outputs == (None, said) and logged in caplog.text
        assert [bool(record.exc_info) for record in caplog.records] == [function is bug] * len(caplog.records)


def test_a_second_click_is_ignored_and_stop_ends_the_tab_s_job(jobs) -> None:
    """A second job of a tab is ignored while one waits or runs (a double click), not after; Stop ends the tab's
    jobs queued before it, not one queued after it nor another tab's; a closed page's jobs stop, and a job of a
    closed page that was still queued does nothing."""
    first = jobs.start("page", "video")
    assert first is not None and jobs.start("page", "video") is None  # the second click, while it runs
    clicked = time.monotonic()
    jobs.finish(first)
    assert jobs.start("page", "video", queued=clicked) is None  # clicked while the first ran, started after
    makeup, video = jobs.start("page", "makeup"), jobs.start("page", "video")
    jobs.stop("page", "makeup")
    assert makeup.stopped() and not video.stopped()
    jobs.finish(makeup)
    later = jobs.start("page", "makeup")
    assert later is not None and not later.stopped()  # clicked after the Stop
    jobs.end_session("page")
    assert video.stopped() and later.stopped()
    queued = jobs.start("page", "identity", queued=clicked)
    assert queued is not None and queued.stopped()  # queued before the page closed, started after


@pytest.mark.parametrize(
    ("tab", "model"),
    [("video", "consisid"), ("video", "stand-in"), ("makeup", None), ("talk", "musetalk"), ("talk", "latentsync"),
     ("portrait", None)],
)  # fmt: skip
def test_stop_reaches_each_pipeline_between_steps(
    jobs, tab: str, model: str | None, tmp_path: Path, astronaut, portrait
) -> None:
    """Stop pressed during the first step (a denoising step; for the talking face and portrait a batch of 8
    frames, for LatentSync a clip of 16, through the callback_on_step_end they take) ends the job there with
    nothing written."""
    from genface.web import Run, Stopped

    me, look = str(save_image(astronaut, tmp_path / "me.png")), str(save_image(portrait, tmp_path / "look.png"))
    speech = str(_wav(tmp_path / "hi.wav", 0.6, 48000))  # 15 frames: two batches, one clip
    arguments = {"video": (me, 0, "a person", 3, 6, 0, model, "", 9, 8), "makeup": (me, 0, look, 1, 3, 2.5, 0),
                 "talk": (me, None, 0, speech, model, "animate", 1, 1.0, 0),
                 "portrait": (me, 0, speech, "happy", 1, 0)}  # fmt: skip
    run = jobs.start(f"stop-{tab}-{model}", tab)
    steps: list[int] = []

    def step(pipe: Any, index: int, timestep: Any, tensors: dict) -> dict:
        steps.append(index)
        jobs.stop(run.session, tab)
        return Run.step(run, pipe, index, timestep, tensors)

    run.step = step  # type: ignore[method-assign]
    with pytest.raises(Stopped):
        getattr(jobs, tab)(*arguments[tab], run=run)
    assert steps == [0] and _outputs(jobs, run.session) == []


def test_web_jobs_give_the_pipelines_own_output_and_the_cli_s_numbers(
    jobs, tmp_path: Path, astronaut, portrait
) -> None:
    """Each tab's result is what its pipeline returns for the same inputs and seed, marked as the CLI marks it,
    with the numbers the CLI prints: the drawn faces and FaceSim of the identity tab exactly; the video frames
    exactly (64x64: too small for the watermark) and their FaceSim line; the made-up photo up to the watermark
    only (it was blown out to white once), its FaceSim and makeup similarities; the talking face (48 kHz speech)
    exactly as the pipeline writes it, its FaceSim and lip-sync lines."""
    import torch

    from genface.forensics import FORGERY_CAUTION, ForgeryDetector, tiny_fsfm
    from genface.identity import FaceAnalyzer, face_similarity
    from genface.media import read_video, to_uint8
    from genface.pipelines import default_size
    from genface.provenance import read_mark, watermark, write_marked_video
    from genface.web import draw_faces

    me = str(save_image(astronaut, tmp_path / "me.png"))
    look = str(save_image(portrait, tmp_path / "look.png"))

    *drawn, verdict = jobs.identity(me, 0, look, 0)
    analyzer = FaceAnalyzer("auto")
    for path, image in zip(drawn, (astronaut, portrait), strict=True):
        assert (load_image(path) == draw_faces(image, analyzer.detect(image), 0)).all()
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

    video, info = jobs.video(me, 0, "a person", 3, 6, "7", "consisid", "", 9, 8)
    pipe = jobs._pipes["video"]  # the same tiny pipeline, called directly
    output = pipe(
        "a person", face_image=me, num_inference_steps=3, output_type="np",
        generator=torch.Generator().manual_seed(7), **default_size("video", "tiny"),
    )  # fmt: skip
    expected = to_uint8(output.frames[0])
    reference = write_marked_video(tmp_path / "video.mp4", expected, 8, "identity_video", "tiny")
    assert (read_video(video)[0] == read_video(reference)[0]).all() and read_mark(video)["seed"] == 7
    sim = face_similarity(output.identity, expected, analyzer=pipe.identity_encoder.analyzer)
    assert info.split("\n\n") == [
        f"{len(expected)} frames, 64x64 at 8 fps; seed 7",
        "FaceSim: no face found in the generated frames" if not sim.found.any() else info.split("\n\n")[1],
    ]

    image, info = jobs.makeup(me, 0, look, 0.5, 2, 2.5, 3)
    output = jobs._pipes["makeup"](
        me, look, strength=0.5, num_inference_steps=2, output_type="np",
        generator=torch.Generator().manual_seed(3), **default_size("makeup", "tiny"),
    )  # fmt: skip
    assert (load_image(image) == watermark(output.images[0])).all() and read_mark(image)["pipeline"] == "makeup"
    assert info.split("\n\n") == [
        "seed 3",
        "FaceSim source vs result: no face found in the result"
        if output.facesim is None
        else f"FaceSim source vs result: {output.facesim:.4f}",
        *(f"makeup similarity, {region}: {score:.3f}" for region, score in output.makeup_similarity.items()),
    ]

    speech = _wav(tmp_path / "hi.wav", 0.6, 48000)  # the happy path of a high sample rate
    talked, info = jobs.talk(me, None, 0, str(speech))
    output = jobs._pipes["talk"](me, str(speech), output_path=tmp_path / "talk.mp4")
    assert (read_video(talked)[0] == read_video(output.path)[0]).all() and read_mark(talked)[
        "pipeline"
    ] == "talking_face"
    lines = info.split("\n\n")
    assert lines[0] == f"{len(output.pitch)} frames at 25 fps" and lines[-1].startswith("lip-sync proxy")
    assert lines[-2].startswith("FaceSim")


def test_video_models_give_their_pipelines_own_video_one_loaded_at_a_time(jobs, tmp_path: Path, astronaut) -> None:
    """Each video model's settings are its own (Wan: guidance 5, 16 fps, Wan's negative prompt; ConsisID: 6, 8 fps,
    none; the tiny models' frames); a tiny Stand-In video from the tab with them is what the pipeline makes for the
    same inputs and seed, at 16 fps, with the FaceSim line of the pipeline's own measure. A VACE job then unloads
    the Stand-In pipeline (nothing holds it), and the two VACE choices are one tiny model but two published ones."""
    import weakref

    import torch

    from genface.media import read_video, to_uint8
    from genface.pipelines import default_size
    from genface.pipelines.identity_video.vace import SMALL_MODEL
    from genface.pipelines.identity_video.wan import NEGATIVE_PROMPT
    from genface.provenance import read_mark, write_marked_video
    from genface.web import Jobs

    me = str(save_image(astronaut, tmp_path / "me.png"))
    assert jobs.video_settings("consisid") == (6.0, 9, 8.0, "")
    settings = jobs.video_settings("stand-in")
    assert settings == (5.0, 9, 16.0, NEGATIVE_PROMPT) == jobs.video_settings("vace")
    guidance, frames, fps, negative = settings
    video, info = jobs.video(me, 0, "a person", 2, guidance, "7", "stand-in", negative, frames, fps)
    pipe = jobs._pipes["video"]
    output = pipe(
        "a person", negative_prompt=NEGATIVE_PROMPT, face_image=me, num_inference_steps=2, guidance_scale=5.0,
        output_type="np", generator=torch.Generator().manual_seed(7), **default_size("video", "tiny-stand-in"),
    )  # fmt: skip
    reference = write_marked_video(tmp_path / "video.mp4", to_uint8(output.frames[0]), 16, "identity_video", "x")
    (made, rate), (expected, _) = read_video(video), read_video(reference)
    assert made.shape == (9, 32, 32, 3) and (made == expected).all() and rate == 16
    assert read_mark(video)["model"] == "tiny-stand-in" and read_mark(video)["seed"] == 7
    sim = output.facesim
    found = int(sim.found.sum())
    assert info.split("\n\n") == [
        "9 frames, 32x32 at 16 fps; seed 7",
        f"FaceSim vs reference ({sim.model}): mean {sim.mean:.4f}, min {sim.min:.4f} over {found} frame(s) with a face"
        if found
        else "FaceSim: no face found in the generated frames",
    ]

    stand_in = weakref.ref(pipe)
    del pipe, output
    jobs.video(me, 0, "a person", 1, guidance, 7, "vace", negative, frames, fps)
    assert stand_in() is None and jobs._loaded["video"] == "tiny-vace"
    assert jobs._model("video", "vace-1.3b") == ("tiny-vace", "VACE 1.3B video")
    assert Jobs("hub")._model("video", "vace-1.3b") == (SMALL_MODEL, "VACE 1.3B video")
    assert Jobs("hub")._model("video", "vace")[0] == "vace" and Jobs("hub")._model("makeup")[0] is None


def test_latentsync_dub_is_the_pipelines_own_with_the_silence_chosen(jobs, tmp_path: Path, astronaut) -> None:
    """A tiny LatentSync dub from the tab (speech, then a pause) is the pipeline's own video for the same photo,
    speech, steps, guidance, seed and silence mode, and says its seed; the silence choice reached the pipeline: with
    "source" the frames in the pause show the photo where the model painted the mouth during the speech."""
    import torch

    from genface.media import read_video
    from genface.provenance import read_mark

    me = str(save_image(astronaut, tmp_path / "me.png"))
    speech = str(_wav(tmp_path / "pause.wav", 0.28, 16000, pause=0.36))  # 16 frames: one clip; the last 7 silent
    talked, info = jobs.talk(me, None, 0, speech, "latentsync", "source", 1, 1.0, "5")
    output = jobs._pipes["talk"](
        me, speech, num_inference_steps=1, guidance_scale=1.0, generator=torch.Generator().manual_seed(5),
        silence="source", output_path=tmp_path / "dub.mp4",
    )  # fmt: skip
    made = read_video(talked)[0]
    assert made.shape[0] == 16 and (made == read_video(output.path)[0]).all()
    assert read_mark(talked)["pipeline"] == "talking_face" and info.startswith("16 frames at 25 fps; seed 5\n\n")
    photo, made = load_image(me).astype(int), made.astype(int)
    painted = np.abs(made[0] - photo).max(axis=-1) > 20  # the mouth the model drew while speech is heard
    assert painted.sum() > 1000
    assert np.abs(made[0] - photo)[painted].mean() > 30 and np.abs(made[-1] - photo)[painted].mean() < 10


def test_portrait_tab_gives_the_pipelines_own_video(jobs, tmp_path: Path, astronaut) -> None:
    """The talking-portrait tab writes what the pipeline writes for the same photo, speech, emotion, head motion
    and seed, and says the CLI's numbers (frames, head motion, blinks, FaceSim, lip-sync); with Ditto's yaw factor
    0 it writes the pipeline's own video for alpha_yaw=0, another than the default's."""
    import torch

    from genface.media import read_video
    from genface.provenance import read_mark

    me = str(save_image(astronaut, tmp_path / "me.png"))
    speech = str(_wav(tmp_path / "hi.wav", 0.6, 16000))
    animated, info = jobs.portrait(me, 0, speech, "happy", 0.5, 4)
    output = jobs._pipes["portrait"](
        me, speech, emotion="happy", head_motion=0.5, generator=torch.Generator().manual_seed(4),
        output_path=tmp_path / "portrait.mp4",
    )  # fmt: skip
    assert (read_video(animated)[0] == read_video(output.path)[0]).all()
    assert read_mark(animated)["pipeline"] == "talking_portrait"
    lines = info.split("\n\n")
    assert lines[0] == f"{len(output.head_pose)} frames at 25 fps; seed 4"
    assert lines[1].startswith("head motion (std, degrees): pitch ") and lines[-1].startswith("lip-sync proxy")
    facing, _ = jobs.portrait(me, 0, speech, "happy", 0.5, 4, 1, 0)
    own = jobs._pipes["portrait"](
        me, speech, emotion="happy", head_motion=0.5, alpha_yaw=0, generator=torch.Generator().manual_seed(4),
        output_path=tmp_path / "facing.mp4",
    )  # fmt: skip
    facing = read_video(facing)[0]
    assert (facing == read_video(own.path)[0]).all() and (facing != read_video(animated)[0]).any()


def test_portrait_tab_passes_ditto_s_controls_only_when_changed(tmp_path: Path, astronaut) -> None:
    """Ditto's controls at their defaults pass nothing to the pipeline (its and its configuration's defaults hold);
    changed, each reaches it as its argument: pose factors, vad_alpha, fades with their type, the clamp off."""
    from genface.web import Jobs

    class Called(Exception):
        pass

    def pipe(*args: Any, **kwargs: Any) -> None:
        calls.append(kwargs)
        raise Called

    calls: list[dict[str, Any]] = []
    jobs = Jobs("tiny", "cpu", tmp_path / "out")
    jobs._pipes["portrait"], jobs._loaded["portrait"] = pipe, jobs._model("portrait")[0]
    me = str(save_image(astronaut, tmp_path / "me.png"))
    speech = str(_wav(tmp_path / "hi.wav", 0.2, 16000))
    for values in [(), (1, 1, 1, 1, -1, -1, "default", True), (0.5, 0, 3, 0.25, 3, 0, "d0", False)]:
        with pytest.raises(Called):
            jobs.portrait(me, 0, speech, "neutral", 1, 4, *values)
    ditto = ["alpha_pitch", "alpha_yaw", "alpha_roll", "vad_alpha", "fade_in", "fade_out", "fade_type"]
    assert not set(calls[0]) & {*ditto, "v_min_max_for_clip"} and set(calls[1]) == set(calls[0])
    assert {key: calls[2][key] for key in ditto} == {
        "alpha_pitch": 0.5, "alpha_yaw": 0, "alpha_roll": 3, "vad_alpha": 0.25, "fade_in": 3, "fade_out": 0,
        "fade_type": "d0",
    }  # fmt: skip
    assert calls[2]["v_min_max_for_clip"] is False


def test_a_face_is_chosen_in_a_group_photo(jobs, tmp_path: Path, group) -> None:
    """The gallery of a dropped group photo: its six faces, largest first, numbered, the chosen one framed, a click
    mapped to its face; comparing a man's own face cut from the group with the group photo says "same person" for
    his face there (the number chosen) and "different people" for the largest one; the drawn faces mark the chosen
    one."""
    from genface.identity import FaceAnalyzer
    from genface.web import draw_faces, face_at, face_gallery, face_thumbnail

    photo = str(save_image(group, tmp_path / "group.jpg"))
    picture = load_image(photo)  # as stored (JPEG)
    faces = FaceAnalyzer("auto").detect(picture)
    thumbs, said = jobs.faces(photo, "Face to compare")
    assert said == "6 faces found in group.jpg: face 0 (the largest) is used; click a face to choose another."
    assert len(thumbs) == 6 and all((t == face_thumbnail(picture, f)).all() for t, f in zip(thumbs, faces, strict=True))
    gallery = load_image(jobs.gallery(thumbs, "3", session="group"))
    assert (gallery == face_gallery(thumbs, 3)).all() and gallery.shape == (112, 632, 3)  # one row of six, 3 framed
    assert (load_image(jobs.gallery(thumbs, "x", session="group")) == face_gallery(thumbs)).all()  # none framed
    centres = [(8 + 104 * i + 48, 56) for i in range(6)]
    assert [face_at(x, y, 6) for x, y in centres] == [0, 1, 2, 3, 4, 5] and face_at(630, 56, 6) is None
    assert face_at(56, 160, 6) is None and face_at(56, 160, 7) == 6  # a second row for a seventh face
    x1, y1, x2, y2 = (int(v) for v in faces[3].bbox)
    side = x2 - x1
    him = str(save_image(picture[max(y1 - side, 0) : y2 + side, max(x1 - side, 0) : x2 + side], tmp_path / "him.png"))
    *_, drawn, verdict = jobs.identity(him, 0, photo, 3)
    assert re.match(r"FaceSim (0\.9\d\d|1\.000) \(dlib_resnet_v1; same person by its threshold 0\.92\)", verdict), (
        verdict
    )
    assert (load_image(drawn) == draw_faces(picture, faces, 3)).all()
    assert "different people" in jobs.identity(him, 0, photo, 0)[2].split("\n\n")[0]
    assert jobs.faces(None, "Face to compare") == ([], "") and jobs.gallery([], 0) is None


def test_identity_tab_without_forgery_weights_says_so_in_one_line(tmp_path: Path, astronaut, monkeypatch) -> None:
    """Offline with no cached checkpoint, the published model's identity tab still gives FaceSim, and one line
    saying there is no forgery detector."""
    import huggingface_hub

    from genface.web import Jobs

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    me = str(save_image(astronaut, tmp_path / "me.png"))
    *_, verdict = Jobs("hub", "cpu", tmp_path / "out").identity(me, 0, me, 0)
    facesim, note = verdict.split("\n\n")
    assert facesim.startswith("FaceSim 1.000 ") and "same person" in facesim
    assert note.startswith("No forgery score: the FSFM deepfake detector is not available (") and "\n" not in note


def test_a_session_s_files_go_when_no_open_page_may_show_them(tmp_path: Path, astronaut) -> None:
    """Outputs live in a folder per session, removed when it ends. An upload (stored once for every page that
    drops the same file) stays while an open page may show it (opened before it was uploaded) or has used it,
    and goes when the last such page closes; files outside the uploads are never touched."""
    from genface.web import Jobs

    uploads = tmp_path / "uploads"
    jobs = Jobs("tiny", "cpu", uploads / "genface", uploads)
    for session in ("one", "two", "three"):
        jobs.open_session(session, opened=1000)
    shared = save_image(astronaut, uploads / "a1" / "me.png")  # dropped in pages one and two at 2000
    os.utime(shared, (2000, 2000))
    elsewhere = save_image(astronaut, tmp_path / "not-an-upload.png")
    run = jobs.start("one", "identity", [str(shared), str(elsewhere), "a prompt"])
    jobs.identity(str(shared), 0, str(elsewhere), 0, run=run)  # writes the drawn faces
    jobs.finish(run)
    assert (uploads / "genface" / "one").is_dir()
    jobs.end_session("one")
    assert not (uploads / "genface" / "one").exists() and shared.is_file()  # pages two and three may show it
    jobs.end_session("three")
    assert shared.is_file()  # page two still may
    jobs.open_session("four", opened=3000)  # opened after the upload: cannot show it
    jobs.end_session("two")
    assert not shared.exists() and not (uploads / "a1").exists() and elsewhere.is_file()
    assert not list((uploads / "genface").iterdir())
    again = save_image(astronaut, uploads / "b2" / "me.png")  # page four drops it: stored again, now
    jobs.end_session("five")  # a page that never said it opened (an API client) ends: four may show the photo
    assert again.is_file()
    run = jobs.start("six", "video", [str(again)])  # an API client's job reads it
    jobs.finish(run)
    jobs.end_session("four")
    assert again.is_file()  # page six has used it
    jobs.end_session("six")
    assert not again.exists()
