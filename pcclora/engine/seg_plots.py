"""Test shapes coloured by predicted and true part (matplotlib 3-D scatter), written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pcclora.engine.plots import _save  # noqa: E402


def plot_part_predictions(samples: Sequence[dict], category_names: Sequence[str], path: Path, title: str) -> None:
    """One row per shape: predicted parts left, true parts right, same colour per part label.

    Args:
        samples: ``{"points" (N, 3), "prediction" (N,), "target" (N,), "category" int}`` each.
        category_names: name of each category index (for the panel titles).
        path: the PNG to write; nothing is written without samples.
    """
    if not samples:
        return
    figure = plt.figure(figsize=(8, 3.6 * len(samples)))
    for row, sample in enumerate(samples):
        points = torch.as_tensor(sample["points"]).float()
        category = int(sample["category"])
        name = category_names[category] if category < len(category_names) else f"category {category}"
        correct = float((sample["prediction"] == sample["target"]).float().mean()) * 100
        for column, (key, label) in enumerate(
            (("prediction", f"predicted ({correct:.0f}% points)"), ("target", "true"))
        ):
            axis = figure.add_subplot(len(samples), 2, 2 * row + column + 1, projection="3d")
            # ShapeNet is y-up: draw y as the vertical axis
            axis.scatter(
                points[:, 0], points[:, 2], points[:, 1], c=sample[key].numpy() % 10, cmap="tab10", vmin=0, vmax=9, s=2
            )
            axis.set_title(f"{name}: {label}", fontsize=9)
            axis.set_axis_off()
    figure.suptitle(title)
    figure.tight_layout()
    _save(figure, path)
