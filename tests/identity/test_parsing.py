"""BiSeNet face parsing: both published checkpoint layouts, parity with facexlib, safe loading, regions."""

from __future__ import annotations

import importlib.util
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from genface.errors import MissingWeightsError, UnsafeWeightsError
from genface.identity import BiSeNet, FaceParser, Parsing
from genface.identity.parsing import LABELS, load_bisenet_checkpoint


@pytest.fixture(scope="module")
def random_bisenet() -> BiSeNet:
    torch.manual_seed(0)
    model = BiSeNet()
    for module in model.modules():  # non-trivial BatchNorm statistics, so a wrong mapping shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _facexlib_layout(model: BiSeNet) -> dict[str, torch.Tensor]:
    """facexlib's parsing_bisenet.pth: plain names, no BatchNorm step counters."""
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def _face_parsing_pytorch_layout(model: BiSeNet) -> dict[str, torch.Tensor]:
    """face-parsing.PyTorch's 79999_iter.pth as re-saved from DataParallel: ``module.`` prefix, counters kept."""
    return {f"module.{k}": v for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("name", "layout"), [("parsing_bisenet.pth", _facexlib_layout), ("79999_iter.pth", _face_parsing_pytorch_layout)]
)
def test_both_published_layouts_load(tmp_path: Path, random_bisenet: BiSeNet, name: str, layout) -> None:
    torch.save(layout(random_bisenet), tmp_path / name)
    parser = FaceParser.from_pretrained(tmp_path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(parser.model(x), random_bisenet(x))


def _load_facexlib_bisenet():
    """facexlib's BiSeNet module, imported without running facexlib/__init__ (which needs torchvision)."""
    spec = importlib.util.find_spec("facexlib")
    if spec is None:
        pytest.skip("reference package facexlib not installed (tests/reference-requirements.txt)")
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, path in (("facexlib", root), ("facexlib.parsing", root / "parsing")):
        package = types.ModuleType(name)
        package.__path__ = [str(path)]
        sys.modules.setdefault(name, package)
    module_name = "facexlib.parsing.bisenet"
    spec = importlib.util.spec_from_file_location(module_name, root / "parsing" / "bisenet.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module.BiSeNet


def test_parity_with_facexlib_reference(random_bisenet: BiSeNet) -> None:
    reference = _load_facexlib_bisenet()(num_class=19).eval()
    reference.load_state_dict(random_bisenet.state_dict())  # same names: loads strictly, unchanged
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        torch.testing.assert_close(random_bisenet(x), reference(x)[0])


def test_wrong_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save(
        {"conv_out.conv_out.weight": torch.zeros(19, 256, 1, 1), "other.weight": torch.zeros(2)}, tmp_path / "x.pth"
    )
    with pytest.raises(MissingWeightsError, match="not a BiSeNet"):
        load_bisenet_checkpoint(tmp_path / "x.pth")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingWeightsError, match="No face-parsing weights"):
        FaceParser.from_pretrained(tmp_path / "empty")


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(self.target),))


def test_pickle_carrying_code_is_refused(tmp_path: Path) -> None:
    payload = _Payload()
    payload.target = str(tmp_path / "pwned")
    with open(tmp_path / "parsing_bisenet.pth", "wb") as handle:
        pickle.dump({"state": payload}, handle)
    with pytest.raises(UnsafeWeightsError, match="weights_only"):
        FaceParser.from_pretrained(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_save_pretrained_round_trip(tmp_path: Path, random_bisenet: BiSeNet) -> None:
    random_bisenet.save_pretrained(tmp_path / "parser")
    assert (tmp_path / "parser" / "diffusion_pytorch_model.safetensors").is_file()
    parser = FaceParser.from_pretrained(tmp_path / "parser")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(parser.model(x), random_bisenet(x))


def test_parse_returns_labels_at_input_size(random_bisenet: BiSeNet) -> None:
    parser = FaceParser(random_bisenet)
    crops = np.random.default_rng(0).integers(0, 256, (2, 80, 80, 3), dtype=np.uint8)
    parsed = parser.parse(crops)
    assert len(parsed) == 2 and parsed[0].labels.shape == (80, 80) and parsed[0].labels.dtype == np.uint8
    assert parsed[0].labels.max() < len(LABELS)
    single = parser.parse(crops[0])
    np.testing.assert_array_equal(single.labels, parsed[0].labels)


def test_region_masks() -> None:
    labels = np.array([[0, 1, 12, 13], [4, 5, 17, 16]], dtype=np.uint8)
    parsing = Parsing(labels)
    np.testing.assert_array_equal(parsing.mask("lips"), [[0, 0, 1, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(parsing.mask("eyes", "hair"), [[0, 0, 0, 0], [1, 1, 1, 0]])
    np.testing.assert_array_equal(parsing.mask("not_face"), [[1, 0, 0, 0], [0, 0, 0, 1]])
    assert parsing.mask("skin").sum() == 1
    assert set(parsing.masks(["lips", "skin"])) == {"lips", "skin"}
    with pytest.raises(ValueError, match="Unknown face region"):
        parsing.mask("tattoo")


def test_not_face_is_consisids_background_labels() -> None:
    # consisid_utils removes labels [0, 16, 18, 7, 8, 9, 14, 15] from the reference face.
    from genface.identity.parsing import REGIONS

    assert sorted(LABELS.index(name) for name in REGIONS["not_face"]) == sorted([0, 16, 18, 7, 8, 9, 14, 15])


def test_image_masks_map_the_parsed_region_back_into_each_image(astronaut, dlib_analyzer, random_bisenet) -> None:
    class Labeller(FaceParser):  # labels the middle of each crop "upper_lip", the rest "background"
        def parse(self, images: np.ndarray) -> list[Parsing]:
            labels = np.zeros(images.shape[:3], np.uint8)
            labels[:, 192:320, 192:320] = LABELS.index("upper_lip")
            return [Parsing(lab) for lab in labels]

    import dataclasses

    face = dlib_analyzer.get(astronaut)
    moved = dataclasses.replace(face, bbox=face.bbox + [40, 0, 40, 0], kps=face.kps + [40, 0], landmarks=None)
    shifted = np.roll(astronaut, 40, axis=1)
    masks = Labeller(random_bisenet).image_masks([astronaut, shifted, astronaut], [face, moved, None], "lips")
    assert masks.shape == (3, *astronaut.shape[:2]) and not masks[2].any()  # no face: an empty mask
    from genface.identity.align import alignment_matrix, invert_affine

    x, y = (invert_affine(alignment_matrix(face.kps, "ffhq", 512)) @ [256, 256, 1]).round().astype(int)
    assert masks[0][y, x] and not masks[0][:20].any() and not masks[0][:, :20].any()  # the crop's middle, only
    crop_scale = face.width / 512  # the FFHQ crop's 128-pixel middle is roughly 30-70 image pixels wide here
    assert 0.2 * (128 * crop_scale) ** 2 < masks[0].sum() < 5 * (128 * crop_scale) ** 2
    expected = np.roll(masks[0], 40, axis=1)  # a face 40 pixels to the right: its mask too
    assert (masks[1] & expected).sum() > 0.95 * (masks[1] | expected).sum()
    assert not Labeller(random_bisenet).image_masks([astronaut], [face], "skin").any()  # other regions: empty
