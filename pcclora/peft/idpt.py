"""IDPT: instance-aware dynamic prompt tuning, after zyh16143998882/ICCV23-IDPT.

Zha et al., "Instance-aware Dynamic Prompt Tuning for Pre-trained Point Cloud Models" (ICCV
2023); architecture, initialisation and trained set read from the official
``models/Point_MAE.py`` (``PointTransformer``, ``TransformerPromptEncoderLayerI``),
``models/dgcnn.py`` (``DGCNNView``), ``cfgs/finetune_scan_*_idpt.yaml`` and
``tools/builder.py`` (``part: only_new``: names containing ``cls``).

Before block ``prompt_layer`` (11 of 12 for PB_T50_RS and OBJ_BG, 6 for OBJ_ONLY) the patch
tokens (the previous block's output, without positions) go through a DGCNN of three EdgeConv
layers over the k = 20 nearest tokens in feature space (Conv2d 2C → C without bias, BatchNorm2d,
LeakyReLU 0.2; max over the neighbours) and a Conv1d 3C → C (BatchNorm1d, LeakyReLU 0.2) over
their concatenation; the max over the tokens is **one** prompt token. It is inserted after the
cls token with its own position ``prompt_pos`` (truncated normal, std 0.02; the official code
never trains it: a frozen buffer here) and the remaining blocks run on [cls, prompt, patches].
The head reads concat[cls, prompt, max over patches] (``cls_type: all``, 3C; ``promptonly``:
the prompt alone, as the official OBJ_BG config).

Trained: the DGCNN (1,330,176 with C = 384), the head (365,839 for 3C → 15 classes), cls token
and position (768): 1,696,783 on Point-MAE with 15 classes. Not zero-initialised: the extra token
changes the outputs from the first step (documented in docs/method.md). Nothing merges.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backbones.errors import ConfigError

from .hooks import TokenHook, module_device_dtype, require_backbone
from .options import Option, int_at_least, one_of

HOOK_NAME = "idpt"
#: Pooled features of the official ``cls_type`` values, in multiples of the token width.
HEAD_WIDTHS = {"all": 3, "promptonly": 1, "promptcls": 2, "pointcls": 2}

OPTIONS = (
    Option("prompt_layer", 11, int_at_least(0), "index of the block before which the prompt is inserted (0..depth-1)"),
    Option("dgcnn_k", 20, int_at_least(1), "neighbours of each token in the DGCNN's feature-space kNN"),
    Option(
        "cls_type", "all", one_of(*HEAD_WIDTHS), "head input: all = [cls, prompt, max], promptonly, promptcls, pointcls"
    ),
)


def knn_indices(features: torch.Tensor, k: int) -> torch.Tensor:
    """(B, C, N) features → (B, N, k) indices of the k nearest (squared L2, itself included)."""
    inner = features.transpose(1, 2) @ features  # (B, N, N)
    squared = features.square().sum(dim=1, keepdim=True)  # (B, 1, N)
    negative_distance = 2 * inner - squared - squared.transpose(1, 2)
    return negative_distance.topk(k, dim=-1).indices


def edge_features(features: torch.Tensor, k: int) -> torch.Tensor:
    """EdgeConv input: (B, C, N) → (B, 2C, N, k) = [neighbour − token, token]."""
    batch, channels, count = features.shape
    index = knn_indices(features, k)  # (B, N, k)
    tokens = features.transpose(1, 2)  # (B, N, C)
    neighbours = torch.gather(
        tokens[:, None].expand(-1, count, -1, -1), 2, index[..., None].expand(-1, -1, -1, channels)
    )  # (B, N, k, C)
    centre = tokens[:, :, None].expand(-1, -1, k, -1)
    return torch.cat([neighbours - centre, centre], dim=-1).permute(0, 3, 1, 2)


class DGCNNPrompt(nn.Module):
    """Patch tokens (B, G, C) → one prompt token (B, 1, C) (the official ``DGCNNView``)."""

    parameter_group = "prompt"

    def __init__(self, dim: int, k: int) -> None:
        super().__init__()
        self.k = k

        def edge_conv() -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(2 * dim, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.LeakyReLU(0.2))

        self.conv1, self.conv2, self.conv3 = edge_conv(), edge_conv(), edge_conv()
        self.conv5 = nn.Sequential(nn.Conv1d(3 * dim, dim, 1, bias=False), nn.BatchNorm1d(dim), nn.LeakyReLU(0.2))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x0 = tokens.transpose(1, 2)  # (B, C, G)
        x1 = self.conv1(edge_features(x0, self.k)).amax(dim=-1)
        x2 = self.conv2(edge_features(x1, self.k)).amax(dim=-1)
        x3 = self.conv3(edge_features(x2, self.k)).amax(dim=-1)
        x = self.conv5(torch.cat([x1, x2, x3], dim=1))  # (B, C, G)
        return F.adaptive_max_pool1d(x, 1).transpose(1, 2)  # (B, 1, C)


class IDPTHook(TokenHook):
    """Inserts the dynamic prompt before block ``prompt_layer``; pools per ``cls_type``."""

    parameter_group = "prompt"

    def __init__(self, dim: int, prompt_layer: int, k: int, cls_type: str) -> None:
        super().__init__()
        self.prompt_layer = prompt_layer
        self.cls_type = cls_type
        self.prompt_generator = DGCNNPrompt(dim, k)
        prompt_pos = torch.empty(1, 1, dim)
        nn.init.trunc_normal_(prompt_pos, std=0.02)
        self.register_buffer("prompt_pos", prompt_pos)  # never trained by the official code

    def before_block(self, index: int, state: Any) -> None:
        if index != self.prompt_layer:
            return
        prompt = self.prompt_generator(state.x[:, state.patch_slice])  # (B, 1, C)
        x, pos = state.x, state.pos
        state.x = torch.cat([x[:, :1], prompt.to(x.dtype), x[:, 1:]], dim=1)
        prompt_pos = self.prompt_pos.to(pos.dtype).expand(pos.shape[0], -1, -1)
        state.pos = torch.cat([pos[:, :1], prompt_pos, pos[:, 1:]], dim=1)
        state.num_prefix += 1

    def pool(self, state: Any) -> torch.Tensor:
        x = state.x
        cls, prompt, patches = x[:, 0], x[:, 1], x[:, state.patch_slice].amax(dim=1)
        parts = {"all": [cls, prompt, patches], "promptonly": [prompt], "promptcls": [cls, prompt]}
        return torch.cat(parts.get(self.cls_type, [cls, patches]), dim=-1)


def check(model: nn.Module, config: dict[str, Any]) -> None:
    """Token hooks, a prompt layer among the blocks, k at most the number of patch tokens."""
    options = config[HOOK_NAME]
    blocks = require_backbone(model, HOOK_NAME, extra=("resize_head_input",))
    if options["prompt_layer"] >= len(blocks):
        raise ConfigError(
            f"peft.idpt.prompt_layer {options['prompt_layer']} is out of range: {type(model).__name__} has "
            f"{len(blocks)} blocks, so it must be in 0..{len(blocks) - 1} (the official 11 for 12 blocks)"
        )
    if options["dgcnn_k"] > model.num_group:
        raise ConfigError(
            f"peft.idpt.dgcnn_k {options['dgcnn_k']} exceeds the model's num_group {model.num_group}: the DGCNN "
            "takes each token's k nearest among the patch tokens; lower peft.idpt.dgcnn_k"
        )


def install(model: nn.Module, config: dict[str, Any]) -> None:
    options = config[HOOK_NAME]
    dim = model.trans_dim
    hook = IDPTHook(dim, options["prompt_layer"], options["dgcnn_k"], options["cls_type"])
    model.add_token_hook(HOOK_NAME, hook.to(**module_device_dtype(model)))
    model.resize_head_input(HEAD_WIDTHS[options["cls_type"]] * dim)
