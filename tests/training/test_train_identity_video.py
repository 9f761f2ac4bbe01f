"""examples/train_identity_video.py on the tiny ConsisID and short videos of real faces: the dataset is prepared
once with the shared identity stack, each stage trains only its modules and learns, a resumed run repeats the
uninterrupted one, a CogVideoX transformer gains new identity modules, and the result loads in the pipeline."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from genface.errors import InvalidArgumentError
from genface.media import write_video
from tests.training.scripts import load_script, logged_losses, run_on_two_processes

STEPS = 4
#: The tiny run's settings, as main() would parse them.
SETTINGS = dict(
    model="tiny", transformer=None, height=64, width=64, frames=9, frame_stride=1, references_per_clip=2,
    cross_face_probability=0.5, cross_face_warmup=0, mask_loss_probability=0.5, image_dropout=0.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def script():
    return load_script("train_identity_video")


@pytest.fixture(scope="module")
def data(tmp_path_factory, astronaut, portrait) -> Path:
    """One person with two clips in a subfolder (cross-face references exist), one with a single clip."""
    folder = tmp_path_factory.mktemp("videos")
    (folder / "astronaut").mkdir()
    face = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    write_video(folder / "astronaut" / "walk.mp4", np.stack([np.roll(face, 2 * i, axis=1) for i in range(18)]), 8)
    (folder / "astronaut" / "walk.txt").write_text("An astronaut smiles at the camera.")
    still = cv2.resize(portrait, (256, 256), interpolation=cv2.INTER_AREA)
    write_video(folder / "portrait.mp4", np.stack([np.roll(still, i, axis=0) for i in range(9)]), 8)
    (folder / "portrait.txt").write_text("A person looks at the camera.")
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def options(data: Path, cache: Path, output: Path, *extra: str) -> list[str]:
    return [
        "--data", str(data), "--cache-dir", str(cache), "--output-dir", str(output), "--model", "tiny",
        "--height", "64", "--width", "64", "--frames", "9", "--frame-stride", "1", "--lr", "1e-2",
        "--checkpoint-every", "2", "--validation-steps", "0", "--cross-face-probability", "0.5", *extra,
    ]  # fmt: skip


def fixed_loss(script, pipe, prepared, args) -> float:
    """The loss on the same clips, references, masks, timesteps and noise whatever the weights."""
    from genface.training.loop import step_generator

    with torch.no_grad():
        return float(
            np.mean(
                [
                    script.training_loss(pipe, pipe.transformer, prepared, step_generator(7, k), 0, args)
                    for k in range(6)
                ]
            )
        )


def test_the_dataset_is_cut_encoded_and_cached(script, data: Path, cache: Path, caplog) -> None:
    from genface.pipelines.identity_video.tiny import tiny_pipeline

    args = argparse.Namespace(data=data, **SETTINGS)
    pipe = tiny_pipeline()
    with caplog.at_level(logging.WARNING):
        clips, references = script.prepare(pipe, script.find_videos(data), args, cache)
    assert len(clips) == 3 and len(references) == 6  # 18 frames -> 2 clips of 9; 9 frames -> 1 clip
    walk = [c for c in clips if c["video"].person == "astronaut"]
    assert len(walk) == 2 and set(walk[0]["others"]) == set(walk[1]["own"])  # the same person's other clip
    alone = next(c for c in clips if c["video"].person == "portrait.mp4")
    assert alone["others"] == [] and "no other clip of the same person" in caplog.text
    assert all(clip["mean"].shape == (3, 4, 8, 8) and clip["mask"].shape == (3, 8, 8) for clip in clips)  # 9x64x64
    for mask in (walk[0]["mask"], walk[1]["mask"]):
        # the parsed face region (FaceParser; random here) inside the face's crop, not the whole frame
        assert 0 < mask.mean() < 0.5 and mask.max() <= 1 and mask[:, 6:].max() == 0  # the face is high up
    # the reference conditions are the pipeline's own: same latents as ConsisID's prepare_latents draws
    from genface.identity import FaceIdentity

    identity = FaceIdentity.load(cache / "astronaut__walk.mp4.face.safetensors")
    image, id_cond, _, _ = pipe.identity_conditions(identity, "cpu", torch.float32)
    ours = script.reference_conditions(pipe, identity, 64, 64)
    assert torch.equal(ours["id_cond"], id_cond[0])
    drawn = script.reference_latents(ours, 3, torch.Generator().manual_seed(3)) * pipe.vae_scaling_factor_image
    pixels = pipe.video_processor.preprocess(image, height=64, width=64)
    _, upstream = pipe.prepare_latents(pixels, 1, 4, 9, 64, 64, torch.float32, "cpu", torch.Generator().manual_seed(3))
    torch.testing.assert_close(drawn, upstream)
    # cached: a second preparation encodes nothing
    pipe.identity_encoder = None
    assert len(script.prepare(pipe, script.find_videos(data), args, cache)[0]) == 3


def test_bad_data_is_explained(script, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="No videos"):
        script.find_videos(tmp_path)
    write_video(tmp_path / "clip.mp4", np.zeros((9, 64, 64, 3), np.uint8), 8)
    with pytest.raises(InvalidArgumentError, match=r"no caption: clip.mp4.*clip.txt"):
        script.find_videos(tmp_path)
    (tmp_path / "clip.txt").write_text("Nobody is here.")  # a video without a face is left out, with the reason
    from genface.pipelines.identity_video.tiny import tiny_pipeline

    args = argparse.Namespace(data=tmp_path, **SETTINGS)
    with pytest.raises(InvalidArgumentError, match="No usable clip.*9 frames.*one face clearly visible"):
        script.prepare(tiny_pipeline(), script.find_videos(tmp_path), args, tmp_path / "cache")


def test_cross_face_schedule() -> None:
    schedule = load_script("train_identity_video").cross_face_probability
    assert [schedule(s, 0.5, 4) for s in (0, 2, 4, 8)] == [0.0, 0.25, 0.5, 0.5]
    assert schedule(0, 0.5, 0) == 0.5


def test_global_then_local_stage_learn_their_modules_resume_and_load(script, data, cache, tmp_path) -> None:
    from diffusers import ConsisIDTransformer3DModel

    from genface.pipelines.identity_video.tiny import tiny_pipeline

    def weights(model) -> dict[str, torch.Tensor]:  # parameters only: buffers such as positions do not train
        return {name: p.detach() for name, p in model.named_parameters()}

    start = weights(tiny_pipeline().transformer)
    script.main(options(data, cache, tmp_path / "whole", "--stage", "global", "--steps", str(STEPS)))
    script.main(options(data, cache, tmp_path / "split", "--stage", "global", "--steps", "2"))
    script.main(
        options(data, cache, tmp_path / "split", "--stage", "global", "--steps", str(STEPS), "--resume", "latest")
    )
    whole = logged_losses(tmp_path / "whole")
    assert list(whole) == list(range(1, STEPS + 1)) and logged_losses(tmp_path / "split") == whole

    coarse = weights(ConsisIDTransformer3DModel.from_pretrained(tmp_path / "whole" / "transformer"))
    changed = {k for k in start if not torch.equal(start[k], coarse[k])}
    assert changed == {"patch_embed.proj.weight", "patch_embed.proj.bias"}  # the global path only
    checkpoint = tmp_path / "whole" / "checkpoint-2" / "model.safetensors"
    assert checkpoint.stat().st_size < 0.5 * sum(v.numel() * 4 for v in start.values())  # not the frozen weights

    fine_dir = tmp_path / "fine"
    transformer = str(tmp_path / "whole" / "transformer")
    script.main(options(data, cache, fine_dir, "--stage", "local", "--steps", "2", "--transformer", transformer))
    fine = weights(ConsisIDTransformer3DModel.from_pretrained(fine_dir / "transformer"))
    changed = {k.split(".")[0] for k in coarse if not torch.equal(coarse[k], fine[k])}
    assert changed == {"local_facial_extractor", "perceiver_cross_attention"}  # the local path only

    # it learns: a lower loss on fixed clips and noise, and the trained transformer runs in the pipeline
    args = argparse.Namespace(data=data, **SETTINGS)
    pipe = tiny_pipeline()
    prepared = script.prepare(pipe, script.find_videos(data), args, cache)
    pipe.transformer.local_face_scale = 0.0  # as the global stage trained
    before = fixed_loss(script, pipe, prepared, args)
    pipe.transformer = ConsisIDTransformer3DModel.from_pretrained(tmp_path / "whole" / "transformer")
    pipe.transformer.local_face_scale = 0.0
    assert fixed_loss(script, pipe, prepared, args) < before
    pipe.set_progress_bar_config(disable=True)
    from genface.identity import FaceIdentity

    identity = FaceIdentity.load(cache / "astronaut__walk.mp4.face.safetensors")
    frames = pipe(
        "a test", identity=identity, height=64, width=64, num_frames=9, num_inference_steps=1, output_type="np"
    )
    assert frames.frames.shape == (1, 9, 64, 64, 3)


def test_a_lora_on_the_dit_trains_with_the_stage_resumes_and_loads_with_load_lora_weights(
    script, data, cache, tmp_path
) -> None:
    from diffusers import ConsisIDTransformer3DModel
    from safetensors.torch import load_file

    from genface.pipelines.identity_video.tiny import tiny_pipeline

    def run(output: str, *extra: str) -> None:
        lora = ["--stage", "local", "--lora-rank", "4", "--ema-decay", "0.5", "--checkpoint-every", "1"]
        script.main(options(data, cache, tmp_path / output, *lora, *extra))

    run("whole", "--steps", "2")
    run("split", "--steps", "1")
    run("split", "--steps", "2", "--resume", "latest")
    assert logged_losses(tmp_path / "split") == logged_losses(tmp_path / "whole")  # the LoRA was checkpointed
    loras = [load_file(tmp_path / run / "lora" / "pytorch_lora_weights.safetensors") for run in ("whole", "split")]
    assert loras[0].keys() == loras[1].keys() and all(torch.equal(loras[0][k], loras[1][k]) for k in loras[0])
    assert {k.split(".")[4] for k in loras[0]} == {"to_q", "to_k", "to_v", "to_out"}  # the DiT blocks' attention
    assert all(k.startswith("transformer.transformer_blocks.") for k in loras[0])

    pipe = tiny_pipeline()
    start = dict(pipe.transformer.named_parameters())
    trained = ConsisIDTransformer3DModel.from_pretrained(tmp_path / "whole" / "transformer")
    kept = dict(trained.named_parameters())
    assert kept.keys() == start.keys()  # transformer/ is the plain DiT: no LoRA layers in it
    changed = {k.split(".")[0] for k in start if not torch.equal(start[k], kept[k])}
    assert changed == {"local_facial_extractor", "perceiver_cross_attention"}
    pipe.transformer = trained
    pipe.load_lora_weights(tmp_path / "whole" / "lora")
    learned = [p for name, p in pipe.transformer.named_parameters() if "lora_B" in name]
    assert learned and all(p.abs().max() > 0 for p in learned)  # LoRA B starts at zero: these were trained


def test_a_cogvideox_transformer_gains_identity_modules_and_validation_is_logged(script, data, cache, tmp_path) -> None:
    import inspect

    from diffusers import CogVideoXTransformer3DModel, ConsisIDTransformer3DModel

    from genface.pipelines.identity_video.tiny import tiny_pipeline

    config = dict(tiny_pipeline().transformer.config)
    names = set(inspect.signature(CogVideoXTransformer3DModel.__init__).parameters)
    base = CogVideoXTransformer3DModel(**{k: v for k, v in config.items() if k in names})
    base.save_pretrained(tmp_path / "base" / "transformer")
    out = tmp_path / "out"
    run = options(data, cache, out, "--stage", "global", "--steps", "2", "--transformer", str(tmp_path / "base"))
    run[run.index("--validation-steps") + 1] = "2"
    script.main(run)
    trained = ConsisIDTransformer3DModel.from_pretrained(out / "transformer")
    kept = dict(trained.named_parameters())
    for key, value in base.named_parameters():  # the base DiT's weights, trained only where the global path is
        assert torch.equal(kept[key], value) != key.startswith("patch_embed.proj."), key
    assert any(k.startswith("local_facial_extractor.") for k in kept) and trained.config.is_train_face

    checks = [json.loads(line) for line in (out / "validation.jsonl").read_text().splitlines()]
    assert [c["step"] for c in checks] == [2] and "facesim" in checks[0]
    from genface.provenance import read_mark

    assert read_mark(out / checks[0]["video"])["synthetic"] in (True, "true")


def test_two_processes_train_with_ddp(data: Path, cache: Path, tmp_path: Path) -> None:
    """accelerate's DDP on 2 CPU processes: the cache is prepared by the main process first, validation runs there."""
    run = options(data, cache, tmp_path, "--stage", "local", "--steps", "2")
    run[run.index("--validation-steps") + 1] = "1"
    run_on_two_processes("train_identity_video", run)
    assert list(logged_losses(tmp_path)) == [1, 2] and (tmp_path / "transformer" / "config.json").is_file()
    assert [json.loads(line)["step"] for line in (tmp_path / "validation.jsonl").read_text().splitlines()] == [2]
