"""Tiny models with the published file names and input/output signatures, built by the tests.

The tiny SCRFD detector finds exactly one "face": a white square filling one stride-32 cell of a
black 640x640 image, with a known box and known keypoints. That lets insightface's real loading,
routing and decoding code run, and lets tests check the exact result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Box offsets (left, top, right, bottom) and keypoint offsets, in units of the stride, from the anchor.
BOX_DISTANCES = np.array([1.0, 1.0, 2.0, 3.0], dtype=np.float32)
KPS_OFFSETS = np.array([[0.5, 0.8], [1.5, 0.8], [1.0, 1.5], [0.6, 2.2], [1.4, 2.2]], dtype=np.float32)
STRIDE = 32


def planted_face(cell_row: int = 5, cell_col: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(640x640 RGB image, expected bbox, expected kps) for the tiny detector."""
    image = np.zeros((640, 640, 3), dtype=np.uint8)
    y, x = cell_row * STRIDE, cell_col * STRIDE
    image[y : y + STRIDE, x : x + STRIDE] = 255
    anchor = np.array([x, y], dtype=np.float32)
    bbox = np.concatenate([anchor - BOX_DISTANCES[:2] * STRIDE, anchor + BOX_DISTANCES[2:] * STRIDE])
    return image, bbox, anchor + KPS_OFFSETS * STRIDE


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(array, np.float32), name))


def _scrfd() -> onnx.ModelProto:
    nodes, outputs = [], {"score": [], "bbox": [], "kps": []}
    for stride in (8, 16, 32):
        s = str(stride)
        nodes += [
            helper.make_node(
                "AveragePool", ["input.1"], [f"pool{s}"], kernel_shape=[stride, stride], strides=[stride, stride]
            ),
            helper.make_node("ReduceMean", [f"pool{s}"], [f"mean{s}"], axes=[1], keepdims=1),
        ]
        # Only stride 32 can fire: logit = 20 * mean - 10 there, a constant -10 elsewhere.
        gain = 20.0 if stride == STRIDE else 0.0
        heads = {
            "score": (np.full((1, 2, 1, 1), gain), np.full((1, 2, 1, 1), -10.0), 1),
            "bbox": (np.zeros((1, 8, 1, 1)), np.tile(BOX_DISTANCES, 2).reshape(1, 8, 1, 1), 4),
            "kps": (np.zeros((1, 20, 1, 1)), np.tile(KPS_OFFSETS.reshape(-1), 2).reshape(1, 20, 1, 1), 10),
        }
        for head, (gain_arr, bias, width) in heads.items():
            name = f"{head}_{s}"
            nodes += [
                _const(f"{name}_g", gain_arr),
                _const(f"{name}_b", bias),
                _const(f"{name}_shape", np.array([-1, width])),
                helper.make_node("Mul", [f"mean{s}", f"{name}_g"], [f"{name}_m"]),
                helper.make_node("Add", [f"{name}_m", f"{name}_b"], [f"{name}_a"]),
            ]
            last = f"{name}_a"
            if head == "score":
                nodes.append(helper.make_node("Sigmoid", [last], [f"{name}_sig"]))
                last = f"{name}_sig"
            nodes += [
                helper.make_node("Transpose", [last], [f"{name}_t"], perm=[0, 2, 3, 1]),
                helper.make_node("Cast", [f"{name}_shape"], [f"{name}_shape64"], to=TensorProto.INT64),
                helper.make_node("Reshape", [f"{name}_t", f"{name}_shape64"], [name]),
            ]
            outputs[head].append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", width]))
    graph = helper.make_graph(
        nodes,
        "tiny_scrfd",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "h", "w"])],
        outputs["score"] + outputs["bbox"] + outputs["kps"],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _arcface(seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    conv = rng.standard_normal((8, 3, 16, 16)).astype(np.float32) / 16
    proj = rng.standard_normal((8 * 7 * 7, 512)).astype(np.float32) / 20
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input.1", "conv_w"], ["c"], kernel_shape=[16, 16], strides=[16, 16]),
            helper.make_node("Relu", ["c"], ["r"]),
            helper.make_node("Flatten", ["r"], ["f"], axis=1),
            helper.make_node("MatMul", ["f", "proj"], ["683"]),
        ],
        "tiny_arcface",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])],
        initializer=[numpy_helper.from_array(conv, "conv_w"), numpy_helper.from_array(proj, "proj")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def save_tiny_insightface_pack(folder: Path) -> Path:
    """Write antelopev2's detection and recognition file names with tiny models into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(_scrfd(), folder / "scrfd_10g_bnkps.onnx")
    onnx.save(_arcface(), folder / "glintr100.onnx")
    return folder


def save_ditto_layout(pipe: Any, root: Path) -> Path:
    """The tiny model in Ditto's Hub layout: .pth pickles of state dicts, the stitching and LMDM nested as
    Ditto saves them."""
    import torch

    from genface.pipelines.talking_portrait.pipeline import COMPONENTS, DITTO_FOLDER

    folder = root / DITTO_FOLDER
    folder.mkdir(parents=True)
    for name, (_, file) in COMPONENTS.items():
        state = getattr(pipe, name).state_dict()
        if name == "stitching_network":
            state = {"retarget_shoulder": {f"module.{k}": v for k, v in state.items()}}
        elif name == "lmdm":
            state = {"model_state_dict": {k.removeprefix("model."): v for k, v in state.items()}}
        torch.save(state, folder / file)
    return root
