"""Predict the classes of your own point clouds with a fine-tuned model: top-k with probabilities.

Examples:
    python tools/predict.py --ckpt runs/demo/RUN/checkpoints/best.pth chair.ply scans/ "more/*.npy"
    python tools/predict.py --ckpt model_merged.pth clouds/ --top-k 3 --output predictions.csv
    python tools/predict.py --ckpt scan_hardest.pth --cfg scanobjectnn_hardest.yaml scan.h5   (official file)

Files: .npy (N x 3+, or S x N x 3+), .txt / .xyz / .pts / .csv (one point a row, xyz first),
.ply (ASCII or binary), .h5 (the 'data' dataset); a folder means its cloud files, a quoted
pattern is expanded. Each cloud is prepared as the test split was in evaluation: the training
dataset's normalisation (--normalize auto) and farthest point sampling to the model's npoints.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backbones.errors import ConfigError
from pcclora.cli.common import echo_translation, run_tool
from pcclora.config import load_config
from pcclora.engine.files import write_text_atomic
from pcclora.prediction import NORMALIZE_CHOICES, predict


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="FILE", help="cloud files, folders or quoted glob patterns")
    parser.add_argument(
        "--ckpt", required=True, help="run checkpoint (<run>/checkpoints/best.pth), merged export, or official file"
    )
    parser.add_argument(
        "--cfg", help="config of an official fine-tuned file (run checkpoints and exports carry theirs)"
    )
    parser.add_argument(
        "--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help="with --cfg"
    )
    parser.add_argument("--top-k", type=int, default=5, help="classes per cloud (default 5)")
    parser.add_argument("--normalize", choices=NORMALIZE_CHOICES, default="auto", help="default: as the training data")
    parser.add_argument("--output", type=Path, help="also write the predictions to PATH (.csv or .json)")
    parser.add_argument("--batch-size", type=int, default=16, help="clouds per forward pass (default 16)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    return parser


def _csv_text(rows: list[dict[str, Any]], top_k: int) -> str:
    """One line per cloud: name, points, then class and probability of each rank."""
    header = ["name", "num_points"] + [f"{kind}_{rank}" for rank in range(1, top_k + 1) for kind in ("class", "prob")]
    lines: list[list[Any]] = [header]
    for row in rows:
        cells: list[Any] = [row["name"], row["num_points"]]
        for entry in row["top"]:
            cells += [entry["class"], f"{entry['probability']:.6f}"]
        lines.append(cells)
    stream = io.StringIO()
    csv.writer(stream, lineterminator="\n").writerows(lines)
    return stream.getvalue()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.output is not None and args.output.suffix.lower() not in (".csv", ".json"):
        raise ConfigError(f"--output {args.output}: give a .csv or .json file name")
    config = load_config(args.cfg, args.overrides, echo=echo_translation) if args.cfg is not None else None
    rows = predict(
        args.ckpt,
        args.inputs,
        config=config,
        top_k=args.top_k,
        normalize=args.normalize,
        device=args.device,
        batch_size=args.batch_size,
    )
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        ranked = "  ".join(f"{entry['class']} {100 * entry['probability']:.1f}%" for entry in row["top"])
        print(f"{row['name']:<{width}}  {ranked}")
    if args.output is not None:
        k = max(len(row["top"]) for row in rows)
        text = json.dumps(rows, indent=2) + "\n" if args.output.suffix.lower() == ".json" else _csv_text(rows, k)
        write_text_atomic(args.output, text)
        print(f"wrote {len(rows)} predictions to {args.output}", file=sys.stderr)
    return 0


def run() -> None:
    """Console entry point."""
    run_tool(main)
