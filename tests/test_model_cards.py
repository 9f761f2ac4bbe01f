"""Saved pipelines carry a Hub model card (what, how to load, base weights and licences, intended use), and
push_to_hub uploads the whole folder through huggingface_hub."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from genface import hub


def _saved(pipeline: str, folder: Path, **kwargs) -> Path:
    from importlib import import_module

    module = {"video": "identity_video", "makeup": "makeup", "talk": "talking_face"}[pipeline]
    pipe = import_module(f"genface.pipelines.{module}.tiny").tiny_pipeline()
    if pipeline == "video":
        pipe.identity_encoder = None  # the tiny one runs on dlib, which has no published layout to save
    pipe.save_pretrained(folder, **kwargs)
    return folder


@pytest.mark.parametrize(
    ("pipeline", "cls", "licence"),
    [
        ("video", "IdentityVideoPipeline", "CogVideoX-5B"),
        ("makeup", "MakeupPipeline", "Non-Commercial License"),
        ("talk", "TalkingFacePipeline", "CelebAMask-HQ"),
    ],
)
def test_saved_pipelines_carry_a_model_card(pipeline: str, cls: str, licence: str, tmp_path: Path) -> None:
    card = ModelCard.load(_saved(pipeline, tmp_path / pipeline) / "README.md")
    assert card.data.library_name == "diffusers" and card.data.license == "other" and "genface" in card.data.tags
    assert f"{cls}.from_pretrained" in card.text and licence in card.text and "consent" in card.text
    assert "random weights (a tiny test model" in card.text and card.data.base_model is None


def test_push_to_hub_uploads_the_saved_folder(tmp_path: Path, monkeypatch) -> None:
    calls: dict = {}
    monkeypatch.setattr("huggingface_hub.create_repo", lambda repo, **kw: calls.update(repo=repo, **kw))
    monkeypatch.setattr(
        "huggingface_hub.upload_folder",
        lambda **kw: calls.update(files=sorted(p.name for p in Path(kw["folder_path"]).iterdir()), **kw) or "url",
    )
    token = "a-token"  # noqa: S105
    _saved("talk", tmp_path / "mine", push_to_hub=True, repo_id="me/talker", private=True, token=token)
    assert calls["repo"] == "me/talker" and calls["repo_id"] == "me/talker" and calls["private"] is True
    assert calls["token"] == token and {"README.md", "model_index.json", "face_parser"} <= set(calls["files"])


def test_only_hub_ids_become_base_models(tmp_path: Path) -> None:
    assert hub.hub_ids(
        "TMElyralab/MuseTalk", str(tmp_path), None, "", "openai/whisper-tiny", "TMElyralab/MuseTalk"
    ) == [
        "TMElyralab/MuseTalk",
        "openai/whisper-tiny",
    ]
