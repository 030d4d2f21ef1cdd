"""PointGST: the point-cloud spectral adapter (PCSA), after jerryfeng2003/PointGST.

Liang et al., "Parameter-Efficient Fine-Tuning in Spectral Domain for Point Cloud Learning"
(arXiv 2410.08114); architecture, initialisation and trained set read from the official
``models/PGST.py``, ``models/PointTransformer.py`` and ``tools/builder.py`` (``part: adapt``).

Per forward, from the patch centres (computed once, without gradient, in plain ``torch.linalg``):

- a global graph basis U (G × G): distances between centres divided by the smallest non-zero
  distance **of the whole batch** (as the official ``torch.min(L[L > 0])``), adjacency
  1 / (d / d_min + I), normalised Laplacian I − D^-½ A D^-½ (D + 1e-6), eigenvectors by
  ``torch.linalg.eigh``;
- the centres sorted by their z-order (Morton) key of ``long(100 · (y, x, z))`` (16 bits per
  axis, as the official ``xyz2key(c[..., 1], c[..., 0], c[..., 2])``), cut into G / ``local``
  windows of ``local`` consecutive centres, and one local basis per window the same way.

In every block, between the attention and the MLP sub-layers, the adapter reads the attention
residual x (B, T, C) and its output is added after the MLP residual:

    h = W_down x                      (C → r; Xavier-uniform weight)
    z = h over the patch tokens
    global: z_f = U z;     z_f = z_f + SiLU(W_a LN₁(z_f));   z_g = Uᵀ z_f
    local:  s_f = U_w s;   s_f = s_f + SiLU(W_a LN₂(s_f));   s = U_wᵀ s_f   (s: z in z-order windows)
    h = SiLU(h);  h_patches += z_g + s (s back in patch order)
    out = W_up h                      (r → C; zero weight and bias)

``U z`` (not ``Uᵀ z``) is the official code's transform (its comment keeps it "for reproducing
our results"); ``W_a`` (zero-initialised) is shared by the global and local branches, as in the
official code, while the two LayerNorms are separate. With W_up zero the adapter output is zero:
at initialisation the model computes exactly what the frozen backbone computes.

Trained (names containing ``adapt`` or ``cls`` in the official runner): every adapter parameter
(LayerNorm₁, LayerNorm₂, W_down, W_up, W_a: 29,544 per block with r = 36), the head and the cls
token and position. Point-MAE, 15 classes: 12 × 29,544 = 354,528 + 267,535 + 768 = 622,831.
Nothing merges: the adapter is non-linear and input-dependent.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backbones.errors import ConfigError

from .hooks import TokenHook, module_device_dtype, require_backbone, require_block_halves
from .options import Option, int_at_least

HOOK_NAME = "pointgst"

OPTIONS = (
    Option("rank", 36, int_at_least(1), "r: width of the spectral adapter (the official config's rank)"),
    Option("local", 32, int_at_least(2), "centres per z-order window of the local basis (must divide num_group)"),
)


# --------------------------------------------------------------------------------------------
# the graph bases
# --------------------------------------------------------------------------------------------


def graph_basis(center: torch.Tensor) -> torch.Tensor:
    """Eigenvectors (as columns) of the normalised Laplacian of the centres' graph, (B, n, n).

    Args:
        center: (B, n, 3). The distance unit is the smallest non-zero distance over the whole
            batch (the official code's convention).
    """
    distance = torch.cdist(center, center)
    positive = distance[distance > 0]
    unit = positive.min() if positive.numel() else distance.new_ones(())
    eye = torch.eye(center.shape[1], device=center.device, dtype=center.dtype)
    adjacency = 1.0 / (distance / unit + eye)
    inv_sqrt_degree = torch.rsqrt(adjacency.sum(dim=-1) + 1e-6)
    laplacian = eye - inv_sqrt_degree[..., :, None] * adjacency * inv_sqrt_degree[..., None, :]
    return torch.linalg.eigh(laplacian).eigenvectors


def morton_key(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, bits: int = 16) -> torch.Tensor:
    """Interleaved bits of the int64 coordinates: bit j of x at 3j+2, of y at 3j+1, of z at 3j.

    The low ``bits`` bits of each coordinate's two's complement are used (the official
    ``xyz2key`` with depth 16).
    """
    key = torch.zeros_like(x)
    for bit in range(bits):
        key |= ((x >> bit) & 1) << (3 * bit + 2)
        key |= ((y >> bit) & 1) << (3 * bit + 1)
        key |= ((z >> bit) & 1) << (3 * bit)
    return key


def spectral_bases(center: torch.Tensor, local: int) -> dict[str, torch.Tensor]:
    """The per-forward bases of PointGST from the centres (B, G, 3), without gradient.

    Returns:
        ``global`` (B, G, G), ``local`` (B, G/local, local, local), ``order`` (B, G) (z-order
        sort of the centres) and ``inverse`` (B, G) (back to patch order).
    """
    with torch.no_grad():
        center = center.detach()
        scaled = (center * 100).long()
        key = morton_key(scaled[..., 1], scaled[..., 0], scaled[..., 2])
        order = torch.sort(key, dim=1, stable=True).indices
        inverse = torch.argsort(order, dim=1)
        batch, groups, _ = center.shape
        sorted_center = torch.gather(center, 1, order[..., None].expand(-1, -1, 3))
        windows = sorted_center.reshape(batch * (groups // local), local, 3)
        return {
            "global": graph_basis(center),
            "local": graph_basis(windows).reshape(batch, groups // local, local, local),
            "order": order,
            "inverse": inverse,
        }


def _gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return torch.gather(tokens, 1, index[..., None].expand(-1, -1, tokens.shape[-1]))


# --------------------------------------------------------------------------------------------
# the adapter and the hook
# --------------------------------------------------------------------------------------------


class SpectralAdapter(nn.Module):
    """PCSA of one block: (B, T, C) attention residual → (B, T, C) added after the MLP residual."""

    parameter_group = "adapter"

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        self.rank = rank
        self.norm_global = nn.LayerNorm(rank)
        self.norm_local = nn.LayerNorm(rank)
        self.down = nn.Linear(dim, rank)
        self.up = nn.Linear(rank, dim)
        self.adapt = nn.Linear(rank, rank)  # shared by the global and the local branch
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        nn.init.zeros_(self.adapt.weight)
        nn.init.zeros_(self.adapt.bias)

    def _spectral(self, signal: torch.Tensor, basis: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        transformed = basis @ signal  # the official transform (U, not Uᵀ)
        transformed = transformed + F.silu(self.adapt(norm(transformed)))
        return basis.transpose(-2, -1) @ transformed

    def forward(self, x: torch.Tensor, patches: slice, bases: dict[str, torch.Tensor]) -> torch.Tensor:
        h = self.down(x)  # (B, T, r)
        signal = h[:, patches]  # (B, G, r), before the activation
        global_part = self._spectral(signal, bases["global"].to(h.dtype), self.norm_global)
        local_basis = bases["local"].to(h.dtype)  # (B, W, l, l)
        batch, windows, size, _ = local_basis.shape
        windowed = _gather_tokens(signal, bases["order"]).reshape(batch, windows, size, self.rank)
        local_part = self._spectral(windowed, local_basis, self.norm_local).reshape(batch, windows * size, self.rank)
        local_part = _gather_tokens(local_part, bases["inverse"])
        h = F.silu(h)
        h = torch.cat([h[:, : patches.start], h[:, patches] + (global_part + local_part), h[:, patches.stop :]], dim=1)
        return self.up(h)


class PointGSTHook(TokenHook):
    """Computes the bases once per forward; runs each block with its spectral adapter."""

    parameter_group = "adapter"

    def __init__(self, dim: int, depth: int, rank: int, local: int) -> None:
        super().__init__()
        self.local = local
        self.adapters = nn.ModuleList(SpectralAdapter(dim, rank) for _ in range(depth))

    def begin(self, state: Any) -> None:
        state.scratch["pointgst_bases"] = spectral_bases(state.center, self.local)

    def run_block(self, index: int, block: nn.Module, x: torch.Tensor, state: Any) -> torch.Tensor:
        middle = block.attention_residual(x)
        branch = self.adapters[index](middle, state.patch_slice, state.scratch["pointgst_bases"])
        return block.mlp_residual(middle) + branch


def check(model: nn.Module, config: dict[str, Any]) -> None:
    """The token hooks, blocks with two halves, and ``local`` dividing ``num_group``."""
    options = config[HOOK_NAME]
    blocks = require_backbone(model, HOOK_NAME)
    require_block_halves(model, blocks, HOOK_NAME)
    if model.num_group % options["local"]:
        raise ConfigError(
            f"peft.pointgst.local {options['local']} does not divide the model's num_group {model.num_group}; "
            "the local bases take num_group / local windows of local centres; choose a divisor "
            "(the official 32 for 128)"
        )


def install(model: nn.Module, config: dict[str, Any]) -> None:
    options = config[HOOK_NAME]
    depth = len(model.blocks.blocks)
    hook = PointGSTHook(model.trans_dim, depth, options["rank"], options["local"])
    model.add_token_hook(HOOK_NAME, hook.to(**module_device_dtype(model)))
