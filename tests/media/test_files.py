"""Atomic output files: complete or absent, with the permissions of any new file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from genface.media import save_image, write_video
from genface.media._files import atomic_path


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


def test_a_failed_block_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.png") as partial:
        partial.write_bytes(b"half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []
