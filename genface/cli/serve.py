"""``genface serve``: the web app (Gradio), a tab per job."""

from __future__ import annotations

import argparse

from genface.cli.common import device
from genface.cli.options import add_device, command, number

EPILOG = """examples:
  genface serve                       the published models, on http://127.0.0.1:7860
  genface serve --model tiny          offline demo: tiny random models (outputs are noise), CPU
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = command(
        commands,
        "serve",
        "web app (Gradio) with a tab per job; needs the web extra: pip install 'genface[web]'",
        EPILOG,
    )
    parser.add_argument("--model", default="hub", choices=["hub", "tiny"], help="published weights, or tiny offline")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=number(int, 1, 65535), default=7860, help="1-65535 (default 7860)")
    add_device(parser)
    parser.add_argument(
        "--concurrency", type=number(int, 1, 64), default=1, help="jobs run at once, 1-64; the rest wait in the queue"
    )
    parser.add_argument(
        "--max-queue", type=number(int, 1, 1000), default=16,
        help="jobs that may wait, 1-1000 (default 16); beyond that a user is told the app is busy",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genface.web import serve

    serve(args.model, args.host, args.port, args.device and device(args.device), args.concurrency, args.max_queue)
    return 0
