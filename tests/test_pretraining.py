"""Pre-training on the shared engine: run folder, checkpoints in the official layout, resume, validation
by linear probe, the tool's messages, DDP."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import backbones
from backbones.errors import ConfigError, NonFiniteError
from pcclora.config import load_config
from pcclora.engine import evaluate_checkpoint, finetune, load_run_for_resume
from pcclora.engine import pretraining as pretraining_module
from pcclora.engine.checkpoint import read_run_checkpoint
from pcclora.engine.probe import fit_linear_probe, linear_probe_accuracy

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"


@pytest.fixture(scope="module")
def data(tmp_path_factory, write_shapenet55, write_modelnet40_dat):
    root = tmp_path_factory.mktemp("pretraining-data")
    return write_shapenet55(root / "ShapeNet55-34"), write_modelnet40_dat(root / "modelnet")


@pytest.fixture(scope="module")
def config_of(data, tiny_pretrain_overrides):
    shapenet, modelnet = data

    def make(*extra: str, probe: bool = True) -> dict:
        overrides = tiny_pretrain_overrides(shapenet, modelnet if probe else None, extra=extra)
        return load_config("pretrain_shapenet55", overrides)

    return make


@pytest.fixture(scope="module")
def finished(config_of, tmp_path_factory):
    output = tmp_path_factory.mktemp("runs") / "pretrain"
    summary = finetune(config_of(), output=output, export="")
    return output, summary


def test_the_packaged_config_is_the_official_recipe():
    config = load_config("pretrain_shapenet55")
    assert config["task"] == "pretraining" and config["peft"]["method"] == "full"
    assert config["dataset"]["name"] == "shapenet55" and config["dataset"]["npoints"] == 1024
    assert config["backbone"]["num_group"] == 64 and config["backbone"]["group_size"] == 32
    assert config["optimizer"] == {"name": "adamw", "lr": 0.001, "weight_decay": 0.05}
    assert config["scheduler"]["epochs"] == 300 and config["scheduler"]["warmup_epochs"] == 10
    assert config["training"]["max_epoch"] == 300 and config["training"]["batch_size"] == 128
    assert config["training"]["grad_clip"] == 0.0
    assert {k: config["pretraining"][k] for k in ("mask_ratio", "mask_type", "loss")} == {
        "mask_ratio": 0.6,
        "mask_type": "rand",
        "loss": "cdl2",
    }
    options = pretraining_module.pretrainer_options(config)
    assert backbones.create_pretrainer("point_mae", **options).config == backbones.pretrainer_defaults("point_mae")


def test_run_folder_metrics_and_summary(finished):
    output, summary = finished
    for name in ("config.yaml", "log.txt", "metrics.csv", "summary.json", "curves.png", "confusion.png"):
        assert (output / name).is_file(), name
    assert (output / "checkpoints" / "last.pth").is_file() and (output / "model_pretrained.pth").is_file()
    rows = list(csv.DictReader(open(output / "metrics.csv")))
    assert list(rows[0]) == ["epoch", "lr", "train_loss", "probe_oa", "probe_macc", "epoch_seconds"]
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    written = json.loads((output / "summary.json").read_text())
    assert written["task"] == "pretraining" and written["method"] == "full" and written["status"] == "finished"
    assert written["params_trainable"] == written["params_total"] and written["num_classes"] == 40
    assert {"best_probe_oa", "last_probe_oa", "best_probe_macc", "best_epoch"} <= set(written)
    assert float(rows[-1]["probe_oa"]) == pytest.approx(written["last_probe_oa"], abs=1e-4)
    log = (output / "log.txt").read_text()
    assert "Chamfer loss" in log and "probe OA" in log and "RANDOM" not in log


def test_checkpoints_are_the_official_pre_training_layout(finished):
    output, _ = finished
    last = read_run_checkpoint(output / "checkpoints" / "last.pth")
    assert "adapter" not in last and set(last["base_model"]) >= {"mask_token", "increase_dim.0.weight"}
    assert any(key.startswith("MAE_encoder.blocks.blocks.1.") for key in last["base_model"])
    exported = torch.load(output / "model_pretrained.pth")
    assert set(exported) == {"base_model", "pcclora_model"}
    assert all(torch.equal(value, last["base_model"][key]) for key, value in exported["base_model"].items())
    # both load into the classifier as the official pretrain.pth does; the sizes travel with the file
    for path in (output / "model_pretrained.pth", output / "checkpoints" / "last.pth"):
        model = backbones.create_backbone("point_mae", num_classes=5, checkpoint=path)
        report = model.checkpoint_report
        assert model.trans_dim == 32 and model.depth == 2 and report.layout == "point_mae_pretrain"
        assert sorted({key.split(".")[0] for key in report.missing}) == ["cls_head_finetune", "cls_pos", "cls_token"]
        assert sorted({key.split(".")[0] for key in report.unexpected}) == [
            "MAE_decoder",
            "decoder_pos_embed",
            "increase_dim",
            "mask_token",
        ]
    # and strictly into the pre-training network, to continue pre-training
    again = backbones.create_pretrainer("point_mae", checkpoint=output / "model_pretrained.pth")
    assert again.checkpoint_report.layout == "point_mae_pretrainer" and again.num_group == 16


def test_test_tool_path_reproduces_the_logged_probe_accuracy(finished):
    output, summary = finished
    result = evaluate_checkpoint(output / "checkpoints" / "last.pth")
    assert result["probe_oa"] == pytest.approx(summary["last_probe_oa"])
    assert result["probe_macc"] == pytest.approx(summary["last_probe_macc"])
    assert result["num_samples"] == 40 and len(result["per_class"]) == 40


def test_a_pre_trained_network_predicts_no_class(finished):
    from pcclora.engine.model_source import load_model_for_inference

    output, _ = finished
    for path in (output / "checkpoints" / "last.pth", output / "model_pretrained.pth"):
        with pytest.raises(ConfigError, match="without a classification head.*fine-tune it first"):
            load_model_for_inference(path)


def test_resume_ends_with_the_same_history_and_weights_as_a_straight_run(config_of, tmp_path):
    finetune(config_of("training.max_epoch=2"), output=tmp_path / "a")
    finetune(config_of("training.max_epoch=1"), output=tmp_path / "b")
    config, last = load_run_for_resume(tmp_path / "b", ["training.max_epoch=2"])
    finetune(config, output=tmp_path / "b", resume=last)
    a = read_run_checkpoint(tmp_path / "a" / "checkpoints" / "last.pth")
    b = read_run_checkpoint(tmp_path / "b" / "checkpoints" / "last.pth")
    strip = lambda rows: [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]  # noqa: E731
    assert strip(a["history"]) == strip(b["history"]) and len(a["history"]) == 3
    for key, value in a["base_model"].items():
        assert torch.equal(value, b["base_model"][key]), key


def test_validation_every_n_epochs_and_none(config_of, tmp_path):
    summary = finetune(config_of("training.max_epoch=3", "pretraining.val_every=2"), output=tmp_path / "n")
    rows = list(csv.DictReader(open(tmp_path / "n" / "metrics.csv")))
    assert [row["probe_oa"] != "" for row in rows] == [True, False, True, True]  # epochs 0, 2 and the last
    assert summary["best_epoch"] in (0, 2, 3) and summary["last_epoch"] == 3
    none = finetune(config_of(probe=False), output=tmp_path / "none")  # no probe set needed at all
    assert none["status"] == "finished" and "best_epoch" not in none and none["epochs_run"] == 2
    assert (tmp_path / "none" / "checkpoints" / "last.pth").is_file()
    assert "none evaluated yet" in (tmp_path / "none" / "log.txt").read_text()


def test_wrong_method_missing_probe_and_unlabeled_fine_tuning_are_refused(config_of, tmp_path, tiny_config, data):
    with pytest.raises(ConfigError, match="peft.method must be 'full'"):
        finetune(config_of("peft.method=clora"), output=tmp_path / "x")
    with pytest.raises(ConfigError, match="no data folder for the linear probe's modelnet40.*--probe-root"):
        finetune(config_of("pretraining.probe.root=null"), output=tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    shapenet, _ = data
    fine_tune = tiny_config("scanobjectnn_hardest", shapenet, extra=["dataset.name=shapenet55"])
    with pytest.raises(ConfigError, match="'shapenet55' is a pre-training set without classes"):
        finetune(fine_tune, output=tmp_path / "z")


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_epoch(config_of, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = backbones.PointMAEPretrainer.forward

    def diverging(self, points, mask=None, generator=None):
        calls["n"] += 1
        loss = original(self, points, mask, generator)
        return loss * float("nan") if calls["n"] > 3 else loss  # 3 batches per epoch: epoch 1 diverges

    monkeypatch.setattr(backbones.PointMAEPretrainer, "forward", diverging)
    with pytest.raises(NonFiniteError, match=r"training loss is nan at epoch 1.*last\.pth \(epoch 0\)"):
        finetune(config_of(), output=tmp_path / "nan")
    assert read_run_checkpoint(tmp_path / "nan" / "checkpoints" / "last.pth")["epoch"] == 0


def test_ctrl_c_keeps_the_finished_epochs_and_the_run_resumes(config_of, tmp_path, monkeypatch):
    original = pretraining_module.PretrainingTask.train_epoch

    def interrupted(self, *args, **kwargs):
        if kwargs.get("epoch", args[7] if len(args) > 7 else None) == 1:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pretraining_module.PretrainingTask, "train_epoch", interrupted)
    summary = finetune(config_of(), output=tmp_path / "c")
    assert summary["status"] == "interrupted" and summary["epochs_run"] == 1
    assert "python tools/pretrain.py --output" in (tmp_path / "c" / "log.txt").read_text()
    monkeypatch.undo()
    config, last = load_run_for_resume(tmp_path / "c", [])
    assert finetune(config, output=tmp_path / "c", resume=last)["epochs_run"] == 2


def test_the_probe_separates_separable_classes_deterministically():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 10, generator=generator) * 5
    labels = torch.arange(200) % 4
    features = centres[labels] + torch.randn(200, 10, generator=generator)
    accuracy = linear_probe_accuracy(features[:120], labels[:120], features[120:], labels[120:], 4)
    assert accuracy.overall == 100.0 and accuracy.confusion.sum() == 80
    first, second = fit_linear_probe(features, labels, 4), fit_linear_probe(features, labels, 4)
    assert torch.equal(first.weight, second.weight) and first.iterations > 0
    strong = fit_linear_probe(features, labels, 4, l2=10.0)
    assert strong.weight.norm() < first.weight.norm()


def _tool(name: str, args: list[str], cwd: Path, timeout: int = 300, env: dict | None = None):
    return subprocess.run(
        [sys.executable, str(TOOLS / f"{name}.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_the_tool_without_data_names_the_layout_and_with_data_runs(tmp_path, data, tiny_pretrain_overrides):
    missing = _tool("pretrain", ["--cfg", "pretrain_shapenet55.yaml"], tmp_path)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.startswith("error: the ShapeNet-55 root")
    assert "ShapeNet-55/train.txt" in missing.stderr and "make_synthetic.py --format shapenet55" in missing.stderr
    shapenet, modelnet = data
    overrides = [o for o in tiny_pretrain_overrides(shapenet, modelnet) if not o.startswith(("dataset.root", "pre"))]
    overrides.append("pretraining.probe.npoints=64")
    done = _tool(
        "pretrain",
        ["--cfg", "pretrain_shapenet55.yaml", "--data-root", str(shapenet), "--probe-root", str(modelnet)]
        + ["--output", "run", "--set", *overrides, "training.max_epoch=0"],
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "summary (finished): best probe OA" in done.stdout
    wrong = _tool("pretrain", ["--cfg", "scanobjectnn_hardest"], tmp_path)
    assert wrong.returncode == 2 and "task: classification, which python tools/finetune.py runs" in wrong.stderr
    other = _tool("finetune", ["--cfg", "pretrain_shapenet55"], tmp_path)
    assert other.returncode == 2 and "task: pretraining, which python tools/pretrain.py runs" in other.stderr


def test_two_processes_under_torchrun_with_gloo(tmp_path, data, tiny_pretrain_overrides):
    shapenet, modelnet = data
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        + [str(TOOLS / "pretrain.py"), "--cfg", "pretrain_shapenet55", "--output", str(tmp_path / "ddp")]
        + ["--device", "cpu", "--set", *tiny_pretrain_overrides(shapenet, modelnet)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "processes 2" in result.stdout and result.stdout.count("summary (finished)") == 1
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    single = evaluate_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pth")  # the ranks' shards = the whole set
    assert single["probe_oa"] == pytest.approx(summary["last_probe_oa"])
