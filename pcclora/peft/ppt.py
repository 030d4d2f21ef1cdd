"""PPT: positional prompt tuning, after zsc000722/PPT.

Zhang et al., "Positional Prompt Tuning for Efficient 3D Representation Learning" (arXiv
2408.11567); architecture, initialisation and trained set read from the official
``models/PPT.py`` (``PointTransformer``, ``TransformerEncoder``, ``Block``),
``cfgs/pointmae_configs/finetune_scan_*.yaml`` and ``tools/runner_finetune.py`` (``type: pos``:
names containing ``cls``, ``prompt``, ``first_conv`` or ``pos_embed`` train).

- **Extra grouped tokens**: the cloud is grouped a second time (``prompt_num_group`` centres ×
  ``prompt_group_size`` points; 128 × 32 for ScanObjectNN, 64 × 32 for ModelNet40) and these
  groups go through the same patch encoder and ``pos_embed``; they are appended after the patch
  tokens with their positions.
- **Prompt MLPs, shared by all blocks** (Linear C → 256, GELU, Linear 256 → C, truncated normal
  std 0.02, zero biases): before every block, after the positions are added, the patch tokens
  get ``+ prompt_mlp(patches)`` and the extra tokens ``+ prompt_pos_mlp(extra)``; inside every
  block a third one runs parallel to the MLP sub-layer: x + attn(…) → x + mlp(…) +
  prompt_all_mlp(x).
- Head over concat[cls, mean of the patch tokens, mean of the extra tokens] (3C), with GELU
  instead of ReLU (the official head).
- Also trained, as the official runner selects them: the first stage of the patch encoder
  (``encoder.first_conv``: Conv1d 3→128, BatchNorm, Conv1d 128→256) and ``pos_embed``
  (``train_modules``).

Trained on Point-MAE with 15 classes: prompt MLPs 3 × 197,248 + first_conv 33,792 + pos_embed
50,048 + head 365,839 + cls token/position 768 = 1,042,191. Not zero-initialised (the prompt
MLPs start random, the extra tokens and the mean pooling change the forward). Nothing merges.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .hooks import TokenHook, module_device_dtype, require_backbone, require_block_halves, require_submodules
from .options import Option, int_at_least, name_list

HOOK_NAME = "ppt"

OPTIONS = (
    Option("prompt_hidden", 256, int_at_least(1), "hidden width of the three prompt MLPs"),
    Option("prompt_num_group", 128, int_at_least(1), "centres of the extra grouping (64 for ModelNet40)"),
    Option("prompt_group_size", 32, int_at_least(1), "points per extra group"),
    Option(
        "train_modules",
        ["encoder.first_conv", "pos_embed"],
        name_list,
        "backbone modules that train too (the official runner's first_conv and pos_embed)",
    ),
)


def prompt_mlp(dim: int, hidden: int, out: int | None = None) -> nn.Sequential:
    """Linear(dim, hidden), GELU, Linear(hidden, out or dim); weights truncated normal std 0.02, biases zero."""
    mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out or dim))
    for layer in (mlp[0], mlp[2]):
        nn.init.trunc_normal_(layer.weight, std=0.02)
        nn.init.zeros_(layer.bias)
    return mlp


class PPTHook(TokenHook):
    """Appends the extra groups, adds the prompt MLPs in every block, pools three ways."""

    parameter_group = "prompt"

    def __init__(self, dim: int, hidden: int, num_group: int, group_size: int) -> None:
        super().__init__()
        self.num_group, self.group_size = num_group, group_size
        self.prompt_mlp = prompt_mlp(dim, hidden)
        self.prompt_pos_mlp = prompt_mlp(dim, hidden)
        self.prompt_all_mlp = prompt_mlp(dim, hidden)

    def begin(self, state: Any) -> None:
        tokens, pos, _ = state.model.embed_group(state.points, self.num_group, self.group_size)
        state.x = torch.cat([state.x, tokens.to(state.x.dtype)], dim=1)
        state.pos = torch.cat([state.pos, pos.to(state.pos.dtype)], dim=1)

    def run_block(self, index: int, block: nn.Module, x: torch.Tensor, state: Any) -> torch.Tensor:
        patches = state.patch_slice
        extra = x[:, -self.num_group :]
        x = torch.cat(
            [
                x[:, : patches.start],
                x[:, patches] + self.prompt_mlp(x[:, patches]),
                x[:, patches.stop : x.shape[1] - self.num_group],
                extra + self.prompt_pos_mlp(extra),
            ],
            dim=1,
        )
        middle = block.attention_residual(x)
        return block.mlp_residual(middle) + self.prompt_all_mlp(middle)

    def pool(self, state: Any) -> torch.Tensor:
        x = state.x
        return torch.cat([x[:, 0], x[:, state.patch_slice].mean(dim=1), x[:, -self.num_group :].mean(dim=1)], dim=-1)


def check(model: nn.Module, config: dict[str, Any]) -> None:
    """Token hooks, ``embed_group``, blocks with two halves, the modules to train."""
    blocks = require_backbone(model, HOOK_NAME, extra=("embed_group", "resize_head_input"))
    require_block_halves(model, blocks, HOOK_NAME)
    require_submodules(model, config[HOOK_NAME]["train_modules"], HOOK_NAME, "the backbone modules")


def install(model: nn.Module, config: dict[str, Any]) -> None:
    options = config[HOOK_NAME]
    hook = PPTHook(model.trans_dim, options["prompt_hidden"], options["prompt_num_group"], options["prompt_group_size"])
    model.add_token_hook(HOOK_NAME, hook.to(**module_device_dtype(model)))
    model.resize_head_input(3 * model.trans_dim)
    for head_name in model.head_module_names:  # the official head uses GELU where Point-MAE's has ReLU
        head = model.get_submodule(head_name)
        for name, module in list(head.named_modules()):
            if isinstance(module, nn.ReLU):
                parent_name, _, child_name = name.rpartition(".")
                setattr(head.get_submodule(parent_name) if parent_name else head, child_name, nn.GELU())
    for module in require_submodules(model, options["train_modules"], HOOK_NAME, "the backbone modules"):
        module.requires_grad_(True)
