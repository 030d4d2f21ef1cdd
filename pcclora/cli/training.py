"""What ``pcclora-finetune`` and ``pcclora-pretrain`` share: the run arguments and how a run starts.

Both tools run :func:`pcclora.engine.finetune` (the one training loop, for any task); they differ
in the task their configs must name and in a few words of help.
"""

from __future__ import annotations

import argparse
from typing import Any

from backbones.errors import ConfigError
from pcclora.cli.common import INTERRUPTED_EXIT, add_config_arguments, echo_translation
from pcclora.config import load_config
from pcclora.engine import finetune, load_run_for_resume

#: The tool that runs each task.
TASK_TOOLS = {"classification": "finetune", "segmentation": "finetune", "pretraining": "pretrain"}


def add_run_arguments(parser: argparse.ArgumentParser, ckpt_help: str, export_help: str) -> None:
    """``--cfg``/``--set``/``--data-root``/``--device`` and the run options: ``--ckpt``, ``--output``,
    ``--seed``, ``--resume``, ``--overwrite``, ``--export``."""
    add_config_arguments(parser, cfg_required=False)
    parser.add_argument("--ckpt", help=ckpt_help)
    parser.add_argument("--output", help="run folder (default runs/<config>/<UTC time>-seed<seed>)")
    parser.add_argument("--seed", type=int, help="random seed (overrides training.seed)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --output from its checkpoints/last.pth with its saved config (--set still applies, "
        "e.g. training.max_epoch to extend it)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="start a new run in an --output folder that holds an earlier run: its config.yaml, log.txt, "
        "metrics.csv, summary.json, plots, checkpoints/, tensorboard/ and exports are removed once every "
        "check has passed (other files stay); refused while a run holds the folder",
    )
    parser.add_argument("--export", nargs="?", const="", metavar="PATH", help=export_help)


def check_task(config: dict[str, Any], task: str, source: str) -> None:
    """Refuse a config of a task another tool runs, naming that tool.

    Raises:
        ConfigError: ``config["task"]`` is run by another tool than ``task`` (finetune.py runs
            classification and segmentation, pretrain.py pre-training).
    """
    if TASK_TOOLS.get(config["task"], "finetune") == TASK_TOOLS[task]:
        return
    tool = TASK_TOOLS.get(config["task"], "finetune")
    raise ConfigError(
        f"{source} has task: {config['task']}, which python tools/{tool}.py runs; this tool runs "
        f"task: {task} configs (python tools/{TASK_TOOLS[task]}.py)"
    )


def run_training(args: argparse.Namespace, task: str, example: str) -> int:
    """Resolve the config from ``args`` (or the run to resume), apply the options, run it.

    Returns:
        The exit code: 0, or 130 when Ctrl-C stopped the run.
    """
    resume = None
    if args.resume:
        if args.output is None:
            raise ConfigError("--resume needs --output RUN_FOLDER, the folder of the run to continue")
        config, resume = load_run_for_resume(args.output, args.overrides)
        method = getattr(args, "method", None)
        if args.cfg is not None or method is not None:
            ignored = " and ".join(option for option, value in (("--cfg", args.cfg), ("--method", method)) if value)
            print(f"note: --resume uses the run's saved config; {ignored} ignored")
        check_task(config, task, f"the run in {args.output}")
    elif args.cfg is None:
        raise ConfigError(f"--cfg is required (e.g. --cfg {example})")
    else:
        config = load_config(args.cfg, args.overrides, method=getattr(args, "method", None), echo=echo_translation)
        check_task(config, task, f"config {args.cfg}")
    if args.ckpt is not None:
        config["backbone"]["checkpoint"] = args.ckpt
    if args.data_root is not None:
        config["dataset"]["root"] = args.data_root
    if args.seed is not None:
        config["training"]["seed"] = args.seed
    if args.device is not None:
        config["training"]["device"] = args.device
    for key, value in getattr(args, "config_paths", {}).items():
        if value is not None:
            node = config
            *sections, leaf = key.split(".")
            for section in sections:
                node = node[section]
            node[leaf] = value
    if args.resume and args.overwrite:
        raise ConfigError(
            "--overwrite starts a new run in --output and --resume continues the run there; give one of them"
        )
    summary = finetune(config, output=args.output, resume=resume, export=args.export, overwrite=args.overwrite)
    return INTERRUPTED_EXIT if summary["status"] == "interrupted" else 0
