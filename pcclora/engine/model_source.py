"""Rebuild a trained model for inference from whatever file the user has.

Three kinds of file hold a trained classifier:

- a **run checkpoint** (``<run>/checkpoints/best.pth``): the trained tensors and the run's config;
  the frozen backbone is rebuilt from the config (its pre-trained file, or its seed);
- a **merged export** of this toolkit (``model_merged.pth``): the whole model in the official
  fine-tuned layout plus the information needed to rebuild it (backbone, sizes, classes, points);
- an **official fine-tuned file** (``scan_hardest.pth``): the whole model, no information, so
  the caller gives the config it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from backbones import create_backbone
from backbones.checkpoint import stored_model_info
from backbones.errors import ConfigError
from datasets import get_dataset_spec
from pcclora.config import config_from_dict
from pcclora.engine.checkpoint import is_run_checkpoint, read_checkpoint_file
from pcclora.engine.model import build_model, load_official_model
from pcclora.peft import load_adapter_state_dict, merge_adapters


@dataclass
class LoadedModel:
    """A trained classifier ready for inference, and what the predictions need to know.

    Attributes:
        model: the network in eval mode (adapters merged: the backbone's cost).
        num_classes: outputs of its head.
        class_names: one name per output, or None when the file does not say.
        npoints: points per cloud it was trained and evaluated with.
        dataset: the registered dataset it was trained on, or None when unknown.
        method: the fine-tuning method (``"official checkpoint"`` for an official file).
    """

    model: nn.Module
    num_classes: int
    class_names: list[str] | None
    npoints: int
    dataset: str | None
    method: str

    def class_name(self, index: int) -> str:
        """The name of output ``index`` (``"class <index>"`` when the names are unknown)."""
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"


def _class_names(info: dict[str, Any], dataset: str | None, num_classes: int) -> list[str] | None:
    """Stored names first, else the dataset's fixed label order when its size matches."""
    names = info.get("class_names")
    if names:
        return list(names)
    if dataset is not None:
        fixed = get_dataset_spec(dataset).class_names
        if fixed is not None and len(fixed) == num_classes:
            return list(fixed)
    return None


def _num_classes(config: dict[str, Any], info: dict[str, Any]) -> int:
    return int(
        info.get("num_classes")
        or config["backbone"]["num_classes"]
        or get_dataset_spec(config["dataset"]["name"]).num_classes(config["dataset"])
    )


def load_model_for_inference(path: str | Path, config: dict[str, Any] | None = None) -> LoadedModel:
    """The trained classifier in ``path`` (see :func:`_load_model_for_inference`).

    Raises:
        ConfigError: also for a part-segmentation model, which labels points, not clouds.
    """
    loaded = _load_model_for_inference(path, config)
    if getattr(loaded.model, "task", "classification") == "segmentation":
        raise ConfigError(
            f"{path} holds a part-segmentation model ({type(loaded.model).__name__}); predictions classify whole "
            "clouds. Evaluate it with tools/test.py, or call model(points, shape_label) -> (B, N, parts) in Python"
        )
    return loaded


def _load_model_for_inference(path: str | Path, config: dict[str, Any] | None = None) -> LoadedModel:
    """The trained model in ``path`` and what predictions need to know about it.

    Args:
        path: a run checkpoint, a merged export of this toolkit, or an official fine-tuned file.
        config: a resolved config, needed only for an official fine-tuned file.

    Raises:
        CheckpointError: a missing or unreadable file, or tensors that do not fit the model.
        ConfigError: an official fine-tuned file without ``config``.
    """
    checkpoint = read_checkpoint_file(path)
    info = stored_model_info(checkpoint) or {}
    saved_task = checkpoint["config"].get("task") if isinstance(checkpoint.get("config"), dict) else None
    if info.get("method") == "pretraining" or saved_task == "pretraining":
        raise ConfigError(
            f"{path} is a pre-trained network without a classification head, so it predicts no class; "
            f"fine-tune it first (python tools/finetune.py --cfg ... --ckpt {path})"
        )
    if is_run_checkpoint(checkpoint):
        saved = checkpoint["config"]
        run_config = config_from_dict(saved, name=saved.get("name", "config"))
        info = stored_model_info(checkpoint) or {}
        num_classes = _num_classes(run_config, info)
        model = build_model(run_config, num_classes, log=lambda message: None)
        load_adapter_state_dict(model, checkpoint["adapter"])
        dataset = run_config["dataset"]["name"]
        return LoadedModel(
            model=merge_adapters(model).eval(),
            num_classes=num_classes,
            class_names=_class_names(info, dataset, num_classes),
            npoints=run_config["dataset"]["npoints"],
            dataset=dataset,
            method=run_config["peft"]["method"],
        )
    info = stored_model_info(checkpoint)
    if info is not None:
        model = create_backbone(info["backbone"], checkpoint=checkpoint, num_classes=info.get("num_classes"))
        dataset = info.get("dataset")
        return LoadedModel(
            model=model.eval(),
            num_classes=model.num_classes,
            class_names=_class_names(info, dataset, model.num_classes),
            npoints=int(info.get("npoints") or 1024),
            dataset=dataset,
            method=str(info.get("method", "export")),
        )
    if config is None:
        raise ConfigError(
            f"{path} is neither a pcclora run checkpoint nor a pcclora export, so it says nothing about the model; "
            "give the config it was trained with (--cfg scanobjectnn_hardest.yaml ...)"
        )
    dataset = config["dataset"]["name"]
    num_classes = _num_classes(config, {})
    model = load_official_model(path, config, num_classes)
    return LoadedModel(
        model=model.eval(),
        num_classes=model.num_classes,
        class_names=_class_names({}, dataset, model.num_classes),
        npoints=config["dataset"]["npoints"],
        dataset=dataset,
        method="official checkpoint",
    )
