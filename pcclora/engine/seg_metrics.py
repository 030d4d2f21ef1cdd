"""Part-segmentation metrics as the official ShapeNetPart evaluation defines them.

- Predictions are restricted to the shape's category: the argmax over that category's part
  logits only (a chair point is never predicted as a wing).
- Shape IoU: the mean over the category's parts of |pred ∩ true| / |pred ∪ true|; a part absent
  from both the prediction and the truth counts IoU 1.
- Instance mIoU: the mean shape IoU over all test shapes (the primary figure).
- Class mIoU: the mean over the categories (those with test shapes) of their mean shape IoU.
- Point accuracy: correctly labelled points over all points.

All figures are in percent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch


def restricted_predictions(
    logits: torch.Tensor, categories: torch.Tensor, part_ranges: Mapping[int, Sequence[int]]
) -> torch.Tensor:
    """Per-point part labels chosen among the shape category's parts only.

    Args:
        logits: (B, N, P) part logits.
        categories: (B,) category index of each shape.
        part_ranges: category index → its part labels (consecutive, as the official table).

    Returns:
        (B, N) int64 part labels.
    """
    mask = torch.full((logits.shape[0], logits.shape[-1]), float("-inf"), device=logits.device)
    for row, category in enumerate(categories.tolist()):
        mask[row, list(part_ranges[category])] = 0.0
    return (logits.float() + mask[:, None, :]).argmax(dim=-1)


def shape_iou(prediction: torch.Tensor, target: torch.Tensor, parts: Sequence[int]) -> float:
    """Mean part IoU of one shape over ``parts``; a part in neither ``prediction`` nor ``target`` counts 1.

    Args:
        prediction, target: (N,) part labels.
    """
    ious = []
    for part in parts:
        predicted, true = prediction == part, target == part
        union = int((predicted | true).sum())
        ious.append(1.0 if union == 0 else int((predicted & true).sum()) / union)
    return sum(ious) / len(ious)


@dataclass
class PartSegScores:
    """Figures of one evaluation (percent) and the per-shape IoUs behind them.

    Attributes:
        instance_miou: mean shape IoU over all shapes.
        class_miou: mean over categories of their mean shape IoU.
        per_category: category name → mean shape IoU (categories with test shapes).
        accuracy: point accuracy.
        shape_ious: (S,) IoU of every shape, in [0, 1].
        shape_categories: (S,) category of every shape.
    """

    instance_miou: float
    class_miou: float
    per_category: dict[str, float]
    accuracy: float
    shape_ious: list[float] = field(default_factory=list)
    shape_categories: list[int] = field(default_factory=list)
    num_shapes: int = 0


def part_seg_scores(
    shape_ious: Sequence[float],
    shape_categories: Sequence[int],
    correct_points: int,
    total_points: int,
    category_names: Sequence[str],
) -> PartSegScores:
    """Instance and class mIoU, per-category IoU and point accuracy from per-shape IoUs.

    Args:
        shape_ious: IoU of each shape in [0, 1] (:func:`shape_iou`).
        shape_categories: category index of each shape.
        correct_points, total_points: for the point accuracy.
        category_names: name of each category index.
    """
    per_category_values: dict[int, list[float]] = {}
    for iou, category in zip(shape_ious, shape_categories, strict=True):
        per_category_values.setdefault(int(category), []).append(float(iou))
    per_category = {
        category_names[category]: 100.0 * sum(values) / len(values)
        for category, values in sorted(per_category_values.items())
    }
    count = len(shape_ious)
    return PartSegScores(
        instance_miou=100.0 * sum(shape_ious) / count if count else 0.0,
        class_miou=sum(per_category.values()) / len(per_category) if per_category else 0.0,
        per_category=per_category,
        accuracy=100.0 * correct_points / max(total_points, 1),
        shape_ious=[float(value) for value in shape_ious],
        shape_categories=[int(value) for value in shape_categories],
        num_shapes=count,
    )
