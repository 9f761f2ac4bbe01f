"""Output files: where a result may be written (:func:`check_output_path`, which every pipeline that writes a file,
:meth:`FaceIdentity.save`, the evaluation runner and the command line call before any work), and atomic writing: a
finished file or folder appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from genface.errors import InvalidArgumentError


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: through symbolic links and hard links when both exist, else by their
    resolved paths."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def not_found(kind: str, path: Path) -> str:
    """The message for an input that is no file: '{kind} file not found: PATH', saying so when PATH is a folder."""
    return f"{kind} file not found: {path}" + (" is a folder." if path.is_dir() else "")


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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file is created empty with the permissions of any new file (0666 less the umask), and given them
    again before the rename (writers such as safetensors' replace it with a 0600 file), so the finished file is as
    readable as if it had been written in place. Two writers of one path each write their own temporary file: the
    last to finish wins, whole.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp_path = final.with_name(f".{final.stem}.{secrets.token_hex(4)}.partial{final.suffix}")
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    mode = stat.S_IMODE(tmp_path.stat().st_mode)
    try:
        yield tmp_path
        os.chmod(tmp_path, mode)
        os.replace(tmp_path, final)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it onto ``path`` (absent or empty) only if the block
    succeeds. The folder and what was written in it get the permissions of any new folder and file (0777 and 0666
    less the umask)."""
    final = Path(path).expanduser()
    final.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.partial")
        try:
            tmp.mkdir(0o777)
            break
        except FileExistsError:
            continue
    folder_mode = stat.S_IMODE(tmp.stat().st_mode)
    try:
        yield tmp
        for inner in tmp.rglob("*"):
            os.chmod(inner, folder_mode if inner.is_dir() else folder_mode & 0o666)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
