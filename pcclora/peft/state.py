"""Adapter checkpoints and the merged export.

- :func:`adapter_state_dict`: only what training changed — trainable parameters (bases,
  coefficients or LoRA factors, head, ``trainable_extra``) and the buffers that live outside the
  frozen subtrees (e.g. the head's BatchNorm statistics) — plus ``"peft_config"``.  For
  ``full`` that is the whole model.
- :func:`load_adapter_state_dict`: puts those tensors into a model built from the same backbone
  and checkpoint (adapting it first when it is still plain) and checks that everything fits.
- :func:`export_merged_state_dict`: a plain backbone state dict under the backbone's own key
  names, adapters folded into the weights — loadable strictly by an un-adapted backbone.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from backbones.errors import CheckpointError, ConfigError, StateError

from .bases import BANK_ATTRIBUTE
from .config import resolve_peft_config, structural_config
from .inject import CONFIG_ATTRIBUTE, apply_peft, frozen_subtree_roots, is_adapted, require_adapted
from .merge import adapter_layers, is_merged
from .methods import METHODS
from .vera import BANK_ATTRIBUTE as VERA_BANK

#: Key of the method config inside an adapter state dict.
CONFIG_KEY = "peft_config"
#: Config keys that change the model's structure or outputs; they must match on loading (with
#: the structural options of the method's block, :func:`pcclora.peft.config.structural_config`).
STRUCTURAL_KEYS = ("method", "rank", "num_bases", "alpha", "target_modules", "trainable_extra")
_BASE_LAYER_SUFFIX = ".base_layer"


def trained_keys(model: nn.Module) -> list[str]:
    """State-dict keys of an adapted model that training can change (see the module docstring)."""
    config = require_adapted(model)
    state_keys = list(model.state_dict(keep_vars=True))
    if config["method"] == "full":
        return state_keys
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    frozen_prefixes = tuple(name + "." for name, _ in frozen_subtree_roots(model))
    buffers = {name for name, _ in model.named_buffers() if not name.startswith(frozen_prefixes)}
    return [key for key in state_keys if key in trainable or key in buffers]


def adapter_state_dict(model: nn.Module) -> dict[str, Any]:
    """The trained tensors of an adapted model (detached copies) plus ``"peft_config"``."""
    config = require_adapted(model)
    state = model.state_dict()
    result: dict[str, Any] = {key: state[key].detach().clone() for key in trained_keys(model)}
    result[CONFIG_KEY] = copy.deepcopy(config)
    return result


def load_adapter_state_dict(model: nn.Module, state: Mapping[str, Any]) -> nn.Module:
    """Load an :func:`adapter_state_dict` into ``model`` and return it.

    ``model`` is either the plain backbone (then it is adapted with the saved config first) or
    one adapted with the same method, rank, bases, alpha, targets and extras. Everything is
    checked before the model is touched — for a plain backbone on a copy of it adapted with
    the saved config, whose tensors live on the ``meta`` device (no memory, no random numbers
    drawn) — so that on any error the model is exactly as it was.

    Raises:
        CheckpointError: ``state`` is no adapter state dict, its saved config is invalid or
            differs from the model's, or its tensors miss, exceed, are not tensors or do not fit
            the model's (names listed).
        StateError: the model's adapters are merged (unmerge first).
        ConfigError: the saved config cannot be applied to this model (a target module or
            ``trainable_extra`` name it does not have).
    """
    if not isinstance(state, Mapping) or CONFIG_KEY not in state:
        raise CheckpointError(
            "this is not an adapter state dict: it has no 'peft_config' entry; expected the "
            "dict returned by pcclora.adapter_state_dict(model)"
        )
    try:
        saved_config = resolve_peft_config(state[CONFIG_KEY])
    except ConfigError as error:
        raise CheckpointError(f"the adapter checkpoint's peft_config is not valid: {error}") from None
    tensors = {key: value for key, value in state.items() if key != CONFIG_KEY}
    not_tensors = [key for key, value in tensors.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"the adapter checkpoint holds entries that are not tensors: {_preview(not_tensors)}; "
            "the file is damaged or was not written by pcclora.adapter_state_dict"
        )
    if is_adapted(model):
        _check_fits(model, saved_config, tensors)
    else:
        with torch.random.fork_rng(devices=[]):  # the dry run must not shift the caller's random numbers
            _check_fits(apply_peft(_meta_copy(model), saved_config), saved_config, tensors)
        apply_peft(model, saved_config)  # succeeds: the same call just succeeded on an identical copy
    model.load_state_dict(tensors, strict=False)
    return model


def _meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are empty tensors on the meta device."""
    memo: dict[int, Any] = {}
    for param in model.parameters():
        memo[id(param)] = nn.Parameter(torch.empty_like(param, device="meta"), requires_grad=param.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return copy.deepcopy(model, memo)


def _check_fits(model: nn.Module, saved_config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    """Raise unless ``tensors`` (saved with ``saved_config``) load into the adapted ``model`` exactly."""
    saved, current = structural_config(saved_config), structural_config(getattr(model, CONFIG_ATTRIBUTE))
    differences = [
        f"{key}: checkpoint {saved.get(key)!r}, model {current.get(key)!r}"
        for key in dict.fromkeys([*saved, *current])
        if saved.get(key) != current.get(key)
    ]
    if differences:
        raise CheckpointError(
            "the adapter checkpoint was trained with another peft config ("
            + "; ".join(differences)
            + "); build the model with the checkpoint's config, or pass a plain backbone"
        )
    if is_merged(model):
        raise StateError(
            "the model's adapters are merged into its weights; call "
            "pcclora.unmerge_adapters(model) before loading adapter weights"
        )
    expected = trained_keys(model)
    expected_set = set(expected)
    missing = [key for key in expected if key not in tensors]
    unexpected = [key for key in tensors if key not in expected_set]
    if missing or unexpected:
        raise CheckpointError(
            "the adapter checkpoint does not fit the model: "
            f"missing {len(missing)} tensor(s) {_preview(missing)}, "
            f"unexpected {len(unexpected)} {_preview(unexpected)}; was it saved from another "
            "backbone or number of classes?"
        )
    current = model.state_dict()
    mismatched = [
        f"{key} {tuple(tensors[key].shape)} vs model {tuple(current[key].shape)}"
        for key in expected
        if tuple(tensors[key].shape) != tuple(current[key].shape)
    ]
    if mismatched:
        raise CheckpointError(
            f"the adapter checkpoint's shapes do not fit the model: {_preview(mismatched)}; was it "
            "saved from another backbone size or number of classes?"
        )


def export_merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapted model as a plain backbone state dict (official key names, adapters folded in).

    The model itself is not changed (merged or not).  Keys of the shared bases, coefficients and
    LoRA factors are dropped; ``<layer>.base_layer.weight`` becomes ``<layer>.weight``.

    Raises:
        StateError: the model's method does not merge completely into a plain backbone (IDPT,
            DAPT, PPT, PointGST and PointLoRA keep modules a plain backbone does not have).
    """
    config = getattr(model, CONFIG_ATTRIBUTE, None) or {}
    spec = METHODS.get(config.get("method"))
    if spec is not None and spec.merge in ("none", "partial"):
        raise StateError(
            f"method {spec.name!r} cannot be exported as a plain backbone: "
            + ("nothing of it merges" if spec.merge == "none" else "only part of it merges")
            + " into the backbone's weights; keep the run checkpoint (or pcclora.adapter_state_dict) instead"
        )
    adapters = dict(adapter_layers(model))
    exported: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        if key.startswith((BANK_ATTRIBUTE + ".", VERA_BANK + ".")):
            continue
        owner, _, leaf = key.rpartition(".")
        if owner in adapters:  # the wrapper's own adapter parameters
            continue
        layer_name = owner.removesuffix(_BASE_LAYER_SUFFIX)
        layer = adapters.get(layer_name) if layer_name != owner else None
        tensor = tensor.detach().clone()
        if layer is not None:
            if leaf == "weight" and not layer.merged:
                with torch.no_grad():
                    tensor += layer.delta_weight().to(tensor.dtype)
            key = f"{layer_name}.{leaf}"
        exported[key] = tensor
    return exported


def _preview(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    more = f", … ({len(names) - limit} more)" if len(names) > limit else ""
    return f"[{shown}{more}]"
