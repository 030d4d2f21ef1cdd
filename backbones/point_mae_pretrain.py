"""Point-MAE's self-supervised pre-training network (Pang et al., ECCV 2022), official module and key names.

The network of github.com/Pang-Yatian/Point-MAE ``models/Point_MAE.py`` (``Point_MAE``), with
the sizes of its ``cfgs/pretrain.yaml`` as defaults: 1024 points in 64 patches of 32, a
12 × 384 encoder with 6 heads, a 4-block 6-head decoder, 60 % of the patches masked at random,
Chamfer-L2 loss. Written from the paper and the published definitions; no official code is used.

For a cloud (B, N, 3):

1. ``group_divider``: FPS + kNN patches, neighbourhoods (B, G, k, 3) relative to their centres.
2. A mask (B, G) (True = masked): ``rand`` masks ``int(mask_ratio · G)`` patches drawn uniformly
   per cloud, ``block`` the ``int(mask_ratio · G)`` patches whose centres lie nearest a random
   centre; or the caller's own mask.
3. ``MAE_encoder`` (the fine-tuning model's encoder under the same names: ``encoder``,
   ``pos_embed``, ``blocks``, ``norm``) embeds and encodes the **visible** patches only.
4. The decoder input is [encoded visible tokens, ``mask_token`` × M], each with its
   ``decoder_pos_embed`` of its centre; ``MAE_decoder`` (``blocks``, ``norm``) returns the last M
   tokens, and ``increase_dim`` (Conv1d trans_dim → 3 · group_size) turns each into a patch,
   reshaped to (B · M, group_size, 3).
5. Loss: Chamfer distance (``cdl2``: the official ``ChamferDistanceL2``, mean of the squared
   nearest distances both ways; or ``cdl1``) between the reconstructed and the masked patches.

State-dict keys: ``MAE_encoder.*`` (156 entries at full size, the keys
``backbones.create_backbone("point_mae", ...)`` loads from an official ``pretrain.pth``),
``mask_token``, ``decoder_pos_embed.{0,2}``, ``MAE_decoder.blocks.{i}.*``, ``MAE_decoder.norm``,
``increase_dim.0``: 209 entries, the official ``pretrain.pth`` without its ``module.`` prefix,
so that file loads strictly into this model and this model's files load as that file does.
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import torch
from torch import nn

from .chamfer import CHAMFER_LOSSES, resolve_chamfer_backend
from .errors import InputShapeError, ModelConfigError
from .layers import TransformerEncoder, init_all_but_head, linear_drop_path_rates
from .patch_encoder import PatchEncoder
from .point_mae import POINT_MAE_TINY_SIZES
from .point_transformer import check_cloud
from .tokenizer import Group

MASK_TYPES = ("rand", "block")


class MaskTransformer(nn.Module):
    """The pre-training encoder (official ``MaskTransformer``): patch embedding, position
    embedding, transformer and final norm under the fine-tuning model's key names."""

    def __init__(
        self,
        trans_dim: int,
        depth: int,
        num_heads: int,
        encoder_dims: int,
        drop_path_rate: float,
        mlp_ratio: float = 4.0,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = PatchEncoder(encoder_dims)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, trans_dim))
        self.blocks = TransformerEncoder(
            trans_dim,
            num_heads,
            linear_drop_path_rates(drop_path_rate, depth),
            mlp_ratio=mlp_ratio,
            fused_attention=fused_attention,
        )
        self.norm = nn.LayerNorm(trans_dim)
        init_all_but_head(self, head_names=())  # the official init; this network has no head

    def forward(self, neighborhood: torch.Tensor, center: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Encode the visible patches: neighborhood (B, G, k, 3), center (B, G, 3), mask (B, G)
        → normalised tokens (B, G − M, trans_dim), in patch order."""
        tokens = self.encoder(neighborhood)  # (B, G, C)
        batch, _, width = tokens.shape
        visible = ~mask
        x = tokens[visible].reshape(batch, -1, width)
        pos = self.pos_embed(center[visible].reshape(batch, -1, 3))
        return self.norm(self.blocks(x, pos))


class TransformerDecoder(TransformerEncoder):
    """The official ``TransformerDecoder``: blocks (``blocks.{i}``), then ``norm`` of the last tokens."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        drop_path_rates: list[float],
        mlp_ratio: float = 4.0,
        fused_attention: bool = True,
    ) -> None:
        super().__init__(dim, num_heads, drop_path_rates, mlp_ratio=mlp_ratio, fused_attention=fused_attention)
        self.norm = nn.LayerNorm(dim)
        for module in self.modules():  # the official decoder init: Xavier-uniform Linear weights
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, return_token_num: int) -> torch.Tensor:  # type: ignore[override]
        """x, pos (B, T, C) → the normalised last ``return_token_num`` tokens (B, M, C)."""
        return self.norm(super().forward(x, pos)[:, -return_token_num:])


class PointMAEPretrainer(nn.Module):
    """Point-MAE pre-training: masked patches reconstructed from the visible ones.

    ``forward(points, mask=None)`` returns the loss (a scalar). 29,006,432 parameters at the
    official size (``MAE_encoder`` 21,825,024: the fine-tuning backbone without cls token,
    position and head).

    Args:
        trans_dim, depth, num_heads, num_group, group_size, encoder_dims, drop_path_rate,
            mlp_ratio: as :class:`backbones.PointMAE` (``encoder_dims == trans_dim``); defaults
            from the official ``cfgs/pretrain.yaml``.
        decoder_depth, decoder_num_heads: the decoder (width ``trans_dim``; drop path rising
            to ``drop_path_rate`` as in the encoder).
        mask_ratio: share of the patches masked; ``int(mask_ratio · num_group)`` of them,
            at least one and at most ``num_group − 1``.
        mask_type: ``"rand"`` or ``"block"``.
        loss: ``"cdl2"`` (official) or ``"cdl1"``.
        fused_attention, tokenizer_backend: as the fine-tuning models.
        chamfer_backend: ``"auto"``, ``"torch"`` or ``"pytorch3d"`` (:mod:`backbones.chamfer`).
    """

    default_config: ClassVar[dict[str, Any]] = {
        "trans_dim": 384,
        "depth": 12,
        "num_heads": 6,
        "num_group": 64,
        "group_size": 32,
        "encoder_dims": 384,
        "drop_path_rate": 0.1,
        "mlp_ratio": 4.0,
        "decoder_depth": 4,
        "decoder_num_heads": 6,
        "mask_ratio": 0.6,
        "mask_type": "rand",
        "loss": "cdl2",
    }
    #: The fine-tuning backbone whose encoder this trains (``create_backbone`` name; its exports
    #: store the encoder's sizes, so ``create_backbone("point_mae", checkpoint=...)`` rebuilds any size).
    backbone_name: ClassVar[str] = "point_mae"
    #: The sizes that shape the encoder's weights (what a fine-tuning model must be built with).
    backbone_size_keys: ClassVar[tuple[str, ...]] = ("trans_dim", "depth", "num_heads", "encoder_dims", "mlp_ratio")
    #: Checkpoint layouts tried first: the whole network under its own names (backbones.checkpoint).
    checkpoint_layouts: ClassVar[tuple[str, ...]] = ("point_mae_pretrainer",)
    #: No classification head.
    head_module_names: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        fused_attention: bool = True,
        tokenizer_backend: str = "auto",
        chamfer_backend: str = "auto",
        **overrides: Any,
    ) -> None:
        super().__init__()
        sizes = {**self.default_config, **overrides}
        self.config = _check_config(sizes)
        for key, value in self.config.items():
            setattr(self, key, value)
        self.num_mask = int(self.mask_ratio * self.num_group)
        self.chamfer_backend = resolve_chamfer_backend(chamfer_backend)
        self.loss_func = CHAMFER_LOSSES[self.loss]

        self.MAE_encoder = MaskTransformer(
            self.trans_dim,
            self.depth,
            self.num_heads,
            self.encoder_dims,
            self.drop_path_rate,
            self.mlp_ratio,
            fused_attention,
        )
        self.group_divider = Group(self.num_group, self.group_size, backend=tokenizer_backend)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.trans_dim))
        self.decoder_pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, self.trans_dim))
        self.MAE_decoder = TransformerDecoder(
            self.trans_dim,
            self.decoder_num_heads,
            linear_drop_path_rates(self.drop_path_rate, self.decoder_depth),
            mlp_ratio=self.mlp_ratio,
            fused_attention=fused_attention,
        )
        self.increase_dim = nn.Sequential(nn.Conv1d(self.trans_dim, 3 * self.group_size, 1))
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    # -- masks -------------------------------------------------------------------------------

    def random_mask(self, center: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A (B, G) boolean mask of ``mask_type`` with ``int(mask_ratio · G)`` True per cloud.

        Random numbers come from ``generator`` (a CPU generator) or torch's global CPU generator,
        so a mask depends on the seed, not on the device.
        """
        batch, groups = center.shape[:2]
        if self.mask_type == "rand":
            order = torch.rand(batch, groups, generator=generator).argsort(dim=1)
        else:  # block: the patches nearest a random centre (the centre itself first)
            start = torch.randint(groups, (batch,), generator=generator).to(center.device)
            origin = center[torch.arange(batch, device=center.device), start]  # (B, 3)
            distances = (center.detach() - origin.detach()[:, None]).square().sum(-1)
            order = distances.argsort(dim=1, stable=True).cpu()
        mask = torch.zeros(batch, groups, dtype=torch.bool)
        mask.scatter_(1, order[:, : self.num_mask], True)
        return mask.to(center.device)

    def check_mask(self, mask: torch.Tensor, batch: int) -> torch.Tensor:
        """Return ``mask`` on the model's device when it is a usable (B, G) boolean mask.

        Raises:
            InputShapeError: wrong shape or dtype, or clouds with different numbers of masked
                patches, none, or all (the official network needs one count per batch).
        """
        expected = (batch, self.num_group)
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != expected:
            got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise InputShapeError(f"mask must be a bool tensor of shape {expected} (True = masked), got {got}")
        counts = mask.sum(dim=1)
        if bool((counts != counts[0]).any()) or not 0 < int(counts[0]) < self.num_group:
            raise InputShapeError(
                f"every cloud must mask the same number of patches, at least 1 and at most {self.num_group - 1}; "
                f"got {counts.tolist()}"
            )
        return mask.to(self.mask_token.device)

    # -- forward -----------------------------------------------------------------------------

    def reconstruct(
        self, points: torch.Tensor, mask: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Everything of one pass: points (B, N, 3) →

        ``{"mask"}`` (B, G), ``"center"`` (B, G, 3), ``"neighborhood"`` (B, G, k, 3),
        ``"rebuilt"`` (B·M, k, 3) the reconstructed masked patches (relative to their centres),
        ``"target"`` (B·M, k, 3) the masked patches, in the same order.
        """
        check_cloud(points, self.num_group, self.group_size)
        points = points.to(self.mask_token.dtype)
        neighborhood, center = self.group_divider(points)
        batch = points.shape[0]
        mask = self.random_mask(center, generator) if mask is None else self.check_mask(mask, batch)
        x_vis = self.MAE_encoder(neighborhood, center, mask)  # (B, V, C)
        width = x_vis.shape[-1]
        pos_vis = self.decoder_pos_embed(center[~mask]).reshape(batch, -1, width)
        pos_mask = self.decoder_pos_embed(center[mask]).reshape(batch, -1, width)
        masked = pos_mask.shape[1]
        x_full = torch.cat([x_vis, self.mask_token.expand(batch, masked, -1)], dim=1)
        pos_full = torch.cat([pos_vis, pos_mask], dim=1)
        x_rec = self.MAE_decoder(x_full, pos_full, masked)  # (B, M, C)
        rebuilt = self.increase_dim(x_rec.transpose(1, 2)).transpose(1, 2).reshape(batch * masked, -1, 3)
        target = neighborhood[mask].reshape(batch * masked, -1, 3)
        return {"mask": mask, "center": center, "neighborhood": neighborhood, "rebuilt": rebuilt, "target": target}

    def forward(
        self, points: torch.Tensor, mask: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The pre-training loss of a batch (a scalar, float32).

        Args:
            points: (B, N, 3) clouds (N ≥ num_group, group_size).
            mask: optional (B, G) bool, True = masked, the same count per cloud; replaces the
                random mask (to compare with another implementation on the same mask).
            generator: CPU generator for the random mask (default: torch's global one).
        """
        out = self.reconstruct(points, mask, generator)
        # Chamfer in float32 at least, also under bf16 autocast
        with torch.autocast(out["rebuilt"].device.type, enabled=False):
            return self.loss_func(out["rebuilt"].float(), out["target"].float(), backend=self.chamfer_backend)

    @torch.no_grad()
    def forward_features(self, points: torch.Tensor) -> torch.Tensor:
        """Pooled features of whole clouds, nothing masked: concat[max, mean] over the encoder's
        normalised patch tokens, (B, 2 · trans_dim). What the linear-probe validation fits on."""
        check_cloud(points, self.num_group, self.group_size)
        neighborhood, center = self.group_divider(points.to(self.mask_token.dtype))
        nothing = torch.zeros(center.shape[:2], dtype=torch.bool, device=center.device)
        tokens = self.MAE_encoder(neighborhood, center, nothing)
        return torch.cat([tokens.amax(dim=1), tokens.mean(dim=1)], dim=-1)

    def backbone_sizes(self) -> dict[str, Any]:
        """The sizes a fine-tuning ``backbone_name`` model needs to take this encoder's weights."""
        return {key: self.config[key] for key in self.backbone_size_keys}

    def set_fused_attention(self, fused: bool) -> None:
        """Switch every block (encoder and decoder) between SDPA and explicit softmax attention."""
        for stack in (self.MAE_encoder.blocks, self.MAE_decoder):
            for block in stack.blocks:
                block.attn.fused = fused

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.config.items())


def _check_config(config: dict[str, Any]) -> dict[str, Any]:
    """The sizes and objective, checked and normalised (ints as ints).

    Raises:
        ModelConfigError: a size that is not a positive integer, a rate out of range, an
            unknown mask type or loss, heads that do not divide the width, encoder_dims ≠
            trans_dim, or a mask ratio that masks no patch or every patch.
    """
    checked = dict(config)
    for key in ("trans_dim", "depth", "num_heads", "num_group", "group_size", "encoder_dims", "decoder_depth"):
        value = checked[key]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ModelConfigError(f"{key} must be a positive integer, got {value!r}")
        checked[key] = int(value)
    value = checked["decoder_num_heads"]
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ModelConfigError(f"decoder_num_heads must be a positive integer, got {value!r}")
    checked["decoder_num_heads"] = int(value)
    for key in ("num_heads", "decoder_num_heads"):
        if checked["trans_dim"] % checked[key]:
            raise ModelConfigError(
                f"trans_dim {checked['trans_dim']} is not divisible by {key} {checked[key]}; "
                "choose a divisor of trans_dim (the official model uses 384 / 6)"
            )
    if checked["encoder_dims"] != checked["trans_dim"]:
        raise ModelConfigError(
            f"Point-MAE needs encoder_dims == trans_dim (it has no reduce_dim), got "
            f"encoder_dims={checked['encoder_dims']}, trans_dim={checked['trans_dim']}"
        )
    if not 0.0 <= float(checked["drop_path_rate"]) < 1.0:
        raise ModelConfigError(f"drop_path_rate must be in [0, 1), got {checked['drop_path_rate']}")
    if float(checked["mlp_ratio"]) <= 0:
        raise ModelConfigError(f"mlp_ratio must be positive, got {checked['mlp_ratio']}")
    checked["drop_path_rate"], checked["mlp_ratio"] = float(checked["drop_path_rate"]), float(checked["mlp_ratio"])
    ratio = checked["mask_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0.0 < ratio < 1.0:
        raise ModelConfigError(f"mask_ratio must be a number in (0, 1), got {ratio!r}")
    checked["mask_ratio"] = float(ratio)
    masked = int(checked["mask_ratio"] * checked["num_group"])
    if not 0 < masked < checked["num_group"]:
        raise ModelConfigError(
            f"mask_ratio {ratio} masks {masked} of num_group {checked['num_group']} patches; "
            "it must mask at least one patch and leave at least one visible"
        )
    if checked["mask_type"] not in MASK_TYPES:
        raise ModelConfigError(f"mask_type must be one of {', '.join(MASK_TYPES)}, got {checked['mask_type']!r}")
    if checked["loss"] not in CHAMFER_LOSSES:
        raise ModelConfigError(f"loss must be one of {', '.join(CHAMFER_LOSSES)}, got {checked['loss']!r}")
    return checked


class PointMAETinyPretrainer(PointMAEPretrainer):
    """:class:`PointMAEPretrainer` at the size of pcclora's shipped pre-trained backbone
    (encoder :data:`backbones.point_mae.POINT_MAE_TINY_SIZES`, a 2-block decoder);
    ``create_pretrainer("point_mae_tiny", pretrained=True)`` continues from the shipped weights."""

    default_config: ClassVar[dict[str, Any]] = {
        **PointMAEPretrainer.default_config,
        **POINT_MAE_TINY_SIZES,
        "decoder_depth": 2,
        "decoder_num_heads": 4,
    }
