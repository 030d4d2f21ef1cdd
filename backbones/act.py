"""ACT fine-tuning model (Dong et al., "Autoencoders as Cross-Modal Teachers", ICLR 2023).

ACT's classification model (github.com/RunpeiDong/ACT, ``models/act.py``, ``PointTransformer``)
is Point-MAE's, module for module: its ``reduce_dim`` is an ``nn.Identity`` whenever
``encoder_dims == embed_dim`` (every official config), so it has no entry in the state dict, and
its head is the same three-layer head. Fine-tuned ACT files therefore have exactly Point-MAE's
174 keys and load strictly. What differs is the pre-training checkpoint (``ACT_encoder.*``, the
``act_pretrain`` layout of :mod:`backbones.checkpoint`), which also carries the cls token and
its position, and the official recipe (docs/recipes.md).

ACT's configs call the token width ``embed_dim``; it is accepted as another name of
``trans_dim``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from .errors import ModelConfigError
from .point_mae import PointMAE


class ACT(PointMAE):
    """ACT classifier: the Point-MAE architecture (22,093,327 parameters for C = 15).

    Args: see :class:`backbones.point_transformer.PointPatchTransformer`; ``embed_dim`` is
    ACT's name of ``trans_dim``.
    """

    #: Checkpoint layouts tried first (backbones.checkpoint).
    checkpoint_layouts: ClassVar[tuple[str, ...]] = ("act_pretrain",)
    #: Official config names accepted for a size: alias → size name.
    option_aliases: ClassVar[dict[str, str]] = {"embed_dim": "trans_dim"}

    def __init__(self, num_classes: int, **overrides: Any) -> None:
        for alias, name in self.option_aliases.items():
            if alias in overrides:
                value = overrides.pop(alias)
                if name in overrides and overrides[name] != value:
                    raise ModelConfigError(
                        f"{alias}={value!r} and {name}={overrides[name]!r} name the same size; give one of them"
                    )
                overrides[name] = value
        super().__init__(num_classes, **overrides)
