"""Analytic FLOP estimate of the FPS + kNN tokenizer (it runs no op a FLOP counter sees).

Per cloud of N points, G centres, k neighbours (``backbones.tokenizer`` semantics):

- FPS: G − 1 iterations, each touching all N points with 3 subtractions, 3 squares, 2 additions
  (squared distance to the newest centre), 1 minimum (running distance to the chosen set) and
  1 comparison (argmax): ``10 · (G − 1) · N``.
- kNN: G · N exact distances, each 3 subtractions, 3 squares, 2 additions and 1 square root
  (``9 · G · N``), then a top-k selection of about ⌈log₂ k⌉ comparisons per candidate
  (``G · N · ⌈log₂ k⌉``).
- Centring the neighbourhoods: ``3 · G · k`` subtractions.

Gathers and index bookkeeping are not counted.
"""

from __future__ import annotations

import math

FPS_FLOPS_PER_POINT = 10
DISTANCE_FLOPS = 9


def tokenizer_flops_estimate(num_points: int, num_group: int, group_size: int, batch_size: int = 1) -> int:
    """Estimated FLOPs of FPS + kNN grouping for ``batch_size`` clouds of ``num_points`` points.

    For Point-MAE's ScanObjectNN setting (N = 2048, G = 128, k = 32, batch 1) this is
    2,600,960 (FPS) + 3,670,016 (kNN) + 12,288 (centring) = 6,283,264 ≈ 0.006 G.
    """
    fps = FPS_FLOPS_PER_POINT * (num_group - 1) * num_points
    knn = num_group * num_points * (DISTANCE_FLOPS + math.ceil(math.log2(group_size)))
    centring = 3 * num_group * group_size
    return batch_size * (fps + knn + centring)
