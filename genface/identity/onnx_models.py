"""insightface's ONNX models, loaded one file at a time: what the insightface engine and the ArcFace recognizer
both need (below both of them, so neither imports the other to get it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genface.errors import BackendUnavailableError, MissingWeightsError


def import_insightface() -> Any:
    """The insightface package, or a one-line :class:`BackendUnavailableError` saying how to install it."""
    try:
        import insightface
    except ImportError as exc:
        raise BackendUnavailableError("The insightface engine needs `pip install insightface onnxruntime`.") from exc
    return insightface


def onnx_errors() -> tuple[type[BaseException], ...]:
    """onnxruntime's exceptions for files it cannot read (they derive from Exception directly)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    return tuple(
        getattr(ort_state, name)
        for name in ("Fail", "InvalidProtobuf", "InvalidGraph", "NoSuchFile")
        if hasattr(ort_state, name)
    )


def onnx_providers(providers: list[str] | None) -> list[str]:
    """``providers`` as given, else CUDA when onnxruntime has it, then the CPU."""
    if providers:
        return providers
    import onnxruntime

    available = onnxruntime.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


def load_onnx_model(path: Path, providers: list[str] | None = None) -> Any:
    """Load one insightface ONNX model through insightface's own routing (by input/output signature)."""
    insightface = import_insightface()
    if not path.is_file():
        raise MissingWeightsError(f"ONNX model not found: {path}")
    try:
        model = insightface.model_zoo.get_model(str(path), providers=onnx_providers(providers))
    except onnx_errors() as exc:
        raise MissingWeightsError(f"{path} is not a valid ONNX model ({str(exc).splitlines()[0]}).") from exc
    if model is None:
        raise MissingWeightsError(f"{path} is not a model insightface recognises.")
    return model
