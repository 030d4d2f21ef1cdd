"""Profile the methods of a run config: the training-time model and, where something merges, the merged one.

Each method gets the config's backbone with random weights (counts do not depend on the
weights, so no checkpoint is loaded) at batch 1 and the config's ``dataset.npoints``, with the
config's ``peft`` block for that method (a method's own option block takes its defaults unless
the config sets it).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from backbones import create_backbone
from datasets import get_dataset_spec
from pcclora.config import size_overrides
from pcclora.peft import METHODS, apply_peft, count_parameters, merge_adapters
from pcclora.peft.merge import merged_parameter_count

from .counting import count_compute
from .latency import measure_latency
from .tokenizer_cost import tokenizer_flops_estimate

#: The figures of one model, as in ``--json`` (raw counts).
COMPUTE_KEYS = ("macs_conv_linear", "macs_with_attention", "flops")


def merges(method: str) -> bool:
    """Whether something of ``method`` folds into the weights (fully or in part)."""
    return METHODS[method].merge in ("full", "partial")


def same_network_as_backbone(method: str, merged: bool) -> bool:
    """Whether the (merged) model of ``method`` runs exactly the backbone's network."""
    spec = METHODS[method]
    return spec.merge == "n/a" or (merged and spec.merge == "full")


def dataset_num_classes(dataset_cfg: dict[str, Any]) -> int:
    """Classes of the configured dataset, known from its spec without reading its files.

    Raises:
        UnknownNameError: ``dataset.name`` is not a registered dataset.
    """
    return get_dataset_spec(dataset_cfg["name"]).num_classes(dataset_cfg)


def build_backbone(config: dict[str, Any], seed: int = 0) -> nn.Module:
    """The config's backbone with random weights (no checkpoint is loaded: counts do not need one)."""
    backbone_cfg = config["backbone"]
    num_classes = backbone_cfg["num_classes"] or dataset_num_classes(config["dataset"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return create_backbone(backbone_cfg["name"], num_classes=num_classes, **size_overrides(backbone_cfg))


def adapt(backbone: nn.Module, config: dict[str, Any], method: str) -> nn.Module:
    """A copy of ``backbone`` with the config's ``peft`` block applied for ``method``.

    The common keys of the block stay; a method's own option block is the config's when it is
    that method's, else the method's defaults. Common keys the method does not read are reset
    to their defaults, so that one config can profile every method.
    """
    from pcclora.peft.config import DEFAULT_PEFT_CONFIG

    peft = {key: config["peft"][key] for key in DEFAULT_PEFT_CONFIG}
    spec = METHODS[method]
    if spec.common_keys is not None:
        peft = {key: value for key, value in peft.items() if key in spec.common_keys}
    if method in config["peft"]:
        peft[method] = config["peft"][method]
    return apply_peft(copy.deepcopy(backbone), {**peft, "method": method})


def _compute(model: nn.Module, points: torch.Tensor) -> dict[str, int]:
    count = count_compute(model, points)
    return {key: getattr(count, key) for key in COMPUTE_KEYS}


def profile_method(
    backbone: nn.Module, config: dict[str, Any], method: str, device: torch.device, seed: int = 0
) -> dict[str, Any]:
    """Parameters and compute of ``backbone`` adapted with ``method``, un-merged and merged.

    The backbone itself is not changed (the method is applied to a copy).

    Returns:
        ``method``, ``params_total``, ``params_trainable``, ``breakdown`` (parameter groups),
        the :data:`COMPUTE_KEYS`, ``merged`` (``None``, or the compute keys and
        ``params_total`` of the merged inference model) and, kept for the latency measurement,
        ``model`` (the training-time model).
    """
    model = adapt(backbone, config, method).to(device)
    npoints = config["dataset"]["npoints"]
    points = torch.rand(1, npoints, 3, generator=torch.Generator().manual_seed(seed)).to(device)
    params = count_parameters(model)
    result: dict[str, Any] = {
        "method": method,
        "params_total": params["total"],
        "params_trainable": params["trainable"],
        "breakdown": dict(params["groups"]),
        **_compute(model, points),
        "merged": None,
        "model": model,
    }
    if merges(method):
        merged_model = merge_adapters(copy.deepcopy(model))
        result["merged"] = {"params_total": merged_parameter_count(merged_model), **_compute(merged_model, points)}
        result["merged_model"] = merged_model
    return result


def tokenizer_estimate_for(config: dict[str, Any], model: nn.Module) -> dict[str, int]:
    """The analytic FPS + kNN figure for the config's input at batch 1."""
    npoints = config["dataset"]["npoints"]
    return {
        "npoints": npoints,
        "num_group": model.num_group,
        "group_size": model.group_size,
        "flops": tokenizer_flops_estimate(npoints, model.num_group, model.group_size),
    }


def latency_rows(
    backbone: nn.Module,
    profiles: list[dict[str, Any]],
    npoints: int,
    device: torch.device,
    batch_sizes: tuple[int, ...],
    warmup: int,
    repeats: int,
    max_seconds: float,
) -> list[dict[str, Any]]:
    """Latency of every distinct network among ``profiles``.

    ``full``, ``linear`` and every completely merged model run the same network as the plain
    ``backbone``, so it is timed once, as "backbone"; every other model (un-merged adapters,
    methods that do not merge, partly merged models) is timed on its own.

    Returns:
        One ``{"network", "used_by", "results"}`` per network; ``results`` as
        :func:`measure_latency` gives them.
    """
    users = [p["method"] for p in profiles if same_network_as_backbone(p["method"], merged=False)]
    users += [
        f"{p['method']} merged"
        for p in profiles
        if p["merged"] is not None and same_network_as_backbone(p["method"], merged=True)
    ]
    timed = [("backbone", users, backbone)]
    for p in profiles:
        method = p["method"]
        if same_network_as_backbone(method, merged=False):
            continue
        timed.append((f"{method} (un-merged)" if p["merged"] is not None else method, [method], p["model"]))
        if p["merged"] is not None and not same_network_as_backbone(method, merged=True):
            timed.append((f"{method} (merged)", [f"{method} merged"], p["merged_model"]))
    return [
        {
            "network": network,
            "used_by": used_by,
            "results": measure_latency(
                model,
                npoints,
                device,
                batch_sizes=batch_sizes,
                warmup=warmup,
                repeats=repeats,
                max_seconds=max_seconds,
            )["results"],
        }
        for network, used_by, model in timed
    ]
