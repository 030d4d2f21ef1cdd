"""Published compute figures of point-cloud PEFT methods (sources: docs/published.md).

PPT's row has its trainable count only (its abstract, arXiv 2408.11567v2); its paper gives no
compute figure that this project could read. PointLoRA states a share (3.43 % trainable), not a
count, and VeRA has no point-cloud figures: neither has a row.

Point-MAE backbone, ScanObjectNN setting (2048 points, 128 groups, batch 1).  "GFLOPs" in those
tables is the multiply-adds of the Conv1d and Linear layers only — this toolkit's
``macs_conv_linear`` — so they sit in the same column as the measured figures.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedRow:
    """One method as the papers report it: trainable parameters and "GFLOPs" (conv/linear MACs;
    ``None`` where the source gives none)."""

    method: str
    params_trainable: int
    macs_conv_linear: int | None


PUBLISHED_ROWS: tuple[PublishedRow, ...] = (
    PublishedRow("full fine-tuning", 22_100_000, 4_760_000_000),
    PublishedRow("IDPT", 1_700_000, 7_100_000_000),
    PublishedRow("Point-PEFT", 700_000, 7_610_000_000),
    PublishedRow("DAPT", 1_100_000, 4_960_000_000),
    PublishedRow("PointGST", 600_000, 4_810_000_000),
    PublishedRow("PPT", 1_050_000, None),
)
