"""`genface serve --model tiny` driven in headless Chromium (Playwright with Debian's chromium): a real face
photo through the identity tab and the tiny video tab; screenshots checked against those in docs/."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genface.media import save_image
from tests.distributed import free_port

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server():
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing; .ci/run installs Debian's chromium (apt-get install chromium).")
    port = free_port()
    readme = (ROOT / "README.md").read_text().splitlines()
    (line,) = [line for line in readme if line.startswith("genface serve")]  # the README's command, as written
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


def test_identity_and_video_tabs_in_a_real_browser(server, astronaut, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    save_image(astronaut, tmp_path / "me.jpg")
    save_image(astronaut[:, ::-1], tmp_path / "me_mirrored.jpg")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        page.goto(server)
        expect(page.get_by_text("tiny random models")).to_be_visible()

        page.locator("#identity-reference input[type=file]").set_input_files(tmp_path / "me.jpg")
        page.locator("#identity-target input[type=file]").set_input_files(tmp_path / "me_mirrored.jpg")
        page.locator("#identity-run").click()
        expect(page.locator("#identity-result")).to_contain_text("same person", timeout=120_000)
        assert "FaceSim" in page.locator("#identity-result").inner_text()
        page.screenshot(path=tmp_path / "identity.png", full_page=True)

        page.get_by_role("tab", name="Video").click()
        page.locator("#video-face input[type=file]").set_input_files(tmp_path / "me.jpg")
        page.locator("#video-run").click()
        expect(page.locator("#video-info")).to_contain_text("9 frames", timeout=180_000)
        player = page.locator("#video-result video")
        expect(player).to_have_count(1)
        player.evaluate("v => new Promise(done => { v.pause(); v.onseeked = done; v.currentTime = 0; })")
        page.screenshot(path=tmp_path / "video.png", full_page=True)  # showing the first frame
        browser.close()

    for name in ("identity.png", "video.png"):
        if os.environ.get("GENFACE_UPDATE_SCREENSHOTS") == "1":
            SHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / name, SHOTS / name)
        assert _similar(tmp_path / name, SHOTS / name), f"{name} differs from docs/screenshots/{name}"


def test_jobs_report_bad_input_as_messages(tmp_path: Path, astronaut) -> None:
    """What the tabs show for bad input: a GenfaceError (displayed as a message), or a plain verdict."""
    from genface.errors import GenfaceError
    from genface.web import Jobs

    jobs = Jobs("tiny", "cpu", tmp_path)
    save_image(astronaut, tmp_path / "me.jpg")
    save_image(np.full((256, 256, 3), 90, np.uint8), tmp_path / "wall.jpg")
    with pytest.raises(GenfaceError, match="Give two photos"):
        jobs.identity(str(tmp_path / "me.jpg"), None)
    *drawn, verdict = jobs.identity(str(tmp_path / "me.jpg"), str(tmp_path / "wall.jpg"))
    assert verdict == "No face found in the second photo." and drawn[0].shape == astronaut.shape
    assert (drawn[0] != astronaut).any() and (drawn[1] == 90).all()  # boxes drawn where faces were found only
    with pytest.raises(GenfaceError, match="Give a face photo"):
        jobs.video(None, "a person", 1, 0)


def test_makeup_and_talk_jobs_write_marked_files(tmp_path: Path, astronaut, portrait) -> None:
    """The tabs not driven in the browser: their jobs run on the tiny models and write marked files."""
    import subprocess as sp

    from genface.provenance import read_mark
    from genface.web import Jobs

    jobs = Jobs("tiny", "cpu", tmp_path)
    save_image(astronaut, tmp_path / "me.jpg")
    save_image(portrait, tmp_path / "look.jpg")
    image, _ = jobs.makeup(str(tmp_path / "me.jpg"), str(tmp_path / "look.jpg"), 1.0, 1, 0)
    assert read_mark(image)["pipeline"] == "makeup"
    sp.run(["espeak-ng", "-w", str(tmp_path / "hi.wav"), "Hi."], check=True)  # noqa: S603, S607
    video, info = jobs.talk(str(tmp_path / "me.jpg"), str(tmp_path / "hi.wav"))
    assert read_mark(video)["pipeline"] == "talking_face" and "fps" in info
