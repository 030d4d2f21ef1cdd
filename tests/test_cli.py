"""tools/finetune.py and tools/test.py: help, one-line errors with exit code 2, the real workflow."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"


def load_tool(name: str):
    """Import tools/<name>.py as a module (the tools are scripts, not a package)."""
    sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_in_process(name: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run a tool's main through run_tool like the command line does; (exit code, stdout, stderr)."""
    tool = load_tool(name)
    with pytest.raises(SystemExit) as exit_info:
        tool.run_tool(tool.main, argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.mark.parametrize("tool", ["finetune", "test", "pretrain"])
def test_help_works_from_another_folder(tool, tmp_path):
    result = subprocess.run(
        [sys.executable, str(TOOLS / f"{tool}.py"), "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0
    assert "--cfg" in result.stdout and "--ckpt" in result.stdout


def test_unknown_config_key_is_one_line_on_stderr_with_exit_code_2(tmp_path):
    result = subprocess.run(
        [sys.executable, str(TOOLS / "finetune.py"), "--cfg", "scanobjectnn_hardest", "--set", "trainig.seed=1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "did you mean 'training.seed'" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cfg", "scanobjectnn_hardest", "--data-root", "{tmp}/nowhere"], "nowhere"),
        (
            ["--cfg", "scanobjectnn_hardest", "--data-root", "{scan}", "--ckpt", "{tmp}/pretrain.pth"],
            "pretrain.pth not found",
        ),
        (["--cfg", "nonexistent_config"], "packaged configs"),
        (["--cfg", "scanobjectnn_hardest", "--set", "optimizer.lr=1e40"], "optimizer.lr must be <= 10, got 1e+40"),
        (["--cfg", "scanobjectnn_hardest", "--set", "optimizer.lr="], "expected a float like the current value"),
        (["--output", "{tmp}/run", "--resume"], "last.pth not found"),
        (["--resume"], "--resume needs --output"),
        ([], "--cfg is required"),
    ],
)
def test_expected_mistakes_exit_2_without_traceback(argv, message, tmp_path, capsys, write_scanobjectnn):
    scan = write_scanobjectnn(tmp_path / "scan")
    argv = [arg.format(tmp=tmp_path, scan=scan) for arg in argv]
    code, _, err = run_in_process("finetune", argv, capsys)
    assert code == 2
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_test_tool_rejects_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    bogus = tmp_path / "notes.pth"
    bogus.write_text("not a checkpoint")
    code, _, err = run_in_process("test", ["--ckpt", str(bogus)], capsys)
    assert code == 2 and "cannot read checkpoint" in err


def test_finetune_then_test_with_votes_and_export(tmp_path, capsys, monkeypatch, tiny_overrides, write_scanobjectnn):
    monkeypatch.chdir(tmp_path)
    scan = write_scanobjectnn(tmp_path / "scan")
    overrides = [o for o in tiny_overrides(scan) if not o.startswith("dataset.root")]
    code, out, _ = run_in_process(
        "finetune",
        [
            "--cfg",
            "scanobjectnn_hardest.yaml",
            "--data-root",
            str(scan),
            "--seed",
            "3",
            "--output",
            "run",
            "--export",
            "--set",
            *overrides,
        ],
        capsys,
    )
    assert code == 0
    assert "RANDOM weights" in out and "epoch   0/0" in out and "summary (finished)" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["seed"] == 3 and (tmp_path / "run" / "model_merged.pth").is_file()
    code, out, _ = run_in_process(
        "test", ["--ckpt", "run/checkpoints/best.pth", "--votes", "2", "--export", "merged.pth", "--json"], capsys
    )
    assert code == 0
    result = json.loads(out)
    assert result["oa"] == pytest.approx(summary["best_oa"]) and result["votes"] == 2
    assert (tmp_path / "merged.pth").is_file()
    code, out, _ = run_in_process("test", ["--ckpt", "run/checkpoints/best.pth"], capsys)
    assert code == 0 and "class" in out and "accuracy %" in out and "\nbag " in out and "OA " in out


def test_progress_lines_reach_a_redirected_output(tmp_path, tiny_overrides, write_scanobjectnn):
    """A log file or a cluster job sees progress while an epoch runs, not only after it."""
    scan = write_scanobjectnn(tmp_path / "scan")
    overrides = [*tiny_overrides(scan), "training.progress_interval=0.001"]
    done = subprocess.run(
        [sys.executable, str(TOOLS / "finetune.py"), "--cfg", "scanobjectnn_hardest", "--output", str(tmp_path / "r")]
        + ["--set", *overrides],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "epoch 0: 1/" in done.stdout and "loss" in done.stdout


def test_two_processes_under_torchrun_with_gloo(tmp_path, tiny_overrides, write_scanobjectnn):
    scan = write_scanobjectnn(tmp_path / "scan")
    overrides = [o for o in tiny_overrides(scan) if not o.startswith("dataset.root")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(TOOLS / "finetune.py"),
            "--cfg",
            "scanobjectnn_hardest",
            "--data-root",
            str(scan),
            "--output",
            str(tmp_path / "ddp"),
            "--device",
            "cpu",
            "--set",
            *overrides,
            "training.max_epoch=1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "processes 2" in result.stdout
    assert result.stdout.count("summary (finished)") == 1  # only rank 0 reports and writes
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["epochs_run"] == 2
    # the two ranks' test shards together are the whole test set: one process agrees exactly
    from pcclora.engine import evaluate_checkpoint

    single = evaluate_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pth")
    assert single["oa"] == pytest.approx(summary["last_oa"]) and single["macc"] == pytest.approx(summary["last_macc"])


def test_finetune_lists_what_is_packaged(capsys):
    code, out, _ = run_in_process("finetune", ["--list-configs", "--list-backbones", "--list-methods"], capsys)
    assert code == 0
    assert "scanobjectnn_hardest" in out and "Point-MAE on ScanObjectNN hardest" in out and "demo  " in out
    assert "point_mae: trans_dim=384" in out and "clora, " in out
