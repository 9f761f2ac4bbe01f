"""examples/train_makeup.py on the tiny Kontext: the injector learns a triplet (lower loss on fixed noise),
a resumed run repeats the uninterrupted one, the injector keeps the published layout and loads in the
pipeline, and a LoRA on the base transformer is saved for load_lora_weights."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from genface.media import save_image
from tests.training.scripts import load_script, logged_losses, run_on_two_processes


@pytest.fixture(scope="module")
def triplets(tmp_path_factory, astronaut, portrait) -> Path:
    folder = tmp_path_factory.mktemp("triplets")
    source = astronaut[40:296, 100:356]
    target = source.copy()
    target[150:200, 80:180, 0] = np.clip(target[150:200, 80:180, 0].astype(int) + 60, 0, 255)  # redder lips
    for name, image in {"src": source, "ref": cv2.resize(portrait, (256, 256)), "tgt": target}.items():
        save_image(image, folder / f"{name}.png")
    (folder / "triplets.jsonl").write_text(
        json.dumps({"source": "src.png", "reference": "ref.png", "target": "tgt.png"})
    )
    return folder / "triplets.jsonl"


def test_injector_training_learns_resumes_and_loads(triplets: Path, tmp_path: Path, astronaut, portrait) -> None:
    module = load_script("train_makeup")
    common = ["--triplets", str(triplets), "--model", "tiny", "--size", "32", "--lr", "1e-2", "--checkpoint-every", "3"]
    common += ["--validation-steps", "1"]
    module.main([*common, "--output-dir", str(tmp_path / "whole"), "--steps", "6"])
    module.main([*common, "--output-dir", str(tmp_path / "split"), "--steps", "3"])
    module.main([*common, "--output-dir", str(tmp_path / "split"), "--steps", "6", "--resume", "latest"])
    assert list(logged_losses(tmp_path / "whole")) == [1, 2, 3, 4, 5, 6]
    assert logged_losses(tmp_path / "split") == logged_losses(tmp_path / "whole")
    checks = [json.loads(line) for line in (tmp_path / "whole" / "validation.jsonl").read_text().splitlines()]
    assert [c["step"] for c in checks] == [3, 6] and all(0 <= c["target_l1"] <= 1 for c in checks)
    assert all(c["facesim"] is None or -1 <= c["facesim"] <= 1 for c in checks)
    from genface.provenance import read_mark

    assert read_mark(tmp_path / "whole" / checks[0]["image"]) is not None  # the edit is marked synthetic

    from genface.media import load_image
    from genface.models.makeup import MakeupInjector
    from genface.pipelines.makeup.tiny import tiny_injector, tiny_pipeline
    from genface.training.loop import step_generator

    trained = MakeupInjector.from_pretrained(tmp_path / "whole" / "injector")
    assert set(trained.state_dict()) == set(tiny_injector().state_dict())  # the published checkpoint's names
    folder = triplets.parent
    triplet = {"source": load_image(folder / "src.png"), "target": load_image(folder / "tgt.png")}
    pipe = tiny_pipeline()
    triplet["reference"] = pipe.mask_reference(load_image(folder / "ref.png"))[0]

    text = module.text_conditions(pipe)

    def fixed_loss() -> float:  # the same noise and times before and after training
        with torch.no_grad():
            return float(
                np.mean([module.flow_matching_loss(pipe, triplet, 32, step_generator(7, k), text) for k in range(8)])
            )

    before = fixed_loss()
    pipe.injector.remove(pipe.transformer)
    pipe.injector = trained
    trained.install(pipe.transformer)
    assert fixed_loss() < before
    pipe.set_progress_bar_config(disable=True)
    edited = pipe.edit(triplet["source"], triplet["reference"], size=32, num_inference_steps=1)
    assert edited.shape == (32, 32, 3)


def test_a_lora_on_the_base_transformer_resumes_and_loads_with_load_lora_weights(
    triplets: Path, tmp_path: Path
) -> None:
    train = load_script("train_makeup").main
    options = ["--triplets", str(triplets), "--model", "tiny", "--size", "32", "--lora-rank", "4", "--lr", "1e-2"]
    options += ["--validation-steps", "0", "--checkpoint-every", "1", "--ema-decay", "0.5"]
    train([*options, "--steps", "2", "--output-dir", str(tmp_path / "whole")])
    train([*options, "--steps", "1", "--output-dir", str(tmp_path / "split")])
    train([*options, "--steps", "2", "--output-dir", str(tmp_path / "split"), "--resume", "latest"])
    assert logged_losses(tmp_path / "split") == logged_losses(tmp_path / "whole")  # the LoRA state came back
    from safetensors.torch import load_file

    injectors = [load_file(next((tmp_path / run / "injector").glob("*.safetensors"))) for run in ("whole", "split")]
    assert all(torch.equal(injectors[0][k], injectors[1][k]) for k in injectors[0])  # and the EMA's
    from genface.pipelines.makeup.tiny import tiny_pipeline

    pipe = tiny_pipeline()
    pipe.load_lora_weights(tmp_path / "whole" / "lora")
    learned = [p for name, p in pipe.transformer.named_parameters() if "lora_B" in name]
    assert learned and any(p.abs().max() > 0 for p in learned)  # LoRA B starts at zero: these were trained


def test_two_processes_train_in_step(triplets: Path, tmp_path: Path) -> None:
    """Data parallel on 2 CPU processes: each draws its own triplets, gradients are averaged by hand."""
    options = ["--model", "tiny", "--size", "32", "--steps", "2", "--validation-steps", "0", "--lora-rank", "2"]
    run_on_two_processes("train_makeup", ["--triplets", str(triplets), *options, "--output-dir", str(tmp_path)])
    assert list(logged_losses(tmp_path)) == [1, 2] and (tmp_path / "injector").is_dir() and (tmp_path / "lora").is_dir()
