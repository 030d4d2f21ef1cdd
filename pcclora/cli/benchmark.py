"""Speed and memory of every fine-tuning method: full, linear, LoRA, CLoRA (+ SADE), CLoRA#, VeRA,
IDPT, DAPT, PPT, PointGST, PointLoRA.

Point-MAE at the ScanObjectNN shape (N=2048, G=128, k=32, 12 x 384) by default; batch 32 on
CUDA, 8 on CPU.  Prints tables and what they mean for choosing a method; ``--json`` prints the
same figures as one JSON object instead.  See ``pcclora/benchmark/`` for what each figure is.

    python tools/benchmark.py --threads 2
    python tools/benchmark.py --threads 2 --only train memory infer --methods full clora idpt dapt
    python tools/benchmark.py --device cuda --json > bench.json
    python tools/benchmark.py --only sade tokenizer
    python tools/benchmark.py --only tokenizer --contention 1 --repeats 21
    python tools/benchmark.py --task segmentation --only train infer --threads 2

``--task segmentation`` measures the Point-MAE part-segmentation model (``point_mae_seg``, 50 parts,
16 categories, a per-point CE training step) with the methods that wrap its linear layers (the
token-hook methods refuse it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml

from backbones.errors import ToolkitError, did_you_mean
from pcclora.benchmark import (
    METHODS,
    POINT_MAE_SCANOBJECTNN,
    SECTIONS,
    BenchmarkError,
    BenchmarkSettings,
    format_report,
    run_benchmark,
)
from pcclora.benchmark.settings import METHOD_CONFIGS
from pcclora.cli.common import USER_ERROR_EXIT, run_tool
from pcclora.config import parse_override
from pcclora.peft import resolve_peft_config
from pcclora.peft.config import OPTION_METHODS


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["backbone.depth=2", "backbone.trans_dim=32"]`` -> backbone size overrides.

    The same ``section.key=value`` syntax as the other tools' ``--set`` (only ``backbone.`` keys
    apply here); the bare ``depth=2`` is accepted too. Values are numbers of the default's type.
    """
    overrides: dict[str, Any] = {}
    valid = ", ".join(f"backbone.{key}" for key in POINT_MAE_SCANOBJECTNN)
    for item in items:
        path, value = parse_override(item)
        key = path[-1]
        if len(path) > 2 or (len(path) == 2 and path[0] != "backbone") or key not in POINT_MAE_SCANOBJECTNN:
            raise BenchmarkError(
                f"--set takes KEY=VALUE with KEY a backbone size{did_you_mean(key, POINT_MAE_SCANOBJECTNN)}, "
                f"got {item!r}; choose among {valid}"
            )
        default = POINT_MAE_SCANOBJECTNN[key]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not numeric or (isinstance(default, int) and not float(value).is_integer()):
            kind = "an integer" if isinstance(default, int) else "a number"
            raise BenchmarkError(f"--set backbone.{key} needs {kind}, got {value!r}")
        overrides[key] = type(default)(value)
    return overrides


def split_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    """``--set`` items → (backbone sizes, method options): ``peft.idpt.prompt_layer=1`` becomes
    ``idpt.prompt_layer=1`` (the form of :func:`parse_peft_overrides`); the rest are sizes."""
    sizes, options = [], []
    for item in items:
        if item.startswith("peft."):
            options.append(item.removeprefix("peft."))
        else:
            sizes.append(item)
    return sizes, options


def parse_peft_overrides(items: list[str], methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["idpt.prompt_layer=1"]`` → per benchmark method the ``peft:`` block with those option values.

    Raises:
        BenchmarkError: not ``METHOD.OPTION=VALUE``, or a method without option block.
    """
    blocks: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        method, dot, option = key.partition(".")
        if not sep or not dot or method not in OPTION_METHODS:
            raise BenchmarkError(
                f"--set takes peft.METHOD.OPTION=VALUE with METHOD among {', '.join(OPTION_METHODS)}, "
                f"got {'peft.' + item!r}"
            )
        blocks.setdefault(method, {})[option] = yaml.safe_load(raw)
    peft = {}
    for name in methods:
        config = dict(METHOD_CONFIGS.get(name, {}))
        method = config.get("method")
        if method in blocks:
            peft[name] = {**config, method: dict(blocks[method])}
            resolve_peft_config(peft[name])  # a bad option fails here, before anything runs
    return peft


#: The benchmark methods that apply to the segmentation model (they wrap its nn.Linear layers).
SEGMENTATION_METHODS = ("full", "linear", "lora", "clora", "clora+sade", "clora_shared", "vera")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument("--batch-size", type=int, help="clouds per step (default: 32 on cuda, 8 on cpu)")
    parser.add_argument(
        "--repeats", type=int, help="timed repeats per figure, median reported (default: 5 cpu, 20 cuda)"
    )
    parser.add_argument(
        "--infer-repeats", type=int, help="timed forward passes per model in 'infer' (default: 3 x repeats)"
    )
    parser.add_argument("--warmup", type=int, help="untimed repeats first (default: 1 cpu, 3 cuda)")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=None,
        help="default: all (segmentation: " + " ".join(SEGMENTATION_METHODS) + ")",
    )
    parser.add_argument(
        "--task",
        choices=("classification", "segmentation"),
        default="classification",
        help="classification (point_mae, 15 classes) or part segmentation (point_mae_seg, 50 parts)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        metavar="SECTION",
        help=f"sections to run, among {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--num-points", type=int, default=2048, help="N, points per cloud")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="backbone sizes and methods' options as in the other tools, e.g. backbone.depth=2 "
        "backbone.trans_dim=32 peft.idpt.prompt_layer=1 peft.pointgst.local=8 (method options "
        "default to the official values)",
    )
    parser.add_argument("--sade-weight", type=float, default=0.1, help="λ of the clora+sade method")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--contention",
        type=int,
        default=0,
        metavar="N",
        help="time the tokenizer section a second time while N busy-loop processes (one core "
        "each) spin, to show quiet and busy figures side by side (default: 0, quiet only)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cuda = args.device == "cuda"
    try:
        sizes, options = split_overrides(args.set)
        model = {**POINT_MAE_SCANOBJECTNN, **parse_overrides(sizes)}
        segmentation = args.task == "segmentation"
        methods = args.methods or list(SEGMENTATION_METHODS if segmentation else METHODS)
        settings = BenchmarkSettings(
            device=args.device,
            batch_size=args.batch_size if args.batch_size is not None else (32 if cuda else 8),
            num_points=args.num_points,
            repeats=args.repeats if args.repeats is not None else (20 if cuda else 5),
            infer_repeats=args.infer_repeats,
            warmup=args.warmup if args.warmup is not None else (3 if cuda else 1),
            methods=tuple(methods),
            sections=tuple(args.only),
            model=model,
            sade_weight=args.sade_weight,
            threads=args.threads,
            seed=args.seed,
            contention=args.contention,
            peft=parse_peft_overrides(options, methods),
            backbone="point_mae_seg" if segmentation else "point_mae",
            num_classes=50 if segmentation else 15,
        )
        progress = lambda section: print(f"[benchmark] {section} ...", file=sys.stderr, flush=True)  # noqa: E731
        results = run_benchmark(settings, progress=progress)
    except ToolkitError as error:  # main is also called directly (tests); keep its exit code
        print(f"error: {error}", file=sys.stderr)
        return USER_ERROR_EXIT
    print(json.dumps(results, indent=2) if args.json else format_report(results))
    return 0


def run() -> None:
    """Console entry point."""
    run_tool(main)
