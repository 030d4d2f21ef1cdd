"""PointLoRA: LoRA with shared branches and multi-scale token selection, after songw-zju/PointLoRA.

Wang et al., "PointLoRA: Low-Rank Adaptation with Token Selection for Point Cloud Learning"
(CVPR 2025); architecture, initialisation and trained set read from the official
``models/PointLoRA.py``, ``utils/lora.py``, ``cfgs/finetune_scan_hardest_pointlora.yaml`` and
``tools/runner_finetune_pointlora.py`` / ``tools/builder.py`` (``part: pointlora``: names
containing ``cls``, ``prompt``, ``first_conv``, ``pos_embed`` or ``lora_`` train).

- **LoRA on qkv and proj** of every block, rank 8 (one A/B pair for the whole fused qkv; A
  Kaiming-uniform, B zero; no alpha/r scaling, as the official forward).
- **Shared cross-layer branches**: beside every qkv one non-linear branch (Linear C → 32, GELU,
  Linear 32 → 3C) and beside every proj another (C → 32 → C), each one module shared by all
  blocks, added to the layer's output. Truncated normal std 0.02, zero biases: not zero at
  initialisation.
- **Multi-scale token selection**: the cloud is grouped again at two scales (128 × 32 and 64 ×
  64) through the patch encoder; a mask predictor (Linear C → C/2, ReLU, Linear → 1, sigmoid)
  scores the tokens of each scale, the top 32 and 8 (with their positions) are appended after
  the patch tokens. The selection is not differentiable; the predictor learns only from the
  **entropy loss** Σ_s w_s · mean(p log p + (1 − p) log(1 − p)) (w = 1, 0.25; logs with +1e-6),
  added to the task loss with weight 0.004 (``pcclora.peft.regularization_loss``).
- **Prompt MLPs**: before every block, after the positions are added, the patch tokens get
  ``+ prompt_mlp(patches)`` and the selected tokens ``+ prompt_pos_mlp(selected)``
  (C → 32 → C each, shared by all blocks).
- Also trained: ``encoder.first_conv`` and ``pos_embed`` (``train_modules``), head and cls
  token/position. The head pools [cls, max over all other tokens] (Point-MAE's pooling).

Trained on Point-MAE with 15 classes: LoRA 221,184 + shared branches 24,992 + 50,336 + prompt
MLPs 2 × 24,992 + mask predictor 74,113 + first_conv 33,792 + pos_embed 50,048 + head 267,535 +
cls 768 = 772,752. The LoRA factors merge; the shared branches, the prompt MLPs and the selected
tokens keep running.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from backbones.errors import ConfigError

from .hooks import TokenHook, module_device_dtype, require_backbone, require_submodules
from .layers import SharedBranchLoRALinear
from .options import Option, int_at_least, name_list, number_in
from .ppt import prompt_mlp

HOOK_NAME = "pointlora"


def _scales(value: Any, key: str) -> list[list[int]]:
    """A non-empty list of [num_group, group_size, keep] triples of positive integers, keep ≤ num_group."""
    ok = isinstance(value, list) and bool(value)
    if ok:
        for item in value:
            ok = ok and isinstance(item, (list, tuple)) and len(item) == 3
            ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in item)
            ok = ok and item[2] <= item[0]
    if not ok:
        raise ConfigError(
            f"{key} must be a non-empty list of [num_group, group_size, keep] triples of positive integers with "
            f"keep <= num_group (the official [[128, 32, 32], [64, 64, 8]]), got {value!r}"
        )
    return [list(item) for item in value]


def _weights(value: Any, key: str) -> list[float]:
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise ConfigError(f"{key} must be a list of non-negative numbers, one per scale, got {value!r}")
    return [float(v) for v in value]


OPTIONS = (
    Option("rank", 8, int_at_least(1), "rank of the LoRA factors on qkv and proj"),
    Option("prompt_hidden", 32, int_at_least(1), "hidden width of the shared branches and prompt MLPs"),
    Option("scales", [[128, 32, 32], [64, 64, 8]], _scales, "token-selection scales: [num_group, group_size, keep]"),
    Option("scale_weights", [1.0, 0.25], _weights, "weight of each scale's entropy term", structural=False),
    Option(
        "mask_loss_weight",
        0.004,
        number_in(0.0),
        "weight of the entropy loss in the training loss (the official runner's 0.004)",
        structural=False,
    ),
    Option(
        "train_modules",
        ["encoder.first_conv", "pos_embed"],
        name_list,
        "backbone modules that train too (the official runner's first_conv and pos_embed)",
    ),
)


class MaskPredictor(nn.Module):
    """Token (…, C) → keep probability (…): sigmoid(fc2(ReLU(fc1 x)))."""

    parameter_group = "selector"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, dim // 2)
        self.fc2 = nn.Linear(dim // 2, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc2(torch.relu(self.fc1(tokens))).squeeze(-1))


def negative_entropy(probability: torch.Tensor) -> torch.Tensor:
    """mean(p log(p + 1e-6) + (1 − p) log(1 − p + 1e-6)): the official mask loss of one scale."""
    return torch.mean(
        probability * torch.log(probability + 1e-6) + (1 - probability) * torch.log(1 - probability + 1e-6)
    )


class PointLoRAHook(TokenHook):
    """Owns the shared branches, prompt MLPs and mask predictor; selects and appends tokens."""

    parameter_group = "prompt"

    def __init__(
        self,
        dim: int,
        hidden: int,
        scales: list[list[int]],
        scale_weights: list[float],
        mask_loss_weight: float,
    ) -> None:
        super().__init__()
        self.scales = [tuple(scale) for scale in scales]
        self.scale_weights = list(scale_weights)
        self.mask_loss_weight = mask_loss_weight
        self.num_selected = sum(keep for *_, keep in self.scales)
        self.prompt_mlp = prompt_mlp(dim, hidden)
        self.prompt_pos_mlp = prompt_mlp(dim, hidden)
        self.prompt_proj_mlp = prompt_mlp(dim, hidden)
        self.prompt_qkv_mlp = prompt_mlp(dim, hidden, 3 * dim)
        self.mask_predictor = MaskPredictor(dim)
        self.last_mask_loss: torch.Tensor | None = None

    def begin(self, state: Any) -> None:
        tokens_list, pos_list, loss = [], [], None
        for (num_group, group_size, keep), weight in zip(self.scales, self.scale_weights, strict=True):
            tokens, pos, _ = state.model.embed_group(state.points, num_group, group_size)
            probability = self.mask_predictor(tokens)  # (B, G_s)
            term = weight * negative_entropy(probability)
            loss = term if loss is None else loss + term
            index = probability.topk(keep, dim=1).indices  # (B, keep), no gradient through the choice
            tokens_list.append(torch.gather(tokens, 1, index[..., None].expand(-1, -1, tokens.shape[-1])))
            pos_list.append(torch.gather(pos, 1, index[..., None].expand(-1, -1, pos.shape[-1])))
        self.last_mask_loss = loss
        state.x = torch.cat([state.x, *(t.to(state.x.dtype) for t in tokens_list)], dim=1)
        state.pos = torch.cat([state.pos, *(p.to(state.pos.dtype) for p in pos_list)], dim=1)

    def run_block(self, index: int, block: nn.Module, x: torch.Tensor, state: Any) -> torch.Tensor:
        patches = state.patch_slice
        selected = x[:, -self.num_selected :]
        x = torch.cat(
            [
                x[:, : patches.start],
                x[:, patches] + self.prompt_mlp(x[:, patches]),
                x[:, patches.stop : x.shape[1] - self.num_selected],
                selected + self.prompt_pos_mlp(selected),
            ],
            dim=1,
        )
        return block(x)

    def regularization_terms(self) -> dict[str, tuple[float, torch.Tensor]]:
        """``{"pointlora_entropy": (weight, value)}`` of the last forward (empty before one)."""
        if self.last_mask_loss is None:
            return {}
        return {"pointlora_entropy": (self.mask_loss_weight, self.last_mask_loss)}


def check(model: nn.Module, config: dict[str, Any]) -> None:
    """Token hooks, ``embed_group``, ``attn.qkv`` / ``attn.proj`` Linears in every block, the modules to train."""
    options = config[HOOK_NAME]
    blocks = require_backbone(model, HOOK_NAME, extra=("embed_group",))
    if len(options["scale_weights"]) != len(options["scales"]):
        raise ConfigError(
            f"peft.pointlora.scale_weights has {len(options['scale_weights'])} entries but scales has "
            f"{len(options['scales'])}; give one weight per scale"
        )
    dim = model.trans_dim
    for index, block in enumerate(blocks):
        attention = getattr(block, "attn", None)
        qkv, proj = getattr(attention, "qkv", None), getattr(attention, "proj", None)
        if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear)):
            raise ConfigError(
                f"method 'pointlora' adapts attn.qkv and attn.proj of every block, but block {index} of "
                f"{type(model).__name__} has no nn.Linear there"
            )
        if qkv.out_features != 3 * dim or proj.out_features != dim or qkv.in_features != dim:
            raise ConfigError(
                f"method 'pointlora' expects a fused qkv ({dim} → {3 * dim}) and proj ({dim} → {dim}); block "
                f"{index} has qkv {qkv.in_features} → {qkv.out_features}, proj → {proj.out_features}"
            )
    require_submodules(model, options["train_modules"], HOOK_NAME, "the backbone modules")


def install(model: nn.Module, config: dict[str, Any]) -> None:
    options = config[HOOK_NAME]
    factory = module_device_dtype(model)
    hook = PointLoRAHook(
        model.trans_dim,
        options["prompt_hidden"],
        options["scales"],
        options["scale_weights"],
        options["mask_loss_weight"],
    ).to(**factory)
    for block in model.blocks.blocks:
        block.attn.qkv = SharedBranchLoRALinear(block.attn.qkv, hook.prompt_qkv_mlp, rank=options["rank"])
        block.attn.proj = SharedBranchLoRALinear(block.attn.proj, hook.prompt_proj_mlp, rank=options["rank"])
    model.add_token_hook(HOOK_NAME, hook)
    for module in require_submodules(model, options["train_modules"], HOOK_NAME, "the backbone modules"):
        module.requires_grad_(True)
