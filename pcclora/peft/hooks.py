"""What methods that change a backbone's forward need from it: the token-hook protocol, duck-typed.

``pcclora.peft`` imports nothing of the model zoo but its error classes, so the protocol is
described here by the attributes it reads (docs/method.md, "What a backbone must offer"):

- ``add_token_hook(name, hook)``: register a module whose ``begin(state)``,
  ``before_block(index, state)``, ``run_block(index, block, x, state)``,
  ``after_block(index, state)`` and ``pool(state)`` the forward calls (``backbones``'
  ``PointPatchTransformer`` implements it; its ``TokenState`` carries ``x``, ``pos``,
  ``center``, ``points``, ``num_prefix``, ``scratch`` and the ``model``);
- ``embed_group(points, num_group, group_size)``: extra token groups through the model's own
  patch embedding (PPT, PointLoRA);
- ``resize_head_input(in_features)``: a head that reads a wider pooled feature (IDPT, DAPT,
  PPT);
- ``blocks.blocks`` (the transformer blocks, in order), ``trans_dim``, ``num_group``, ``norm``;
- blocks with ``attention_residual(x)`` and ``mlp_residual(x)`` (PPT, PointGST: a branch
  parallel to the MLP sub-layer).

A model without them (a timm ViT) gets a :class:`ConfigError` naming what is missing; CLoRA,
CLoRA#, LoRA and VeRA only wrap ``nn.Linear`` layers and work on any model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from backbones.errors import ConfigError

LINEAR_ONLY_METHODS = "clora, clora_shared, lora, vera"


class TokenHook(nn.Module):
    """Base of the token hooks the methods install: every stage a no-op (see the module docstring)."""

    def begin(self, state: Any) -> None:
        """After the cls token is prepended, before block 0."""

    def before_block(self, index: int, state: Any) -> None:
        """Before block ``index``."""

    def run_block(self, index: int, block: nn.Module, x: torch.Tensor, state: Any) -> torch.Tensor | None:
        """Block ``index`` computed here from its input ``x``, or ``None`` for ``block(x)``."""
        return None

    def after_block(self, index: int, state: Any) -> None:
        """After block ``index`` (its output is ``state.x``)."""

    def pool(self, state: Any) -> torch.Tensor | None:
        """The pooled feature of the final tokens, or ``None`` for the backbone's pooling."""
        return None


def _missing_message(model: nn.Module, method: str, missing: list[str]) -> str:
    return (
        f"method {method!r} changes the backbone's forward and needs {', '.join(missing)}, which "
        f"{type(model).__name__} does not have; use a backbone that offers it (point_mae, point_bert, "
        f"act; recon for idpt and pointlora), or a method that only wraps nn.Linear layers ({LINEAR_ONLY_METHODS})"
    )


def require_backbone(model: nn.Module, method: str, *, extra: tuple[str, ...] = ()) -> list[nn.Module]:
    """Check the token-hook protocol (and ``extra`` attributes); return the transformer blocks.

    Raises:
        ConfigError: something the method needs is missing (all of it is named).
    """
    missing = [name for name in ("add_token_hook", *extra) if getattr(model, name, None) is None]
    for name in ("trans_dim", "num_group"):
        if not isinstance(getattr(model, name, None), int):
            missing.append(name)
    blocks = getattr(getattr(model, "blocks", None), "blocks", None)
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)) or len(blocks) == 0:
        missing.append("blocks.blocks (the transformer blocks)")
    if missing:
        raise ConfigError(_missing_message(model, method, missing))
    return list(blocks)


def require_block_halves(model: nn.Module, blocks: list[nn.Module], method: str) -> None:
    """Every block must offer ``attention_residual`` and ``mlp_residual``.

    Raises:
        ConfigError: a block without them.
    """
    for index, block in enumerate(blocks):
        if not (
            callable(getattr(block, "attention_residual", None)) and callable(getattr(block, "mlp_residual", None))
        ):
            raise ConfigError(
                _missing_message(
                    model, method, [f"blocks whose attention_residual / mlp_residual it can call (block {index})"]
                )
            )


def require_submodules(model: nn.Module, names: list[str], method: str, what: str) -> list[nn.Module]:
    """The submodules ``names`` of ``model``; a :class:`ConfigError` naming the missing ones."""
    modules = dict(model.named_modules())
    missing = [name for name in names if name not in modules]
    if missing:
        raise ConfigError(
            f"method {method!r} trains {what} {missing}, which {type(model).__name__} does not have; "
            f"set peft.{method}.train_modules to module names of this model (or [] for none)"
        )
    return [modules[name] for name in names]


def module_device_dtype(model: nn.Module) -> dict[str, Any]:
    """``device`` and ``dtype`` of the model's first floating parameter (for new modules)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return {"device": parameter.device, "dtype": parameter.dtype}
    return {}
