"""Shared test fixtures: tiny models, official state-dict layouts, miniature datasets, tiny configs.

Every helper is a fixture (pytest finds this file; no test imports it). Fixtures that hand out a
function or a class are session-scoped and stateless: a test calls what it receives.

- Tiny models for the adapter tests (``build_tiny``, ``tiny_image_vit``, ``make_points``,
  ``randomize_adapters``): a Point-MAE-like point ViT and a plain image ViT written here, so that
  the adapters are tested without the backbone zoo.
- Official layouts (``official_shapes``, ``make_state_dict``): state dicts with the official key
  names and shapes of Point-MAE, Point-BERT, ACT, ReCon and PointGPT (fine-tuned and
  pre-training files), written out from the published model definitions independently of
  ``backbones``, so that the tests check the module tree against the official one.
- Tiny sizes per backbone (``tiny_sizes``, ``tiny_backbone``).
- Miniature datasets and configs (``write_scanobjectnn``, ``write_modelnet40_dat``,
  ``write_fewshot``, ``write_shapenet55``, ``tiny_overrides``, ``tiny_config``,
  ``tiny_pretrain_overrides``): official file layouts with a few class-dependent clouds, and
  ``--set`` strings that shrink any packaged config (pre-training included) to seconds.
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import backbones
from pcclora.config import load_config

# --------------------------------------------------------------------------------------------
# tiny models for the adapter tests
# --------------------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        weights = self.attn_drop((q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1))
        return self.proj((weights @ v).transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class BlockStack(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, num_heads) for _ in range(depth))

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x + pos)
        return x


class PatchEncoder(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv1d(3, 16, 1), nn.BatchNorm1d(16), nn.ReLU(), nn.Conv1d(16, dim, 1))

    def forward(self, neighborhood: torch.Tensor) -> torch.Tensor:
        """(B, G, k, 3) → (B, G, dim)."""
        batch, groups, k, _ = neighborhood.shape
        features = self.first_conv(neighborhood.reshape(batch * groups, k, 3).transpose(1, 2))
        return features.max(dim=-1).values.reshape(batch, groups, -1)


class TinyPointViT(nn.Module):
    """Point-MAE-shaped classifier: (B, G·k, 3) points → (B, num_classes) logits.

    Groups are consecutive runs of ``group_size`` points (no FPS: the tests need speed only).
    """

    head_module_names = ("cls_head_finetune",)

    def __init__(
        self,
        dim: int = 32,
        depth: int = 2,
        num_heads: int = 2,
        num_classes: int = 5,
        group_size: int = 4,
    ) -> None:
        super().__init__()
        self.group_size = group_size
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.cls_pos = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.encoder = PatchEncoder(dim)
        self.pos_embed = nn.Sequential(nn.Linear(3, 16), nn.GELU(), nn.Linear(16, dim))
        self.blocks = BlockStack(dim, depth, num_heads)
        self.norm = nn.LayerNorm(dim)
        self.cls_head_finetune = nn.Sequential(
            nn.Linear(2 * dim, 16),
            nn.BatchNorm1d(16),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(16, num_classes),
        )

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        batch, num_points, _ = points.shape
        neighborhood = points.reshape(batch, num_points // self.group_size, self.group_size, 3)
        center = neighborhood.mean(dim=2)
        tokens = self.encoder(neighborhood - center.unsqueeze(2))
        pos = self.pos_embed(center)
        x = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
        pos = torch.cat([self.cls_pos.expand(batch, -1, -1), pos], dim=1)
        x = self.norm(self.blocks(x, pos))
        pooled = torch.cat([x[:, 0], x[:, 1:].max(dim=1).values], dim=-1)
        return self.cls_head_finetune(pooled)


class TinyImageViT(nn.Module):
    """A plain image ViT with timm-like names: (B, 3, 16, 16) images → (B, num_classes)."""

    def __init__(self, dim: int = 32, depth: int = 2, num_heads: int = 2, num_classes: int = 4):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, 17, dim) * 0.02)
        self.blocks = nn.Sequential(*(Block(dim, num_heads, qkv_bias=True) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        x = self.norm(self.blocks(x + self.pos_embed))
        return self.head(x[:, 0])


def _make_points(batch: int = 3, num_points: int = 32, seed: int = 0) -> torch.Tensor:
    """Random (batch, num_points, 3) points."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, num_points, 3, generator=generator)


def _randomize_adapters(model: nn.Module, seed: int = 0, scale: float = 0.5) -> None:
    """Give every coefficient / LoRA up-factor random values (they start at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("coefficients", "lora_up")):
                values = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
                parameter.copy_(values * scale)


def _build_tiny(seed: int = 0, **kwargs) -> TinyPointViT:
    """A TinyPointViT with seeded weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = TinyPointViT(**kwargs)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    return model


# --------------------------------------------------------------------------------------------
# official key names and shapes
# --------------------------------------------------------------------------------------------

Shapes = dict[str, tuple[int, ...]]


def _linear(prefix: str, fan_in: int, fan_out: int, bias: bool = True) -> Shapes:
    shapes = {f"{prefix}.weight": (fan_out, fan_in)}
    if bias:
        shapes[f"{prefix}.bias"] = (fan_out,)
    return shapes


def _conv1x1(prefix: str, fan_in: int, fan_out: int) -> Shapes:
    return {f"{prefix}.weight": (fan_out, fan_in, 1), f"{prefix}.bias": (fan_out,)}


def _batch_norm(prefix: str, width: int) -> Shapes:
    return {
        f"{prefix}.weight": (width,),
        f"{prefix}.bias": (width,),
        f"{prefix}.running_mean": (width,),
        f"{prefix}.running_var": (width,),
        f"{prefix}.num_batches_tracked": (),
    }


def _layer_norm(prefix: str, width: int) -> Shapes:
    return {f"{prefix}.weight": (width,), f"{prefix}.bias": (width,)}


def _mini_pointnet_shapes(prefix: str, encoder_dims: int) -> Shapes:
    """``Encoder``: first_conv.{0,1,3}, second_conv.{0,1,3}."""
    return {
        **_conv1x1(f"{prefix}first_conv.0", 3, 128),
        **_batch_norm(f"{prefix}first_conv.1", 128),
        **_conv1x1(f"{prefix}first_conv.3", 128, 256),
        **_conv1x1(f"{prefix}second_conv.0", 512, 512),
        **_batch_norm(f"{prefix}second_conv.1", 512),
        **_conv1x1(f"{prefix}second_conv.3", 512, encoder_dims),
    }


def _transformer_shapes(prefix: str, depth: int = 12, dim: int = 384) -> Shapes:
    """``TransformerEncoder.blocks.{i}``: norm1, attn.qkv (no bias), attn.proj, norm2, mlp.fc1/fc2."""
    shapes: Shapes = {}
    for i in range(depth):
        block = f"{prefix}blocks.{i}"
        shapes.update(_layer_norm(f"{block}.norm1", dim))
        shapes.update(_linear(f"{block}.attn.qkv", dim, 3 * dim, bias=False))
        shapes.update(_linear(f"{block}.attn.proj", dim, dim))
        shapes.update(_layer_norm(f"{block}.norm2", dim))
        shapes.update(_linear(f"{block}.mlp.fc1", dim, 4 * dim))
        shapes.update(_linear(f"{block}.mlp.fc2", 4 * dim, dim))
    return shapes


def _pos_embed(prefix: str, dim: int = 384) -> Shapes:
    return {**_linear(f"{prefix}.0", 3, 128), **_linear(f"{prefix}.2", 128, dim)}


def _tokens(prefix: str, names: tuple[str, ...], dim: int = 384) -> Shapes:
    return {f"{prefix}{name}": (1, 1, dim) for name in names}


def _point_mae_encoder_shapes(prefix: str = "") -> Shapes:
    """The 156 entries ``MaskTransformer`` (pre-training) shares with the fine-tuning model."""
    return {
        **_mini_pointnet_shapes(f"{prefix}encoder.", 384),
        **_pos_embed(f"{prefix}pos_embed"),
        **_transformer_shapes(f"{prefix}blocks."),
        **_layer_norm(f"{prefix}norm", 384),
    }


def _point_mae_finetuned_shapes(num_classes: int) -> Shapes:
    """Official ``PointTransformer`` (Point-MAE fine-tuning): 174 entries."""
    head = {
        **_linear("cls_head_finetune.0", 768, 256),
        **_batch_norm("cls_head_finetune.1", 256),
        **_linear("cls_head_finetune.4", 256, 256),
        **_batch_norm("cls_head_finetune.5", 256),
        **_linear("cls_head_finetune.8", 256, num_classes),
    }
    return {**_tokens("", ("cls_token", "cls_pos")), **_point_mae_encoder_shapes(), **head}


def _point_mae_decoder_shapes(prefix: str = "module.") -> Shapes:
    """The 53 decoder-side entries of Point-MAE ``pretrain.pth`` (decoder depth 4)."""
    return {
        f"{prefix}mask_token": (1, 1, 384),
        **_pos_embed(f"{prefix}decoder_pos_embed"),
        **_transformer_shapes(f"{prefix}MAE_decoder.", depth=4),  # a bare ModuleList: MAE_decoder.blocks.{i}
        **_layer_norm(f"{prefix}MAE_decoder.norm", 384),
        **_conv1x1(f"{prefix}increase_dim.0", 384, 3 * 32),
    }


def _point_mae_pretrain_shapes() -> Shapes:
    """Point-MAE ``pretrain.pth`` ``base_model``: 209 entries, all ``module.``-prefixed."""
    return {**_point_mae_encoder_shapes("module.MAE_encoder."), **_point_mae_decoder_shapes("module.")}


def _point_bert_backbone_shapes(prefix: str = "") -> Shapes:
    """The 160 entries shared by Point-BERT's pre-training encoder and fine-tuning model."""
    return {
        **_tokens(prefix, ("cls_token", "cls_pos")),
        **_mini_pointnet_shapes(f"{prefix}encoder.", 256),
        **_linear(f"{prefix}reduce_dim", 256, 384),
        **_pos_embed(f"{prefix}pos_embed"),
        **_transformer_shapes(f"{prefix}blocks."),
        **_layer_norm(f"{prefix}norm", 384),
    }


def _point_bert_finetuned_shapes(num_classes: int) -> Shapes:
    """Official Point-BERT ``PointTransformer``: 164 entries."""
    head = {**_linear("cls_head_finetune.0", 768, 256), **_linear("cls_head_finetune.3", 256, num_classes)}
    return {**_point_bert_backbone_shapes(), **head}


def _point_bert_mask_transformer_shapes(prefix: str) -> Shapes:
    """``MaskTransformer`` of Point-BERT pre-training: 167 entries (cls_dim 512, 8192 dVAE tokens)."""
    return {
        **_point_bert_backbone_shapes(prefix),
        f"{prefix}mask_token": (1, 1, 384),
        **_linear(f"{prefix}lm_head", 384, 8192),
        **_linear(f"{prefix}cls_head.0", 384, 512),
        **_linear(f"{prefix}cls_head.2", 512, 512),
    }


def _point_bert_pretrain_shapes() -> Shapes:
    """``Point-BERT.pth`` ``base_model``: query and momentum encoders, some dVAE entries, the queue."""
    return {
        **_point_bert_mask_transformer_shapes("transformer_q."),
        **_point_bert_mask_transformer_shapes("transformer_k."),
        **_mini_pointnet_shapes("dvae.encoder.", 256),
        **_conv1x1("dvae.dgcnn_1.input_trans", 256, 128),
        "dvae.codebook": (8192, 256),
        "queue": (512, 16384),
        "queue_ptr": (1,),
    }


# ACT (RunpeiDong/ACT, models/act.py) ------------------------------------------------------


def _act_pretrain_shapes() -> Shapes:
    """ACT ``ACT_PointDistillation`` pre-training ``base_model`` (``module.``-prefixed), config
    ``cfgs/pretrain/pretrain_act_distill.yaml``: the student ``ACT_encoder`` (Point-MAE's 156
    encoder entries, cls token and position, ``lm_head`` to 8192 tokens, contrastive ``cls_head``
    384 → 512 → 512), ``proj_head`` (384 → 384), the 2-block ``ACT_decoder`` with ``mask_token``
    and ``decoder_pos_embed``, and a sample of the frozen teacher ``dvae_tokenizer`` (a dVAE and a
    ViT-B whose exact entries depend on the timm version; all of them are ignored on loading).
    """
    m = "module."
    teacher = {
        **_mini_pointnet_shapes(f"{m}dvae_tokenizer.encoder.", 384),
        f"{m}dvae_tokenizer.codebook": (8192, 384),
        **_linear(f"{m}dvae_tokenizer.proj_pre", 384, 768),
        **_pos_embed(f"{m}dvae_tokenizer.visual_pos_embed", 768),
        **_linear(f"{m}dvae_tokenizer.proj_post", 768, 384),
        f"{m}dvae_tokenizer.visual_prompt_token": (1, 64, 768),
        f"{m}dvae_tokenizer.visual_prompt_pos": (1, 64, 768),
        **_layer_norm(f"{m}dvae_tokenizer.visual_embed.0.0.norm1", 768),
        **_linear(f"{m}dvae_tokenizer.visual_embed.0.0.attn.qkv", 768, 3 * 768),
    }
    return {
        **_tokens(f"{m}ACT_encoder.", ("cls_token", "cls_pos")),
        **_point_mae_encoder_shapes(f"{m}ACT_encoder."),
        **_linear(f"{m}ACT_encoder.lm_head", 384, 8192),
        **_linear(f"{m}ACT_encoder.cls_head.0", 384, 512),
        **_linear(f"{m}ACT_encoder.cls_head.2", 512, 512),
        **_linear(f"{m}proj_head", 384, 384),
        f"{m}mask_token": (1, 1, 384),
        **_pos_embed(f"{m}decoder_pos_embed"),
        **_transformer_shapes(f"{m}ACT_decoder.", depth=2),
        **_layer_norm(f"{m}ACT_decoder.norm", 384),
        **teacher,
    }


# ReCon (qizekun/ReCon, models/transformer.py and models/ReCon.py) ---------------------------


def _recon_transformer_shapes(prefix: str, depth: int = 12, dim: int = 384) -> Shapes:
    """ReCon ``TransformerEncoder`` with ``with_contrast=True``: the plain block's 11 entries plus
    ``norm1_contrast``, ``norm2_contrast``, ``mlp_contrast.fc1/fc2`` and the ``CrossAttention``
    ``attn_contrast.q`` (no bias), ``.kv`` (no bias, 2·dim), ``.proj``: 23 per block."""
    shapes = _transformer_shapes(prefix, depth, dim)
    for i in range(depth):
        block = f"{prefix}blocks.{i}"
        shapes.update(_layer_norm(f"{block}.norm1_contrast", dim))
        shapes.update(_layer_norm(f"{block}.norm2_contrast", dim))
        shapes.update(_linear(f"{block}.mlp_contrast.fc1", dim, 4 * dim))
        shapes.update(_linear(f"{block}.mlp_contrast.fc2", 4 * dim, dim))
        shapes.update(_linear(f"{block}.attn_contrast.q", dim, dim, bias=False))
        shapes.update(_linear(f"{block}.attn_contrast.kv", dim, 2 * dim, bias=False))
        shapes.update(_linear(f"{block}.attn_contrast.proj", dim, dim))
    return shapes


def _recon_encoder_shapes(prefix: str = "") -> Shapes:
    """The 306 entries ReCon's pre-training ``MaskTransformer`` shares with the fine-tuning model."""
    return {
        **_tokens(prefix, ("cls_token", "cls_pos", "img_token", "text_token", "img_pos", "text_pos")),
        **_mini_pointnet_shapes(f"{prefix}encoder.", 384),
        **_pos_embed(f"{prefix}pos_embed"),
        **_recon_transformer_shapes(f"{prefix}blocks."),
        **_layer_norm(f"{prefix}norm", 384),
    }


def _mlp3_head_shapes(prefix: str, fan_in: int, num_classes: int) -> Shapes:
    """The three-layer head: Linear, BN, ReLU, Dropout, Linear, BN, ReLU, Dropout, Linear."""
    return {
        **_linear(f"{prefix}.0", fan_in, 256),
        **_batch_norm(f"{prefix}.1", 256),
        **_linear(f"{prefix}.4", 256, 256),
        **_batch_norm(f"{prefix}.5", 256),
        **_linear(f"{prefix}.8", 256, num_classes),
    }


def _recon_finetuned_shapes(num_classes: int) -> Shapes:
    """Official ReCon ``PointTransformer`` (``type: full``): 322 entries; head input 4 · 384."""
    return {**_recon_encoder_shapes(), **_mlp3_head_shapes("cls_head_finetune", 4 * 384, num_classes)}


def _recon_pretrain_shapes() -> Shapes:
    """ReCon ``base.pth`` ``base_model`` (``cfgs/pretrain/base.yaml``, ``module.``-prefixed): the
    encoder, ``mask_token``, ``decoder_pos_embed``, the 4-block ``MAE_decoder`` (plain blocks),
    ``increase_dim``, ``img_proj`` (384 → 768, timm ViT-B) and ``text_proj`` (384 → 512, CLIP
    ViT-B/32), and a sample of the frozen teachers ``img_encoder`` / ``text_encoder`` (ignored)."""
    m = "module."
    teachers = {
        f"{m}img_encoder.cls_token": (1, 1, 768),
        f"{m}img_encoder.pos_embed": (1, 197, 768),
        f"{m}img_encoder.patch_embed.proj.weight": (768, 3, 16, 16),
        f"{m}img_encoder.patch_embed.proj.bias": (768,),
        **_layer_norm(f"{m}img_encoder.norm", 768),
        f"{m}text_encoder.positional_embedding": (77, 512),
        f"{m}text_encoder.text_projection": (512, 512),
        **_layer_norm(f"{m}text_encoder.ln_final", 512),
    }
    return {
        **_recon_encoder_shapes(f"{m}MAE_encoder."),
        f"{m}mask_token": (1, 1, 384),
        **_pos_embed(f"{m}decoder_pos_embed"),
        **_transformer_shapes(f"{m}MAE_decoder.", depth=4),
        **_layer_norm(f"{m}MAE_decoder.norm", 384),
        **_conv1x1(f"{m}increase_dim.0", 384, 3 * 32),
        **_linear(f"{m}img_proj", 384, 768),
        **_linear(f"{m}text_proj", 384, 512),
        **teachers,
    }


# PointGPT (CGuangyan-BIT/PointGPT, models/PointGPT.py and models/GPT.py) ---------------------

#: Official sizes: (trans_dim = encoder_dims, depth, generator depth).
POINTGPT_SIZES = {"s": (384, 12, 4), "b": (768, 12, 4), "l": (1024, 24, 4)}


def _large_pointnet_shapes(prefix: str, encoder_dims: int) -> Shapes:
    """``Encoder_large``: first_conv.{0,1,3,4,6}, second_conv.{0,1,3}."""
    return {
        **_conv1x1(f"{prefix}first_conv.0", 3, 256),
        **_batch_norm(f"{prefix}first_conv.1", 256),
        **_conv1x1(f"{prefix}first_conv.3", 256, 512),
        **_batch_norm(f"{prefix}first_conv.4", 512),
        **_conv1x1(f"{prefix}first_conv.6", 512, 1024),
        **_conv1x1(f"{prefix}second_conv.0", 2048, 2048),
        **_batch_norm(f"{prefix}second_conv.1", 2048),
        **_conv1x1(f"{prefix}second_conv.3", 2048, encoder_dims),
    }


def _gpt_layers_shapes(prefix: str, depth: int, dim: int) -> Shapes:
    """GPT ``Block``s: ``ln_1``, ``ln_2``, ``nn.MultiheadAttention`` (``in_proj_weight`` (3d, d),
    ``in_proj_bias``, ``out_proj``), ``mlp.0`` (d → 4d), ``mlp.2``: 12 entries each."""
    shapes: Shapes = {}
    for i in range(depth):
        layer = f"{prefix}layers.{i}"
        shapes.update(_layer_norm(f"{layer}.ln_1", dim))
        shapes.update(_layer_norm(f"{layer}.ln_2", dim))
        shapes[f"{layer}.attn.in_proj_weight"] = (3 * dim, dim)
        shapes[f"{layer}.attn.in_proj_bias"] = (3 * dim,)
        shapes.update(_linear(f"{layer}.attn.out_proj", dim, dim))
        shapes.update(_linear(f"{layer}.mlp.0", dim, 4 * dim))
        shapes.update(_linear(f"{layer}.mlp.2", 4 * dim, dim))
    return shapes


def _pointgpt_encoder_shapes(size: str, prefix: str = "") -> Shapes:
    """What PointGPT pre-training (``GPT_Transformer``) shares with fine-tuning: ``encoder``
    (small for 384, large otherwise), the extractor ``blocks`` (``sos``, ``layers``, ``ln_f``,
    ``increase_dim``), the ``generator_blocks``, ``sos_pos`` and the unused ``norm``."""
    dim, depth, generator_depth = POINTGPT_SIZES[size]
    encoder = _mini_pointnet_shapes if dim == 384 else _large_pointnet_shapes
    shapes = {**encoder(f"{prefix}encoder.", dim), f"{prefix}blocks.sos": (dim,)}
    shapes.update(_gpt_layers_shapes(f"{prefix}blocks.", depth, dim))
    shapes.update(_layer_norm(f"{prefix}blocks.ln_f", dim))
    shapes.update(_conv1x1(f"{prefix}blocks.increase_dim.0", dim, 3 * 32))
    shapes[f"{prefix}generator_blocks.sos"] = (dim,)
    shapes.update(_gpt_layers_shapes(f"{prefix}generator_blocks.", generator_depth, dim))
    shapes.update(_layer_norm(f"{prefix}generator_blocks.ln_f", dim))
    shapes.update(_conv1x1(f"{prefix}generator_blocks.increase_dim.0", dim, 3 * 32))
    shapes[f"{prefix}sos_pos"] = (1, 1, dim)
    shapes.update(_layer_norm(f"{prefix}norm", dim))
    return shapes


def _pointgpt_finetuned_shapes(size: str, num_classes: int) -> Shapes:
    """Official PointGPT ``PointTransformer``: 243 (S), 250 (B), 394 (L) entries."""
    dim = POINTGPT_SIZES[size][0]
    return {
        **_pointgpt_encoder_shapes(size),
        **_mlp3_head_shapes("blocks.cls_head_finetune", 2 * dim, num_classes),
        **_layer_norm("blocks.cls_norm", dim),
        **_tokens("", ("cls_token", "cls_pos"), dim),
    }


def _pointgpt_pretrain_shapes(size: str) -> Shapes:
    """PointGPT ``PointGPT`` pre-training ``base_model``: everything under ``module.GPT_Transformer.``."""
    return _pointgpt_encoder_shapes(size, "module.GPT_Transformer.")


def _pointgpt_post_pretrain_shapes(size: str) -> Shapes:
    """PointGPT-B/L post-pre-training (``post_pretrain.yaml``, ``cls_dim: 87``): the fine-tuning
    layout with an 87-way head, ``module.``-prefixed."""
    return {f"module.{key}": shape for key, shape in _pointgpt_finetuned_shapes(size, 87).items()}


def _parameter_count(shapes: Shapes) -> int:
    """Parameters of a key → shape table: every entry but BatchNorm statistics and counters."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(shape) for key, shape in shapes.items() if not key.endswith(buffers))


def _make_state_dict(shapes: Shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the given shapes (BatchNorm counters as int64 scalars).

    Uniform rather than normal values: filling 22M entries is the slow part of these tests.
    """
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked") or key == "queue_ptr":
            state[key] = torch.randint(0, 1000, shape, generator=gen, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.empty(shape).uniform_(-0.05, 0.05, generator=gen)
    return state


# --------------------------------------------------------------------------------------------
# miniature datasets in the official layouts, tiny configs
# --------------------------------------------------------------------------------------------

TINY_BACKBONE = [
    "backbone.trans_dim=32",
    "backbone.depth=2",
    "backbone.num_heads=2",
    "backbone.num_group=16",
    "backbone.group_size=8",
    "backbone.encoder_dims=32",
    "backbone.drop_path_rate=0.0",
]
TINY_TRAINING = [
    "training.batch_size=8",
    "training.test_batch_size=16",
    "training.max_epoch=0",
    "training.profile=false",
    "training.tensorboard=false",
    "scheduler.warmup_epochs=1",
    "scheduler.epochs=4",
    "peft.rank=2",
    "peft.num_bases=2",
]


def _class_clouds(
    num_samples: int, num_points: int, num_classes: int, seed: int, channels: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """(S, P, channels) float32 ellipsoid surfaces whose axis ratios depend on the class, (S,) labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num_samples) % num_classes
    directions = rng.normal(size=(num_samples, num_points, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    axes = 0.3 + 0.7 * ((labels[:, None] * np.array([1, 3, 7]) + np.array([0, 1, 2])) % num_classes) / num_classes
    points = directions * axes[:, None, :] + rng.normal(scale=0.01, size=directions.shape)
    if channels == 6:
        points = np.concatenate([points, directions], axis=-1)
    return points.astype(np.float32), labels.astype(np.int64)


def _write_scanobjectnn(root: Path, num_train: int = 32, num_test: int = 15, num_points: int = 96) -> Path:
    """``root/main_split/{training,test}_objectdataset_augmentedrot_scale75.h5`` (PB_T50_RS layout)."""
    folder = root / "main_split"
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("training", num_train, 0), ("test", num_test, 1)):
        points, labels = _class_clouds(count, num_points, 15, seed)
        with h5py.File(folder / f"{split}_objectdataset_augmentedrot_scale75.h5", "w") as handle:
            handle["data"] = points
            handle["label"] = labels
            handle["mask"] = np.zeros(points.shape[:2], dtype=np.int64)
    return root


def _write_modelnet40_dat(root: Path, num_train: int = 40, num_test: int = 40, num_points: int = 96) -> Path:
    """``root/modelnet40_{train,test}_8192pts_fps.dat`` pickles (lists of (P, 6) arrays and (1,) labels)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", num_train, 2), ("test", num_test, 3)):
        points, labels = _class_clouds(count, num_points, 40, seed, channels=6)
        content = [list(points), [np.array([label], dtype=np.int32) for label in labels]]
        with open(root / f"modelnet40_{split}_8192pts_fps.dat", "wb") as stream:
            pickle.dump(content, stream)
    return root


def _write_fewshot(root: Path, way: int = 5, shot: int = 2, fold: int = 0, num_points: int = 96) -> Path:
    """``root/{way}way{shot}shot/{fold}.pkl`` with ``shot`` train and 20 test samples per class."""
    folder = root / f"{way}way{shot}shot"
    folder.mkdir(parents=True, exist_ok=True)
    content: dict[str, Any] = {}
    for split, per_class, seed in (("train", shot, 4), ("test", 20, 5)):
        points, labels = _class_clouds(way * per_class, num_points, way, seed, channels=6)
        content[split] = [(cloud, int(label), int(label) * 3) for cloud, label in zip(points, labels, strict=True)]
    with open(folder / f"{fold}.pkl", "wb") as stream:
        pickle.dump(content, stream)
    return root


#: Taxonomy ids of the miniature ShapeNet-55 layout (airplane, chair, table).
SHAPENET_TAXONOMIES = ("02691156", "03001627", "04379243")


def _write_shapenet55(root: Path, num_train: int = 12, num_test: int = 6, num_points: int = 96, seed: int = 0) -> Path:
    """``root/ShapeNet-55/{train,test}.txt`` and ``root/shapenet_pc/<taxonomy>-<model>.npy`` (off-centre,
    anisotropic Gaussian blobs whose shape depends on the taxonomy)."""
    rng = np.random.default_rng(seed)
    (root / "ShapeNet-55").mkdir(parents=True, exist_ok=True)
    (root / "shapenet_pc").mkdir(exist_ok=True)
    for split, count in (("train", num_train), ("test", num_test)):
        names = []
        for index in range(count):
            label = index % len(SHAPENET_TAXONOMIES)
            name = f"{SHAPENET_TAXONOMIES[label]}-{split}{index:04x}abc.npy"
            scale = np.array([1.0, 2.0, 0.5])[np.roll(np.arange(3), label)]
            cloud = rng.normal(size=(num_points, 3)) * scale + [3.0, -1.0, 0.5]
            np.save(root / "shapenet_pc" / name, cloud.astype(np.float32))
            names.append(name)
        (root / "ShapeNet-55" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


#: ``--set`` strings that shrink the pre-training network and run to seconds (with ``tiny_pretrain_overrides``).
TINY_PRETRAINER = [
    "backbone.trans_dim=32",
    "backbone.encoder_dims=32",
    "backbone.depth=2",
    "backbone.num_heads=2",
    "backbone.decoder_depth=1",
    "backbone.decoder_num_heads=2",
    "backbone.num_group=16",
    "backbone.group_size=8",
    "backbone.drop_path_rate=0.0",
    "training.batch_size=4",
    "training.test_batch_size=16",
    "training.max_epoch=1",
    "training.profile=false",
    "training.tensorboard=false",
    "scheduler.epochs=4",
    "scheduler.warmup_epochs=1",
]


def _tiny_pretrain_overrides(
    data_root: Path, probe_root: Path | None, npoints: int = 64, extra: list[str] | tuple[str, ...] = ()
) -> list[str]:
    """``--set`` strings for a seconds-long pre-training run of ``pretrain_shapenet55`` (probe: ModelNet40 .dat)."""
    probe = [f"pretraining.probe.root={probe_root}"] if probe_root is not None else ["pretraining.val_every=0"]
    return [
        *TINY_PRETRAINER,
        f"dataset.root={data_root}",
        f"dataset.npoints={npoints}",
        f"pretraining.probe.npoints={npoints}",
        *probe,
        *extra,
    ]


def _tiny_overrides(data_root: Path, npoints: int = 64, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``--set`` strings that shrink any packaged config to a seconds-long CPU run."""
    return [*TINY_BACKBONE, *TINY_TRAINING, f"dataset.root={data_root}", f"dataset.npoints={npoints}", *extra]


def _tiny_config(
    name: str, data_root: Path, npoints: int = 64, extra: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    return load_config(name, _tiny_overrides(data_root, npoints, extra))


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


#: Tiny sizes under the official config names; each backbone takes the ones it has.
TINY_BACKBONE_SIZES = dict(
    trans_dim=32, depth=2, num_heads=4, encoder_dims=32, num_group=8, group_size=8, decoder_depth=1
)
#: Per-backbone changes to the tiny sizes: PointGPT-B/L keep their wide mini-PointNet, which they
#: use from encoder_dims 385 on (official: 768 / 1024), so that the tests run it.
TINY_BACKBONE_OVERRIDES: dict[str, dict[str, Any]] = {
    "pointgpt_b": dict(trans_dim=392, encoder_dims=392),
    "pointgpt_l": dict(trans_dim=392, encoder_dims=392, depth=1),
}


def _tiny_sizes(name: str) -> dict[str, Any]:
    """The tiny sizes of a registered backbone (the keys it has, with its overrides)."""
    defaults = backbones.backbone_defaults(name)
    sizes = {key: value for key, value in TINY_BACKBONE_SIZES.items() if key in defaults}
    return {**sizes, **TINY_BACKBONE_OVERRIDES.get(name, {})}


def _tiny_backbone(name: str, num_classes: int = 5, **overrides: Any) -> nn.Module:
    return backbones.create_backbone(name, num_classes=num_classes, **{**_tiny_sizes(name), **overrides})


@pytest.fixture(scope="session")
def tiny_sizes():
    """``tiny_sizes(name)`` -> the tiny size overrides of a registered backbone."""
    return _tiny_sizes


@pytest.fixture(scope="session")
def tiny_backbone():
    """``tiny_backbone(name, num_classes=5, **overrides)`` -> a registered backbone at a tiny size."""
    return _tiny_backbone


@pytest.fixture(scope="session")
def build_tiny():
    """``build_tiny(seed=0, **sizes)`` -> a seeded :class:`TinyPointViT` with non-trivial BN statistics."""
    return _build_tiny


@pytest.fixture(scope="session")
def tiny_image_vit():
    """The :class:`TinyImageViT` class (timm-like names, no ``head_module_names``)."""
    return TinyImageViT


@pytest.fixture(scope="session")
def make_points():
    """``make_points(batch=3, num_points=32, seed=0)`` -> random (B, N, 3) points."""
    return _make_points


@pytest.fixture(scope="session")
def randomize_adapters():
    """``randomize_adapters(model, seed=0, scale=0.5)``: random coefficients / LoRA up-factors."""
    return _randomize_adapters


@pytest.fixture(scope="session")
def official_shapes():
    """Builders of ``{key: shape}`` tables with the official key names (see the functions above)."""
    return SimpleNamespace(
        point_mae_finetuned=_point_mae_finetuned_shapes,
        point_mae_encoder=_point_mae_encoder_shapes,
        point_mae_decoder=_point_mae_decoder_shapes,
        point_mae_pretrain=_point_mae_pretrain_shapes,
        point_bert_finetuned=_point_bert_finetuned_shapes,
        point_bert_backbone=_point_bert_backbone_shapes,
        point_bert_mask_transformer=_point_bert_mask_transformer_shapes,
        point_bert_pretrain=_point_bert_pretrain_shapes,
        mini_pointnet=_mini_pointnet_shapes,
        transformer=_transformer_shapes,
        act_pretrain=_act_pretrain_shapes,
        recon_transformer=_recon_transformer_shapes,
        recon_encoder=_recon_encoder_shapes,
        recon_finetuned=_recon_finetuned_shapes,
        recon_pretrain=_recon_pretrain_shapes,
        mlp3_head=_mlp3_head_shapes,
        large_pointnet=_large_pointnet_shapes,
        gpt_layers=_gpt_layers_shapes,
        pointgpt_encoder=_pointgpt_encoder_shapes,
        pointgpt_finetuned=_pointgpt_finetuned_shapes,
        pointgpt_pretrain=_pointgpt_pretrain_shapes,
        pointgpt_post_pretrain=_pointgpt_post_pretrain_shapes,
        parameter_count=_parameter_count,
    )


@pytest.fixture(scope="session")
def make_state_dict():
    """``make_state_dict(shapes, seed=0)`` -> random tensors of those shapes."""
    return _make_state_dict


@pytest.fixture(scope="session")
def write_scanobjectnn():
    """``write_scanobjectnn(root, num_train=32, num_test=15, num_points=96)`` -> root (PB_T50_RS layout)."""
    return _write_scanobjectnn


@pytest.fixture(scope="session")
def write_modelnet40_dat():
    """``write_modelnet40_dat(root, num_train=40, num_test=40, num_points=96)`` -> root (.dat pickles)."""
    return _write_modelnet40_dat


@pytest.fixture(scope="session")
def write_fewshot():
    """``write_fewshot(root, way=5, shot=2, fold=0, num_points=96)`` -> root (few-shot fold pickle)."""
    return _write_fewshot


@pytest.fixture(scope="session")
def write_shapenet55():
    """``write_shapenet55(root, num_train=12, num_test=6, num_points=96, seed=0)`` -> root (ShapeNet-55 layout)."""
    return _write_shapenet55


@pytest.fixture(scope="session")
def tiny_pretrain_overrides():
    """``tiny_pretrain_overrides(data_root, probe_root, npoints=64, extra=())`` -> ``--set`` strings (None probe_root:
    no validation)."""
    return _tiny_pretrain_overrides


@pytest.fixture(scope="session")
def tiny_overrides():
    """``tiny_overrides(data_root, npoints=64, extra=())`` -> ``--set`` strings for a seconds-long run."""
    return _tiny_overrides


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(name, data_root, npoints=64, extra=())`` -> a resolved, shrunk packaged config."""
    return _tiny_config
