"""Compute counting: one ``FlopCounterMode`` pass, read in several conventions.

A forward pass runs under :class:`torch.utils.flop_counter.FlopCounterMode`, which records the
FLOPs of every matmul-like op (mm, addmm, bmm, convolution, attention kernels) under each
module on the call stack.  Two groups of ops are added to its registry so that one pass holds
everything the conventions need:

- the CPU attention kernel ``_scaled_dot_product_flash_attention_for_cpu`` (PyTorch counts the
  CUDA kernels but not this one), so SDPA and explicit ``q @ kᵀ`` / ``attn @ v`` give the same
  count;
- normalisation layers, with fvcore's per-element figures (BatchNorm in eval mode 2 per
  element with affine, 1 without; in training mode and LayerNorm/GroupNorm 5 with affine,
  4 without), doubled like every other entry of the counter (FLOPs = 2 per multiply-add).

The counts are then split by *where* an op ran:

- ``tokenizer``: inside a :class:`backbones.tokenizer.Group` (``group_divider``) — FPS/kNN are
  not part of any convention below; they get an analytic estimate (``tokenizer_cost``);
- ``conv_linear``: inside an ``nn.Linear`` / ``nn.Conv*`` or an adapter wrapper of one (a module
  with a ``base_layer`` that is such a layer), or a module that declares ``counts_as_linear``
  (PointGPT's fused in-projection, whose weight is a parameter of its attention), the outermost
  such module on the stack, so un-merged adapter products count with the layer they adapt;
- ``attention``: matmul-like ops anywhere else (in these backbones exactly ``q @ kᵀ`` and
  ``attn @ v``, whichever kernel runs them);
- ``norm``: the normalisation entries.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from backbones.tokenizer import Group

aten = torch.ops.aten

_GLOBAL = "Global"


# --------------------------------------------------------------------------------------------
# extra flop formulas (they receive shapes in place of tensors, like PyTorch's own)
# --------------------------------------------------------------------------------------------


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _numel(shape: torch.Size) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def _layer_norm_flop(input_shape, normalized_shape, weight_shape=None, *args, out_shape=None, **kwargs) -> int:
    per_element = 5 if weight_shape is not None else 4
    return 2 * per_element * _numel(input_shape)


def _group_norm_flop(input_shape, weight_shape=None, *args, out_shape=None, **kwargs) -> int:
    per_element = 5 if weight_shape is not None else 4
    return 2 * per_element * _numel(input_shape)


def _batch_norm_flop(input_shape, weight_shape=None, *args, out_shape=None, **kwargs) -> int:
    # The variants differ in argument lists; the only bool among the arguments is the training
    # flag (``_native_batch_norm_legit_no_training`` has none: eval mode).
    training = next((arg for arg in args if isinstance(arg, bool)), False)
    affine = weight_shape is not None
    per_element = (5 if affine else 4) if training else (2 if affine else 1)
    return 2 * per_element * _numel(input_shape)


def _existing_ops(*names: str) -> list[Any]:
    return [getattr(aten, name) for name in names if hasattr(aten, name)]


_ATTENTION_OPS = _existing_ops(
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_fused_attention_overrideable"
)
_BATCH_NORM_OPS = _existing_ops(
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "cudnn_batch_norm",
    "miopen_batch_norm",
)
_LAYER_NORM_OPS = _existing_ops("native_layer_norm")
_GROUP_NORM_OPS = _existing_ops("native_group_norm")

NORM_OPS = frozenset(_BATCH_NORM_OPS + _LAYER_NORM_OPS + _GROUP_NORM_OPS)

EXTRA_FLOP_FORMULAS: dict[Any, Any] = {
    **{op: _sdpa_cpu_flop for op in _ATTENTION_OPS},
    **{op: _batch_norm_flop for op in _BATCH_NORM_OPS},
    **{op: _layer_norm_flop for op in _LAYER_NORM_OPS},
    **{op: _group_norm_flop for op in _GROUP_NORM_OPS},
}


# --------------------------------------------------------------------------------------------
# attribution
# --------------------------------------------------------------------------------------------


def is_linear_like(module: nn.Module) -> bool:
    """Whether ``module`` is a Linear/Conv layer, an adapter wrapped around one, or declares
    ``counts_as_linear``."""
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) or getattr(module, "counts_as_linear", False):
        return True
    return isinstance(getattr(module, "base_layer", None), (nn.Linear, nn.modules.conv._ConvNd))


def is_tokenizer(module: nn.Module) -> bool:
    """Whether ``module`` is the FPS/kNN tokenizer (``group_divider``)."""
    return isinstance(module, Group)


def _tracker_names(model: nn.Module) -> dict[int, str]:
    """The names ``FlopCounterMode`` gives the modules of ``model`` (keyed by ``id``).

    Its module tracker names the root by its class and every child ``parent.attribute``,
    walking ``named_children`` depth-first; a module reached twice keeps the last name.
    """
    names: dict[int, str] = {}
    seen: set[int] = set()

    def visit(module: nn.Module, name: str) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        for child_name, child in module.named_children():
            names[id(child)] = f"{name}.{child_name}"
            visit(child, names[id(child)])

    names[id(model)] = type(model).__name__
    visit(model, names[id(model)])
    return names


def _outermost(model: nn.Module, predicate) -> Iterator[nn.Module]:
    """Modules matching ``predicate`` that have no matching ancestor (each yielded once)."""
    seen: set[int] = set()
    stack = [model]
    while stack:
        module = stack.pop()
        if id(module) in seen:
            continue
        seen.add(id(module))
        if predicate(module):
            yield module
        else:
            stack.extend(module.children())


# --------------------------------------------------------------------------------------------
# counting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComputeCount:
    """Multiply-adds of one forward pass, split by where they ran (batch of the input).

    Attributes:
        conv_linear: MACs inside Conv/Linear layers (and their adapters).
        attention: MACs of the other matmul-like ops (attention products).
        norm: fvcore's normalisation-layer figure (counted as MACs, as fvcore does).
        tokenizer_counted: MACs the counter saw inside the tokenizer (0 for the built-in
            backends: FPS and kNN use no matmul-like op); never part of the figures above.
        per_module: MACs (conv/linear + attention + norm) per direct child of the model.
    """

    conv_linear: int
    attention: int
    norm: int
    tokenizer_counted: int
    per_module: dict[str, int] = field(default_factory=dict)

    @property
    def macs_conv_linear(self) -> int:
        """The convention of the published "GFLOPs" tables."""
        return self.conv_linear

    @property
    def macs_with_attention(self) -> int:
        """fvcore's convention: conv/linear + attention products + normalisation layers."""
        return self.conv_linear + self.attention + self.norm

    @property
    def flops(self) -> int:
        """2 per multiply-add of everything counted (tokenizer excluded)."""
        return 2 * self.macs_with_attention


def _sum_ops(counts: dict[str, dict[Any, int]], name: str, *, norm: bool) -> int:
    return sum(value for op, value in counts.get(name, {}).items() if (op in NORM_OPS) == norm)


def count_compute(model: nn.Module, points: torch.Tensor) -> ComputeCount:
    """Count the multiply-adds of ``model(points)`` (eval mode, no gradient).

    Args:
        model: any ``nn.Module`` taking ``points``; its train/eval state is restored.
        points: model input, e.g. (B, N, 3); counts are for this batch size.

    Returns:
        A :class:`ComputeCount`.
    """
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS)
    try:
        with torch.no_grad(), counter:
            model(points)
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts()
    names = _tracker_names(model)
    unknown = set(counts) - set(names.values()) - {_GLOBAL}
    if unknown:  # the counter's module naming changed: the split below would be wrong
        raise RuntimeError(f"FlopCounterMode reported modules this profiler cannot place: {sorted(unknown)}")

    # Outermost tokenizer or linear-like modules: a Linear inside the tokenizer stays tokenizer
    # compute, and an adapter's base layer and products count once, with the adapter.
    regions = list(_outermost(model, lambda m: is_tokenizer(m) or is_linear_like(m)))
    tokenizers = [names[id(m)] for m in regions if is_tokenizer(m)]
    linears = [names[id(m)] for m in regions if not is_tokenizer(m)]

    def total(module_names: list[str], *, norm: bool) -> int:
        return sum(_sum_ops(counts, name, norm=norm) for name in module_names)

    tokenizer_matmuls = total(tokenizers, norm=False)
    tokenizer_norms = total(tokenizers, norm=True)
    conv_linear = total(linears, norm=False)
    attention = _sum_ops(counts, _GLOBAL, norm=False) - conv_linear - tokenizer_matmuls
    norm = _sum_ops(counts, _GLOBAL, norm=True) - tokenizer_norms

    per_module = {}
    for child_name, child in model.named_children():
        if is_tokenizer(child):
            continue
        flops = sum(counts.get(names[id(child)], {}).values())
        tokenizer_inside = sum(sum(counts.get(names[id(m)], {}).values()) for m in _outermost(child, is_tokenizer))
        if flops - tokenizer_inside:
            per_module[child_name] = (flops - tokenizer_inside) // 2
    return ComputeCount(
        conv_linear=conv_linear // 2,
        attention=attention // 2,
        norm=norm // 2,
        tokenizer_counted=(tokenizer_matmuls + tokenizer_norms) // 2,
        per_module=per_module,
    )
