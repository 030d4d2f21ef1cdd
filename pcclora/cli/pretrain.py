"""Pre-train a point-cloud transformer self-supervised (Point-MAE: masked patches, Chamfer loss).

Examples:
    python tools/pretrain.py --cfg pretrain_shapenet55.yaml --data-root data/ShapeNet55-34 \\
        --probe-root data/ModelNet/modelnet40_normal_resampled
    python tools/pretrain.py --cfg pretrain_shapenet55.yaml --ckpt pretrain.pth ...   # continue from a file
    python tools/pretrain.py --cfg pretrain_tiny_synthetic.yaml                         # the shipped model's run
    python tools/pretrain.py --output runs/pretrain_shapenet55/RUN --resume
    torchrun --standalone --nproc_per_node=8 tools/pretrain.py --cfg pretrain_shapenet55.yaml ...

The same engine as fine-tuning (run folder, lock, seeds, exact --resume, Ctrl-C, NaN stop, DDP,
metrics.csv, curves.png, summary.json). Validation: a linear probe (logistic regression on the
frozen encoder's pooled features) fitted on the labelled set pretraining.probe (ModelNet40 by
default) after epochs 0, N, 2N, ... and the last (N = pretraining.val_every); its test accuracy
ranks the epochs. checkpoints/{last,best}.pth hold the network under 'base_model' in the
official pre-training layout: they load with backbones.create_backbone("point_mae",
num_classes=C, checkpoint=PATH) like the official pretrain.pth, and fine-tune with
python tools/finetune.py --cfg ... --ckpt PATH.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pcclora.cli.common import run_tool
from pcclora.cli.training import add_run_arguments, run_training


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(
        parser,
        ckpt_help="continue pre-training from this file (official pretrain.pth or a pre-training checkpoint of "
        "this toolkit; overrides backbone.checkpoint)",
        export_help="at the end, write the network as {'base_model': state_dict} (official pre-training layout); "
        "default PATH <run folder>/model_pretrained.pth",
    )
    parser.add_argument(
        "--probe-root", help="folder of the linear probe's labelled set (overrides pretraining.probe.root)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.config_paths = {"pretraining.probe.root": args.probe_root}
    return run_training(args, "pretraining", "pretrain_shapenet55.yaml")


def run() -> None:
    """Console entry point."""
    run_tool(main)
