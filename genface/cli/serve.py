"""``genface serve``: the web app (Gradio), a tab per job."""

from __future__ import annotations

import argparse

from genface.arguments import CONCURRENCY, MAX_QUEUE, PORT
from genface.cli import common, options

EPILOG = """examples:
  genface serve                       the published models, on http://127.0.0.1:7860
  genface serve --model tiny          offline demo: tiny random models (outputs are noise), CPU
"""


def register(commands: argparse._SubParsersAction) -> None:
    parser = options.command(
        commands,
        "serve",
        "web app (Gradio) with a tab per job; needs the web extra: pip install 'genface[web]'",
        EPILOG,
    )
    parser.add_argument("--model", default="hub", choices=["hub", "tiny"], help="published weights, or tiny offline")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it to the network)")
    options.add_number(parser, "--port", PORT, 7860, "port")
    options.add_device(parser)
    options.add_number(parser, "--concurrency", CONCURRENCY, 1, "jobs run at once (the rest wait in the queue)")
    options.add_number(
        parser, "--max-queue", MAX_QUEUE, 16, "jobs that may wait (beyond that a user is told it is busy)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from genface.web import serve

    serve(
        args.model, args.host, args.port, args.device and common.device(args.device), args.concurrency, args.max_queue
    )
    return 0
