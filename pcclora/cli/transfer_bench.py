"""Transfer evidence: every fine-tuning method from pre-trained and from random weights, in one table.

Examples:
    python tools/transfer_bench.py                                   # the README's table (point_mae_tiny)
    python tools/transfer_bench.py --output runs/transfer_bench --seeds 0 1 2
    python tools/transfer_bench.py --cfg my_config.yaml --ckpt pretrain.pth --set training.max_epoch=49

Each method (linear probe, CLoRA, LoRA, full fine-tuning) is fine-tuned twice with the same
config and budget of epochs: from the pre-trained backbone (default: point_mae_tiny, pre-trained
weights shipped with pcclora) and from random weights. Each run is a normal fine-tuning run in
<output>/<method>-<init>-seed<seed>/ (finished runs are reused, interrupted ones resumed: run the
command again after Ctrl-C). The table (trainable parameters, best and last test OA of each
init, and their difference) is printed and written as transfer.csv and transfer.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pcclora.cli.common import add_config_arguments, run_tool

DEFAULT_CONFIG = "transfer_tiny_synthetic"


def build_parser() -> argparse.ArgumentParser:
    from pcclora.transfer import DEFAULT_METHODS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, cfg_required=False)
    parser.set_defaults(cfg=DEFAULT_CONFIG)
    parser.add_argument("--ckpt", help="pre-trained backbone file (instead of the config's pre-trained weights)")
    parser.add_argument("--output", default="runs/transfer_bench", help="bench folder (default runs/transfer_bench)")
    parser.add_argument(
        "--methods", nargs="+", default=list(DEFAULT_METHODS), help="methods (default: linear clora lora full)"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="training seeds (default: 0)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pcclora.transfer import run_transfer_bench, write_transfer_table

    overrides = list(args.overrides)
    if args.ckpt is not None:
        overrides += [f"backbone.checkpoint={args.ckpt}", "backbone.pretrained=false"]
    if args.data_root is not None:
        overrides.append(f"dataset.root={args.data_root}")
    if args.device is not None:
        overrides.append(f"training.device={args.device}")
    runs = run_transfer_bench(args.cfg, args.output, args.methods, args.seeds, overrides)
    table = write_transfer_table(runs, args.output)
    print(f"\ntransfer bench ({args.cfg}; files in {args.output}: transfer.csv, transfer.md)\n{table}")
    return 0


def run() -> None:
    """Console entry point."""
    run_tool(main)
