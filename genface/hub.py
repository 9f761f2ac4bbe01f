"""Resolving weights: a local folder, or a Hugging Face Hub repository (optionally a subfolder of it)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from genface.errors import MissingWeightsError, OfflineError, UnsafeWeightsError

T = TypeVar("T")


def load_or_explain(load: Callable[..., T], path_or_repo: str | os.PathLike, **kwargs: Any) -> T:
    """Call a diffusers/transformers ``from_pretrained``; when a Hub id cannot be reached or is not cached,
    raise :class:`OfflineError` saying how to use a local copy instead."""
    try:
        return load(path_or_repo, **kwargs)
    except OSError as exc:
        if Path(path_or_repo).expanduser().is_dir():
            raise
        raise OfflineError(
            f"Could not load {os.fspath(path_or_repo)!r}: {_why_not_loaded(exc)}. Download it on a machine with "
            f"access (`hf download {os.fspath(path_or_repo)} --local-dir DIR`) and pass DIR instead."
        ) from exc


def _why_not_loaded(exc: BaseException) -> str:
    """Why diffusers / transformers could not load a Hub id, in words (their own message points to a stack trace
    that a one-line error does not show)."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    chain = [exc]
    while chain[-1].__cause__ or chain[-1].__context__:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    if any(isinstance(e, OfflineModeIsEnabled) for e in chain):
        return "it is not in the local Hugging Face cache, and offline mode is on (HF_HUB_OFFLINE)"
    if any(isinstance(e, ConnectionError) or type(e).__name__ == "ConnectError" for e in chain):
        return f"it is not in the local Hugging Face cache, and the Hub cannot be reached ({chain[-1]})"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.replace(" Please check out the root cause in the stacktrace above.", "").rstrip(".")


#: What a missing local file ends with (a Hub id may have a dot: ``ByteDance/LatentSync-1.6``).
FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".onnx", ".pkl", ".json", ".yaml", ".yml", ".dat")


def resolve_folder(
    path_or_repo: str | os.PathLike,
    subfolder: str | None = None,
    *,
    allow_patterns: Sequence[str] | None = None,
    revision: str | None = None,
    needed: Sequence[str] | None = None,
) -> Path:
    """Return a local folder for ``path_or_repo`` (+ ``subfolder``).

    A path that exists locally is used as it is. Anything else is taken as a Hub repo id and
    downloaded (only ``allow_patterns`` files, inside ``subfolder``) into the Hugging Face cache; in
    offline mode only the cache is consulted. ``needed``: the patterns an error tells the user to download, where
    the caller will load more than it fetches now (default: ``allow_patterns``).
    """
    local = Path(path_or_repo).expanduser()
    if local.is_file():
        raise MissingWeightsError(f"{local} is a file; weights are read from a folder or a Hub repository here.")
    if local.exists():
        folder = local / subfolder if subfolder else local
        if not folder.is_dir():
            raise MissingWeightsError(
                f"Folder {folder} does not exist (looked for subfolder {subfolder!r} in {local})."
            )
        return folder
    repo_id = os.fspath(path_or_repo)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/", "~")) or Path(repo_id).suffix in FILE_SUFFIXES:
        raise MissingWeightsError(
            f"{repo_id} does not exist (and it is not a Hub repo id either; those have the form 'owner/name')."
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    prefix = f"{subfolder.strip('/')}/" if subfolder else ""
    # The Hub matches with fnmatch, where "*" also crosses "/": "face_encoder/*" takes the whole subfolder.
    patterns = [prefix + p for p in (allow_patterns or ["*"])]
    include = "".join(f" --include '{prefix + p}'" for p in (needed or allow_patterns or ["*"]) if prefix + p != "*")
    how = (
        f"There is no local folder {repo_id!r} either. Download the files on a machine with access "
        f"(`hf download {repo_id}{include} --local-dir DIR`) and pass DIR instead of the repo id."
    )
    try:
        root = snapshot_download(repo_id, allow_patterns=patterns, revision=revision)
    except RepositoryNotFoundError as exc:
        raise MissingWeightsError(f"Hub repository {repo_id!r} was not found (or you lack access). {how}") from exc
    except GatedRepoError as exc:
        raise MissingWeightsError(
            f"Hub repository {repo_id!r} is gated: accept its licence on the Hub and log in. {how}"
        ) from exc
    except LocalEntryNotFoundError as exc:
        raise OfflineError(
            f"Cannot reach the Hugging Face Hub for {repo_id!r} and it is not in the local cache. {how}"
        ) from exc
    except (HfHubHTTPError, OSError) as exc:
        raise OfflineError(f"Downloading {repo_id!r} from the Hub failed ({exc}). {how}") from exc
    folder = Path(root) / subfolder if subfolder else Path(root)
    if not folder.is_dir():
        raise MissingWeightsError(f"Hub repository {repo_id!r} has no subfolder {subfolder!r}.")
    return folder


def load_state_dict(path: str | os.PathLike) -> dict:
    """Tensors from a weights file, safely: ``.safetensors`` directly; ``.pt``/``.pth``/``.bin`` only
    through ``torch.load(weights_only=True)``, which refuses pickled code."""
    import pickle

    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"Weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeWeightsError(
            f"{path} holds Python objects besides tensors, and genface loads .pt/.pth/.bin files only with "
            "torch.load(weights_only=True) so that no code inside them can run. Use the publisher's original "
            f"file, or convert a file you trust to .safetensors. ({str(exc).splitlines()[0]})"
        ) from exc
    except (EOFError, KeyError, RuntimeError) as exc:  # empty, truncated, or not written by torch.save
        detail = ": ".join([type(exc).__name__, *str(exc).splitlines()[:1]])
        raise MissingWeightsError(
            f"{path} is not a readable PyTorch checkpoint (empty, cut short, or another kind of file; {detail})."
        ) from exc
    if not isinstance(state, dict):
        raise MissingWeightsError(
            f"{path} holds a {type(state).__name__}, not a state dict (tensors by name); give the published weights."
        )
    return state


def load_checked(build: Callable[[], Any], state: dict, what: str) -> Any:
    """The module ``build()`` makes, loaded with ``state`` after its names and shapes are checked on the meta
    device (nothing allocated), so a file of another model is refused in one message naming ``what``."""
    import torch

    with torch.device("meta"):
        expected = {k: v.shape for k, v in build().state_dict().items()}
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(s)}" for k, s in expected.items() if k in state and state[k].shape != s
    ]
    if missing or unexpected or wrong:
        raise MissingWeightsError(
            f"{what}: missing {missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:3]}."
        )
    model = build()
    model.load_state_dict(state)
    return model.eval()


#: What every saved pipeline's model card says about use.
INTENDED_USE = """Made for research, film and creative work, and media of people who agreed to it. Making, editing
or animating a real person's face needs that person's consent. Out of scope: impersonation, fraud,
harassment, political deception, and sexual or intimate content of real people. genface marks everything it
writes as synthetic (metadata and an invisible watermark; `genface verify FILE`); keep the marks. The marks
have limits (see genface's docs/provenance.md): a missing mark does not prove a file is real."""


def save_model_card(
    folder: str | os.PathLike,
    *,
    pipeline_class: str,
    summary: str,
    base_models: Sequence[str],
    licences: str,
    tags: Sequence[str] = (),
) -> Path:
    """Write ``README.md``, a Hub model card, into a saved pipeline's folder: what it is, how to load it, the
    weights it was made from and their licences, and its intended use."""
    from huggingface_hub import ModelCard, ModelCardData

    from genface import __version__

    data = ModelCardData(
        library_name="diffusers", license="other", base_model=list(base_models) or None, tags=["genface", *tags]
    )
    made_from = ", ".join(f"`{m}`" for m in base_models) or "random weights (a tiny test model; its output is noise)"
    text = f"""---
{data.to_yaml()}
---

# {pipeline_class} (genface)

{summary}

Saved by genface {__version__}. Load it with genface:

```python
from genface.pipelines import {pipeline_class}

pipe = {pipeline_class}.from_pretrained("path/or/hub-id")
```

## Weights and licences

Made from: {made_from}. {licences} Read each base model's own card before use; the licence of a weight
applies to everything derived from it.

## Intended use

{INTENDED_USE}
"""
    path = Path(folder) / "README.md"
    ModelCard(text).save(path)
    return path


PUSH_OPTIONS = ("private", "token", "commit_message")


def pop_push_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the Hub upload options out of a ``save_pretrained`` call's keyword arguments."""
    return {key: kwargs.pop(key) for key in PUSH_OPTIONS if key in kwargs}


def push_folder(
    folder: str | os.PathLike, repo_id: str | None = None, *, private: bool | None = None, **kwargs: Any
) -> str:
    """Upload a saved folder (weights, configs, model card) to a Hub model repository (default: named after
    the folder), creating it if needed; returns the commit URL."""
    from huggingface_hub import create_repo, upload_folder

    repo_id = repo_id or Path(folder).name
    create_repo(repo_id, private=private, exist_ok=True, token=kwargs.get("token"))
    return str(upload_folder(repo_id=repo_id, folder_path=os.fspath(folder), **kwargs))


def hub_ids(*names: str | None) -> list[str]:
    """The Hub repository ids among ``names`` (what a pipeline was loaded from), without local paths."""
    import re

    pattern = re.compile(r"^[\w.-]+/[\w.-]+$")
    return [n for n in dict.fromkeys(names) if n and pattern.match(n) and not Path(n).expanduser().exists()]


def finish_save(
    pipe: Any,
    folder: str | os.PathLike,
    base_models: Sequence[str],
    push_to_hub: bool,
    repo_id: str | None,
    push: dict[str, Any],
) -> None:
    """After a pipeline's files are saved: its model card (from the class's ``model_card`` dict: summary,
    licences, tags), then the upload when asked for."""
    save_model_card(folder, pipeline_class=type(pipe).__name__, base_models=base_models, **pipe.model_card)
    if push_to_hub:
        push_folder(folder, repo_id, **push)
