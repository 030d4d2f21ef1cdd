"""Predictions on a user's own point clouds: top-k classes with probabilities.

>>> import pcclora
>>> rows = pcclora.predict("runs/demo/RUN/checkpoints/best.pth", ["chair.ply", "scans/"])  # doctest: +SKIP
>>> rows[0]["top"][0]                                                              # doctest: +SKIP
{'class': 'chair', 'index': 4, 'probability': 0.93}

The model comes from a run checkpoint (``<run>/checkpoints/best.pth``), from this toolkit's merged
export (``model_merged.pth``), or from an official fine-tuned file together with its config. Each
cloud is prepared as the evaluation prepares test clouds: the normalisation of the dataset the
model was trained on (``normalize="auto"``; ModelNet40 centres each cloud and scales it into the
unit sphere, ScanObjectNN files are used as they are), then farthest point sampling to the
model's ``npoints``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backbones.errors import ConfigError, DataError
from datasets import get_dataset_spec
from datasets.cloud_files import expand_cloud_paths, read_cloud_file
from datasets.modelnet40 import pc_normalize
from datasets.transforms import fps_subsample
from pcclora.device import resolve_device
from pcclora.engine.model_source import LoadedModel, load_model_for_inference

#: How a cloud is scaled before the model sees it.
NORMALIZE_CHOICES = ("auto", "unit_sphere", "none")


@dataclass(frozen=True)
class Prediction:
    """The top classes of one cloud."""

    name: str
    num_points: int
    top: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "num_points": self.num_points, "top": self.top}


def _normalizer(loaded: LoadedModel, normalize: str) -> bool:
    if normalize not in NORMALIZE_CHOICES:
        raise ConfigError(f"unknown normalize {normalize!r}; choose one of {', '.join(NORMALIZE_CHOICES)}")
    if normalize == "auto":
        if loaded.dataset is None:
            return False
        return get_dataset_spec(loaded.dataset).normalize
    return normalize == "unit_sphere"


def _prepare(points: np.ndarray, name: str, npoints: int, minimum: int, unit_sphere: bool) -> torch.Tensor:
    """(N, 3) array -> (1, min(N, npoints), 3) tensor, normalised and FPS-sampled as in evaluation."""
    if len(points) < minimum:
        raise DataError(
            f"{name}: {len(points)} points is too few for this model, which groups {minimum} points at least "
            "(its num_group and group_size); give a denser cloud"
        )
    if unit_sphere:
        points = pc_normalize(points)
    cloud = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))[None]
    return fps_subsample(cloud, min(npoints, len(points)))


@torch.no_grad()
def predict_clouds(
    loaded: LoadedModel,
    clouds: Iterable[tuple[str, np.ndarray]],
    top_k: int = 5,
    normalize: str = "auto",
    batch_size: int = 16,
) -> list[Prediction]:
    """Top-``k`` classes of each ``(name, (N, 3) points)`` cloud with a loaded model.

    Clouds with at least ``npoints`` points are FPS-sampled to ``npoints`` and batched; a cloud with
    fewer points (but enough for the tokenizer) runs alone with all its points.
    """
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}")
    unit_sphere = _normalizer(loaded, normalize)
    model = loaded.model.eval()
    device = next(model.parameters()).device
    minimum = max(loaded.model.num_group, loaded.model.group_size)
    prepared = [
        (name, len(points), _prepare(points, name, loaded.npoints, minimum, unit_sphere)) for name, points in clouds
    ]
    predictions: list[Prediction] = []
    k = min(top_k, loaded.num_classes)
    index = 0
    while index < len(prepared):
        size = prepared[index][2].shape[1]
        batch = [prepared[index]]
        while (
            len(batch) < batch_size
            and index + len(batch) < len(prepared)
            and prepared[index + len(batch)][2].shape[1] == size
        ):
            batch.append(prepared[index + len(batch)])
        logits = model(torch.cat([cloud for _, _, cloud in batch]).to(device)).float()
        if not torch.isfinite(logits).all():
            raise DataError(f"the model gave non-finite logits for {batch[0][0]} (is the checkpoint damaged?)")
        probabilities = logits.softmax(dim=-1).cpu()
        values, indices = probabilities.topk(k, dim=-1)
        for (name, num_points, _), row_values, row_indices in zip(batch, values, indices, strict=True):
            top = [
                {"class": loaded.class_name(int(i)), "index": int(i), "probability": float(v)}
                for v, i in zip(row_values, row_indices, strict=True)
            ]
            predictions.append(Prediction(name=name, num_points=num_points, top=top))
        index += len(batch)
    return predictions


def predict(
    checkpoint: str | Path,
    inputs: Sequence[str | Path] | str | Path,
    *,
    config: dict[str, Any] | None = None,
    top_k: int = 5,
    normalize: str = "auto",
    device: str = "auto",
    batch_size: int = 16,
) -> list[dict[str, Any]]:
    """Top-``k`` class probabilities for every cloud in ``inputs``.

    Args:
        checkpoint: a run checkpoint, a merged export of this toolkit, or an official fine-tuned
            file (then ``config`` says which backbone, sizes and dataset it belongs to).
        inputs: files (``.npy``, ``.txt``/``.xyz``/``.pts``/``.csv``, ``.ply``, ``.h5``), folders
            or glob patterns; a multi-cloud file gives one row per cloud.
        config: a resolved config for an official fine-tuned file.
        top_k: classes per cloud.
        normalize: ``"auto"`` (as the training dataset), ``"unit_sphere"`` or ``"none"``.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        batch_size: clouds per forward pass.

    Returns:
        one ``{"name", "num_points", "top": [{"class", "index", "probability"}, ...]}`` per cloud,
        in input order.

    Raises:
        DataError: a missing, unreadable or too small cloud.
        CheckpointError, ConfigError: the model cannot be rebuilt from ``checkpoint``.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    paths = expand_cloud_paths(inputs)
    loaded = load_model_for_inference(checkpoint, config=config)
    loaded.model.to(resolve_device(device))
    clouds = [cloud for path in paths for cloud in read_cloud_file(path)]
    rows = predict_clouds(loaded, clouds, top_k=top_k, normalize=normalize, batch_size=batch_size)
    return [row.as_dict() for row in rows]


__all__ = ["NORMALIZE_CHOICES", "Prediction", "predict", "predict_clouds"]
