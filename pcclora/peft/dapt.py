"""DAPT: dynamic adapters with internal prompts, after LMD0311/DAPT.

Zhou et al., "Dynamic Adapter Meets Prompt Tuning: Parameter-Efficient Transfer Learning for
Point Cloud Analysis" (CVPR 2024); architecture, initialisation and trained set read from the
official ``models/DAPT.py``, ``cfgs/finetune_scan_*_dapt.yaml`` and ``tools/builder.py``
(``part: dapt``: names containing ``cls``, ``tfts`` or ``Adapter``).

- **Dynamic adapter**, parallel to each block's MLP, reading the MLP's input:
  LN → s = ReLU(W_s x) (one scale per token) and GELU(W_down x) → dropout → W_up, times s.
  W_down, W_s: Kaiming-uniform (a = √5), biases zero; W_up and its bias zero. Bottleneck 64.
- **Internal prompts**: after each block, GELU(adapter output) averaged over all tokens,
  scaled and shifted, is inserted after the cls token (12 prompt tokens after 12 blocks).
- **Scale and shift (SSF, ``tfts``)**, γ ~ N(1, 0.02) and β ~ N(0, 0.02), where the official code
  puts them: on the patch tokens after the encoder, after norm1, qkv, proj, norm2, fc1 and fc2
  of every block, on each internal prompt, and after the final norm.
- **Positions are added once**, before the first block (the official ``x = x + pos`` before
  ``blocks(x)``), not before every block as in Point-MAE.
- Head over concat[cls, mean of the prompts, max over the patches] (3C).

Trained: 1,087,771 on Point-MAE with 15 classes = adapters 12 × 50,753 + SSF 12 × 9,216 + 1,536 +
head 365,839 + cls token/position 768. Not zero-initialised (SSF draws γ, β around the identity,
the prompt tokens and the positions-once change the forward). SSF on linear layers and layer
norms merges into their weights (qkv has no bias, so its shift stays an addition); the adapters,
the prompts and the SSF on the encoder tokens and on the prompts keep running.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backbones.errors import ConfigError

from .hooks import TokenHook, module_device_dtype, require_backbone, require_block_halves
from .layers import ScaleShiftLayerNorm, ScaleShiftLinear
from .options import Option, boolean, int_at_least, number_in, one_of

HOOK_NAME = "dapt"

OPTIONS = (
    Option("bottleneck", 64, int_at_least(1), "adapter bottleneck width (the official config's rank)"),
    Option("adapter_dropout", 0.2, number_in(0.0, 1.0), "dropout inside the adapters", structural=False),
    Option("class_token", True, boolean, "the head reads the cls token"),
    Option("prompt_token", "mean", one_of("mean", "max", "none"), "the head reads the prompts' mean or max (or not)"),
    Option("patch_token", "max", one_of("max", "none"), "the head reads the max over the patch tokens (or not)"),
)


class ScaleShift(nn.Module):
    """x ⊙ γ + β over the last axis, γ ~ N(1, 0.02), β ~ N(0, 0.02) (DAPT's ``tfts``)."""

    parameter_group = "ssf"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.empty(dim).normal_(1.0, 0.02))
        self.shift = nn.Parameter(torch.empty(dim).normal_(0.0, 0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class DynamicAdapter(nn.Module):
    """(…, C) → (…, C): up(dropout(GELU(down(LN x)))) · ReLU(scale(LN x))."""

    parameter_group = "adapter"

    def __init__(self, dim: int, bottleneck: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.scale = nn.Linear(dim, 1)
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        self.dropout = dropout
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down.bias)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)
            nn.init.kaiming_uniform_(self.scale.weight, a=math.sqrt(5))
            nn.init.zeros_(self.scale.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        scale = F.relu(self.scale(x))
        hidden = F.dropout(F.gelu(self.down(x)), p=self.dropout, training=self.training)
        return self.up(hidden) * scale


class AdapterMlp(nn.Module):
    """A block's MLP with the dynamic adapter beside it: mlp(x) + adapter(x).

    The adapter's output of the current forward is kept in ``last_adapter_output`` until the
    DAPT hook turns it into the block's internal prompt.
    """

    def __init__(self, base_layer: nn.Module, adapter: DynamicAdapter) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.adapter = adapter
        self.last_adapter_output: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adapted = self.adapter(x)
        self.last_adapter_output = adapted
        return self.base_layer(x) + adapted


class DAPTHook(TokenHook):
    """SSF on the patch tokens and positions once; an internal prompt after every block; the pooling."""

    parameter_group = "ssf"

    def __init__(self, dim: int, depth: int, class_token: bool, prompt_token: str, patch_token: str) -> None:
        super().__init__()
        self.token_ssf = ScaleShift(dim)
        self.prompt_ssf = nn.ModuleList(ScaleShift(dim) for _ in range(depth))
        self.class_token, self.prompt_token, self.patch_token = class_token, prompt_token, patch_token

    def begin(self, state: Any) -> None:
        x = state.x
        patches = self.token_ssf(x[:, state.patch_slice])
        state.x = torch.cat([x[:, : state.num_prefix], patches, x[:, state.patch_slice.stop :]], dim=1)
        state.x = state.block_input()  # the positions are added once, before the first block
        state.pos = None

    def after_block(self, index: int, state: Any) -> None:
        mlp = state.model.blocks.blocks[index].mlp  # the block's AdapterMlp
        adapted, mlp.last_adapter_output = mlp.last_adapter_output, None
        prompt = self.prompt_ssf[index](F.gelu(adapted).mean(dim=1, keepdim=True))
        x = state.x
        state.x = torch.cat([x[:, :1], prompt.to(x.dtype), x[:, 1:]], dim=1)
        state.num_prefix += 1

    def pool(self, state: Any) -> torch.Tensor:
        x = state.x
        parts = []
        if self.class_token:
            parts.append(x[:, 0])
        prompts = x[:, 1 : state.num_prefix]
        if self.prompt_token == "mean":
            parts.append(prompts.mean(dim=1))
        elif self.prompt_token == "max":
            parts.append(prompts.amax(dim=1))
        if self.patch_token == "max":
            parts.append(x[:, state.patch_slice].amax(dim=1))
        return torch.cat(parts, dim=-1)


def head_width(options: dict[str, Any]) -> int:
    """Tokens the head reads (in multiples of the token width)."""
    return int(options["class_token"]) + (options["prompt_token"] != "none") + (options["patch_token"] != "none")


def check(model: nn.Module, config: dict[str, Any]) -> None:
    """Token hooks, blocks with two halves and the timm-style names SSF wraps, a non-empty head."""
    options = config[HOOK_NAME]
    blocks = require_backbone(model, HOOK_NAME, extra=("resize_head_input", "norm"))
    require_block_halves(model, blocks, HOOK_NAME)
    if head_width(options) == 0:
        raise ConfigError(
            "peft.dapt reads no token for the head: set class_token true, or prompt_token mean|max, or patch_token max"
        )
    wanted = {"norm1": nn.LayerNorm, "norm2": nn.LayerNorm, "attn.qkv": nn.Linear, "attn.proj": nn.Linear}
    wanted.update({"mlp": nn.Module, "mlp.fc1": nn.Linear, "mlp.fc2": nn.Linear})
    for index, block in enumerate(blocks):
        modules = dict(block.named_modules())
        for name, kind in wanted.items():
            if not isinstance(modules.get(name), kind):
                raise ConfigError(
                    f"method 'dapt' puts scale-and-shift factors on {', '.join(wanted)} of every block, but block "
                    f"{index} of {type(model).__name__} has no {kind.__name__} {name!r}"
                )
    if not isinstance(model.norm, nn.LayerNorm) or not model.norm.elementwise_affine:
        raise ConfigError(f"method 'dapt' needs {type(model).__name__}.norm to be an affine nn.LayerNorm")


def install(model: nn.Module, config: dict[str, Any]) -> None:
    options = config[HOOK_NAME]
    dim = model.trans_dim
    factory = module_device_dtype(model)
    blocks = list(model.blocks.blocks)
    hook = DAPTHook(dim, len(blocks), options["class_token"], options["prompt_token"], options["patch_token"])
    for block in blocks:
        block.norm1 = ScaleShiftLayerNorm(block.norm1)
        block.norm2 = ScaleShiftLayerNorm(block.norm2)
        block.attn.qkv = ScaleShiftLinear(block.attn.qkv)
        block.attn.proj = ScaleShiftLinear(block.attn.proj)
        block.mlp.fc1 = ScaleShiftLinear(block.mlp.fc1)
        block.mlp.fc2 = ScaleShiftLinear(block.mlp.fc2)
        adapter = DynamicAdapter(dim, options["bottleneck"], options["adapter_dropout"]).to(**factory)
        block.mlp = AdapterMlp(block.mlp, adapter)
    model.norm = ScaleShiftLayerNorm(model.norm)
    model.add_token_hook(HOOK_NAME, hook.to(**factory))
    model.resize_head_input(head_width(options) * dim)
