"""The ``genface`` command line: one module per command, each declaring its options beside the function that
runs it (the shape of diffusers' and transformers' ``commands/``); this module assembles them and maps errors
to exit codes.

Exit codes: 0 success; 1 an error the user can fix (wrong usage, a number out of range, bad input, missing
weights, an unwritable output; the one-line message says what to do); 130 interrupted (Ctrl-C); 128 + N stopped
by signal N (143 for SIGTERM); 141 (SIGPIPE's) when the reader of the output has gone. Arguments and the output
path are checked before any model work, and an interrupted run leaves no partial output.

Importing this module imports almost nothing: the commands, and what they need, are imported inside
:func:`main`, so that a Ctrl-C at any moment of a run is answered in one line.

May import: all of genface.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse

#: The commands, in the order ``genface --help`` lists them; each is the module genface.cli.NAME.
COMMANDS = ("info", "samples", "identity", "video", "makeup", "talk", "portrait", "eval", "verify", "convert", "serve")


def build_parser() -> argparse.ArgumentParser:
    """The ``genface`` parser, with each command's options as its module declares them."""
    from genface import __version__
    from genface.cli.options import Parser

    parser = Parser(prog="genface", description="Generative face video and face editing.")
    parser.add_argument("--version", action="version", version=f"genface {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and decisions")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        import_module(f"genface.cli.{name}").register(commands)
    return parser


class Stopped(BaseException):
    """A termination signal (SIGTERM, SIGHUP) arrived: raised so that every cleanup runs on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """While the block runs (in the main thread), SIGINT raises KeyboardInterrupt and SIGTERM / SIGHUP raise
    :class:`Stopped`, so partial outputs are removed as on any error; signals after the first are ignored while
    that cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if received:
            return
        received.append(signum)
        raise KeyboardInterrupt if signum == signal.SIGINT else Stopped(signum)

    names = ("SIGINT", "SIGTERM", "SIGHUP")
    previous = {sig: signal.signal(sig, handler) for sig in (getattr(signal, n) for n in names if hasattr(signal, n))}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: Sequence[str] | None = None) -> int:
    args = None
    try:
        with _signals_raise():
            args = build_parser().parse_args(argv)
            _log_to_stderr(args)
            code = args.func(args)
            sys.stdout.flush()  # a reader gone from the pipe shows here, inside the handling below
            return code
    except KeyboardInterrupt:
        print("genface: interrupted; no partial output was left", file=sys.stderr)
        return 130
    except Stopped as exc:
        print(f"genface: stopped by {exc}; no partial output was left", file=sys.stderr)
        return 128 + exc.signum
    except BrokenPipeError:  # the reader of stdout went away (`genface ... | head`): stop quietly, as a pipe expects
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 128 + signal.SIGPIPE
    except Exception as exc:
        if args is None:
            raise
        return _report(exc, args)


def _log_to_stderr(args: argparse.Namespace) -> None:
    """Log lines (warnings; progress with ``-v``) on stderr, naming the Python API's arguments by this command's
    flags."""
    import logging

    from genface.cli.common import in_flags

    def flags(record: logging.LogRecord) -> bool:
        record.msg, record.args = in_flags(record.getMessage(), args), None
        return True

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.addFilter(flags)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler])
    # transformers' note that it falls back to the PIL image processors without torchvision: those are the ones
    # genface uses (ConsisID's CLIPScore is pinned to them), so a command line run does not print it
    logging.getLogger("transformers.utils.import_utils").addFilter(
        lambda record: "requires torchvision (not installed)" not in record.getMessage()
    )
    # diffusers' "Couldn't connect to the Hub ... Will try to load from local cache" before a load from the cache:
    # the load then works, or fails with genface's one line saying why and what to do (shown with -v)
    logging.getLogger("diffusers.pipelines.pipeline_utils").addFilter(
        lambda record: args.verbose or not record.getMessage().startswith("Couldn't connect to the Hub")
    )


def _report(exc: Exception, args: argparse.Namespace) -> int:
    """Exit code 1 and one line for ``exc``: what to fix for an expected error (in this command's flags; for
    weights that cannot be had, that ``--model tiny`` runs offline), else a request to report it (with ``-v``, the
    traceback instead)."""
    import logging

    from genface.cli.common import expected_errors, in_flags, one_line
    from genface.errors import GenfaceError, MissingWeightsError, OfflineError

    if isinstance(exc, expected_errors()):
        logging.getLogger(__name__).info("the error below came from here:", exc_info=exc)  # shown with -v
        message = str(exc) if isinstance(exc, GenfaceError) else f"{type(exc).__name__}: {exc}"
        model = getattr(args, "model", "tiny")
        if isinstance(exc, OfflineError) or (isinstance(exc, MissingWeightsError) and str(model) in message):
            tiny = _tiny_model(args.command, model)
            message += "" if model == tiny else f" Or try every stage offline on tiny random weights: --model {tiny}."
        if isinstance(exc, OfflineError) and getattr(args, "judges", "tiny") != "tiny":  # genface eval
            message += " Or try the run offline on tiny random judges (their scores are noise): --judges tiny."
        print(f"genface: error: {one_line(in_flags(message, args))}", file=sys.stderr)
        return 1
    if args.verbose:
        raise exc
    print(
        f"genface: unexpected error ({type(exc).__name__}: {one_line(str(exc))}); run again with -v for the "
        "traceback, and please report it",
        file=sys.stderr,
    )
    return 1


def _tiny_model(command: str, model: object) -> str:
    """The tiny model of the model a command was given: ``tiny-stand-in`` for a Stand-In run, ``tiny`` for the
    task's default model or one that cannot be named."""
    from genface.errors import GenfaceError
    from genface.pipelines._load import MODELS, model_name

    try:
        name = model_name(command, None if model is None else str(model)) if command in MODELS else None
    except GenfaceError:  # a model that cannot be named: the default's tiny model
        name = None
    return "tiny" if name is None or name == next(iter(MODELS[command])) else f"tiny-{name}"
