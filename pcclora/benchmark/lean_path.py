"""What one training step keeps in memory: the savings a frozen backbone allows, checked."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from backbones import Attention

from .settings import MIB
from .steps import training_loss


class _SavedTensorMeter:
    """Sum the bytes of distinct activation tensors autograd saves for backward (parameters excluded)."""

    def __init__(self, model: nn.Module) -> None:
        self.parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.parameter_storages:
            self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def mib(self) -> float:
        return sum(self.storages.values()) / MIB


def lean_path_report(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    points: torch.Tensor,
    labels: torch.Tensor,
) -> dict[str, Any]:
    """Inspect one training step of ``model`` for the savings a frozen backbone allows.

    Returns:
        ``frozen_params_with_grad`` (should be 0), ``trainable_params``, ``optimizer_state_numel``
        (AdamW keeps 2 per trained value), ``patch_embedding_grad_enabled`` (whether autograd
        was on while the patch encoder ran), ``saved_activations_mib`` (distinct tensors autograd
        keeps for backward), ``sdpa_attention`` (every block uses fused attention).
    """
    grad_mode_in_encoder: list[bool] = []
    hook = model.encoder.register_forward_hook(lambda *_: grad_mode_in_encoder.append(torch.is_grad_enabled()))
    # (PPT and PointLoRA run the encoder more than once per step: every call is recorded)
    meter = _SavedTensorMeter(model)
    try:
        with torch.autograd.graph.saved_tensors_hooks(meter.pack, lambda t: t):
            loss = training_loss(model, points, labels)
        loss.backward()
    finally:
        hook.remove()
    frozen_with_grad = sum(1 for p in model.parameters() if not p.requires_grad and p.grad is not None)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    state_numel = sum(
        value.numel()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value) and value.ndim > 0
    )
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    return {
        "frozen_params_with_grad": frozen_with_grad,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "optimizer_state_numel": state_numel,
        "patch_embedding_grad_enabled": any(grad_mode_in_encoder),
        "saved_activations_mib": meter.mib,
        "sdpa_attention": bool(attentions) and all(bool(m.fused) for m in attentions),
    }
