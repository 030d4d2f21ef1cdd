"""Parameters, MACs, FLOPs and latency of each fine-tuning method for a run config.

    python tools/profile_flops.py --cfg scanobjectnn_hardest.yaml
    python tools/profile_flops.py --cfg scanobjectnn_hardest.yaml --method clora --json --no-latency
    python tools/profile_flops.py --cfg demo --method idpt pointgst --set peft.idpt.prompt_layer=3 peft.pointgst.local=8
    python tools/profile_flops.py --cfg shapenetpart.yaml --no-latency   (part segmentation, batch 1, 2048 points)

For every method (default: all of them) the config's backbone is built with random weights (the
counts do not depend on them) and profiled at batch 1 and the config's ``dataset.npoints``: total
and trainable parameters, conv+linear MACs (the "GFLOPs" of the published tables), MACs with
attention (fvcore's convention), FLOPs (2 per multiply-add), for the training-time model and,
where something merges, the merged inference model.  The published figures of the profiled
backbone follow, labelled "published" (for Point-MAE: the other point-cloud PEFT methods; for ACT,
ReCon and PointGPT: the whole model as its paper reports it).  Latency and throughput are
measured on --device at batch 1 and 32 unless --no-latency.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from backbones.errors import ConfigError
from backbones.registry import backbone_task
from pcclora.cli.common import echo_translation, run_tool
from pcclora.config import load_config
from pcclora.device import resolve_device
from pcclora.peft import PEFT_METHODS
from pcclora.profiling import report
from pcclora.profiling.methods import (
    COMPUTE_KEYS,
    build_backbone,
    latency_rows,
    profile_method,
    tokenizer_estimate_for,
)

DEFAULT_METHODS = PEFT_METHODS
#: The methods that apply to a segmentation backbone (the token-hook methods refuse it).
SEGMENTATION_METHODS = ("clora", "clora_shared", "lora", "full", "linear", "vera")
JSON_KEYS = ("method", "params_total", "params_trainable", *COMPUTE_KEYS, "merged")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cfg", required=True, help="packaged config name (scanobjectnn_hardest.yaml) or a path")
    parser.add_argument(
        "--method",
        nargs="+",
        choices=PEFT_METHODS,
        default=None,
        metavar="M",
        help=f"methods among {', '.join(PEFT_METHODS)} (default: {' '.join(DEFAULT_METHODS)}; for a "
        f"segmentation backbone the methods that wrap its linear layers: {' '.join(SEGMENTATION_METHODS)})",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="config overrides, e.g. peft.rank=4 dataset.npoints=1024 backbone.num_group=64",
    )
    parser.add_argument("--device", default="cpu", help="device of the latency measurement: cpu or cuda[:N]")
    parser.add_argument(
        "--json", action="store_true", help="print a JSON list, one object per method (raw counts; no latency)"
    )
    parser.add_argument("--no-latency", dest="latency", action="store_false", help="skip the latency measurement")
    parser.add_argument(
        "--published",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show the published figures under the measured ones (default: on)",
    )
    parser.add_argument(
        "--batch-sizes", nargs="+", type=int, default=[1, 32], metavar="B", help="latency batch sizes (default: 1 32)"
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed passes per batch size (default: 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per batch size; the median is shown")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=5.0,
        help="stop timing a batch size after this many seconds (at least one pass; default: 5)",
    )
    return parser.parse_args(argv)


def report_text(args: argparse.Namespace) -> str:
    """The table (or the JSON list) for the parsed arguments."""
    if args.warmup < 0 or args.repeats < 1 or any(b < 1 for b in args.batch_sizes):
        raise ConfigError(
            f"need --warmup >= 0, --repeats >= 1 and batch sizes >= 1, got --warmup {args.warmup} "
            f"--repeats {args.repeats} --batch-sizes {' '.join(map(str, args.batch_sizes))}"
        )
    config = load_config(args.cfg, args.overrides, echo=echo_translation)
    device = resolve_device(args.device, allow_auto=False)
    segmentation = backbone_task(config["backbone"]["name"]) == "segmentation"
    methods = list(dict.fromkeys(args.method or (SEGMENTATION_METHODS if segmentation else DEFAULT_METHODS)))
    # each method with its own peft block (its packaged recipe, then --set: peft.<method>.* reaches it)
    configs = {m: load_config(args.cfg, args.overrides, method=m, lenient_peft=True) for m in methods}
    backbone = build_backbone(config)
    profiles = [profile_method(backbone, configs[method], method, device) for method in methods]
    if args.json:
        return json.dumps([{key: p[key] for key in JSON_KEYS} for p in profiles], indent=2)

    npoints = config["dataset"]["npoints"]
    peft = config["peft"]
    sections = [
        f"{config['name']}: {config['backbone']['name']}, {npoints} points, {backbone.num_group} groups × "
        f"{backbone.group_size}, batch 1, random weights (counts do not depend on them); "
        f"peft: rank {peft['rank']}, num_bases {peft['num_bases']}",
        report.compute_table(profiles, published=args.published, backbone=config["backbone"]["name"]),
        report.tokenizer_line(tokenizer_estimate_for(config, backbone)),
        report.breakdown_lines(profiles),
    ]
    if args.latency:
        batch_sizes = tuple(args.batch_sizes)
        rows = latency_rows(
            backbone, profiles, npoints, device, batch_sizes, args.warmup, args.repeats, args.max_seconds
        )
        sections.append(report.latency_table(rows, str(device), args.warmup, args.repeats, args.max_seconds))
    return "\n\n".join(sections)


def main(argv: Sequence[str] | None = None) -> int:
    print(report_text(parse_args(argv)))
    return 0


def run() -> None:
    """Console entry point."""
    run_tool(main)
