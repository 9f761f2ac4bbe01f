"""`genface talk` with the offline tiny models (MuseTalk, LatentSync), its errors, and `genface convert` for MuseTalk's
and LatentSync's layouts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from genface.cli import main
from genface.media import save_image


def _speech(path: Path) -> Path:
    subprocess.run(["espeak-ng", "-w", str(path), "Hi."], check=True)
    return path


def test_talk_tiny_writes_a_marked_video_with_metrics(tmp_path, astronaut, capsys) -> None:
    save_image(astronaut, tmp_path / "me.png")
    out = tmp_path / "out.mp4"
    args = ["talk", "--model", "tiny", "--face", str(tmp_path / "me.png"), "--audio", str(_speech(tmp_path / "s.wav"))]
    assert main([*args, "--out", str(out), "--json", "--batch-size", "16"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert out.is_file() and result["video"] == str(out) and result["fps"] == 25
    assert result["frames"] == int(result["seconds_of_audio"] * 25) and result["lost_frames"] == []
    assert result["facesim"]["model"] == "dlib_resnet_v1"


def test_talk_prepared_folder_is_made_then_read_back_with_the_same_video(tmp_path, astronaut, capsys) -> None:
    from genface.media import read_video, write_video

    write_video(tmp_path / "clip.mp4", np.stack([astronaut] * 4), fps=25)
    speech = str(_speech(tmp_path / "s.wav"))
    base = ["talk", "--model", "tiny", "--face", str(tmp_path / "clip.mp4"), "--audio", speech, "--no-metrics"]
    prepared = tmp_path / "prepared"
    assert main([*base, "--out", str(tmp_path / "a.mp4"), "--prepared", str(prepared)]) == 0
    assert (prepared / "prepared.json").is_file()
    stamp = (prepared / "prepared.json").stat().st_mtime_ns
    assert main([*base, "--out", str(tmp_path / "b.mp4"), "--prepared", str(prepared)]) == 0
    assert (prepared / "prepared.json").stat().st_mtime_ns == stamp  # read back, not made again
    assert (read_video(tmp_path / "a.mp4")[0] == read_video(tmp_path / "b.mp4")[0]).all()
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "c.mp4"), "--prepared", speech]) == 1
    assert "is a file" in capsys.readouterr().err and not (tmp_path / "c.mp4").exists()


def test_talk_refuses_a_photo_without_a_face(tmp_path, capsys) -> None:
    save_image(np.full((200, 200, 3), 90, np.uint8), tmp_path / "wall.png")
    out = tmp_path / "out.mp4"
    code = main(
        ["talk", "--model", "tiny", "--face", str(tmp_path / "wall.png"), "--audio", str(_speech(tmp_path / "s.wav")),
         "--out", str(out)]
    )  # fmt: skip
    assert code == 1 and "No face found" in capsys.readouterr().err and not out.exists()


def test_convert_musetalk_layout_to_one_safetensors_folder(tmp_path, capsys) -> None:
    from genface.pipelines.talking_face.tiny import tiny_pipeline

    pipe = tiny_pipeline()
    models = tmp_path / "models"
    (models / "musetalkV15").mkdir(parents=True)
    (models / "musetalkV15" / "musetalk.json").write_text(json.dumps(dict(pipe.unet.config)))
    torch.save(pipe.unet.state_dict(), models / "musetalkV15" / "unet.pth")
    pipe.vae.save_pretrained(tmp_path / "vae")
    pipe.audio_encoder.save_pretrained(tmp_path / "whisper")
    pipe.feature_extractor.save_pretrained(tmp_path / "whisper")
    out = tmp_path / "converted"
    assert (
        main(["convert", str(models), str(out), "--vae", str(tmp_path / "vae"), "--whisper", str(tmp_path / "whisper")])
        == 0
    )
    assert "diffusers layout" in capsys.readouterr().out
    assert (out / "model_index.json").is_file() and (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()


# --- LatentSync, the silence modes and MuseTalk's blends ------------------------------------------------------


def _with_a_pause(folder: Path) -> Path:
    """espeak-ng's "Hi.", 0.6 s of digital silence, "Hi." again."""
    import soundfile as sf

    hi, rate = sf.read(_speech(folder / "hi.wav"), dtype="float32")
    sf.write(folder / "pause.wav", np.concatenate([hi, np.zeros(int(0.6 * rate), np.float32), hi]), rate)
    return folder / "pause.wav"


def test_talk_tiny_latentsync_writes_a_marked_mp4_of_the_speech_keeping_the_source_in_its_pause(
    tmp_path, astronaut, capsys
) -> None:
    from genface.media import load_audio, read_video
    from genface.models.talking.audio import frame_count
    from genface.pipelines.talking_face.dubbing import silence_weights
    from genface.provenance import verify

    save_image(astronaut, tmp_path / "me.png")
    speech, out = _with_a_pause(tmp_path), tmp_path / "ls.mp4"
    args = ["talk", "--model", "tiny-latentsync", "--face", str(tmp_path / "me.png"), "--audio", str(speech)]
    assert main([*args, "--out", str(out), "--silence", "source", "--steps", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # MuseTalk's fields (test_talk_tiny_writes_a_marked_video_with_metrics), the model and LatentSync's seed
    assert result["video"] == str(out) and result["model"] == "tiny-latentsync" and result["seed"] == 1247
    assert result["lost_frames"] == [] and result["facesim"]["model"] == "dlib_resnet_v1" and "lip_sync" in result
    mark = verify(out)
    assert mark["synthetic"] and mark["metadata"]["model"] == "tiny-latentsync"
    frames = read_video(out)[0]
    heard = load_audio(speech)
    assert len(frames) == result["frames"] == frame_count(len(heard), 25) and result["fps"] == 25
    assert abs(len(frames) / 25 - len(heard) / 16000) <= 1 / 25
    assert abs(len(load_audio(out)) - len(heard)) / 16000 < 0.1  # the speech is the video's track
    # where the tiny model draws its (noise) mouth, the pause keeps the photo's pixels
    weights = silence_weights(heard, 25.0, len(frames), "source")
    drawn = np.abs(frames[0].astype(int) - astronaut).max(axis=-1) > 40
    change = np.abs(frames.astype(int) - astronaut)[:, drawn].mean(axis=(1, 2))
    assert (weights == 0).sum() >= 10 and (weights == 1).sum() >= 10
    assert change[weights == 0].max() < 5 and change[weights == 1].min() > 20


def test_talk_blend_realtime_differs_from_inference(tmp_path, astronaut) -> None:
    from genface.media import read_video

    save_image(astronaut, tmp_path / "me.png")
    args = ["talk", "--model", "tiny", "--face", str(tmp_path / "me.png"), "--audio", str(_speech(tmp_path / "s.wav"))]
    for blend in ("inference", "realtime"):
        assert main([*args, "--out", str(tmp_path / f"{blend}.mp4"), "--blend", blend, "--no-metrics"]) == 0
    inference, realtime = (read_video(tmp_path / f"{blend}.mp4")[0] for blend in ("inference", "realtime"))
    assert inference.shape == realtime.shape
    changed = np.abs(inference.astype(int) - realtime).max(axis=-1) > 8
    assert 0 < changed[0].mean() < 0.2  # the mask's edge, not the frame


class _Stop(Exception):
    pass


def _recorded(monkeypatch, argv: list[str], output: Any = None) -> dict[str, Any]:
    """What `genface talk ARGV` gives load_pipeline, the pipeline call and its prepare(), the models not run: the
    call stops the command, or returns ``output``."""
    import genface.pipelines
    from genface.cli import common
    from genface.errors import GenfaceError

    seen: dict[str, Any] = {}

    class Pipe:
        def prepare(self, face, **kwargs):
            seen["prepare"] = kwargs
            return face

        def __call__(self, face, audio, **kwargs):
            seen["call"] = kwargs
            if output is None:
                raise GenfaceError("stopped before the model")
            return output

    def load(task, model, *, dtype=None, **kwargs):
        seen["model"], seen["load"] = model, kwargs
        return Pipe()

    monkeypatch.setattr(genface.pipelines, "load_pipeline", load)
    monkeypatch.setattr(common, "place", lambda *a: None)
    code = main(["talk", *argv, "--face", "me.png", "--audio", "s.wav", "--out", "o.mp4"])
    assert code == (1 if output is None else 0)
    return seen


def test_talk_passes_each_models_options_to_its_pipeline(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stage2_512.yaml").write_text("model: {}\n")
    seen = _recorded(monkeypatch, ["--model", "tiny-latentsync", "--silence", "closed"])
    assert seen["call"]["generator"].initial_seed() == 1247 and seen["call"]["silence"] == "closed"
    assert {"num_inference_steps", "guidance_scale", "batch_size", "blend"}.isdisjoint(seen["call"])
    seen = _recorded(monkeypatch, ["--model", "tiny-latentsync", "--steps", "3", "--guidance", "2", "--seed", "5"])
    call = seen["call"]
    assert (call["num_inference_steps"], call["guidance_scale"], call["generator"].initial_seed()) == (3, 2.0, 5)
    assert call["silence"] == "animate"
    line = ["--model", "latentsync", "--unet-config", "stage2_512.yaml", "--vae", "vae/", "--whisper", "whisper/"]
    seen = _recorded(monkeypatch, line)
    assert seen["model"] == "latentsync"
    assert seen["load"] == {"config": "stage2_512.yaml", "vae": "vae/", "audio_encoder": "whisper/"}
    seen = _recorded(monkeypatch, ["--model", "latentsync", "--resolution", "256"])
    assert seen["load"] == {"resolution": 256}
    line = ["--model", "tiny", "--batch-size", "4", "--blend", "realtime", "--silence", "source"]
    seen = _recorded(monkeypatch, line)
    assert {k: seen["call"][k] for k in ("batch_size", "blend", "silence")} == {
        "batch_size": 4, "blend": "realtime", "silence": "source"
    }  # fmt: skip
    assert "generator" not in seen["call"] and seen["load"] == {}
    seen = _recorded(monkeypatch, ["--prepared", "clip_prepared"])
    assert seen["model"] == "musetalk" and seen["prepare"]["blend"] == "inference" and "blend" not in seen["call"]
    assert "stopped before the model" in capsys.readouterr().err


def test_talk_latentsync_prints_musetalks_lines_and_its_seed(tmp_path, monkeypatch, capsys) -> None:
    from types import SimpleNamespace

    monkeypatch.chdir(tmp_path)
    output = SimpleNamespace(
        path=Path("o.mp4"), fps=25.0, pitch=np.zeros(30), audio=np.zeros(19200), lost_frames=[4, 5], facesim=None,
        lip_sync=None,
    )  # fmt: skip
    _recorded(monkeypatch, ["--model", "tiny-latentsync", "--seed", "7"], output)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("video written: o.mp4 (30 frames at 25 fps; seed 7; made in ")
    assert lines[1:] == [
        "face not found in 2 source frame(s); the nearest box was held there",
        "FaceSim: not measured (the face engine has no recognizer)",
        "lip-sync proxy: not measured (it needs 3 frames with a face, and a mouth and a voice that vary)",
        "note: the tiny model has random weights; its mouths are noise. Use --model latentsync.",
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model", "tiny", "--steps", "2"], r"--steps is LatentSync's; --model tiny is MuseTalk, .*latentsync"),
        (["--model", "musetalk", "--seed", "1247", "--guidance", "1.5"], "--guidance, --seed are LatentSync's"),
        (["--model", "tiny", "--unet-config", "c.yaml"], "--unet-config is LatentSync's"),
        (["--model", "tiny-latentsync", "--batch-size", "8"], r"--batch-size is MuseTalk's; .*--model musetalk"),
        (["--model", "latentsync", "--blend", "inference", "--prepared", "p"], "--prepared, --blend are MuseTalk's"),
        (["--model", "tiny", "--vae", "vae/"], "--vae choose published weights, and --model tiny builds tiny random"),
        (["--model", "tiny-latentsync", "--resolution", "256"], "--resolution choose published weights"),
        (["--model", "tiny-wav2lip"], "Unknown tiny model 'tiny-wav2lip'"),
    ],
)
def test_talk_refuses_the_other_models_options_before_loading(tmp_path, monkeypatch, capsys, options, message) -> None:
    import re

    import genface.pipelines

    monkeypatch.setattr(genface.pipelines, "load_pipeline", lambda *a, **k: pytest.fail("a model was loaded"))
    out = tmp_path / "out.mp4"
    assert main(["talk", "--face", "me.png", "--audio", "s.wav", "--out", str(out), *options]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.search(message, err), err
    assert not out.exists()


def _openai_whisper(whisper: torch.nn.Module) -> dict[str, Any]:
    """transformers' WhisperModel in OpenAI's checkpoint layout (LatentSync's whisper/tiny.pt): dims and
    model_state_dict, the names mapped back."""
    from genface.models.latentsync.published import _WHISPER_NAMES

    state = {}
    for name, tensor in whisper.state_dict().items():
        for old, new in reversed(_WHISPER_NAMES):
            name = name.replace(new, old)
        state[name] = tensor
    c = whisper.config
    dims = dict(n_mels=c.num_mel_bins, n_audio_ctx=c.max_source_positions, n_audio_state=c.d_model,
                n_audio_head=c.encoder_attention_heads, n_audio_layer=c.encoder_layers, n_vocab=c.vocab_size,
                n_text_ctx=c.max_target_positions, n_text_state=c.d_model, n_text_head=c.decoder_attention_heads,
                n_text_layer=c.decoder_layers)  # fmt: skip
    return {"dims": dims, "model_state_dict": state}


def test_convert_latentsync_published_layout_loads_back_equal(tmp_path, capsys) -> None:
    import yaml
    from transformers import WhisperConfig, WhisperModel

    from genface.pipelines import LatentSyncPipeline
    from genface.pipelines.talking_face.tiny_latentsync import TINY_RESOLUTION, TINY_UNET, tiny_pipeline

    pipe = tiny_pipeline()
    width = pipe.audio_encoder.config.d_model  # OpenAI's checkpoints have no feed-forward width: 4 x theirs
    wider = {**pipe.audio_encoder.config.to_dict(), "encoder_ffn_dim": 4 * width, "decoder_ffn_dim": 4 * width}
    pipe.audio_encoder = WhisperModel(WhisperConfig(**wider)).eval()
    published = tmp_path / "LatentSync-1.6"  # their Hub repository's layout, at toy size
    (published / "whisper").mkdir(parents=True)
    torch.save({"state_dict": pipe.unet.state_dict()}, published / "latentsync_unet.pt")
    torch.save(_openai_whisper(pipe.audio_encoder), published / "whisper" / "tiny.pt")
    config = tmp_path / "stage2_tiny.yaml"
    data = {"num_frames": 16, "resolution": TINY_RESOLUTION, "audio_feat_length": [2, 2]}
    config.write_text(yaml.safe_dump({"data": data, "model": TINY_UNET}))
    pipe.vae.save_pretrained(tmp_path / "vae")
    out = tmp_path / "converted"
    line = ["convert", str(published / "latentsync_unet.pt"), str(out), "--unet-config", str(config)]
    assert main([*line, "--vae", str(tmp_path / "vae")]) == 0
    assert "LatentSync at 128 px" in capsys.readouterr().out
    assert not list(out.rglob("*.pt")) and (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = LatentSyncPipeline.from_pretrained(out, face_analyzer=pipe.face_analyzer)
    assert loaded.config.resolution == TINY_RESOLUTION
    for name in ("unet", "vae", "audio_encoder"):
        theirs, ours = getattr(pipe, name).state_dict(), getattr(loaded, name).state_dict()
        assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in theirs), name
    # the folder is found by itself too; the wrong files get one line each
    (published / "copy.pt").write_bytes((published / "latentsync_unet.pt").read_bytes())
    (published / "cut").mkdir()
    (published / "cut" / "latentsync_unet.pt").write_bytes((published / "latentsync_unet.pt").read_bytes()[:999])
    torch.save({"state_dict": {"conv_in.weight": torch.zeros(1)}}, tmp_path / "checkpoint.pt")
    capsys.readouterr()
    for source, options, message in [
        (published / "copy.pt", ["--latentsync"], "read as latentsync_unet.pt"),
        (published / "cut", [], "not a readable PyTorch checkpoint"),
        (tmp_path / "checkpoint.pt", ["--resolution", "256"], "--unet-config and --resolution are LatentSync's"),
        (published, ["--resolution", "100"], "--resolution must be a multiple of 64"),
    ]:
        code = main(["convert", str(source), str(tmp_path / "again"), "--vae", str(tmp_path / "vae"), *options])
        err = capsys.readouterr().err
        assert code == 1 and message in err, err
        assert err.count("\n") == 1 and not (tmp_path / "again").exists()


def test_talk_offers_the_pipelines_silence_modes_and_blends() -> None:
    from genface.cli import talk
    from genface.pipelines.talking_face.dubbing import SILENCE_MODES
    from genface.pipelines.talking_face.regions import FEATHER

    assert talk.SILENCE == SILENCE_MODES and talk.BLENDS == tuple(FEATHER)


def test_talk_latentsync_asks_the_hub_for_its_published_weights(tmp_path, monkeypatch, capsys) -> None:
    """`--model latentsync` is ByteDance/LatentSync-1.6 on the Hub (a repo id with a dot, once taken for a file)."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "out.mp4"
    assert main(["talk", "--model", "latentsync", "--face", "me.png", "--audio", "s.wav", "--out", str(out)]) == 1
    assert "Cannot reach the Hugging Face Hub for 'ByteDance/LatentSync-1.6'" in capsys.readouterr().err
    assert not out.exists()
