"""Mini-PointNets that turn each point patch into one token (docs/formats.md).

Layer indices match the official ``Encoder`` so state dicts load strictly:
``first_conv.{0,1,3}`` and ``second_conv.{0,1,3}`` (Conv1d, BatchNorm1d, ReLU, Conv1d).
"""

from __future__ import annotations

import torch
from torch import nn


class PatchEncoder(nn.Module):
    """Shared point-wise MLP with two max-pools: (B, G, k, 3) → (B, G, ``encoder_dims``).

    The first stage's pooled (global) feature is concatenated to every point's local feature
    before the second stage, so each point sees its whole patch.
    """

    def __init__(self, encoder_dims: int) -> None:
        super().__init__()
        self.encoder_dims = encoder_dims
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, 128, 1),
            nn.BatchNorm1d(128),
            nn.ReLU(inplace=True),
            nn.Conv1d(128, 256, 1),
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(512, 512, 1),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Conv1d(512, encoder_dims, 1),
        )

    def forward(self, neighborhood: torch.Tensor) -> torch.Tensor:
        """neighborhood (B, G, k, 3) → tokens (B, G, encoder_dims)."""
        batch, groups, size, _ = neighborhood.shape
        x = neighborhood.reshape(batch * groups, size, 3).transpose(1, 2)  # (BG, 3, k)
        local = self.first_conv(x)  # (BG, 256, k)
        pooled = local.amax(dim=2, keepdim=True)  # (BG, 256, 1)
        x = torch.cat([pooled.expand(-1, -1, size), local], dim=1)  # (BG, 512, k)
        x = self.second_conv(x).amax(dim=2)  # (BG, encoder_dims)
        return x.reshape(batch, groups, self.encoder_dims)


class LargePatchEncoder(nn.Module):
    """PointGPT-B/L's wider mini-PointNet (official ``Encoder_large``): (B, G, k, 3) → (B, G, ``encoder_dims``).

    ``first_conv`` = Conv1d(3, 256) BN ReLU Conv1d(256, 512) BN ReLU Conv1d(512, 1024) (indices
    0, 1, 3, 4, 6); its pooled 1024-wide feature is concatenated to every point's, and
    ``second_conv`` = Conv1d(2048, 2048) BN ReLU Conv1d(2048, encoder_dims) (indices 0, 1, 3).
    """

    def __init__(self, encoder_dims: int) -> None:
        super().__init__()
        self.encoder_dims = encoder_dims
        self.first_conv = nn.Sequential(
            nn.Conv1d(3, 256, 1),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Conv1d(256, 512, 1),
            nn.BatchNorm1d(512),
            nn.ReLU(inplace=True),
            nn.Conv1d(512, 1024, 1),
        )
        self.second_conv = nn.Sequential(
            nn.Conv1d(2048, 2048, 1),
            nn.BatchNorm1d(2048),
            nn.ReLU(inplace=True),
            nn.Conv1d(2048, encoder_dims, 1),
        )

    def forward(self, neighborhood: torch.Tensor) -> torch.Tensor:
        """neighborhood (B, G, k, 3) → tokens (B, G, encoder_dims)."""
        batch, groups, size, _ = neighborhood.shape
        x = neighborhood.reshape(batch * groups, size, 3).transpose(1, 2)  # (BG, 3, k)
        local = self.first_conv(x)  # (BG, 1024, k)
        pooled = local.amax(dim=2, keepdim=True)
        x = torch.cat([pooled.expand(-1, -1, size), local], dim=1)  # (BG, 2048, k)
        x = self.second_conv(x).amax(dim=2)
        return x.reshape(batch, groups, self.encoder_dims)
