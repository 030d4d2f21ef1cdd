"""Fine-tune a pre-trained point-cloud transformer with CLoRA (or LoRA, CLoRA#, full, linear, or a peer).

Examples:
    python tools/finetune.py --cfg demo.yaml
    python tools/finetune.py --cfg scanobjectnn_hardest.yaml --ckpt pretrain.pth --data-root data/ScanObjectNN
    python tools/finetune.py --cfg scanobjectnn_hardest.yaml --ckpt pretrain.pth --set peft.method=lora peft.rank=16
    python tools/finetune.py --cfg scanobjectnn_hardest.yaml --ckpt pretrain.pth --method idpt   # IDPT's recipe
    python tools/finetune.py --output runs/scanobjectnn_hardest/RUN --resume
    python tools/finetune.py --cfg shapenetpart.yaml --ckpt pretrain.pth   # part segmentation (task: segmentation)
    torchrun --standalone --nproc_per_node=4 tools/finetune.py --cfg scanobjectnn_hardest.yaml --ckpt pretrain.pth

The run folder (--output, default runs/<config>/<time>-seed<seed>) receives config.yaml, log.txt,
metrics.csv, summary.json, curves.png, confusion.png (segmentation: parts.png) and checkpoints/{last,best}.pth.
A new run refuses a folder that holds an earlier run: continue that run with --resume, or start
again with --overwrite. One run at a time holds a folder (its .lock file); a second one fails at once.
Everything is checked before the first file is written: a refused command changes no file.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from backbones import backbone_defaults, list_backbones
from pcclora.cli.common import run_tool
from pcclora.cli.training import add_run_arguments, run_training
from pcclora.config import available_configs, backbone_configs, config_description
from pcclora.peft import PEFT_METHODS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(
        parser,
        ckpt_help="pre-trained backbone checkpoint (overrides backbone.checkpoint)",
        export_help="at the end, write the merged model as {'base_model': state_dict} (official fine-tuned layout); "
        "default PATH <run folder>/model_merged.pth",
    )
    parser.add_argument(
        "--method",
        help="a PEFT method with its packaged recipe (configs/methods/<method>.yaml: its peft block and where the "
        "official recipe differs, e.g. IDPT's and PPT's rotation); merged over --cfg before --set",
    )
    listing = parser.add_argument_group("what is packaged (print and exit)")
    listing.add_argument("--list-configs", action="store_true", help="the packaged configs, one line each")
    listing.add_argument("--list-backbones", action="store_true", help="the registered backbones and their sizes")
    listing.add_argument("--list-methods", action="store_true", help="the fine-tuning methods (peft.method)")
    return parser


def list_packaged(args: argparse.Namespace) -> list[str]:
    """The lines ``--list-configs``, ``--list-backbones`` and ``--list-methods`` print."""
    lines: list[str] = []
    if args.list_configs:
        names = available_configs() + backbone_configs()
        width = max(len(name) for name in names)
        lines += ["packaged configs (--cfg NAME):"] + [f"  {n:<{width}}  {config_description(n)}" for n in names]
    if args.list_backbones:
        lines.append("backbones (backbone.name), default sizes:")
        for name in list_backbones():
            sizes = ", ".join(f"{key}={value}" for key, value in backbone_defaults(name).items())
            lines.append(f"  {name}: {sizes}")
    if args.list_methods:
        lines.append(f"methods (peft.method): {', '.join(PEFT_METHODS)}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    listed = list_packaged(args)
    if listed:
        print("\n".join(listed))
        return 0
    return run_training(args, "classification", "demo.yaml or --cfg scanobjectnn_hardest.yaml")


def run() -> None:
    """Console entry point."""
    run_tool(main)
