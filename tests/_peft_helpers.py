"""Tiny models for the adapter tests: a Point-MAE-like point ViT and a plain image ViT.

Both are written here so that the adapter code is tested without the backbone zoo.  The point
ViT uses the module names of the official models (docs/formats.md) (``blocks.blocks[i].attn.qkv`` …, ``cls_token``,
``cls_pos``, ``cls_head_finetune``) and has BatchNorm in its encoder and head; the image ViT
uses timm-like names (``blocks[i]``, ``pos_embed``, ``head``) and no ``head_module_names``.
"""

from __future__ import annotations

import torch
from torch import nn


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


def make_points(batch: int = 3, num_points: int = 32, seed: int = 0) -> torch.Tensor:
    """Random (batch, num_points, 3) points."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, num_points, 3, generator=generator)


def randomize_adapters(model: nn.Module, seed: int = 0, scale: float = 0.5) -> None:
    """Give every coefficient / LoRA up-factor random values (they start at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("coefficients", "lora_up")):
                values = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
                parameter.copy_(values * scale)


def build_tiny(seed: int = 0, **kwargs) -> TinyPointViT:
    """A TinyPointViT with seeded weights and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = TinyPointViT(**kwargs)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    return model
