"""Parameter counts with the breakdown the profiler and the trainer's log print."""

from __future__ import annotations

from typing import Any

from torch import nn

from .bases import BANK_ATTRIBUTE
from .config import DEFAULT_PEFT_CONFIG
from .inject import CONFIG_ATTRIBUTE, head_module_names

#: The groups of :func:`count_parameters`, in print order.
GROUPS = (
    "bases",
    "coefficients",
    "lora",
    "vera",
    "ssf",
    "adapter",
    "prompt",
    "selector",
    "head",
    "extras",
    "backbone_trainable",
    "frozen",
)


def _module_groups(model: nn.Module) -> dict[str, str | None]:
    """Module name → the ``parameter_group`` of the module or of its nearest ancestor that declares one."""
    groups: dict[str, str | None] = {"": getattr(model, "parameter_group", None)}

    def visit(prefix: str, module: nn.Module, inherited: str | None) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            group = getattr(child, "parameter_group", None) or inherited
            groups[name] = group
            visit(name + ".", child, group)

    visit("", model, groups[""])
    return groups


def count_parameters(model: nn.Module) -> dict[str, Any]:
    """Count parameters (each shared tensor once).

    Returns:
        ``{"total": int, "trainable": int, "groups": {group: int}}``.  The groups partition
        ``total``: ``bases`` (CLoRA's shared D and U), ``coefficients`` (CLoRA's Q, own or
        CLoRA#-shared), ``lora`` (LoRA factors, PointLoRA's included), ``vera`` (VeRA's scaling
        vectors), ``ssf`` (DAPT's scale-and-shift factors), ``adapter`` (DAPT's dynamic
        adapters, PointGST's spectral adapters), ``prompt`` (IDPT's prompt generator, PPT's and
        PointLoRA's prompt MLPs and shared branches), ``selector`` (PointLoRA's mask predictor),
        ``head`` (trainable head parameters), ``extras`` (trainable ``trainable_extra``
        parameters), ``backbone_trainable`` (any other trainable parameter, e.g. the backbone
        under ``full``, PPT's first conv and ``pos_embed``), ``frozen``. A trainable parameter
        belongs to the group its module (or the nearest enclosing one) declares as
        ``parameter_group``.
    """
    config = getattr(model, CONFIG_ATTRIBUTE, None) or DEFAULT_PEFT_CONFIG
    modules = dict(model.named_modules())
    module_groups = _module_groups(model)
    head_ids = {id(parameter) for name in head_module_names(model) for parameter in modules[name].parameters()}
    extras = tuple(config["trainable_extra"])
    groups = dict.fromkeys(GROUPS, 0)
    for name, parameter in model.named_parameters():
        owner = name.rpartition(".")[0]
        if not parameter.requires_grad:
            group = "frozen"
        elif name.startswith(BANK_ATTRIBUTE + "."):
            group = "coefficients" if name.endswith(".shared_coefficients") else "bases"
        elif module_groups.get(owner):
            group = module_groups[owner]
        elif id(parameter) in head_ids:
            group = "head"
        elif any(name == extra or name.startswith(extra + ".") for extra in extras):
            group = "extras"
        else:
            group = "backbone_trainable"
        groups[group] += parameter.numel()
    total = sum(groups.values())
    return {"total": total, "trainable": total - groups["frozen"], "groups": groups}
