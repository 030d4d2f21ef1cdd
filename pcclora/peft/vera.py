"""VeRA: frozen random bases shared by every adapted layer, trained per-layer scaling vectors.

Built after Hugging Face PEFT's ``tuners/vera`` (Kopiczko et al., "VeRA: Vector-based Random
Matrix Adaptation", ICLR 2024), the general-purpose method closest in spirit to CLoRA's shared
bases:

- one pair A (r × d_in_max), B (d_out_max × r) for the whole model, drawn once from a CPU
  generator seeded with ``projection_prng_key`` (Kaiming-uniform with gain √2: uniform in
  ±√(6 / fan_in), fan_in = d_in_max for A and r for B, A first), frozen, stored as buffers of
  ``model.vera_bases`` (saved with the adapter, as PEFT's ``save_projection=True``);
- each adapted Linear (d_in → d_out) trains ``vera_lambda_d`` (r, filled with ``d_initial``)
  and ``vera_lambda_b`` (d_out, zero) and adds Λ_b B[:d_out] Λ_d A[:, :d_in] x — zero at
  initialisation, and mergeable into the weight;
- one layer per ``nn.Linear`` (a fused qkv is one layer), as PEFT wraps modules.

Targets are ``peft.target_modules`` (the CLoRA/LoRA key): qkv, proj, fc1, fc2 of every block by
default. Trainable on Point-MAE with 15 classes: 12 × (1,408 + 640 + 1,792 + 640) = 53,760
vector entries, + head 267,535 + cls token/position 768 = 322,063.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from backbones.errors import StateError

from .layers import VeRALinear
from .options import Option, int_at_least, number_in

#: Attribute of the adapted model that owns the shared random bases.
BANK_ATTRIBUTE = "vera_bases"

OPTIONS = (
    Option("rank", 256, int_at_least(1), "r: rows of the shared A and columns of B (PEFT's default 256)"),
    Option(
        "d_initial",
        0.1,
        number_in(-math.inf, math.inf, low_inclusive=False),
        "initial value of every entry of vera_lambda_d",
    ),
    Option("projection_prng_key", 0, int_at_least(0), "seed of the CPU generator that draws A and B"),
    Option("dropout", 0.0, number_in(0.0, 1.0), "dropout on the branch input", structural=False),
)


class VeRABases(nn.Module):
    """The frozen shared pair: ``vera_A`` (r, d_in_max) and ``vera_B`` (d_out_max, r), as buffers."""

    parameter_group = "vera"

    def __init__(self, rank: int, in_features: int, out_features: int, seed: int) -> None:
        super().__init__()
        self.rank = rank
        generator = torch.Generator(device="cpu").manual_seed(seed)
        self.register_buffer("vera_A", _kaiming_uniform((rank, in_features), generator))
        self.register_buffer("vera_B", _kaiming_uniform((out_features, rank), generator))

    def extra_repr(self) -> str:
        return f"rank={self.rank}, A={tuple(self.vera_A.shape)}, B={tuple(self.vera_B.shape)}"


def _kaiming_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Kaiming-uniform with gain √2 over fan_in = shape[1] (PEFT's ``_kaiming_init``)."""
    bound = math.sqrt(3.0) * math.sqrt(2.0) / math.sqrt(shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def check(model: nn.Module, config: dict[str, Any]) -> None:
    """Nothing beyond the targets (checked by ``apply_peft``) and a free bank attribute."""
    if hasattr(model, BANK_ATTRIBUTE):
        raise StateError(
            f"{type(model).__name__} already has an attribute {BANK_ATTRIBUTE!r}, where VeRA keeps "
            "its shared random bases; rename that attribute of the model"
        )


def install(model: nn.Module, config: dict[str, Any], targets: list[tuple[str, nn.Linear]]) -> None:
    """Wrap every target Linear in a :class:`VeRALinear` sharing one :class:`VeRABases`."""
    options = config["vera"]
    in_max = max(linear.in_features for _, linear in targets)
    out_max = max(linear.out_features for _, linear in targets)
    bases = VeRABases(options["rank"], in_max, out_max, options["projection_prng_key"])
    reference = targets[0][1].weight
    bases.to(device=reference.device, dtype=reference.dtype)
    for name, linear in targets:
        wrapper = VeRALinear(linear, bases, d_initial=options["d_initial"], dropout=options["dropout"])
        parent_name, _, child_name = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child_name, wrapper)
    model.add_module(BANK_ATTRIBUTE, bases)
