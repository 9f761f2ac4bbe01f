"""Resource guards: requests that cannot fit are refused up front; out-of-memory failures say what to do."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from genface.errors import GenfaceError, InsufficientMemoryError
from genface.resources import check_fits, explain_out_of_memory, weight_bytes


@pytest.fixture(scope="module")
def tiny_video_pipe(dlib_analyzer):
    from genface.pipelines.identity_video.tiny import tiny_identity_encoder, tiny_pipeline

    return tiny_pipeline(tiny_identity_encoder(dlib_analyzer))


def test_weight_bytes_counts_every_module(tiny_video_pipe) -> None:
    expected = sum(
        sum(t.numel() * t.element_size() for t in (*m.parameters(), *m.buffers()))
        for m in (tiny_video_pipe.transformer, tiny_video_pipe.vae, tiny_video_pipe.text_encoder)
    )
    assert weight_bytes(tiny_video_pipe) == expected > 0


def test_refused_when_weights_exceed_free_memory(tiny_video_pipe) -> None:
    with pytest.raises(InsufficientMemoryError, match=r"GiB free; use --low-memory"):
        check_fits(tiny_video_pipe, "cuda", free=1024)
    check_fits(tiny_video_pipe, "cuda", free=weight_bytes(tiny_video_pipe) + 1)
    check_fits(tiny_video_pipe, "cpu")  # nothing to check on the CPU
    assert issubclass(InsufficientMemoryError, MemoryError)


def test_out_of_memory_is_explained() -> None:
    with pytest.raises(InsufficientMemoryError, match="ran out of memory.*--low-memory") as info:
        with explain_out_of_memory():
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    assert isinstance(info.value.__cause__, torch.OutOfMemoryError)


def test_cli_reports_out_of_memory_and_writes_nothing(tmp_path: Path, capsys, monkeypatch) -> None:
    from genface.cli import main
    from genface.pipelines.identity_video.pipeline import IdentityVideoPipeline
    from genface.samples import sample_path

    @functools.wraps(IdentityVideoPipeline.__call__)  # its signature: the CLI reads the call's defaults from it
    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(IdentityVideoPipeline, "__call__", out_of_memory)
    out = tmp_path / "v.mp4"
    args = ["video", "--model", "tiny", "--face", str(sample_path("astronaut")), "--prompt", "x", "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "ran out of memory" in err and "--low-memory" in err and issubclass(InsufficientMemoryError, GenfaceError)
    assert not out.exists()
