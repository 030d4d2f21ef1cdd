"""Evaluate a fine-tuned checkpoint on the test split: OA, mean class accuracy, optional voting.

Examples:
    python tools/test.py --ckpt runs/scanobjectnn_hardest/RUN/checkpoints/best.pth
    python tools/test.py --ckpt runs/.../best.pth --votes 10 --data-root data/ScanObjectNN
    python tools/test.py --ckpt runs/.../best.pth --export scan_hardest_clora_merged.pth
    python tools/test.py --cfg scanobjectnn_hardest.yaml --ckpt scan_hardest.pth   (official fine-tuned file)
    python tools/test.py --ckpt runs/shapenetpart/RUN/checkpoints/best.pth   (part segmentation: mIoU)

A run checkpoint carries its config (the backbone is rebuilt from backbone.checkpoint, the trained
tensors are loaded on top); --cfg is needed only for official fine-tuned files. A pre-training
checkpoint (tools/pretrain.py) reports its linear-probe accuracy on its probe set; with
--cfg pretrain_shapenet55.yaml an official pretrain.pth is probed the same way.

--votes N is ONE evaluation with N-vote averaging: for each test batch, N random subsets of the
FPS pool plus a random scale-and-translate, logits averaged. It is not repeated and no maximum
over repeats is taken (the official --test reports the best of 299 such runs).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from pcclora.cli.common import add_config_arguments, echo_translation, run_tool
from pcclora.tables import render_table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, cfg_required=False)
    parser.add_argument(
        "--ckpt", required=True, help="run checkpoint (<run>/checkpoints/best.pth) or official fine-tuned file"
    )
    parser.add_argument(
        "--votes", type=int, default=0, metavar="N", help="also report N-vote averaging (10 is usual); 0 = off"
    )
    parser.add_argument("--export", metavar="PATH", help="write the merged model as {'base_model': state_dict} to PATH")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pcclora.config import ConfigError, load_config
    from pcclora.engine import evaluate_checkpoint

    if args.votes < 0:
        raise ConfigError(f"--votes must be >= 0, got {args.votes}")
    config = load_config(args.cfg, args.overrides, echo=echo_translation) if args.cfg is not None else None
    result = evaluate_checkpoint(
        args.ckpt,
        config=config,
        overrides=args.overrides,
        votes=args.votes,
        export=args.export,
        data_root=args.data_root,
        device=args.device,
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    epoch = f", epoch {result['epoch']}" if "epoch" in result else ""
    print(f"checkpoint {result['checkpoint']} ({result['method']}{epoch}), {result['num_samples']} test samples")
    if "per_category_iou" in result:  # part segmentation
        rows = [[name, f"{iou:.2f}"] for name, iou in result["per_category_iou"].items()]
        print(render_table(["category", "mIoU %"], rows))
        print(f"Ins mIoU {result['ins_miou']:.2f}  Cls mIoU {result['cls_miou']:.2f}  Acc {result['acc']:.2f}")
        if "export" in result:
            print(f"exported the merged model to {result['export']}")
        return 0
    rows = [
        [row["class"], str(row["samples"]), "-" if row["accuracy"] is None else f"{row['accuracy']:.2f}"]
        for row in result["per_class"]
    ]
    print(render_table(["class", "test samples", "accuracy %"], rows))
    print("  ".join(f"{label} {result[name]:.2f}" for name, label in result["metric_labels"].items()))
    if "vote_oa" in result:
        print(
            f"voting ({result['votes']} votes, logits averaged, one run): "
            f"OA {result['vote_oa']:.2f}  mAcc {result['vote_macc']:.2f}"
        )
    if "export" in result:
        print(f"exported the merged model to {result['export']}")
    return 0


def run() -> None:
    """Console entry point."""
    run_tool(main)
