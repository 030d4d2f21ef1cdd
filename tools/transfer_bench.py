#!/usr/bin/env python3
"""The ``pcclora-transfer-bench`` command from a checkout, without installing (pcclora/cli/transfer_bench.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when not installed

from pcclora.cli.transfer_bench import main, run_tool  # noqa: E402

if __name__ == "__main__":
    run_tool(main)
