"""Write small synthetic datasets in the official file layouts, or few-shot folds.

  python tools/make_synthetic.py --format scanobjectnn --out data/ScanObjectNN
  python tools/make_synthetic.py --format modelnet40 --out data/ModelNet/modelnet40_normal_resampled
  python tools/make_synthetic.py --format shapenet55 --out data/ShapeNet55-34
  python tools/make_synthetic.py --format shapenetpart --out data/shapenetcore_partanno_segmentation_benchmark_v0_normal
  python tools/make_synthetic.py --format modelnet40_fewshot \\
      --source data/ModelNet/modelnet40_normal_resampled --out data/ModelNetFewshot

scanobjectnn, modelnet40, shapenet55 and shapenetpart write procedural shapes (see datasets/synthetic.py;
shapenet55: the pre-training layout, one taxonomy per shape, 40 / 10 instances per shape and
8192 points per cloud by default); modelnet40_fewshot draws ``{way}way{shot}shot/{fold}.pkl``
folds from any ModelNet40 folder (real or synthetic).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from backbones.errors import ConfigError
from datasets.fewshot import make_fewshot_folds
from datasets.scanobjectnn import VARIANTS
from datasets.synthetic import default_split_sizes, make_synthetic
from pcclora.cli.common import run_tool


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--format",
        required=True,
        choices=("scanobjectnn", "modelnet40", "shapenet55", "shapenetpart", "modelnet40_fewshot"),
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write (the dataset root)")
    parser.add_argument("--seed", type=int, default=0)
    synthetic = parser.add_argument_group("scanobjectnn / modelnet40 / shapenet55 / shapenetpart")
    synthetic.add_argument(
        "--num-train",
        type=int,
        help="train samples (default: 600 for scanobjectnn, 20 per class for modelnet40, 40 per shape for "
        "shapenet55, 320 for shapenetpart)",
    )
    synthetic.add_argument(
        "--num-test",
        type=int,
        help="test samples (default: 150 for scanobjectnn, 20 per class for modelnet40, 10 per shape for "
        "shapenet55, 160 for shapenetpart)",
    )
    synthetic.add_argument(
        "--num-points", type=int, default=None, help="points per sample (default 2048; shapenet55: 8192)"
    )
    synthetic.add_argument(
        "--variants",
        nargs="+",
        default=list(VARIANTS),
        choices=list(VARIANTS),
        help="ScanObjectNN variants to write (default: all three)",
    )
    synthetic.add_argument(
        "--no-background", dest="background", action="store_false", help="no background points in objbg/hardest"
    )
    synthetic.add_argument("--num-classes", type=int, default=40, help="modelnet40 only: classes, 2..47 (default 40)")
    fewshot = parser.add_argument_group("modelnet40_fewshot")
    fewshot.add_argument("--source", type=Path, help="ModelNet40 folder to draw the folds from")
    fewshot.add_argument("--ways", type=int, nargs="+", default=[5, 10])
    fewshot.add_argument("--shots", type=int, nargs="+", default=[10, 20])
    fewshot.add_argument("--folds", type=int, default=10)
    fewshot.add_argument("--eval-samples", type=int, default=20, help="test samples per class (default 20)")
    return parser.parse_args(argv)


def check_out_folder(out: Path) -> None:
    """``--out`` must be a folder or a path that can become one (no file on the way)."""
    existing = next(path for path in (out, *out.parents) if path.exists())
    if not existing.is_dir():
        raise ConfigError(f"--out {out}: {existing} is a file, not a folder; give a folder path (new or existing)")


def write(args: argparse.Namespace) -> str:
    start = time.perf_counter()
    check_out_folder(args.out)
    if args.format == "modelnet40_fewshot":
        if args.source is None:
            raise ConfigError("--format modelnet40_fewshot needs --source, the ModelNet40 folder to draw folds from")
        written = make_fewshot_folds(
            args.source,
            args.out,
            ways=args.ways,
            shots=args.shots,
            folds=args.folds,
            seed=args.seed,
            eval_samples=args.eval_samples,
        )
        return f"wrote {len(written)} fold files under {args.out} in {time.perf_counter() - start:.1f} s"
    num_train, num_test = default_split_sizes(args.format, args.num_classes, args.num_train, args.num_test)
    out = make_synthetic(
        args.format,
        args.out,
        num_train=num_train,
        num_test=num_test,
        seed=args.seed,
        num_points=args.num_points,
        variants=args.variants,
        background=args.background,
        num_classes=args.num_classes,
    )
    total = num_train + num_test
    return (
        f"wrote synthetic {args.format} ({num_train} train + {num_test} test samples) to {out} "
        f"in {time.perf_counter() - start:.1f} s ({total / (time.perf_counter() - start):.0f} samples/s)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    print(write(parse_args(argv)))
    return 0


def run() -> None:
    """Console entry point."""
    run_tool(main)
