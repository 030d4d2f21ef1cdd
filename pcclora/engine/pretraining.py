"""Self-supervised pre-training (``task: pretraining``): the Point-MAE objective on the shared engine.

The runner (:mod:`pcclora.engine.runner`) does what it does for fine-tuning — run folder and
lock, seeds, AdamW with the official weight-decay groups, the cosine schedule, exact resume,
Ctrl-C, NaN stops, DDP, progress, metrics.csv, curves, summary. This task supplies:

- **data**: the pre-training set (``dataset:``, ShapeNet-55 in the official recipe; its loader
  draws ``npoints`` per cloud and normalises it, as the official one; other sets are served
  whole and FPS-sampled to ``npoints`` per batch, as the official runner does for ModelNet), and
  the labelled set of the linear probe (``pretraining.probe``, a ``dataset:``-like section);
- **model**: ``backbones.create_pretrainer(backbone.name, ...)`` with the ``backbone:`` sizes
  and the ``pretraining:`` objective; ``backbone.checkpoint`` continues from a pre-training
  file (the official ``pretrain.pth`` or one of ours), loaded strictly; everything trains
  (``peft.method`` must be ``full``);
- **one epoch**: scale-and-translate each cloud (``dataset.augment``, the official
  ``PointcloudScaleAndTranslate``), loss = Chamfer distance of the reconstructed masked
  patches, AdamW step (gradient clipping only when ``training.grad_clip`` > 0; the official
  runner has none);
- **evaluation** (after epochs 0, N, 2N, … and the last, N = ``pretraining.val_every``): the
  linear probe of :mod:`pcclora.engine.probe` on frozen pooled features (concat of max and mean
  of the encoder's tokens, nothing masked; FPS to ``pretraining.probe.npoints``): probe OA
  (ranks the epochs) and mAcc on the probe set's test split;
- **checkpoints**: ``last.pth`` / ``best.pth`` hold the whole network under ``base_model`` in
  the official pre-training layout (plus optimizer, RNG, config, history), so they load into
  ``create_backbone("point_mae", checkpoint=...)`` as the official ``pretrain.pth`` does;
  ``--export`` writes ``{'base_model': state_dict, 'pcclora_model': info}`` alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from backbones import create_pretrainer, load_checkpoint
from backbones.checkpoint import MODEL_INFO_KEY
from backbones.errors import ConfigError, NonFiniteError
from datasets import build_dataset, get_dataset_spec
from datasets.transforms import fps_subsample, rotate_y, scale_and_translate
from pcclora import __version__
from pcclora.config import size_overrides
from pcclora.device import autocast
from pcclora.engine.checkpoint import save_atomic
from pcclora.engine.data import RunData, build_run_data, ensure_synthetic, test_loader
from pcclora.engine.distributed import (
    DistributedContext,
    all_gather_objects,
    broadcast_buffers,
    mean_over_ranks,
)
from pcclora.engine.metrics import Accuracy
from pcclora.engine.model import backbone_checkpoint_path, unwrap
from pcclora.engine.plots import plot_confusion
from pcclora.engine.probe import linear_probe_accuracy
from pcclora.engine.progress import Progress
from pcclora.engine.seeding import MODEL_INIT_STREAM, derive_seed
from pcclora.engine.task import Evaluation, Metric, Task, register_task
from pcclora.engine.trainer import optimizer_step

#: The ``pretraining:`` keys that are options of the pre-training network.
OBJECTIVE_KEYS = ("mask_ratio", "mask_type", "loss")


@dataclass
class ProbeLoaders:
    """The two loaders of a linear-probe evaluation (this rank's share of each split)."""

    train: DataLoader
    test: DataLoader
    num_classes: int

    def __len__(self) -> int:
        return len(self.train) + len(self.test)


def pretrainer_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """``create_pretrainer`` keyword options of a config: the ``backbone:`` sizes and the objective."""
    return {**size_overrides(config["backbone"]), **{key: config["pretraining"][key] for key in OBJECTIVE_KEYS}}


def _check_method(config: Mapping[str, Any]) -> None:
    if config["peft"]["method"] != "full":
        raise ConfigError(
            f"pre-training trains every parameter of the network; peft.method must be 'full', got "
            f"{config['peft']['method']!r} (adapter methods apply when fine-tuning: tools/finetune.py)"
        )


def _pretraining_set(dataset_cfg: dict[str, Any], split: str, log: Callable[[str], None]) -> Any:
    """One split of the pre-training set (``dataset:``)."""
    name = dataset_cfg["name"]
    spec = get_dataset_spec(name)
    if dataset_cfg["root"] is None:
        raise ConfigError(
            f"no data folder for the pre-training set {name}: pass --data-root DIR (or set dataset.root); "
            f"it should hold the {spec.source}"
        )
    root = Path(str(dataset_cfg["root"])).expanduser()
    ensure_synthetic(dataset_cfg, root, log)
    options = spec.options_from_config(dataset_cfg)
    if not spec.labelled:  # the pre-training loader draws npoints per cloud itself, as the official one
        options["npoints"] = dataset_cfg["npoints"]
    dataset = build_dataset(name, root, split, **options)
    if dataset.npoints_available < dataset_cfg["npoints"]:
        raise ConfigError(
            f"dataset.npoints is {dataset_cfg['npoints']} but the clouds of {root} have only "
            f"{dataset.npoints_available} points; lower dataset.npoints"
        )
    return dataset


def _prefixed(log: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda message: log(f"{prefix}{message}")


@torch.no_grad()
def extract_features(
    model: nn.Module, loader: DataLoader, npoints: int, context: DistributedContext, amp: bool, progress: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled features (S, 2·C) and labels (S,) of every sample of ``loader`` (all ranks gathered, in
    the dataset's order, so that the probe sees the same matrix however many processes ran).

    Raises:
        NonFiniteError: a feature of any sample is NaN or infinite.
    """
    core = unwrap(model)
    core.eval()
    broadcast_buffers(core, context)  # the encoder's BatchNorm statistics of rank 0, the saved model's
    features, labels = [], []
    for points, target in loader:
        points = fps_subsample(points.to(context.device, non_blocking=True)[..., :3].contiguous(), npoints)
        with autocast(context.device, amp):
            features.append(core.forward_features(points).float().cpu())
        labels.append(torch.as_tensor(target).reshape(-1).cpu())
        if progress is not None:
            progress()
    dataset = loader.dataset
    indices = torch.as_tensor(dataset.indices if isinstance(dataset, Subset) else range(len(dataset)))
    shards = all_gather_objects((torch.cat(features), torch.cat(labels), indices), context)
    order = torch.cat([shard[2] for shard in shards]).argsort()  # the dataset's order, whatever the ranks
    all_features = torch.cat([shard[0] for shard in shards])[order]
    all_labels = torch.cat([shard[1] for shard in shards])[order]
    bad = int((~torch.isfinite(all_features)).any(dim=1).sum())
    if bad:
        raise NonFiniteError(
            f"the encoder gives non-finite features (NaN or Inf) on {bad} of {len(all_labels)} probe samples, "
            "so the linear probe has no accuracy; its weights have diverged"
        )
    return all_features, all_labels


@register_task("pretraining")
class PretrainingTask(Task):
    """Point-MAE pre-training; the linear probe's OA ranks the epochs (module docstring)."""

    metrics = (Metric("probe_oa", "probe_oa", "probe OA"), Metric("probe_macc", "probe_macc", "probe mAcc"))
    train_columns = ("train_loss",)
    tool = "pretrain"
    checkpoint_entry = "base_model"
    warn_random_backbone = False
    export_name = "model_pretrained.pth"
    export_description = "the pre-trained network (official pre-training layout, {'base_model': ...})"

    # -- building --------------------------------------------------------------------------

    def build_data(self, config: dict[str, Any], log: Callable[[str], None], with_train: bool = True) -> RunData:
        _check_method(config)
        train = _pretraining_set(config["dataset"], "train", log) if with_train else None
        probe_cfg = config["pretraining"]["probe"]
        if config["pretraining"]["val_every"] > 0 or not with_train:
            if probe_cfg["root"] is None:
                spec = get_dataset_spec(probe_cfg["name"])
                raise ConfigError(
                    f"no data folder for the linear probe's {probe_cfg['name']}: set pretraining.probe.root "
                    "(tools/pretrain.py: --probe-root DIR), or pretraining.val_every=0 to pre-train without "
                    f"validation; it should hold the {spec.source}"
                )
            probe = build_run_data(probe_cfg, _prefixed(log, "linear probe "), shuffle_train=False)
            return RunData(train, probe.test, probe.num_classes, probe.class_names, eval_train=probe.train)
        # no validation: the probe set is neither read nor needed
        return RunData(train, _EmptyLabelled(), 0, [], eval_train=None)

    def build_model(self, config: dict[str, Any], data: RunData, log: Callable[[str], None]) -> nn.Module:
        _check_method(config)
        checkpoint = backbone_checkpoint_path(config["backbone"]["checkpoint"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(config["training"]["seed"], MODEL_INIT_STREAM))
            model = create_pretrainer(
                config["backbone"]["name"],
                checkpoint=checkpoint,
                pretrained=bool(config["backbone"]["pretrained"]),
                **pretrainer_options(config),
            )
        if model.checkpoint_report is None:
            log("pre-training from random initial weights (official initialisation)")
        else:
            log(f"continuing pre-training from: {model.checkpoint_report.summary()}")
        return model.requires_grad_(True)

    def sample_input(self, data: RunData, config: dict[str, Any]) -> torch.Tensor:
        return data.train[0][0][None, : config["dataset"]["npoints"], :3]

    def describe_data(self, data: RunData) -> str:
        text = f"data: {len(data.train)} pre-training clouds"
        if data.eval_train is None:
            return text + "; no validation (pretraining.val_every 0)"
        return (
            f"{text}; linear probe on {len(data.eval_train)} train / {len(data.test)} test samples, "
            f"{data.num_classes} classes"
        )

    def output_classes(self, model: nn.Module, data: RunData) -> int:
        return data.num_classes

    # -- checkpoints -------------------------------------------------------------------------

    def trained_state(self, model: nn.Module) -> dict[str, Any]:
        return {key: value.detach().clone() for key, value in unwrap(model).state_dict().items()}

    def load_trained_state(self, model: nn.Module, state: dict[str, Any]) -> None:
        load_checkpoint(model, {"base_model": state}, strict=True, source_name="the run checkpoint")

    def trained_keys(self, model: nn.Module) -> list[str]:
        return list(unwrap(model).state_dict())

    def model_info(self, config: dict[str, Any], model: nn.Module, data: RunData) -> dict[str, Any]:
        core = unwrap(model)
        return {
            "backbone": core.backbone_name,
            "sizes": core.backbone_sizes(),
            "num_classes": None,
            "class_names": None,
            "method": "pretraining",
            "npoints": config["dataset"]["npoints"],
            "dataset": config["dataset"]["name"],
            "pretrainer": config["backbone"]["name"],
            "pretrainer_sizes": dict(core.config),
            "pcclora_version": __version__,
        }

    def load_model_file(self, path: Path, config: dict[str, Any], data: RunData) -> nn.Module:
        return create_pretrainer(config["backbone"]["name"], checkpoint=path, **pretrainer_options(config))

    def export(self, model: nn.Module, path: Path, info: dict[str, Any]) -> Path:
        return save_atomic({"base_model": self.trained_state(model), MODEL_INFO_KEY: info}, path)

    # -- one epoch ---------------------------------------------------------------------------

    def train_epoch(
        self,
        model: nn.Module,
        core: nn.Module,
        loader: DataLoader,
        optimizer: torch.optim.Optimizer,
        config: dict[str, Any],
        generator: torch.Generator,
        context: DistributedContext,
        epoch: int,
        progress: Callable[[int, int, float], None],
    ) -> dict[str, float]:
        training, dataset_cfg = config["training"], config["dataset"]
        augment, npoints = dataset_cfg["augment"], dataset_cfg["npoints"]
        trainable = [param for param in core.parameters() if param.requires_grad]
        model.train()
        total, samples = 0.0, 0
        for index, (points, _) in enumerate(loader):
            points = points.to(context.device, non_blocking=True)[..., :3].contiguous()
            if points.shape[1] > npoints:  # a set served whole (the official runner FPS-samples ModelNet)
                points = fps_subsample(points, npoints)
            if augment["rotate_y"]:
                points = rotate_y(points, generator=generator)
            points = scale_and_translate(
                points, augment["scale_low"], augment["scale_high"], augment["translate"], generator=generator
            )
            with autocast(context.device, training["amp"]):
                loss = model(points)
            optimizer_step(loss, optimizer, trainable, training["grad_clip"], context, epoch, index)
            value = float(loss.detach())
            total += value * points.shape[0]
            samples += points.shape[0]
            if progress is not None:
                progress(index, len(loader), value)
        loss_sum, count = mean_over_ranks([total, float(samples)], context)
        return {"train_loss": loss_sum / max(count, 1.0)}

    # -- evaluation --------------------------------------------------------------------------

    def eval_loader(self, data: RunData, config: dict[str, Any], context: DistributedContext) -> Any:
        if data.eval_train is None:
            return None
        training = config["training"]
        return ProbeLoaders(
            train=test_loader(data.eval_train, training["test_batch_size"], context, training["num_workers"]),
            test=test_loader(data.test, training["test_batch_size"], context, training["num_workers"]),
            num_classes=data.num_classes,
        )

    def evaluates_after(self, epoch: int, config: dict[str, Any]) -> bool:
        every = config["pretraining"]["val_every"]
        return every > 0 and (epoch % every == 0 or epoch == config["training"]["max_epoch"])

    def evaluate(
        self,
        model: nn.Module,
        loader: ProbeLoaders,
        config: dict[str, Any],
        context: DistributedContext,
        progress: Progress | None = None,
    ) -> Evaluation:
        if loader is None:
            raise ConfigError("the linear probe needs pretraining.val_every > 0 and a probe set (pretraining.probe)")
        probe_cfg, pretraining = config["pretraining"]["probe"], config["pretraining"]
        npoints, amp = probe_cfg["npoints"], config["training"]["amp"]
        count = iter(range(1, len(loader) + 1))
        tick = (lambda: progress.update(next(count))) if progress is not None else None
        train_x, train_y = extract_features(model, loader.train, npoints, context, amp, tick)
        test_x, test_y = extract_features(model, loader.test, npoints, context, amp, tick)
        num_classes = max(loader.num_classes, int(max(int(train_y.max()), int(test_y.max()))) + 1)
        accuracy = linear_probe_accuracy(
            train_x, train_y, test_x, test_y, num_classes, pretraining["probe_l2"], pretraining["probe_max_iter"]
        )
        return Evaluation(metrics={"probe_oa": accuracy.overall, "probe_macc": accuracy.mean_class}, details=accuracy)

    # -- reporting ---------------------------------------------------------------------------

    def epoch_line(self, row: Mapping[str, Any], best: Mapping[str, Any] | None, max_epoch: int) -> str:
        probe = (
            f"probe OA {row['probe_oa']:6.2f}  mAcc {row['probe_macc']:6.2f}  "
            if row["probe_oa"] is not None
            else "(not validated)  "
        )
        best_text = f"(best probe OA {best['probe_oa']:.2f} @ {best['epoch']})  " if best else ""
        return (
            f"epoch {row['epoch']:3d}/{max_epoch}  lr {row['lr']:.2e}  Chamfer loss {row['train_loss']:.5f}  "
            f"{probe}{best_text}{row['epoch_seconds']:.1f}s"
        )

    def final_figures(
        self,
        folder: Path,
        evaluation: Evaluation,
        data: RunData,
        num_classes: int,
        epoch: int,
        model: nn.Module | None = None,
    ) -> None:
        accuracy: Accuracy = evaluation.details
        size = accuracy.confusion.shape[0]
        names = list(data.class_names) + [f"class {index}" for index in range(len(data.class_names), size)]
        plot_confusion(accuracy.confusion, names[:size], folder / "confusion.png", f"linear probe, epoch {epoch}")

    def details_report(self, evaluation: Evaluation, data: RunData) -> dict[str, Any]:
        return {"per_class": evaluation.details.per_class(list(data.class_names))}


class _EmptyLabelled(torch.utils.data.Dataset):
    """The test split of a run without validation: no sample."""

    num_classes = 0
    class_names: list[str] = []

    def __len__(self) -> int:
        return 0

    def __getitem__(self, index: int) -> Any:
        raise IndexError(index)
