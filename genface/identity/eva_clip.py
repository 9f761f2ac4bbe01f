"""EVA02-CLIP vision tower and the CLIP-vision identity features ConsisID feeds its facial extractor.

Parameter names follow the published EVA-CLIP checkpoints (``visual.*`` in
``EVA02_CLIP_L_336_psz14_s6B.pt``), so they load unchanged. timm and open_clip both implement EVA02,
but they need torchvision, which is why genface carries this ~150-line tower instead (parity with the
reference implementation is tested).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from genface.errors import MissingWeightsError

#: ConsisID's checkpoint file name inside ``face_encoder/``.
CHECKPOINT_NAME = "EVA02_CLIP_L_336_psz14_s6B.pt"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...): rotation of interleaved pairs."""
    pairs = x.unflatten(-1, (-1, 2))
    return torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)


def rope_tables(grid: int, head_dim: int, pt_grid: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (grid*grid, head_dim) of EVA02's 2D rotary embedding: half the head dimension
    rotates with the row, half with the column, frequencies interpolated from the pre-training grid."""
    half = head_dim // 2
    inv_freq = 1.0 / theta ** (torch.arange(0, half, 2)[: half // 2].float() / half)
    positions = torch.arange(grid) / grid * pt_grid
    angles = torch.outer(positions, inv_freq).repeat_interleave(2, dim=-1)  # (grid, half)
    table = torch.cat(
        [angles[:, None, :].expand(grid, grid, half), angles[None, :, :].expand(grid, grid, half)], dim=-1
    ).reshape(grid * grid, head_dim)
    return table.cos(), table.sin()


class _Attention(nn.Module):
    def __init__(self, width: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.inner_attn_ln = nn.LayerNorm(width, eps=eps)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, tokens, self.heads, -1).transpose(1, 2)

        q = heads(F.linear(x, self.q_proj.weight, self.q_bias))
        k = heads(self.k_proj(x))
        v = heads(F.linear(x, self.v_proj.weight, self.v_bias))
        # Rotary embedding on the patch tokens only (the class token stays as it is).
        q = torch.cat([q[:, :, :1], q[:, :, 1:] * cos + _rotate_pairs(q[:, :, 1:]) * sin], dim=2).type_as(v)
        k = torch.cat([k[:, :, :1], k[:, :, 1:] * cos + _rotate_pairs(k[:, :, 1:]) * sin], dim=2).type_as(v)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, tokens, width)
        return self.proj(self.inner_attn_ln(out))


class _SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.w1 = nn.Linear(width, hidden)
        self.w2 = nn.Linear(width, hidden)
        self.ffn_ln = nn.LayerNorm(hidden, eps=eps)
        self.w3 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w3(self.ffn_ln(F.silu(self.w1(x)) * self.w2(x)))


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, hidden: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.attn = _Attention(width, heads, eps)
        self.norm2 = nn.LayerNorm(width, eps=eps)
        self.mlp = _SwiGLU(width, hidden, eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class EvaClipVisionModel(ModelMixin, ConfigMixin):
    """EVA02-CLIP vision tower (defaults: EVA02-CLIP-L-14-336 as ConsisID uses it).

    ``forward`` returns the projected image embedding (``embed_dim``) and the hidden states entering
    the blocks listed in ``hidden_state_layers`` (ConsisID: 4, 8, 12, 16, 20).
    """

    _no_split_modules = ["_Block"]

    @register_to_config
    def __init__(
        self,
        image_size: int = 336,
        patch_size: int = 14,
        width: int = 1024,
        layers: int = 24,
        head_width: int = 64,
        mlp_ratio: float = 2.6667,
        embed_dim: int = 768,
        pt_hw_seq_len: int = 16,
        layer_norm_eps: float = 1e-6,
        hidden_state_layers: Sequence[int] = (4, 8, 12, 16, 20),
    ) -> None:
        super().__init__()
        if width % head_width or image_size % patch_size:
            raise ValueError(
                f"EVA-CLIP config: width {width} must be a multiple of head_width {head_width}, and image_size "
                f"{image_size} of patch_size {patch_size}."
            )
        grid = image_size // patch_size
        self.patch_embed = _PatchEmbed(patch_size, width)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, width))
        hidden = int(width * mlp_ratio)
        self.blocks = nn.ModuleList(_Block(width, width // head_width, hidden, layer_norm_eps) for _ in range(layers))
        self.norm = nn.LayerNorm(width, eps=layer_norm_eps)
        self.head = nn.Linear(width, embed_dim)
        cos, sin = rope_tables(grid, head_width, pt_hw_seq_len)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        size = self.config.image_size
        if pixel_values.shape[-2:] != (size, size):
            raise ValueError(f"EVA-CLIP expects {size}x{size} images, got {tuple(pixel_values.shape[-2:])}.")
        x = self.patch_embed(pixel_values.to(self.pos_embed.dtype))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        cos, sin = self.rope_cos.to(x.dtype), self.rope_sin.to(x.dtype)
        hidden = []
        for index, block in enumerate(self.blocks):
            if index in self.config.hidden_state_layers:
                hidden.append(x)
            x = block(x, cos, sin)
        return self.head(self.norm(x)[:, 0]), hidden

    @staticmethod
    def config_from_state_dict(state: dict[str, torch.Tensor], head_width: int = 64) -> dict[str, object]:
        """The tower's config read off its weights' shapes (heads cannot be read off: ``head_width``)."""
        width = state["pos_embed"].shape[-1]
        patch_size = state["patch_embed.proj.weight"].shape[-1]
        grid = round((state["pos_embed"].shape[1] - 1) ** 0.5)
        layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        return {
            "image_size": grid * patch_size,
            "patch_size": patch_size,
            "width": width,
            "layers": layers,
            "head_width": head_width,
            "mlp_ratio": state["blocks.0.mlp.w1.weight"].shape[0] / width,
            "embed_dim": state["head.weight"].shape[0],
            # EVA-CLIP's rule: the states entering every 4th block, up to block 20.
            "hidden_state_layers": [i for i in range(1, layers) if i <= 20 and i % 4 == 0],
        }

    def eva_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights in the published layout (``visual.*``), for ``torch.save`` as ConsisID ships them."""
        return {f"visual.{k}": v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

    @classmethod
    def from_eva_checkpoint(cls, path: str | os.PathLike, **config: object) -> EvaClipVisionModel:
        """Load the vision tower from a published EVA-CLIP ``.pt`` (the whole CLIP, or its ``visual.*``).

        Without ``config``, the shapes of the weights decide it (EVA02-CLIP-L-14-336 for ConsisID's file).
        """
        from genface.hub import load_checked, load_state_dict

        state = load_state_dict(path)
        for key in ("model", "module", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
        state = {k.removeprefix("module."): v for k, v in state.items()}
        if any(k.startswith("visual.") for k in state):
            state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
        # RoPE tables are recomputed from the config; published files may carry them as buffers.
        state = {k: v for k, v in state.items() if not k.endswith(("freqs_cos", "freqs_sin"))}
        if not config and "pos_embed" in state:
            config = cls.config_from_state_dict(state)
        what = f"{path} does not match this EVA-CLIP vision tower {dict(config) or '(EVA02-CLIP-L-14-336)'}"
        return load_checked(lambda: cls(**config), state, what)


class ClipVisionEncoder:
    """CLIP-vision identity features as ConsisID computes them from an aligned face crop.

    The crop's non-face regions (background, hair's surroundings, clothes, neck, ears) are painted
    white when a parsing map is given, the crop is turned to gray, resized to the model's input and
    normalised with OpenAI CLIP statistics. Returns the L2-normalised embedding and the hidden states.
    """

    def __init__(
        self, model: EvaClipVisionModel, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> None:
        model = model.to(device)
        self.model = (model if model.dtype == dtype else model.to(dtype)).eval()
        self.device = torch.device(device)
        self.dtype = dtype
        self.name = "eva02_clip_l14_336" if model.config.width == 1024 else f"eva02_clip_w{model.config.width}"

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str = "cpu", **config: object) -> ClipVisionEncoder:
        """From a published ``.pt`` file, a folder holding one, or a folder written by ``save_pretrained``."""
        path = Path(path).expanduser()
        if path.is_dir() and (path / "config.json").is_file():
            return cls(EvaClipVisionModel.from_pretrained(str(path)), device)
        file = path / CHECKPOINT_NAME if path.is_dir() else path
        if not file.is_file():
            raise MissingWeightsError(f"EVA-CLIP weights not found: {file} (ConsisID keeps them in face_encoder/).")
        return cls(EvaClipVisionModel.from_eva_checkpoint(file, **config), device)

    def preprocess(self, crops: np.ndarray, not_face: np.ndarray | None = None) -> torch.Tensor:
        """NxSxSx3 uint8 crops (and NxSxS boolean masks of what to paint white) -> model input."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255.0
        gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None].expand(-1, 3, -1, -1)
        if not_face is not None:
            gray = torch.where(torch.from_numpy(np.asarray(not_face))[:, None], torch.ones_like(gray), gray)
        size = self.model.config.image_size
        # Not clamped: torchvision's resize of a float tensor, which ConsisID uses, keeps the bicubic overshoot.
        x = F.interpolate(gray, (size, size), mode="bicubic", align_corners=False, antialias=True)
        mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device, self.dtype)

    @torch.inference_mode()
    def encode(self, crops: np.ndarray, not_face: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(N x embed_dim unit embeddings, N x layers x tokens x width hidden states), float32."""
        embeds, hidden = self.model(self.preprocess(crops, not_face))
        embeds = F.normalize(embeds.float(), dim=-1)
        return embeds.cpu().numpy(), torch.stack(hidden, dim=1).float().cpu().numpy()
