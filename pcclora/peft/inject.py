"""``apply_peft``: freeze a model, wrap its target linear layers, mark what trains.

Works on any ``nn.Module`` whose target layers are ``nn.Linear``: targets are found by name
suffix (``"attn.qkv"`` matches every module named ``….attn.qkv``), or by a glob pattern
(``"blocks.layers.*.mlp.0"``, ``*`` matching any run of characters) over the whole name or a
dotted suffix of it; a target whose last name part is ``qkv`` is a fused q/k/v projection and
counts as three layers of shape (d, d). When the config does not name ``target_modules`` and the
model declares ``peft_target_modules``, those are the targets (PointGPT: its extractor's
``attn.out_proj``, ``mlp.0``, ``mlp.2``).

What trains after :func:`apply_peft`:

- ``clora`` / ``clora_shared``: the shared bases (``model.clora_bases``), the coefficients,
  the head modules and ``trainable_extra``;
- ``lora``: the LoRA factors, the head and ``trainable_extra``;
- ``linear``: the head and ``trainable_extra``;
- ``full``: every parameter (no layer is wrapped);
- the peers (``idpt``, ``dapt``, ``ppt``, ``pointgst``, ``pointlora``, ``vera``): what their
  module in this package installs (:mod:`pcclora.peft.methods`), the head and ``trainable_extra``.

The head modules are ``model.head_module_names`` when the model declares it (each must exist),
else those of ``("cls_head_finetune", "head")`` that exist.  Every maximal submodule that has
parameters but none trainable gets a forward pre-hook that puts it in eval mode, so that
``model.train()`` leaves frozen BatchNorm statistics and frozen dropout alone. For methods whose
official runners train with stochastic depth in frozen blocks (``frozen_blocks_train_mode``:
IDPT, PPT, PointGST) only the frozen sub-trees that hold BatchNorm layers are kept in eval mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from backbones.errors import ConfigError, StateError, did_you_mean

from .bases import BANK_ATTRIBUTE, BaseSpaceFamily, CLoRABaseBank, family_key
from .config import BASE_SPACE_METHODS, INJECTING_METHODS, resolve_peft_config
from .layers import AdapterLinear, CLoRALinear, LoRALinear, MergeableAdapter
from .methods import METHODS

#: Attribute that holds the resolved config on an adapted model.
CONFIG_ATTRIBUTE = "peft_config"
#: Head module names tried when the model does not declare ``head_module_names``.
DEFAULT_HEAD_MODULE_NAMES = ("cls_head_finetune", "head")
#: Last name part of a fused q/k/v projection, and its number of parts.
FUSED_QKV_NAME = "qkv"
FUSED_QKV_SPLITS = 3


def apply_peft(model: nn.Module, cfg: Mapping[str, Any] | None = None) -> nn.Module:
    """Adapt ``model`` in place for the method of ``cfg`` and return it.

    Args:
        model: any module whose target layers are ``nn.Linear``.
        cfg: a ``peft:`` config block (see :mod:`pcclora.peft.config`); ``None`` = defaults.

    Returns:
        The same model with ``model.peft_config`` (the resolved config) set.

    Raises:
        StateError: the model was adapted already.
        ConfigError: a target module or ``trainable_extra`` name matches nothing, a target
            is not an ``nn.Linear``, or nothing at all would be trained.
    """
    config = resolve_peft_config(cfg)
    model_targets = getattr(model, "peft_target_modules", None)
    if model_targets and (cfg is None or "target_modules" not in cfg):
        config["target_modules"] = list(model_targets)
    model_extra = getattr(model, "peft_trainable_extra", None)
    if model_extra is not None and (cfg is None or "trainable_extra" not in cfg):
        config["trainable_extra"] = list(model_extra)  # e.g. no cls token to train
    if is_adapted(model):
        raise StateError(
            f"this {type(model).__name__} is already adapted "
            f"(method '{(getattr(model, CONFIG_ATTRIBUTE, None) or {}).get('method', '?')}'); "
            "apply_peft must be called once, on a freshly built backbone"
        )
    method = config["method"]
    spec = METHODS[method]
    if method == "full":
        model.requires_grad_(True)
    else:
        # Validate every name before touching the model, so a mistake leaves it unchanged.
        names = head_module_names(model)
        named = dict(model.named_parameters())
        extra_names = extra_parameter_names(model, config["trainable_extra"])
        injecting = method in INJECTING_METHODS or spec.wraps_targets
        targets = find_target_linears(model, config["target_modules"]) if injecting else []
        if spec.check is not None:
            spec.check(model, config)
        if not (names or extra_names or targets or spec.install):
            raise ConfigError(
                f"method {method!r} would train nothing in {type(model).__name__}: it has no "
                f"head module ({', '.join(DEFAULT_HEAD_MODULE_NAMES)}) and trainable_extra is "
                "empty; declare head_module_names on the model or name parameters in "
                "peft.trainable_extra"
            )
        model.requires_grad_(False)
        if method in INJECTING_METHODS:
            _inject_adapters(model, config, targets)
        elif spec.wraps_targets:  # a method of its own that wraps the target Linears (VeRA)
            spec.install(model, config, targets)
        elif spec.install is not None:
            # A method installs its own modules (trainable as created) and may replace the head.
            spec.install(model, config)
        for head in (model.get_submodule(name) for name in names):
            head.requires_grad_(True)
        for name in extra_names:
            named[name].requires_grad_(True)
    setattr(model, CONFIG_ATTRIBUTE, config)
    for _, module in frozen_subtree_roots(model):
        if spec.frozen_blocks_train_mode and not any(isinstance(m, _BatchNorm) for m in module.modules()):
            continue  # stochastic depth keeps running in this frozen sub-tree, as in the official runner
        module.register_forward_pre_hook(_keep_frozen_in_eval)
    return model


def is_adapted(model: nn.Module) -> bool:
    """True when :func:`apply_peft` was applied to ``model``."""
    return getattr(model, CONFIG_ATTRIBUTE, None) is not None or any(
        isinstance(module, MergeableAdapter) for module in model.modules()
    )


def require_adapted(model: nn.Module) -> dict[str, Any]:
    """The resolved config of an adapted model; a :class:`StateError` otherwise."""
    config = getattr(model, CONFIG_ATTRIBUTE, None)
    if config is None:
        raise StateError(f"this {type(model).__name__} is not adapted; call pcclora.apply_peft(model, cfg) first")
    return config


def head_module_names(model: nn.Module) -> tuple[str, ...]:
    """Names of the model's head modules (see the module docstring)."""
    declared = getattr(model, "head_module_names", None)
    existing = {name for name, _ in model.named_modules() if name}
    if declared is None:
        return tuple(name for name in DEFAULT_HEAD_MODULE_NAMES if name in existing)
    declared = (declared,) if isinstance(declared, str) else tuple(declared)
    missing = [name for name in declared if name not in existing]
    if missing:
        raise ConfigError(
            f"{type(model).__name__}.head_module_names names {missing}, which the model does not "
            "have; fix head_module_names to the names of its classification head modules"
        )
    return declared


def extra_parameter_names(model: nn.Module, names: list[str]) -> list[str]:
    """Parameter names selected by ``trainable_extra`` (exact name, or a module name prefix)."""
    all_names = [name for name, _ in model.named_parameters()]
    selected: list[str] = []
    for wanted in names:
        found = [name for name in all_names if name == wanted or name.startswith(wanted + ".")]
        if not found:
            raise ConfigError(
                f"peft.trainable_extra names {wanted!r}{did_you_mean(wanted, all_names)}, but "
                f"{type(model).__name__} has no such parameter; set peft.trainable_extra to parameter "
                "names or module prefixes of this model (or [] for none)"
            )
        selected.extend(name for name in found if name not in selected)
    return selected


def target_matches(name: str, target: str) -> bool:
    """Whether module ``name`` is selected by ``target``: equal to it or ending with ``"." + target``;
    a target with ``*``, ``?`` or ``[`` is a glob pattern matched the same way."""
    if any(char in target for char in "*?["):
        return fnmatchcase(name, target) or fnmatchcase(name, "*." + target)
    return name == target or name.endswith("." + target)


def find_target_linears(model: nn.Module, targets: list[str]) -> list[tuple[str, nn.Linear]]:
    """(name, Linear) of every module selected by a target (:func:`target_matches`)."""
    found: list[tuple[str, nn.Linear]] = []
    matched: set[str] = set()
    for name, module in model.named_modules():
        hits = [target for target in targets if target_matches(name, target)]
        if not hits:
            continue
        if not isinstance(module, nn.Linear):
            raise ConfigError(
                f"target {hits[0]!r} matches {name!r}, a {type(module).__name__}; only nn.Linear "
                "layers can be adapted; narrow peft.target_modules to linear layers"
            )
        matched.update(hits)
        found.append((name, module))
    unmatched = [target for target in targets if target not in matched]
    if unmatched:
        linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        suffixes = sorted({".".join(n.split(".")[-2:]) for n in linear_names})
        raise ConfigError(
            f"peft.target_modules entries {unmatched} match no layer of {type(model).__name__}; "
            f"its linear layers end with: {', '.join(suffixes[:20]) or 'none'}"
        )
    return found


def _inject_adapters(model: nn.Module, config: dict[str, Any], targets: list[tuple[str, nn.Linear]]) -> None:
    method = config["method"]
    if method in BASE_SPACE_METHODS and hasattr(model, BANK_ATTRIBUTE):
        raise StateError(
            f"{type(model).__name__} already has an attribute {BANK_ATTRIBUTE!r}, where CLoRA "
            "keeps its shared bases; rename that attribute of the model"
        )
    bank = CLoRABaseBank() if method in BASE_SPACE_METHODS else None
    for name, linear in targets:
        num_splits = _num_splits(name, linear)
        if bank is not None:
            family = _family_for(bank, linear, num_splits, config)
            wrapper: AdapterLinear = CLoRALinear(
                linear,
                family,
                num_splits=num_splits,
                alpha=config["alpha"],
                dropout=config["dropout"],
                shared_coefficients=method == "clora_shared",
            )
        else:
            wrapper = LoRALinear(
                linear,
                num_splits=num_splits,
                rank=config["rank"],
                alpha=config["alpha"],
                dropout=config["dropout"],
            )
        parent_name, _, child_name = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child_name, wrapper)
    if bank is not None:
        model.add_module(BANK_ATTRIBUTE, bank)


def _num_splits(name: str, linear: nn.Linear) -> int:
    if name.rpartition(".")[2] != FUSED_QKV_NAME:
        return 1
    if linear.out_features % FUSED_QKV_SPLITS:
        raise ConfigError(
            f"{name!r} is named like a fused q/k/v projection but its output size "
            f"{linear.out_features} is not divisible by {FUSED_QKV_SPLITS}"
        )
    return FUSED_QKV_SPLITS


def _family_for(bank: CLoRABaseBank, linear: nn.Linear, num_splits: int, config: dict[str, Any]) -> BaseSpaceFamily:
    out_features = linear.out_features // num_splits
    is_new = family_key(linear.in_features, out_features) not in bank.families
    family = bank.get_or_create(
        linear.in_features,
        out_features,
        config["rank"],
        config["num_bases"],
        shared_coefficients=config["method"] == "clora_shared",
    )
    if is_new:  # bases follow the device and dtype of the first layer of their family
        family.to(device=linear.weight.device, dtype=linear.weight.dtype)
    return family


def frozen_subtree_roots(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of the maximal proper submodules that are frozen (see :func:`is_frozen`)."""
    roots: list[tuple[str, nn.Module]] = []

    def visit(prefix: str, module: nn.Module) -> None:
        for child_name, child in module.named_children():
            name = f"{prefix}{child_name}"
            if is_frozen(child):
                roots.append((name, child))
            else:
                visit(name + ".", child)

    visit("", model)
    return roots


def is_frozen(module: nn.Module) -> bool:
    """True when ``module`` has parameters and trains none, counting the shared modules its
    wrapped layers use but do not own (CLoRA's bases, PointLoRA's shared branches)."""
    parameters = list(module.parameters())
    for submodule in module.modules():
        if isinstance(submodule, MergeableAdapter):
            for shared in submodule.shared_modules():
                parameters.extend(shared.parameters())
    return bool(parameters) and not any(p.requires_grad for p in parameters)


def _keep_frozen_in_eval(module: nn.Module, args: tuple[Any, ...]) -> None:
    """Forward pre-hook: a subtree that is (still) fully frozen runs in eval mode."""
    if module.training and is_frozen(module):
        module.eval()
