"""Published compute figures (sources: docs/published.md), one set per backbone.

Point-MAE rows: point-cloud PEFT methods on the Point-MAE backbone, ScanObjectNN setting (2048
points, 128 groups, batch 1). Their "GFLOPs" are the multiply-adds of the Conv1d and Linear
layers only — this toolkit's ``macs_conv_linear`` — so they sit in the same column as the
measured figures. The other backbones' rows are their own full models as their papers (or the
PEFT papers that use them) report them; a figure a source does not give is ``None``.

PPT's row has its trainable count only (its abstract, arXiv 2408.11567v2); its paper gives no
compute figure that this project could read. PointLoRA states a share (3.43 % trainable), not a
count, and VeRA has no point-cloud figures: neither has a row.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedRow:
    """One published model: trainable parameters and "GFLOPs" (conv/linear MACs).

    Attributes:
        method: the method, or "full fine-tuning" for the whole backbone.
        params_trainable: trainable parameters as published (the whole model for full fine-tuning).
        macs_conv_linear: the published "GFLOPs" as multiply-adds, or None when not given.
        backbone: the registered backbone the row describes; the report shows a row only next
            to a profile of that backbone.
        source: where the figures come from (paper and table; docs/published.md has the details).
    """

    method: str
    params_trainable: int
    macs_conv_linear: int | None
    backbone: str = "point_mae"
    source: str = ""


_PEFT_TABLES = "DAPT (CVPR 2024) / PointGST (arXiv 2410.08114) comparison tables"

PUBLISHED_ROWS: tuple[PublishedRow, ...] = (
    PublishedRow("full fine-tuning", 22_100_000, 4_760_000_000, source=_PEFT_TABLES),
    PublishedRow("IDPT", 1_700_000, 7_100_000_000, source=_PEFT_TABLES),
    PublishedRow("Point-PEFT", 700_000, 7_610_000_000, source=_PEFT_TABLES),
    PublishedRow("DAPT", 1_100_000, 4_960_000_000, source=_PEFT_TABLES),
    PublishedRow("PointGST", 600_000, 4_810_000_000, source=_PEFT_TABLES),
    PublishedRow("PPT", 1_050_000, None, source="PPT (arXiv 2408.11567v2), abstract"),
    PublishedRow(
        "full fine-tuning", 22_100_000, None, "act", "ACT (ICLR 2023, arXiv 2212.08320): Point-MAE's model, 22.1M"
    ),
    PublishedRow("full fine-tuning", 43_600_000, None, "recon", "ReCon (ICML 2023, arXiv 2302.02318)"),
    PublishedRow("full fine-tuning", 29_200_000, None, "pointgpt_s", "PointGPT (NeurIPS 2023, arXiv 2305.11487)"),
    PublishedRow("full fine-tuning", 120_500_000, None, "pointgpt_b", "PointGPT (NeurIPS 2023, arXiv 2305.11487)"),
    PublishedRow(
        "full fine-tuning",
        360_500_000,
        67_700_000_000,
        "pointgpt_l",
        "PointGPT (NeurIPS 2023, arXiv 2305.11487); the PEFT papers on PointGPT-L quote 360.5M / 67.7 G",
    ),
)

#: What the published rows of each backbone describe (the report's footnote).
PUBLISHED_SETTINGS = {
    "point_mae": "Point-MAE backbone, ScanObjectNN, 2048 points, batch 1",
    "act": "ACT, the whole fine-tuning model",
    "recon": "ReCon, the whole fine-tuning model",
    "pointgpt_s": "PointGPT-S, the whole fine-tuning model (extractor and generator)",
    "pointgpt_b": "PointGPT-B, the whole fine-tuning model (extractor and generator)",
    "pointgpt_l": "PointGPT-L, the whole model; GFLOPs at 2048 points, classification forward",
}


def published_rows(backbone: str) -> tuple[PublishedRow, ...]:
    """The published rows that describe ``backbone`` (none for a backbone without any)."""
    return tuple(row for row in PUBLISHED_ROWS if row.backbone == backbone)
