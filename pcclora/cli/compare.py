"""Compare PEFT methods side by side: every method × seed of one config, one table.

    python tools/compare.py --cfg demo --seeds 0 1 --output runs/compare_demo
    python tools/compare.py --cfg scanobjectnn_hardest --ckpt pretrain.pth --methods clora lora idpt dapt --seeds 0 1 2

Each method runs with its packaged recipe (pcclora/configs/methods/<method>.yaml: its peft block
and where the official recipe differs, e.g. IDPT's and PPT's rotation) merged over --cfg, then
--set (keys of the peft block a method does not read are left out for it; peft.<method>.<option>
reaches only that method), with the same data, schedule, seeds and evaluation. Runs go to
<output>/<method>/seed<seed>/ through the fine-tuning engine; a finished run is skipped, an
interrupted one resumed. Then parameters, compute, training-step time and peak training memory
of all methods are measured side by side in one run, and comparison.csv, comparison.md and
comparison.png are written to <output>.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from pcclora.cli.common import add_config_arguments, run_tool
from pcclora.peft import PEFT_METHODS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser)
    parser.add_argument("--ckpt", help="pre-trained backbone checkpoint (overrides backbone.checkpoint)")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(PEFT_METHODS),
        metavar="M",
        help=f"methods, in table order (default: all: {' '.join(PEFT_METHODS)})",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (default: 0 1 2)")
    parser.add_argument("--output", help="comparison folder (default: runs/compare/<config>)")
    parser.add_argument(
        "--no-measure",
        dest="measure",
        action="store_false",
        help="skip the step-time and memory measurement (parameters and GMACs are always given)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed training steps per method (median; default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for the measurement")
    parser.add_argument(
        "--bench-batch-size", type=int, help="batch of the step-time and memory measurement (default: the config's)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from pcclora.comparison import ComparisonSettings, run_comparison
    from pcclora.config import resolve_config_path

    overrides = list(args.overrides)
    if args.ckpt is not None:
        overrides.append(f"backbone.checkpoint={args.ckpt}")
    output = args.output or str(Path("runs") / "compare" / resolve_config_path(args.cfg).stem)
    command = "python tools/compare.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    run_comparison(
        ComparisonSettings(
            config=args.cfg,
            methods=args.methods,
            seeds=args.seeds,
            output=output,
            overrides=overrides,
            data_root=args.data_root,
            device=args.device,
            measure=args.measure,
            repeats=args.repeats,
            warmup=args.warmup,
            threads=args.threads,
            bench_batch_size=args.bench_batch_size,
            command=command,
        )
    )
    return 0


def run() -> None:
    """Console entry point."""
    run_tool(main)
