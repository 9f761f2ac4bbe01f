"""20 clients at once on `genface serve --model tiny` (benchmarks/web_load.py, one round): every job is done,
answered with a message (bad input) or told the app is busy beyond the queue's 16; the server's memory
returns to its baseline and no file outlives its session."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.web_load import BUSY, inputs, load, serving, settle, warm_up
from genface.web import MAX_QUEUE

CLIENTS = 20
#: How far above its post-warm-up baseline the server's resident memory may end (allocator slack).
RSS_TOLERANCE = 100 * 2**20


def test_twenty_clients_at_once(tmp_path: Path) -> None:
    files = inputs(tmp_path)
    with serving(tmp_path / "server") as server:
        warm_up(server, files)
        assert settle(server) == []
        baseline = server.rss()
        outcomes = load(server, files, CLIENTS)
        assert settle(server) == [], "files outlived their sessions"
        deadline = time.monotonic() + 10  # the last sessions' memory is handed back as they close
        while (after := server.rss()) > baseline + RSS_TOLERANCE and time.monotonic() < deadline:
            time.sleep(0.5)
    results = [outcome.result for outcome in outcomes]
    assert results.count(BUSY) == CLIENTS - 1 - MAX_QUEUE  # one running, the queue full, the rest refused
    for outcome in outcomes:
        assert outcome.result in ((BUSY, "done") if outcome.kind == "ok" else (BUSY, "message")), outcome
        if outcome.result == "message":
            assert outcome.outputs[-1].startswith("**Error:** ") and len(outcome.outputs[-1].splitlines()) == 1
    assert after <= baseline + RSS_TOLERANCE, f"RSS {baseline / 2**20:.0f} MB -> {after / 2**20:.0f} MB"
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log
    assert log.count("job refused: ") == 3 + results.count("message")  # one line per mistake (3 in the warm-up)
