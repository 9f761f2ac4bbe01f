"""LatentSync's published files: the UNet checkpoint with its configuration, Whisper's ``tiny.pt``, the versions.

ByteDance publishes ``latentsync_unet.pt`` (a pickle: ``{"state_dict": ...}``, read here with ``weights_only``)
and ``whisper/tiny.pt`` (OpenAI's checkpoint) on the Hub as ``ByteDance/LatentSync-1.6`` and ``-1.5``; the UNet's
configuration lives in the GitHub repository (``configs/unet/stage2_512.yaml`` for 1.6, ``stage2.yaml`` for 1.5).
The two versions are the same network at two resolutions (1.6: 512 px, 1.5: 256 px; their changelog: "the only
modification was upgrading the training dataset to 512 x 512 videos"), so a checkpoint cannot tell its version by
its tensors: a 1.6 checkpoint run at 256 px, or a 1.5 one at 512, gives broken mouths without an error (their
issue 271). The two published files differ in size, which is checked before anything is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from genface.errors import InvalidArgumentError, MissingWeightsError

UNET_FILE = "latentsync_unet.pt"
WHISPER_FILE = "whisper/tiny.pt"
HUB_IDS = {"1.6": "ByteDance/LatentSync-1.6", "1.5": "ByteDance/LatentSync-1.5"}
#: Resolution (face crop side in pixels) each version was trained at (``data.resolution`` of its config).
RESOLUTIONS = {"1.6": 512, "1.5": 256}
#: Byte size -> version of the published ``latentsync_unet.pt`` files (1.6: SHA-256 0a478e89...e98316d3,
#: 1.5: 6440b49a...26e23f51).
PUBLISHED_SIZES = {5_072_222_488: "1.6", 5_072_348_184: "1.5"}
#: The ``model:`` section of ``configs/unet/stage2_512.yaml`` (and, identically, ``stage2.yaml``).
UNET_CONFIG: dict[str, Any] = {
    "act_fn": "silu",
    "add_audio_layer": True,
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 384,
    "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
    "mid_block_type": "UNetMidBlock3DCrossAttn",
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 13,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "resnet_time_scale_shift": "default",
    "use_motion_module": True,
    "motion_module_resolutions": [1, 2, 4, 8],
    "motion_module_mid_block": False,
    "motion_module_decoder_only": False,
    "motion_module_type": "Vanilla",
    "motion_module_kwargs": {
        "num_attention_heads": 8,
        "num_transformer_block": 1,
        "attention_block_types": ["Temporal_Self", "Temporal_Self"],
        "temporal_position_encoding": True,
        "temporal_position_encoding_max_len": 24,
        "temporal_attention_dim_div": 1,
        "zero_initialize": True,
    },
}
#: ``configs/scheduler_config.json``: the DDIM schedule LatentSync samples with.
SCHEDULER_CONFIG: dict[str, Any] = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "trained_betas": None,
}
#: What LatentSync's inference takes from the ``data:`` section: frames per clip and the audio window.
NUM_FRAMES = 16
AUDIO_FEAT_LENGTH = (2, 2)


def read_config(path: str | os.PathLike) -> tuple[dict[str, Any], int]:
    """The UNet configuration (``model:``) and ``data.resolution`` of one of LatentSync's ``configs/unet/*.yaml``;
    settings genface does not follow (frames per clip, audio window, mask) are refused in one line."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"LatentSync config not found: {path} (their configs/unet/stage2_512.yaml).")
    try:
        config = yaml.safe_load(path.read_text())
        model, data = dict(config["model"]), dict(config.get("data", {}))
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{path} is not a LatentSync UNet config (no model: section): {exc}") from exc
    resolution = int(data.get("resolution", RESOLUTIONS["1.6"]))
    if data.get("num_frames", NUM_FRAMES) != NUM_FRAMES or tuple(data.get("audio_feat_length", AUDIO_FEAT_LENGTH)) != (
        AUDIO_FEAT_LENGTH
    ):
        raise InvalidArgumentError(
            f"{path}: genface runs LatentSync's published clips of {NUM_FRAMES} frames and audio windows "
            f"{list(AUDIO_FEAT_LENGTH)}; got {data.get('num_frames')} and {data.get('audio_feat_length')}."
        )
    if Path(str(data.get("mask_image_path", "mask.png"))).name != "mask.png":
        raise InvalidArgumentError(f"{path}: only LatentSync's mask.png is built in; got {data['mask_image_path']}.")
    return model, resolution


def published_version(path: str | os.PathLike) -> str | None:
    """ "1.6" or "1.5" for a published ``latentsync_unet.pt`` (by its size), None for any other file."""
    return PUBLISHED_SIZES.get(Path(path).stat().st_size)


def check_resolution(path: str | os.PathLike, resolution: int, what: str) -> None:
    """Refuse a published checkpoint with the other version's resolution, in one line before it is read."""
    version = published_version(path)
    if version is not None and RESOLUTIONS[version] != resolution:
        other = next(v for v in RESOLUTIONS if v != version)
        config = "configs/unet/stage2_512.yaml" if version == "1.6" else "configs/unet/stage2.yaml"
        raise InvalidArgumentError(
            f"{path} is LatentSync {version}'s checkpoint (trained at {RESOLUTIONS[version]} px) but {what} asks for "
            f"{resolution} px (LatentSync {other}'s): use {config} / resolution={RESOLUTIONS[version]}, or "
            f"{HUB_IDS[other]}'s checkpoint."
        )


def unet_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The UNet's tensors from ``latentsync_unet.pt`` (``weights_only``; their ``{"state_dict": ...}`` wrapper, or a
    bare state dict) or a ``.safetensors`` file."""
    from genface.hub import load_state_dict

    state = load_state_dict(path)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MissingWeightsError(f"{path} holds no LatentSync UNet state dict.")
    return state


#: OpenAI Whisper checkpoint names -> transformers' ``WhisperModel`` names (replaced in this order).
_WHISPER_NAMES = (
    (".attn.query.", ".self_attn.q_proj."), (".attn.key.", ".self_attn.k_proj."),
    (".attn.value.", ".self_attn.v_proj."), (".attn.out.", ".self_attn.out_proj."),
    (".cross_attn.query.", ".encoder_attn.q_proj."), (".cross_attn.key.", ".encoder_attn.k_proj."),
    (".cross_attn.value.", ".encoder_attn.v_proj."), (".cross_attn.out.", ".encoder_attn.out_proj."),
    (".cross_attn_ln.", ".encoder_attn_layer_norm."), (".attn_ln.", ".self_attn_layer_norm."),
    (".mlp_ln.", ".final_layer_norm."), (".mlp.0.", ".fc1."), (".mlp.2.", ".fc2."), (".blocks.", ".layers."),
    ("encoder.ln_post.", "encoder.layer_norm."), ("decoder.ln.", "decoder.layer_norm."),
    ("encoder.positional_embedding", "encoder.embed_positions.weight"),
    ("decoder.positional_embedding", "decoder.embed_positions.weight"),
    ("decoder.token_embedding.", "decoder.embed_tokens."),
)  # fmt: skip


_SPECIAL_TOKENS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")


def load_openai_whisper(path: str | os.PathLike) -> Any:
    """transformers' ``WhisperModel`` from OpenAI's checkpoint (LatentSync's ``whisper/tiny.pt``: ``dims`` and
    ``model_state_dict``), read with ``weights_only``; the names mapped as transformers' conversion script does."""
    from transformers import WhisperConfig, WhisperModel

    from genface.hub import load_checked, load_state_dict

    checkpoint = load_state_dict(path)
    try:
        dims, state = checkpoint["dims"], checkpoint["model_state_dict"]
    except (KeyError, TypeError) as exc:
        raise MissingWeightsError(f"{path} is not an OpenAI Whisper checkpoint (dims, model_state_dict).") from exc
    config = WhisperConfig(
        vocab_size=dims["n_vocab"], num_mel_bins=dims["n_mels"], d_model=dims["n_audio_state"],
        encoder_layers=dims["n_audio_layer"], encoder_attention_heads=dims["n_audio_head"],
        decoder_layers=dims["n_text_layer"], decoder_attention_heads=dims["n_text_head"],
        encoder_ffn_dim=4 * dims["n_audio_state"], decoder_ffn_dim=4 * dims["n_text_state"],
        max_source_positions=dims["n_audio_ctx"], max_target_positions=dims["n_text_ctx"],
        # OpenAI's vocabularies hold the default special tokens; a smaller (test) one gets its first token for each
        **({} if dims["n_vocab"] > 50258 else dict.fromkeys(_SPECIAL_TOKENS, 0)),
    )  # fmt: skip
    renamed = {}
    for name, tensor in state.items():
        for old, new in _WHISPER_NAMES:
            name = name.replace(old, new)
        renamed[name] = tensor
    return load_checked(lambda: WhisperModel(config), renamed, f"{path} (OpenAI Whisper)")


def load_unet(
    path: str | os.PathLike, config: str | os.PathLike | dict[str, Any] | None = None, resolution: int | None = None
) -> tuple[Any, int]:
    """LatentSync's UNet from ``latentsync_unet.pt`` (or a safetensors file of its tensors) and the resolution it
    runs at. ``config``: one of their ``configs/unet/*.yaml`` files, or the ``model:`` dict (default: the published
    one); ``resolution``: the crop side (default: the config file's, else the published checkpoint's version's, else
    512). A published checkpoint asked to run at the other version's resolution is refused before it is read; the
    tensors are checked against the configuration's names and shapes (on the meta device) before any is loaded."""
    from genface.models.latentsync.unet import LatentSyncUNet

    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(
            f"No LatentSync UNet at {path}: expected {UNET_FILE} (`hf download {HUB_IDS['1.6']} {UNET_FILE} "
            "--local-dir DIR`)."
        )
    what = "resolution"
    model = UNET_CONFIG
    if isinstance(config, dict):
        model = config
    elif config is not None:
        model, from_file = read_config(config)
        if resolution is not None and resolution != from_file:
            raise InvalidArgumentError(f"resolution={resolution} contradicts {config} (data.resolution {from_file}).")
        resolution, what = from_file, str(config)
    version = published_version(path)
    if resolution is None:
        resolution = RESOLUTIONS[version or "1.6"]
    if not (isinstance(resolution, int) and resolution % 64 == 0 and 64 <= resolution <= 1024):
        raise InvalidArgumentError(
            f"resolution must be a multiple of 64 from 64 to 1024 (published: 512 for v1.6, 256 for v1.5); got "
            f"{resolution}."
        )
    check_resolution(path, resolution, what)
    state = unet_state_dict(path)
    with torch.device("meta"):
        unet = LatentSyncUNet.from_config(model)
    expected = {k: v.shape for k, v in unet.state_dict().items()}
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(s)}" for k, s in expected.items() if k in state and state[k].shape != s
    ]
    if missing or unexpected or wrong:
        raise MissingWeightsError(
            f"{path} does not fit the LatentSync UNet config: missing {missing[:3]}, unexpected {unexpected[:3]}, "
            f"wrong shapes {wrong[:2]}. Use their configs/unet/stage2_512.yaml (or stage2.yaml) with its checkpoint."
        )
    unet.load_state_dict(state, assign=True)
    return unet.eval(), resolution
