"""Fine-tuning configs of the official repositories, read as they are and translated to this schema.

Point-MAE, Point-BERT, ACT, ReCon and PointGPT share one config schema (Point-BERT's
``utils/config.py``)::

    optimizer: {type: AdamW, kwargs: {lr: 0.0005, weight_decay: 0.05}}
    scheduler: {type: CosLR, kwargs: {epochs: 300, initial_epochs: 10}}
    dataset:
      train: {_base_: cfgs/dataset_configs/ScanObjectNN_hardest.yaml, others: {subset: train}}
      val:   {_base_: cfgs/dataset_configs/ScanObjectNN_hardest.yaml, others: {subset: test}}
      test:  {_base_: cfgs/dataset_configs/ScanObjectNN_hardest.yaml, others: {subset: test}}
    model: {NAME: PointTransformer, trans_dim: 384, depth: 12, cls_dim: 15, ...}
    npoints: 2048
    total_bs: 32
    step_per_update: 1
    max_epoch: 300
    grad_norm_clip: 10

:func:`pcclora.config.load_config` recognises such a file by its keys (:func:`is_official_config`)
and calls :func:`translate_official_config`, which

- maps every key to this toolkit's (one line per key in :attr:`Translation.lines`);
- tells the backbone from ``model``: all five repositories call their fine-tuning model
  ``PointTransformer``; PointGPT's has ``decoder_depth`` (S / B / L by width), ReCon's ``type``,
  ACT's ``embed_dim`` / ``transfer_type``, Point-BERT's ``encoder_dims`` differs from
  ``trans_dim``, the rest is Point-MAE;
- reads the nested dataset files (``_base_`` paths are relative to the repository root: they are
  looked up from the current folder and from every folder above the config file);
- adds what the official *runner* does that the YAML file does not say (label smoothing,
  augmentation, the lr floor, ReCon's 10× head lr), from the backbone's packaged ``_base_`` files;
- refuses, with one :class:`ConfigError` listing them all, only what has no equivalent here
  (another optimizer or scheduler, gradient accumulation, pre-training configs, other datasets,
  a single-linear-layer head, …).

Sections of this toolkit's own schema that the official one does not have (``peft``,
``training``, ``backbone``) may be added to an official file and are kept as they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backbones.errors import ConfigError

from .config import CONFIG_DIR, _load_with_bases, _read_yaml, deep_merge

#: Top-level keys only the official schema has.
OFFICIAL_ONLY_KEYS = ("model", "npoints", "total_bs", "step_per_update", "max_epoch", "grad_norm_clip")
#: Sections of this toolkit's schema an official file may carry; kept as they are.
OWN_SECTIONS = ("peft", "training", "backbone")
#: Official pre-training model names: no fine-tuning equivalent.
PRETRAINING_MODELS = {
    "Point_MAE": "Point-MAE",
    "Point_BERT": "Point-BERT",
    "ReCon": "ReCon",
    "PointGPT": "PointGPT",
    "ACT_PointDistillation": "ACT",
    "ACT_PointBERT": "ACT",
    "dVAE": "Point-BERT",
    "DiscreteVAE": "Point-BERT",
}
#: PointGPT size by token width.
POINTGPT_BY_WIDTH = {384: "pointgpt_s", 768: "pointgpt_b", 1024: "pointgpt_l"}
#: Official model field → backbone key (sizes under their official names).
SIZE_FIELDS = {
    "trans_dim": "trans_dim",
    "embed_dim": "trans_dim",
    "depth": "depth",
    "num_heads": "num_heads",
    "group_size": "group_size",
    "num_group": "num_group",
    "encoder_dims": "encoder_dims",
    "drop_path_rate": "drop_path_rate",
    "decoder_depth": "decoder_depth",
}
#: Model fields the official fine-tuning models read without effect on the model.
NO_EFFECT_FIELDS = {
    "loss": "not read by PointGPT's fine-tuning model (it always uses Chamfer L1 + L2 for its generator)",
    "weight_center": "not read by PointGPT's fine-tuning model",
}
#: The official runners' recipe parts that are not in the YAML file: packaged ``_base_`` files
#: per backbone, and per (backbone, dataset) where the runner branches on the dataset.
RUNNER_BASES = {
    "point_mae": ["_base_/point_mae.yaml"],
    "point_bert": ["_base_/point_bert.yaml"],
    "act": ["_base_/act.yaml"],
    "recon": ["_base_/recon.yaml"],
    "pointgpt_s": ["_base_/pointgpt_s.yaml"],
    "pointgpt_b": ["_base_/pointgpt_b.yaml"],
    "pointgpt_l": ["_base_/pointgpt_l.yaml"],
}
RUNNER_DATASET_BASES = {
    ("recon", "scanobjectnn"): ["_base_/augment_rotate_only.yaml"],
}
#: Repository name per backbone, for the messages.
REPOSITORY = {
    "point_mae": "Point-MAE",
    "point_bert": "Point-BERT",
    "act": "ACT",
    "recon": "ReCon",
    "pointgpt_s": "PointGPT",
    "pointgpt_b": "PointGPT",
    "pointgpt_l": "PointGPT",
}


@dataclass
class Translation:
    """An official config in this toolkit's schema.

    Attributes:
        config: the raw config (not yet resolved: :func:`pcclora.config.config_from_dict` fills
            the defaults), the runner's ``_base_`` files already merged in.
        lines: one line per official key: ``official.key: value -> ours.key: value``, or the
            reason it needs nothing.
        backbone: the recognised backbone.
    """

    config: dict[str, Any]
    lines: list[str]
    backbone: str
    refused: list[str] = field(default_factory=list)


def is_official_config(data: Mapping[str, Any]) -> bool:
    """Whether a config file's top-level mapping is in the official schema."""
    if any(key in data for key in OFFICIAL_ONLY_KEYS):
        return True
    optimizer, scheduler, dataset = data.get("optimizer"), data.get("scheduler"), data.get("dataset")
    return (
        (isinstance(optimizer, Mapping) and ("type" in optimizer or "kwargs" in optimizer))
        or (isinstance(scheduler, Mapping) and ("type" in scheduler or "kwargs" in scheduler))
        or (isinstance(dataset, Mapping) and any(isinstance(dataset.get(k), Mapping) for k in ("train", "val")))
    )


class _Translator:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.ours: dict[str, Any] = {}
        self.lines: list[str] = []
        self.refused: list[str] = []

    # -- helpers ---------------------------------------------------------------------------

    def set(self, official: str, value: Any, ours: str, converted: Any = None) -> None:
        converted = value if converted is None else converted
        node = self.ours
        *parents, leaf = ours.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = converted
        self.lines.append(f"{official}: {value!r} -> {ours}: {converted!r}")

    def note(self, official: str, value: Any, reason: str) -> None:
        self.lines.append(f"{official}: {value!r} -> ({reason})")

    def refuse(self, official: str, value: Any, reason: str) -> None:
        self.refused.append(f"{official}: {value!r} ({reason})")

    def number(self, official: str, value: Any, kind: type = float) -> Any:
        """A number of the official file (YAML reads ``2e-5`` as a string), or None when refused."""
        if isinstance(value, bool):
            number = None
        elif kind is int:
            number = value if isinstance(value, int) else None
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = None
        if number is None:
            self.refuse(official, value, f"expected {'an integer' if kind is int else 'a number'}")
        return number

    # -- sections --------------------------------------------------------------------------

    def optimizer(self, section: Any) -> None:
        if not isinstance(section, Mapping):
            self.refuse("optimizer", section, "expected a mapping with type and kwargs")
            return
        kind = section.get("type")
        if kind != "AdamW":
            self.refuse("optimizer.type", kind, "pcclora trains with AdamW only")
        else:
            self.set("optimizer.type", kind, "optimizer.name", "adamw")
        for key, value in (section.get("kwargs") or {}).items():
            official = f"optimizer.kwargs.{key}"
            if key in ("lr", "weight_decay"):
                number = self.number(official, value)
                if number is not None:
                    self.set(official, value, f"optimizer.{key}", number)
            else:
                self.refuse(official, value, "AdamW's other arguments keep their defaults here")
        for key in section:
            if key not in ("type", "kwargs"):
                self.refuse(f"optimizer.{key}", section[key], "unknown optimizer key")

    def scheduler(self, section: Any) -> None:
        if not isinstance(section, Mapping):
            self.refuse("scheduler", section, "expected a mapping with type and kwargs")
            return
        kind = section.get("type")
        if kind != "CosLR":
            self.refuse("scheduler.type", kind, "pcclora has the cosine schedule with warm-up (CosLR) only")
        else:
            self.set("scheduler.type", kind, "scheduler.name", "cosine")
        names = {"epochs": "scheduler.epochs", "initial_epochs": "scheduler.warmup_epochs"}
        for key, value in (section.get("kwargs") or {}).items():
            official = f"scheduler.kwargs.{key}"
            if key in names:
                number = self.number(official, value, int)
                if number is not None:
                    self.set(official, value, names[key])
            else:
                self.refuse(official, value, "CosLR takes epochs and initial_epochs")
        for key in section:
            if key not in ("type", "kwargs"):
                self.refuse(f"scheduler.{key}", section[key], "unknown scheduler key")

    def _dataset_file(self, split: str, base: Any) -> tuple[Path | None, dict[str, Any]]:
        if isinstance(base, Mapping):
            return None, dict(base)
        if not isinstance(base, str):
            self.refuse(f"dataset.{split}._base_", base, "expected the path of a dataset config file")
            return None, {}
        found = _find_relative(base, self.path)
        if found is None:
            raise ConfigError(
                f"official config {self.path}: dataset.{split}._base_ {base!r} not found (looked in the current "
                f"folder and in every folder above the config file); the official configs name their dataset files "
                f"relative to the repository root: run from there, or keep the repository's cfgs/ folder together"
            )
        return found, _read_yaml(found)

    def _dataset_identity(self, split: str, spec: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
        """(our dataset name, its settings) of one official dataset file, or None when refused."""
        name = spec.get("NAME")
        label = f"dataset.{split}._base_.NAME"
        root = spec.get("ROOT", spec.get("DATA_PATH"))
        settings: dict[str, Any] = {}
        if root is not None:
            settings["root"] = str(root)
        if name == "ScanObjectNN_hardest":
            return "scanobjectnn", {**settings, "variant": "hardest"}
        if name == "ScanObjectNN":
            variant = "objonly" if str(root or "").rstrip("/").endswith("_nobg") else "objbg"
            return "scanobjectnn", {**settings, "variant": variant}
        if name == "ModelNet":
            classes = spec.get("NUM_CATEGORY", 40)
            if classes != 40:
                self.refuse(f"dataset.{split}._base_.NUM_CATEGORY", classes, "only ModelNet40 is a dataset here")
                return None
            return "modelnet40", settings
        if name == "ModelNetFewShot":
            return "modelnet40_fewshot", settings
        self.refuse(
            label, name, "datasets here: ScanObjectNN (hardest, objbg, objonly), ModelNet40, its few-shot folds"
        )
        return None

    def dataset(self, section: Any) -> str | None:
        if not isinstance(section, Mapping):
            self.refuse("dataset", section, "expected train / val / test sections")
            return None
        identities: dict[str, tuple[str, dict[str, Any]]] = {}
        files: dict[str, tuple[Path | None, dict[str, Any]]] = {}
        for split, entry in section.items():
            if split not in ("train", "val", "test"):
                self.refuse(f"dataset.{split}", "...", "a pre-training section; fine-tuning reads train, val and test")
                continue
            if not isinstance(entry, Mapping) or "_base_" not in entry:
                self.refuse(f"dataset.{split}", entry, "expected {_base_: <dataset file>, others: {...}}")
                continue
            path, spec = self._dataset_file(split, entry["_base_"])
            files[split] = (path, spec)
            identity = self._dataset_identity(split, spec)
            if identity is None:
                continue
            identities[split] = identity
            others = entry.get("others") or {}
            wanted = "train" if split == "train" else "test"
            for key, value in others.items():
                if key == "subset" and value == wanted:
                    continue
                if key == "subset":
                    self.refuse(f"dataset.{split}.others.subset", value, f"pcclora's {split} split is {wanted!r}")
                else:
                    self.refuse(f"dataset.{split}.others.{key}", value, "a pre-training option")
            for key in entry:
                if key not in ("_base_", "others"):
                    self.refuse(f"dataset.{split}.{key}", entry[key], "unknown dataset key")
        if "train" not in identities:
            if "train" not in section:
                self.refuse("dataset.train", None, "missing")
            return None
        name, settings = identities["train"]
        val = identities.get("val")
        if val is not None and val != identities["train"]:
            self.refuse("dataset.val", val[0], f"pcclora evaluates on the test split of the training dataset ({name})")
        spec = files["train"][1]
        self.set("dataset.train._base_.NAME", spec.get("NAME"), "dataset.name", name)
        if "variant" in settings:
            by_root = spec.get("NAME") == "ScanObjectNN"  # objbg / objonly differ by their folder only
            label, value = ("ROOT", spec.get("ROOT")) if by_root else ("NAME", spec.get("NAME"))
            self.set(f"dataset.train._base_.{label}", value, "dataset.variant", settings["variant"])
        if "root" in settings:
            self.set("dataset.train._base_.ROOT", settings["root"], "dataset.root")
        if "N_POINTS" in spec:
            if spec["N_POINTS"] == 8192:
                self.note("dataset.train._base_.N_POINTS", 8192, "the 8192-point files, which the loader reads")
            else:
                self.refuse("dataset.train._base_.N_POINTS", spec["N_POINTS"], "the loader reads the 8192-point files")
        if "USE_NORMALS" in spec:
            self.set(
                "dataset.train._base_.USE_NORMALS",
                spec["USE_NORMALS"],
                "dataset.use_normals",
                bool(spec["USE_NORMALS"]),
            )
        for key in spec:
            if key not in ("NAME", "ROOT", "DATA_PATH", "N_POINTS", "NUM_CATEGORY", "USE_NORMALS"):
                self.refuse(f"dataset.train._base_.{key}", spec[key], "unknown dataset file key")
        self.note("dataset.val", f"{name}, subset test", "pcclora evaluates on the test split after every epoch")
        test = identities.get("test")
        if test is not None and test != identities["train"]:
            self.note(
                "dataset.test", test[0], "read only by the official --test; pcclora evaluates on dataset.val's split"
            )
        elif "test" in section:
            self.note("dataset.test", f"{name}, subset test", "the same split as dataset.val")
        if name == "modelnet40_fewshot":
            self.note(
                "--way/--shot/--fold", "command line", "set dataset.way, dataset.shot, dataset.fold (default 5, 10, 0)"
            )
        return name

    def model(self, section: Any) -> str | None:
        if not isinstance(section, Mapping):
            self.refuse("model", section, "expected a mapping with NAME and the model's fields")
            return None
        name = section.get("NAME")
        if name in PRETRAINING_MODELS:
            self.refuse(
                "model.NAME",
                name,
                f"{PRETRAINING_MODELS[name]}'s pre-training model; pcclora fine-tunes: give the repository's "
                "fine-tuning config (model.NAME PointTransformer)",
            )
            return None
        if name != "PointTransformer":
            self.refuse("model.NAME", name, "the fine-tuning models here are the repositories' PointTransformer")
            return None
        backbone = _backbone_of(section)
        self.set("model.NAME", name, "backbone.name", backbone)
        for key, value in section.items():
            official = f"model.{key}"
            if key == "NAME":
                continue
            if key in SIZE_FIELDS:
                if key == "decoder_depth" and not backbone.startswith("pointgpt"):
                    self.refuse(official, value, "a PointGPT field")
                    continue
                kind = float if key == "drop_path_rate" else int
                number = self.number(official, value, kind)
                if number is not None:
                    self.set(official, value, f"backbone.{SIZE_FIELDS[key]}", number)
            elif key == "cls_dim":
                number = self.number(official, value, int)
                if number is not None:
                    self.set(official, value, "backbone.num_classes", number)
            elif key in ("type", "transfer_type"):
                self._transfer(official, value)
            elif key in NO_EFFECT_FIELDS:
                self.note(official, value, NO_EFFECT_FIELDS[key])
            else:
                self.refuse(official, value, f"{REPOSITORY[backbone]}'s fine-tuning model has no such field here")
        return backbone

    def _transfer(self, official: str, value: Any) -> None:
        if value == "full":
            self.note(
                official, value, "the official full fine-tuning; the method is peft.method (set peft.method=full)"
            )
        elif value in ("mlp3", "mlp-3"):
            self.set(official, value, "peft.method", "linear")
        elif value == "linear":
            self.refuse(official, value, "a single Linear head has no equivalent; mlp3 is peft.method=linear here")
        else:
            self.refuse(official, value, "transfer modes here: full (any peft.method) and mlp3 (peft.method=linear)")

    def top_level(self, data: Mapping[str, Any]) -> None:
        simple = {
            "npoints": ("dataset.npoints", int),
            "total_bs": ("training.batch_size", int),
            "max_epoch": ("training.max_epoch", int),
            "grad_norm_clip": ("training.grad_clip", float),
        }
        for key, value in data.items():
            if key in ("optimizer", "scheduler", "dataset", "model") or key in OWN_SECTIONS:
                continue
            if key in simple:
                ours, kind = simple[key]
                number = self.number(key, value, kind)
                if number is not None:
                    self.set(key, value, ours, number)
            elif key == "step_per_update":
                if value == 1:
                    self.note(key, value, "one optimizer step per batch, as here")
                else:
                    self.refuse(key, value, "pcclora has no gradient accumulation; use training.batch_size")
            elif key == "consider_metric":
                self.note(key, value, "a pre-training metric, not read by fine-tuning")
            else:
                self.refuse(key, value, "unknown official config key")


def _backbone_of(model: Mapping[str, Any]) -> str:
    if "decoder_depth" in model:
        width = model.get("trans_dim", model.get("encoder_dims"))
        return POINTGPT_BY_WIDTH.get(width, "pointgpt_s")
    if "type" in model:
        return "recon"
    if "embed_dim" in model or "transfer_type" in model:
        return "act"
    if model.get("encoder_dims", model.get("trans_dim")) != model.get("trans_dim"):
        return "point_bert"
    return "point_mae"


def _find_relative(name: str, config_path: Path) -> Path | None:
    """An official ``_base_`` path: absolute, or relative to the current folder or to a folder
    above the config file (the official code opens it from the repository root)."""
    raw = Path(os.path.expanduser(name))
    if raw.is_absolute():
        return raw if raw.is_file() else None
    for folder in (Path.cwd(), *config_path.resolve().parents):
        candidate = folder / raw
        if candidate.is_file():
            return candidate
    return None


def translate_official_config(path: str | os.PathLike, data: Mapping[str, Any] | None = None) -> Translation:
    """Translate the official fine-tuning config at ``path`` (module docstring).

    Args:
        path: the config file (its folder and the folders above it are where the dataset files
            named by ``_base_`` are looked for).
        data: its top-level mapping when already read.

    Returns:
        The :class:`Translation`: the raw config in this schema and one line per official key.

    Raises:
        ConfigError: one message listing every key without an equivalent, or a dataset file
            that cannot be found.
    """
    path = Path(path)
    data = _read_yaml(path) if data is None else data
    translator = _Translator(path)
    backbone = translator.model(data.get("model")) if "model" in data else None
    if "model" not in data:
        translator.refuse("model", None, "missing: the official configs name the model there")
    dataset = translator.dataset(data["dataset"]) if "dataset" in data else None
    if "dataset" not in data:
        translator.refuse("dataset", None, "missing")
    if "optimizer" in data:
        translator.optimizer(data["optimizer"])
    if "scheduler" in data:
        translator.scheduler(data["scheduler"])
    translator.top_level(data)
    if translator.refused:
        raise ConfigError(
            f"official config {path}: no equivalent in pcclora for "
            + "; ".join(translator.refused)
            + "; everything else translates (remove or change these keys, or write the config in pcclora's schema)"
        )
    assert backbone is not None and dataset is not None
    bases = RUNNER_BASES[backbone] + RUNNER_DATASET_BASES.get((backbone, dataset), [])
    runner: dict[str, Any] = {}
    for base in bases:
        runner = deep_merge(runner, _load_with_bases(CONFIG_DIR / base))
    lines = [f"official {REPOSITORY[backbone]} config {path} (the official schema), translated:"]
    lines += [f"  {line}" for line in translator.lines]
    for dotted, value in _flatten(runner):
        if dotted.startswith("backbone.") and dotted != "backbone.name":
            continue  # sizes: the file's model section sets them
        if dotted == "backbone.name":
            continue
        lines.append(f"  (official {REPOSITORY[backbone]} runner) -> {dotted}: {value!r}")
    config = deep_merge(runner, translator.ours)
    for section in OWN_SECTIONS:
        if section in data:
            config = deep_merge(config, {section: data[section]})
            lines.append(f"  {section}: (pcclora section, kept as written)")
    return Translation(config, lines, backbone)


def _flatten(config: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for key, value in config.items():
        if isinstance(value, Mapping):
            items.extend(_flatten(value, f"{prefix}{key}."))
        else:
            items.append((f"{prefix}{key}", value))
    return items
