"""Shared pieces of the command-line tools: config arguments, error reporting, exit codes.

Every tool is thin: it parses its arguments, calls the library, and turns an expected user
mistake (:class:`backbones.errors.ToolkitError`) into one line on stderr and exit code 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from backbones.errors import ToolkitError

USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130


def add_config_arguments(parser: argparse.ArgumentParser, cfg_required: bool = True) -> None:
    """``--cfg``, ``--set``, ``--data-root`` and ``--device``, as every engine tool takes them."""
    parser.add_argument(
        "--cfg",
        required=cfg_required,
        help="config: a packaged name (scanobjectnn_hardest, scanobjectnn_hardest.yaml, demo, ...) or a YAML path",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys, e.g. --set peft.rank=4 training.max_epoch=50 (values are YAML; types are checked)",
    )
    parser.add_argument("--data-root", help="dataset folder (overrides dataset.root)")
    parser.add_argument("--device", help="auto | cpu | cuda | cuda:N (overrides training.device)")


def echo_translation(line: str) -> None:
    """Print one line of an official config's translation (``load_config(..., echo=...)``) on stderr,
    so that machine-readable output on stdout (``--json``) stays clean."""
    print(line, file=sys.stderr, flush=True)


def run_tool(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Run ``main`` and exit with its code; a ToolkitError becomes ``error: <message>`` and exit 2.

    Ctrl-C that ``main`` does not handle itself exits with 130 after one line.
    """
    try:
        code = main(argv)
    except ToolkitError as error:
        print(f"error: {error}", file=sys.stderr)
        code = USER_ERROR_EXIT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = INTERRUPTED_EXIT
    sys.exit(code)
