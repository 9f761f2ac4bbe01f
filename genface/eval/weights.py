"""Where an evaluation model's published weight file is: a file, or a file in a folder or Hub repository."""

from __future__ import annotations

import os
from pathlib import Path


def weights_file(path_or_repo: str | os.PathLike, filename: str, subfolder: str | None = None) -> Path:
    """``path_or_repo`` itself when it is a file, else ``filename`` inside it (a folder, or a Hub repo id
    downloaded through :func:`genface.hub.resolve_folder`, only that file)."""
    from genface.hub import resolve_folder

    path = Path(path_or_repo).expanduser()
    if path.is_file():
        return path
    return resolve_folder(path_or_repo, subfolder, allow_patterns=[filename]) / filename


def judge_source(given: str, subfolder: str) -> tuple[str, str | None]:
    """A judge's weights as (path or repo, subfolder): a Hub id reads ``subfolder``; a local folder reads it when it
    has one, else itself."""
    path = Path(given).expanduser()
    if path.exists():
        return given, subfolder if (path / subfolder).is_dir() else None
    return given, subfolder
