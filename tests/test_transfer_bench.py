"""The transfer bench: pre-trained and random runs of each method, reused and resumed, one table."""

from __future__ import annotations

import csv

import pytest
import torch

from backbones import create_pretrainer
from backbones.errors import ConfigError
from pcclora import transfer
from pcclora.engine import runner as runner_module
from pcclora.engine.checkpoint import read_run_checkpoint


@pytest.fixture(scope="module")
def setup(tmp_path_factory, write_scanobjectnn, tiny_overrides):
    root = tmp_path_factory.mktemp("transfer")
    scan = write_scanobjectnn(root / "scan")
    torch.manual_seed(0)
    pretrainer = create_pretrainer(
        "point_mae",
        trans_dim=32,
        encoder_dims=32,
        depth=2,
        num_heads=2,
        num_group=16,
        group_size=8,
        decoder_depth=1,
        decoder_num_heads=2,
    )
    checkpoint = root / "pretrained.pth"
    torch.save({"base_model": pretrainer.state_dict()}, checkpoint)
    overrides = [*tiny_overrides(scan), f"backbone.checkpoint={checkpoint}", "backbone.pretrained=false"]
    return root, overrides, pretrainer


def test_each_method_runs_from_both_inits_and_the_table_says_so(setup, tmp_path):
    _, overrides, pretrainer = setup
    runs = transfer.run_transfer_bench(
        "transfer_tiny_synthetic", tmp_path, ["linear", "clora"], [0], [*overrides, "training.max_epoch=1"]
    )
    assert [(run.method, run.init) for run in runs] == [
        ("linear", "pretrained"),
        ("linear", "random"),
        ("clora", "pretrained"),
        ("clora", "random"),
    ]
    assert all(run.summary["status"] == "finished" and run.summary["epochs_run"] == 2 for run in runs)
    # the pre-trained runs start from the file, the random ones from seeded random weights
    assert runs[0].summary["backbone_checkpoint"] and runs[1].summary["backbone_checkpoint"] is None
    assert (
        "RANDOM" in (runs[1].folder / "log.txt").read_text()
        and "point_mae_pretrain" in (runs[0].folder / "log.txt").read_text()
    )
    table = transfer.write_transfer_table(runs, tmp_path)
    assert "pre-trained last OA" in table and "clora" in table
    rows = list(csv.DictReader(open(tmp_path / "transfer.csv")))
    assert len(rows) == 4 and {row["init"] for row in rows} == {"pretrained", "random"}
    markdown = (tmp_path / "transfer.md").read_text()
    assert markdown.startswith("| method | trainable |") and markdown.count("\n") == 4
    # a second call reuses every finished run
    messages: list[str] = []
    again = transfer.run_transfer_bench(
        "transfer_tiny_synthetic",
        tmp_path,
        ["linear", "clora"],
        [0],
        [*overrides, "training.max_epoch=1"],
        messages.append,
    )
    assert all("reused" in message for message in messages) and len(again) == 4


def test_an_interrupted_bench_resumes_where_it_stopped(setup, tmp_path, monkeypatch):
    _, overrides, _ = setup
    original = runner_module._commit_epoch
    calls = {"n": 0}

    def interrupt_in_the_second_run(*args, **kwargs):
        calls["n"] += 1
        original(*args, **kwargs)
        if calls["n"] == 3:  # the second run's first epoch is saved, then Ctrl-C
            raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "_commit_epoch", interrupt_in_the_second_run)
    arguments = ("transfer_tiny_synthetic", tmp_path, ["linear"], [0], [*overrides, "training.max_epoch=1"])
    with pytest.raises(ConfigError, match="linear-random-seed0 ended with status 'interrupted'"):
        transfer.run_transfer_bench(*arguments)
    monkeypatch.undo()
    messages: list[str] = []
    runs = transfer.run_transfer_bench(*arguments, log=messages.append)
    assert messages == [
        "linear-pretrained-seed0: finished earlier, reused",
        "linear-random-seed0: resuming after epoch 0",
    ]
    assert read_run_checkpoint(runs[1].folder / "checkpoints" / "last.pth")["epoch"] == 1


def test_the_bench_refuses_unknown_methods_and_a_config_without_pre_trained_weights(setup, tmp_path):
    _, overrides, _ = setup
    with pytest.raises(ConfigError, match="unknown method"):
        transfer.run_transfer_bench("transfer_tiny_synthetic", tmp_path, ["clora", "adapter"])
    plain = [o for o in overrides if not o.startswith("backbone.checkpoint")]
    with pytest.raises(ConfigError, match="needs pre-trained weights"):
        transfer.run_transfer_bench("transfer_tiny_synthetic", tmp_path, ["linear"], [0], plain)
    assert not any(tmp_path.iterdir())
