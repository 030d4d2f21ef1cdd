"""The run folder's rules (issue 11): refused commands change no file, no run overwrites another
without --overwrite, one run at a time holds the folder's lock, files are written whole.

Every test makes its own tiny runs (2-core CPU: seconds each) on miniature ScanObjectNN files.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from backbones.errors import CheckpointError, ConfigError
from pcclora.cli import finetune as finetune_tool
from pcclora.cli.common import run_tool
from pcclora.engine import classification as classification_module
from pcclora.engine import finetune, load_run_for_resume
from pcclora.engine import run_folder as run_folder_module
from pcclora.engine.run_folder import LOCK_FILE, RunFolder, RunFolderLock

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scan_root(tmp_path_factory, write_scanobjectnn):
    return write_scanobjectnn(tmp_path_factory.mktemp("scan") / "ScanObjectNN")


@pytest.fixture(scope="module")
def finished(scan_root, tmp_path_factory, tiny_config):
    """A finished one-epoch run, never changed by the tests (they copy it)."""
    root = tmp_path_factory.mktemp("finished") / "run"
    finetune(tiny_config("scanobjectnn_hardest", scan_root), output=root)
    return root


@pytest.fixture()
def run(finished, tmp_path):
    """A private copy of the finished run."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (dot-files included), by relative path, with its bytes."""
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def run_finetune_tool(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_tool(finetune_tool.main, argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


# --------------------------------------------------------------------------------------------
# item 3: a refused --resume changes no file
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["peft.rank=4"],
            r"cannot resume from .*last.pth: the adapter checkpoint was trained with another peft "
            r"config \(rank: checkpoint 2, model 4\).*but not the model",
        ),
        (["peft.method=lora"], r"cannot resume from .*method: checkpoint 'clora', model 'lora'"),
        (["backbone.depth=3"], r"cannot resume from .*does not fit the model"),
        (["dataset.npoints=2048"], r"dataset.npoints is 2048 but the train clouds"),
        (["training.batch_size=1000"], r"training.batch_size 1000 does not fit 32 training samples"),
        (["dataset.root=/nowhere/at/all"], r"/nowhere/at/all does not exist"),
    ],
)
def test_a_refused_resume_changes_no_file(run, capsys, overrides, message):
    stale = run / "checkpoints" / ".last.pth.0badf00d.tmp"
    stale.write_bytes(b"half a checkpoint")  # what a SIGKILL during a write leaves: a refusal keeps it too
    before = snapshot(run)
    code, _, err = run_finetune_tool(["--output", str(run), "--resume", "--set", *overrides], capsys)
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert snapshot(run) == before


def test_resume_removes_the_temporary_files_interrupted_writes_left(run, tiny_config):
    (run / "checkpoints" / ".last.pth.0badf00d.tmp").write_bytes(b"half a checkpoint")
    (run / ".metrics.csv.12345678.tmp").write_bytes(b"epoch,lr\n0,")
    (run / ".my_notes.tmp").write_text("not ours: stays")
    config, last = load_run_for_resume(run, ["training.max_epoch=1"])
    finetune(config, output=run, resume=last)
    names = {path.name for path in run.rglob("*")}
    assert ".last.pth.0badf00d.tmp" not in names and ".metrics.csv.12345678.tmp" not in names
    assert ".my_notes.tmp" in names
    assert "removed 2 temporary file(s) an interrupted write left behind" in (run / "log.txt").read_text()


# --------------------------------------------------------------------------------------------
# item 4: a new run never overwrites an earlier one without --overwrite
# --------------------------------------------------------------------------------------------


def test_a_new_run_into_an_existing_run_folder_is_refused_and_changes_no_file(
    run, scan_root, tiny_config, tiny_overrides, capsys
):
    before = snapshot(run)
    with pytest.raises(ConfigError, match=r"already holds a run \(config.yaml, log.txt, metrics.csv, summary.json"):
        finetune(tiny_config("scanobjectnn_hardest", scan_root), output=run)
    assert snapshot(run) == before
    code, _, err = run_finetune_tool(
        ["--cfg", "scanobjectnn_hardest", "--output", str(run), "--set", *tiny_overrides(scan_root)], capsys
    )
    assert code == 2 and "continue it with --resume, start it again with --overwrite" in err
    assert snapshot(run) == before


def test_overwrite_removes_the_earlier_run_and_keeps_other_files(run, scan_root, tiny_overrides, capsys):
    (run / "notes.txt").write_text("mine")
    old_checkpoint = (run / "checkpoints" / "last.pth").read_bytes()
    code, out, _ = run_finetune_tool(
        [
            "--cfg",
            "scanobjectnn_hardest",
            "--output",
            str(run),
            "--overwrite",
            "--seed",
            "5",
            "--set",
            *tiny_overrides(scan_root),
        ],
        capsys,
    )
    assert code == 0 and "--overwrite: removed the earlier run's config.yaml" in out
    assert (run / "notes.txt").read_text() == "mine"
    assert (run / "checkpoints" / "last.pth").read_bytes() != old_checkpoint
    log = (run / "log.txt").read_text()
    assert log.count("run folder: ") == 1 and "seed 5" in log  # the old log went with the old run


def test_overwrite_and_resume_together_are_refused(run, capsys):
    before = snapshot(run)
    code, _, err = run_finetune_tool(["--output", str(run), "--resume", "--overwrite"], capsys)
    assert code == 2 and "give one of them" in err
    assert snapshot(run) == before


def test_overwrite_is_documented_in_help(capsys):
    with pytest.raises(SystemExit):
        finetune_tool.main(["--help"])
    assert "--overwrite" in capsys.readouterr().out


def test_a_refused_new_run_leaves_no_folder_behind(scan_root, tmp_path, tiny_config):
    target = tmp_path / "runs" / "deep" / "new"
    with pytest.raises(ConfigError, match="training.batch_size 1000 does not fit"):
        finetune(tiny_config("scanobjectnn_hardest", scan_root, extra=["training.batch_size=1000"]), output=target)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# item 4: the lock
# --------------------------------------------------------------------------------------------


def test_a_second_run_on_a_locked_folder_fails_at_once_naming_folder_and_holder(run, tmp_path, tiny_config):
    before = snapshot(run)
    with RunFolderLock(run):  # a run is going on in this folder
        started = time.perf_counter()
        config, last = load_run_for_resume(run, [])
        with pytest.raises(ConfigError, match=rf"run folder {run} is in use by process {os.getpid()}"):
            finetune(config, output=run, resume=last)
        config["dataset"]["root"] = str(tmp_path / "never read")  # fails on the lock, before the data
        with pytest.raises(ConfigError, match="is in use by process"):
            finetune(config, output=run, overwrite=True)
        assert time.perf_counter() - started < 10
    assert not (run / LOCK_FILE).exists()  # released: the file goes with it
    assert snapshot(run) == before


def test_the_lock_is_held_during_the_run_and_released_at_the_end_also_on_ctrl_c(
    scan_root, tmp_path, tiny_config, monkeypatch
):
    seen = {}
    real_epoch = classification_module.train_one_epoch

    def epoch_that_checks_the_lock(*args, **kwargs):
        seen["lock"] = (tmp_path / "run" / LOCK_FILE).read_text().strip()
        with pytest.raises(ConfigError, match="in use"):
            RunFolderLock(tmp_path / "run").acquire()
        if args[7] == 1:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(classification_module, "train_one_epoch", epoch_that_checks_the_lock)
    summary = finetune(tiny_config("scanobjectnn_hardest", scan_root, extra=["training.max_epoch=1"]), tmp_path / "run")
    assert summary["status"] == "interrupted" and seen["lock"] == str(os.getpid())
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_a_lock_left_by_a_killed_process_does_not_block(run, tiny_config):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pcclora.engine.run_folder import RunFolderLock
                RunFolderLock({str(run)!r}).acquire()
                print("locked", flush=True)
                time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=rf"in use by process {holder.pid}"):
            RunFolderLock(run).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (run / LOCK_FILE).exists()  # SIGKILL leaves the file, but the OS released the lock
    config, last = load_run_for_resume(run, ["training.max_epoch=1"])
    assert finetune(config, output=run, resume=last)["epochs_run"] == 2
    assert not (run / LOCK_FILE).exists()


def test_without_fcntl_the_lock_is_an_exclusive_file_that_says_how_to_clear_it(tmp_path, monkeypatch):
    monkeypatch.setattr(run_folder_module, "fcntl", None)
    lock = RunFolderLock(tmp_path).acquire()
    assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    with pytest.raises(ConfigError, match=rf"in use by process {os.getpid()}.*delete {tmp_path / LOCK_FILE}"):
        RunFolderLock(tmp_path).acquire()
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()
    RunFolderLock(tmp_path).acquire().release()


# --------------------------------------------------------------------------------------------
# also noticed: metrics.csv, summary.json and config.yaml are written whole or not at all
# --------------------------------------------------------------------------------------------

ROW = {
    "epoch": 0,
    "lr": 1e-3,
    "train_loss": 1.0,
    "train_ce": 1.0,
    "train_sade": 0.0,
    "train_acc": 10.0,
    "test_oa": 20.0,
    "test_macc": 20.0,
    "epoch_seconds": 1.0,
}


def test_ctrl_c_while_metrics_csv_is_written_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    folder = RunFolder(tmp_path, use_tensorboard=False)
    folder.write_metrics([ROW])
    before = (tmp_path / "metrics.csv").read_bytes()
    calls = {"rows": 0}
    real_writerow = csv.DictWriter.writerow

    def interrupted_writerow(self, row):
        calls["rows"] += 1
        if calls["rows"] == 2:
            raise KeyboardInterrupt
        return real_writerow(self, row)

    monkeypatch.setattr(csv.DictWriter, "writerow", interrupted_writerow)
    with pytest.raises(KeyboardInterrupt):
        folder.write_metrics([ROW, {**ROW, "epoch": 1}, {**ROW, "epoch": 2}])
    assert (tmp_path / "metrics.csv").read_bytes() == before
    monkeypatch.undo()

    def interrupted_fsync(descriptor):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted_fsync)
    for write in (
        lambda: folder.write_metrics([ROW, {**ROW, "epoch": 1}]),
        lambda: folder.write_summary({"status": "changed"}),
        lambda: folder.write_config({"name": "changed"}),
    ):
        with pytest.raises(KeyboardInterrupt):
            write()
    monkeypatch.undo()
    assert (tmp_path / "metrics.csv").read_bytes() == before
    assert not (tmp_path / "summary.json").exists() and not (tmp_path / "config.yaml").exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoints", "metrics.csv"]  # no temporary left


def test_damaged_last_checkpoint_on_resume_is_one_error_and_changes_nothing(run, capsys):
    path = run / "checkpoints" / "last.pth"
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    before = snapshot(run)
    code, _, err = run_finetune_tool(["--output", str(run), "--resume"], capsys)
    assert code == 2 and "cannot read checkpoint" in err and "last.pth" in err and "Traceback" not in err
    assert snapshot(run) == before
    with pytest.raises(CheckpointError):
        load_run_for_resume(run, [])


def test_the_default_folder_name_never_reuses_an_existing_folder(tmp_path, monkeypatch):
    from datetime import datetime

    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr(run_folder_module, "datetime", FrozenClock)
    monkeypatch.chdir(tmp_path)
    config = {"name": "demo", "training": {"seed": 0}}
    first = run_folder_module.default_output(config)
    assert first == Path("runs/demo/20260102-030405-seed0")
    first.mkdir(parents=True)
    assert run_folder_module.default_output(config) == Path("runs/demo/20260102-030405-seed0-2")
