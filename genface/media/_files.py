"""Atomic output: a finished file or folder appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path


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
