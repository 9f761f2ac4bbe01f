"""Load on `genface serve --model tiny` over localhost: many clients submit jobs at once.

    python -m benchmarks.web_load [--clients 20] [--rounds 1]

Each client is a gradio_client session. One long lip-sync job occupies the worker; meanwhile the other
clients all submit (identity checks, videos, makeup, short lip-syncs, and some bad input), so the queue
(16 waiting) overflows and the rest are told the app is busy. Measured: every outcome, the server's resident
memory (after a warm-up that loads every pipeline, at its peak, and after the load with all sessions
closed) and the files left in its temporary folder. ``--rounds`` repeats the load on the same server.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUSY = "busy"
TIMEOUT = 120  # seconds a job may take before the run is called stuck


@dataclass
class Server:
    """A running `genface serve --model tiny` and its temporary folder."""

    url: str
    process: subprocess.Popen
    temp_dir: Path

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc")

    def files(self) -> list[Path]:
        return [path for path in self.temp_dir.rglob("*") if path.is_file()]


@contextmanager
def serving(temp_dir: Path) -> Iterator[Server]:
    """`genface serve --model tiny` on a free port of 127.0.0.1, its uploads and outputs in ``temp_dir``;
    sessions end half a second after their client goes (Gradio's heartbeat)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, GRADIO_TEMP_DIR=str(temp_dir), GRADIO_HEARTBEAT_INTERVAL="0.5")
    command = [sys.executable, "-m", "genface", "serve", "--model", "tiny", "--port", str(port)]
    log = temp_dir.with_suffix(".log")
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)  # noqa: S603
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"genface serve did not start:\n{log.read_text()}") from None
            time.sleep(0.5)
    try:
        yield Server(url, process, temp_dir)
    finally:
        process.terminate()
        process.wait(timeout=30)


def inputs(folder: Path) -> dict[str, str]:
    """A face photo, a makeup reference, a short and a longer speech recording."""
    from genface.media import save_image
    from genface.samples import sample_path

    files = {
        "face": str(save_image(sample_path("astronaut"), folder / "face.jpg")),
        "look": str(save_image(sample_path("portrait"), folder / "look.jpg")),
    }
    for name, text in (("speech", "Hi."), ("long_speech", "Hello there, this takes a while to say.")):
        files[name] = str(folder / f"{name}.wav")
        subprocess.run(["espeak-ng", "-w", files[name], text], check=True)  # noqa: S603, S607
    return files


def requests(files: dict[str, str]) -> list[tuple[str, str, tuple]]:
    """(kind, endpoint, arguments) of the mixed jobs, cycled over clients; kind "bad" expects a message."""
    from gradio_client import handle_file

    face, look, speech = handle_file(files["face"]), handle_file(files["look"]), handle_file(files["speech"])
    return [
        ("ok", "/identity", (face, 0, look, 0)),
        ("ok", "/video", (face, 0, "A person smiling", 2, 6, "1")),
        ("ok", "/makeup", (face, 0, look, 1.0, 2, 2.5, "1")),
        ("bad", "/identity", (face, 0, None, 0)),
        ("ok", "/video", (face, 0, "A person", 1, 6, "2")),
        ("bad", "/video", (face, 0, "A person", 2, 6, "-1")),
        ("ok", "/makeup", (face, 0, look, 0.5, 1, 2.5, "2")),
        ("ok", "/talk", (face, None, 0, speech)),
        ("bad", "/talk", (None, None, 0, speech)),
    ]


@dataclass
class Outcome:
    kind: str
    result: str  # "done", "message", BUSY or "failed: ..."
    outputs: Any = field(default=None, repr=False)


def _run(client: Any, endpoint: str, arguments: tuple, kind: str) -> Outcome:
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    try:
        outputs = client.submit(*arguments, api_name=endpoint).result(timeout=TIMEOUT)
    except QueueError:
        return Outcome(kind, BUSY)
    except AppError as exc:
        return Outcome(kind, f"failed: {exc}")
    message = str(outputs[-1]).startswith("**Error:**")
    return Outcome(kind, "message" if message else "done", outputs)


def warm_up(server: Server, files: dict[str, str]) -> None:
    """One of each job in one session (every pipeline loaded), then the session closed."""
    from gradio_client import Client

    client = Client(server.url, verbose=False, download_files=False)
    for kind, endpoint, arguments in requests(files):
        outcome = _run(client, endpoint, arguments, kind)
        assert outcome.result == ("done" if kind == "ok" else "message"), outcome
    client.close()


def load(server: Server, files: dict[str, str], clients: int) -> list[Outcome]:
    """``clients`` sessions at once: the first starts a long lip-sync; once it runs, the others submit together."""
    from gradio_client import Client, handle_file

    sessions = [Client(server.url, verbose=False, download_files=False) for _ in range(clients)]
    mix = requests(files)
    blocker = sessions[0].submit(
        handle_file(files["face"]), None, 0, handle_file(files["long_speech"]), api_name="/talk"
    )
    while blocker.status().code.name not in ("PROCESSING", "PROGRESS", "FINISHED"):
        time.sleep(0.05)
    outcomes: list[Outcome | None] = [None] * clients
    start = threading.Barrier(clients - 1)

    def one(index: int) -> None:
        kind, endpoint, arguments = mix[(index - 1) % len(mix)]
        start.wait()
        outcomes[index] = _run(sessions[index], endpoint, arguments, kind)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(1, clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outputs = blocker.result(timeout=TIMEOUT)
    outcomes[0] = Outcome("ok", "done" if not str(outputs[-1]).startswith("**Error:**") else "message", outputs)
    for session in sessions:
        session.close()
    return outcomes  # type: ignore[return-value]


def settle(server: Server, seconds: float = 30) -> list[Path]:
    """Wait (up to ``seconds``) for the closed sessions' files to go; the files left."""
    deadline = time.monotonic() + seconds
    while (left := server.files()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def main(argv: list[str] | None = None) -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        files = inputs(Path(folder))
        with serving(Path(folder) / "server") as server:
            warm_up(server, files)
            settle(server)
            baseline = server.rss()
            print(f"server RSS after the warm-up: {baseline / 2**20:.0f} MB")
            print("| round | done | messages | busy | failed | seconds | RSS MB after | files left |")
            print("|---:|---:|---:|---:|---:|---:|---:|---:|")
            for round_ in range(1, args.rounds + 1):
                started = time.perf_counter()
                counts = Counter(outcome.result.split(":")[0] for outcome in load(server, files, args.clients))
                seconds = time.perf_counter() - started
                left = settle(server)
                print(
                    f"| {round_} | {counts['done']} | {counts['message']} | {counts[BUSY]} | {counts['failed']} | "
                    f"{seconds:.1f} | {server.rss() / 2**20:.0f} | {len(left)} |"
                )


if __name__ == "__main__":
    main()
