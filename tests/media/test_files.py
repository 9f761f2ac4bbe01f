"""Atomic output files: complete or absent, with the permissions of any new file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from genface.media import save_image, write_video
from genface.media._files import atomic_folder, atomic_path


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_respect_the_umask(tmp_path: Path, umask: int) -> None:
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    previous = os.umask(umask)
    try:
        written = [save_image(frames[0], tmp_path / "a.png"), write_video(tmp_path / "a.mp4", frames)]
    finally:
        os.umask(previous)
    for path in written:
        assert stat.S_IMODE(Path(path).stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_rewritten_inside_and_folders_get_the_usual_permissions(tmp_path: Path, umask: int) -> None:
    """safetensors replaces the file it writes with a 0600 one, and a temporary folder is 0700: identity files and
    prepared folders once came out that way while other outputs were 0644."""
    from safetensors.numpy import save_file

    previous = os.umask(umask)
    try:
        with atomic_path(tmp_path / "id.safetensors") as partial:
            save_file({"x": np.zeros(2)}, str(partial))
        with atomic_folder(tmp_path / "prepared") as folder:
            save_file({"x": np.zeros(2)}, str(folder / "prepared.safetensors"))
            (folder / "inner").mkdir(0o700)
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "prepared", *tmp_path.rglob("*")]}
    assert modes == {
        "id.safetensors": 0o666 & ~umask, "prepared": 0o777 & ~umask, "prepared.safetensors": 0o666 & ~umask,
        "inner": 0o777 & ~umask,
    }  # fmt: skip


def test_a_failed_block_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.png") as partial:
        partial.write_bytes(b"half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
