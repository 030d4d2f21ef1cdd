"""Feature propagation from patch centres to every point: 3-NN inverse-distance interpolation + shared MLP.

This is the up-sampling step of PointNet++ (``PointNetFeaturePropagation``) that the Point-MAE
segmentation model uses once, from the G patch centres to the N input points, in plain PyTorch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Added to the squared distances before inverting them (a point on a centre gets a finite weight).
DISTANCE_EPS = 1e-8


def three_nn_interpolate(points: torch.Tensor, centers: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Interpolate centre features at every point from its 3 nearest centres.

    Each point takes the mean of its k = min(3, S) nearest centres' features weighted by
    ``1 / (squared distance + 1e-8)``, normalised to sum 1; with a single centre every point
    takes its features.

    Args:
        points: (B, N, 3) query points.
        centers: (B, S, 3) centres.
        features: (B, S, C) features of the centres.

    Returns:
        (B, N, C) interpolated features.
    """
    batch, num_points, _ = points.shape
    num_centers = centers.shape[1]
    if num_centers == 1:
        return features.expand(batch, num_points, features.shape[-1])
    distances = (points.unsqueeze(2) - centers.unsqueeze(1)).square().sum(-1)  # (B, N, S)
    nearest, index = distances.topk(min(3, num_centers), dim=-1, largest=False, sorted=True)  # (B, N, k)
    weights = 1.0 / (nearest + DISTANCE_EPS)
    weights = weights / weights.sum(dim=-1, keepdim=True)
    channels = features.shape[-1]
    gathered = torch.gather(
        features.unsqueeze(1).expand(batch, num_points, num_centers, channels),
        2,
        index.unsqueeze(-1).expand(-1, -1, -1, channels),
    )  # (B, N, k, C)
    return (gathered * weights.unsqueeze(-1)).sum(dim=2)


class FeaturePropagation(nn.Module):
    """Interpolate centre features to the points, concatenate the points' own features, then
    Conv1d-BN-ReLU layers (official names ``mlp_convs.i`` / ``mlp_bns.i``).

    Args:
        in_channel: channels after the concatenation (own point features + centre features).
        mlp: output channels of each Conv1d-BN-ReLU layer.
    """

    def __init__(self, in_channel: int, mlp: Sequence[int]) -> None:
        super().__init__()
        self.mlp_convs = nn.ModuleList()
        self.mlp_bns = nn.ModuleList()
        last = in_channel
        for out_channel in mlp:
            self.mlp_convs.append(nn.Conv1d(last, out_channel, 1))
            self.mlp_bns.append(nn.BatchNorm1d(out_channel))
            last = out_channel

    def forward(
        self,
        points: torch.Tensor,
        centers: torch.Tensor,
        point_features: torch.Tensor | None,
        center_features: torch.Tensor,
    ) -> torch.Tensor:
        """points (B, N, 3), centers (B, S, 3), point_features (B, D, N) or None, center_features
        (B, C, S) → (B, mlp[-1], N)."""
        interpolated = three_nn_interpolate(points, centers, center_features.transpose(1, 2)).transpose(1, 2)
        x = interpolated if point_features is None else torch.cat([point_features, interpolated], dim=1)
        for conv, bn in zip(self.mlp_convs, self.mlp_bns, strict=True):
            x = F.relu(bn(conv(x)))
        return x
