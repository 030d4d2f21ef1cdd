"""The pieces every section measures with: the batch, the models, the optimizer, one training step.

Shapes: points (B, N, 3) float32 in [-1, 1]³, labels (B,) long; B = ``settings.batch_size``,
N = ``settings.num_points``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backbones import create_backbone
from pcclora.config import config_from_dict
from pcclora.engine.optim import build_optimizer
from pcclora.peft import apply_peft, regularization_terms
from pcclora.peft.bases import CLoRABaseBank
from pcclora.peft.config import BASE_SPACE_METHODS
from pcclora.peft.layers import AdapterLinear

from .settings import BenchmarkSettings


def synthetic_batch(settings: BenchmarkSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Random clouds in the unit cube and labels: points (B, N, 3) float32, labels (B,) long."""
    generator = torch.Generator().manual_seed(settings.seed)
    points = torch.rand(settings.batch_size, settings.num_points, 3, generator=generator) * 2 - 1
    labels = torch.randint(settings.num_classes, (settings.batch_size,), generator=generator)
    return points.to(settings.device), labels.to(settings.device)


def build_model(settings: BenchmarkSettings, method: str | None) -> tuple[nn.Module, dict[str, Any] | None]:
    """``settings.backbone`` of ``settings.model`` on ``settings.device``, adapted by ``method``.

    ``method=None`` gives the plain backbone.  Returns the model (train mode) and the resolved
    ``peft:`` config (``None`` for the plain backbone).
    """
    torch.manual_seed(settings.seed)
    model = create_backbone(settings.backbone, num_classes=settings.num_classes, **settings.model)
    cfg = None
    if method is not None:
        # the raw block: a backbone's own defaults (point_mae_seg: no cls token to train) fill what it leaves out
        model = apply_peft(model, settings.peft_config(method))
        cfg = dict(model.peft_config)
    return model.to(settings.device).train(), cfg


def training_sade_weight(cfg: Mapping[str, Any]) -> float:
    """λ the training step applies: the config's ``sade_weight`` for methods with base spaces, else 0."""
    return float(cfg["sade_weight"]) if cfg["method"] in BASE_SPACE_METHODS else 0.0


def default_optimizer_config() -> dict[str, Any]:
    """The ``optimizer:`` section of the packaged defaults (``pcclora/configs/_base_/defaults.yaml``)."""
    return config_from_dict({}, name="defaults")["optimizer"]


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """The engine's optimizer with the packaged defaults, over the trainable parameters only.

    AdamW; no weight decay for 1-D tensors, biases and names containing ``token``
    (:func:`pcclora.engine.optim.param_groups`).
    """
    return build_optimizer(model, default_optimizer_config())


def training_loss(model: nn.Module, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE + the method's regularisers, as the engine trains (λ·SADE when λ > 0, PointLoRA's entropy loss).

    A segmentation backbone (``point_mae_seg``) reads ``labels`` as the clouds' categories and is
    trained on per-point CE, every point of a cloud labelled ``labels[b] % num_classes`` (the
    cost of a step does not depend on the target values).
    """
    core = getattr(model, "module", model)
    if getattr(core, "task", "classification") == "segmentation":
        logits = model(points, labels % core.num_shape_classes)  # (B, N, P)
        targets = (labels % logits.shape[-1]).repeat_interleave(points.shape[1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets)
    else:
        loss = F.cross_entropy(model(points), labels)
    terms = regularization_terms(model)
    for weight, value in terms.values():
        loss = loss + weight * value
    return loss


def train_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, points: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """One step: forward, :func:`training_loss`, backward, optimizer step, gradients freed."""
    loss = training_loss(model, points, labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def timing_summary(seconds: Sequence[float]) -> dict[str, Any]:
    """``median_s``, ``min_s`` and every run (``runs_s``) of a list of timings in seconds."""
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "runs_s": list(seconds)}


def randomize_adapters(model: nn.Module, seed: int, std: float = 0.1) -> None:
    """Give every all-zero trained tensor random values (CLoRA coefficients, LoRA up factors,
    VeRA's b vectors, zero-initialised adapter projections, ...).

    Freshly initialised adapters have a zero branch, so SADE and the merge would be trivially
    equal to their references; random values make those comparisons meaningful.
    """
    generator = torch.Generator().manual_seed(seed)
    trained = [p for p in model.parameters() if p.requires_grad]
    for param in dict.fromkeys([*adapter_parameters(model), *trained]):
        if not bool((param == 0).all()):
            continue
        with torch.no_grad():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float64) * std
            param.copy_(noise.to(param.device, param.dtype))


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the adapters: those of ``AdapterLinear`` wrappers and of the CLoRA base bank."""
    params: list[nn.Parameter] = []
    for module in model.modules():
        if isinstance(module, AdapterLinear):
            params.extend(p for name, p in module.named_parameters() if not name.startswith("base_layer."))
        elif isinstance(module, CLoRABaseBank):
            params.extend(module.parameters())
    return params
