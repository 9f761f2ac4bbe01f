"""`load_pipeline` and `default_size`: the one loader the CLI, the web app, batch generation and training use."""

from __future__ import annotations

import pytest
import torch

from genface.errors import InvalidArgumentError
from genface.pipelines import MakeupPipeline, TalkingFacePipeline, default_size, load_pipeline


def test_the_tiny_model_is_float32_unless_a_dtype_is_asked_for() -> None:
    pipe = load_pipeline("makeup", "tiny", injector="ignored by the tiny model")
    assert type(pipe) is MakeupPipeline and pipe.transformer.dtype == torch.float32
    assert load_pipeline("makeup", "tiny", dtype=torch.bfloat16).transformer.dtype == torch.bfloat16


def test_a_saved_pipeline_loads_in_the_tasks_usual_dtype_and_kwargs_reach_from_pretrained(tmp_path, dlib_analyzer):
    load_pipeline("talk", "tiny").save_pretrained(tmp_path / "talk")
    pipe = load_pipeline("talk", str(tmp_path / "talk"), face_analyzer=dlib_analyzer)
    assert type(pipe) is TalkingFacePipeline and pipe.face_analyzer is dlib_analyzer
    assert pipe.unet.dtype == torch.float16  # MuseTalk runs in fp16
    assert load_pipeline(
        "talk", str(tmp_path / "talk"), dtype=torch.float32, face_analyzer=dlib_analyzer
    ).unet.dtype == (torch.float32)


def test_default_sizes_are_the_tiny_models_or_the_pipeline_calls() -> None:  # the CLI tests run them
    assert default_size("video", "tiny") == {"height": 64, "width": 64, "num_frames": 9}
    assert default_size("video", "BestWishYsh/ConsisID-preview") == {"height": 480, "width": 720, "num_frames": 49}
    assert default_size("makeup", "tiny") == {"size": 32} and default_size("makeup") == {"size": 1024}
    assert default_size("talk", "tiny") == default_size("talk") == {}  # crops are always 256x256


def test_an_unknown_task_is_named_with_the_choices() -> None:
    with pytest.raises(InvalidArgumentError, match="Unknown task 'dance'; choose one of video, makeup, talk, portrait"):
        load_pipeline("dance", "tiny")
    with pytest.raises(InvalidArgumentError, match="Unknown task"):
        default_size("dance")
