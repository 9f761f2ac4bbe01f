"""The checks every entry point makes before model work: where a result may be written, and which numbers an
argument takes. The pipelines, the evaluation runner and :meth:`FaceIdentity.save` call them, so the Python API
refuses what the command line refuses, with the same one-line messages (:class:`InvalidArgumentError`)."""

from __future__ import annotations

import math
import operator
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genface.errors import InvalidArgumentError


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: through symbolic links and hard links when both exist, else by their
    resolved paths."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _shown(path: object) -> str:
    """``path`` as a message shows it: as written, or quoted with escapes when it holds a control character (so
    the message stays on one line)."""
    text = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    return text if text.isprintable() else repr(text)


def input_paths(inputs: Iterable[Any]) -> list[Path]:
    """The files behind ``inputs``: paths as given, a PIL image's ``filename``, a video reader's ``path``, and those
    of a prepared video's ``frames``; arrays and the like name no file."""
    paths = []
    for value in inputs:
        if isinstance(value, (str, os.PathLike)):
            paths.append(Path(value).expanduser())
            continue
        for name in ("filename", "path", "frames"):
            inner = getattr(value, name, None)
            if isinstance(inner, (str, os.PathLike)) and os.fspath(inner):
                paths.append(Path(inner).expanduser())
            elif name == "frames" and inner is not None and not isinstance(inner, (list, tuple)):
                paths.extend(input_paths([inner]))
    return paths


def check_output_path(
    path: str | os.PathLike | None,
    suffixes: tuple[str, ...],
    inputs: Iterable[Any] = (),
    *,
    name: str = "output_path",
) -> Path | None:
    """``path`` (``~`` expanded) when a result can be written there, before any work (None, no file to write, comes
    back as it is); nothing is created.

    Refused with one line (``name`` is the argument's name in it): a name with a control character (NUL, newline),
    a suffix other than ``suffixes`` (lower case, e.g. ``(".mp4",)``; empty for a folder), a folder where a file
    goes, a file or a non-empty folder where a folder goes, one of ``inputs`` (through links; see
    :func:`input_paths`), a parent that is a file, and a place that cannot be written (permissions, a read-only
    disk, quotas). An existing file that is no input is replaced whole when the result is complete.
    """
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__}.")
    shown = _shown(path)
    if not os.fspath(path):
        raise InvalidArgumentError(f"{name} is empty; give a file name.")
    if not os.fspath(path).isprintable():
        raise InvalidArgumentError(
            f"{name} {shown}: the name holds a control character (a newline, tab or NUL); choose a name without one."
        )
    out = Path(path).expanduser()
    if suffixes and out.suffix.lower() not in suffixes:
        raise InvalidArgumentError(f"{name} {shown}: the name must end in {' or '.join(suffixes)}.")
    if suffixes and out.is_dir():
        raise InvalidArgumentError(
            f"{name} {shown} is a folder; give a file name (for example {out / 'out'}{suffixes[0]})."
        )
    if not suffixes and out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "" if out.is_dir() else " (it is a file)"
        raise InvalidArgumentError(f"{name} {shown} exists and is not an empty folder{what}; give a new folder.")
    if any(same_file(out, given) for given in input_paths(inputs)):
        raise InvalidArgumentError(f"{name} {shown} is also an input; write the result to another file.")
    folder = out.absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise InvalidArgumentError(f"{name} {shown}: {folder} is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=folder):  # the real test of permissions, quotas, read-only disks
            pass
    except OSError as exc:
        raise InvalidArgumentError(f"{name} {shown}: cannot write in {folder} ({exc.strerror}).") from exc
    return out


def check_number(name: str, value: Any, low: float, high: float, *, integer: bool = False) -> None:
    """Refuse ``value`` unless it is a finite number (a whole one with ``integer``) from ``low`` to ``high``."""
    try:
        number = None if isinstance(value, (bool, str, bytes)) else operator.index(value) if integer else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not (math.isfinite(number) and low <= number <= high):
        bounds = f"{int(low)} to {int(high)}" if integer else f"{low:g} to {high:g}"
        kind = "a whole number" if integer else "a number"
        raise InvalidArgumentError(f"{name} must be {kind} from {bounds}, got {value!r}.")
