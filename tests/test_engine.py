"""The training engine on miniature official-layout data with tiny models.

Covers: a 1-epoch run for each dataset family, the run folder, resume equality, export and
reload, voting (logits averaged, never a maximum), the non-finite-loss stop, Ctrl-C, metrics,
label smoothing and atomic checkpoint writing.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import backbones
import pcclora
from pcclora.engine import classification as classification_module
from pcclora.engine import evaluate_checkpoint, finetune, load_run_for_resume
from pcclora.engine import runner as runner_module
from pcclora.engine.checkpoint import read_run_checkpoint, save_atomic
from pcclora.engine.distributed import init_distributed
from pcclora.engine.evaluate import evaluate_votes
from pcclora.engine.losses import classification_loss
from pcclora.engine.metrics import Accuracy
from pcclora.engine.trainer import NonFiniteLossError

SUMMARY_KEYS = {
    "num_classes",
    "best_epoch",
    "best_oa",
    "best_macc",
    "last_oa",
    "last_macc",
    "params_total",
    "params_trainable",
    "method",
    "status",
}


@pytest.fixture(scope="module")
def scan_root(tmp_path_factory, write_scanobjectnn):
    return write_scanobjectnn(tmp_path_factory.mktemp("scan") / "ScanObjectNN")


@pytest.fixture(scope="module")
def finished_run(scan_root, tmp_path_factory, tiny_config):
    """A 2-epoch CLoRA run on ScanObjectNN layout, with voting and export at the end."""
    output = tmp_path_factory.mktemp("runs") / "clora"
    config = tiny_config("scanobjectnn_hardest", scan_root, extra=["training.max_epoch=1", "training.vote=2"])
    summary = finetune(config, output=output, export="")
    return output, config, summary


def test_run_folder_holds_config_metrics_summary_plots_and_checkpoints(finished_run):
    output, config, summary = finished_run
    for name in (
        "config.yaml",
        "log.txt",
        "metrics.csv",
        "summary.json",
        "curves.png",
        "confusion.png",
        "checkpoints/last.pth",
        "checkpoints/best.pth",
        "model_merged.pth",
    ):
        assert (output / name).is_file(), name
    written = json.loads((output / "summary.json").read_text())
    assert SUMMARY_KEYS | {"vote_oa"} <= set(written)
    assert written["num_classes"] == 15 and written["method"] == "clora" and written["epochs_run"] == 2
    rows = list(csv.DictReader(open(output / "metrics.csv")))
    assert [int(row["epoch"]) for row in rows] == [0, 1]
    assert float(rows[-1]["test_oa"]) == pytest.approx(written["last_oa"], abs=1e-4)
    assert written["param_groups"]["bases"] > 0 and written["params_trainable"] < written["params_total"]


def test_checkpoint_holds_only_trained_tensors_and_resume_state(finished_run):
    output, _, _ = finished_run
    checkpoint = read_run_checkpoint(output / "checkpoints" / "last.pth")
    assert {"adapter", "optimizer", "rng", "config", "epoch", "history"} <= set(checkpoint)
    assert checkpoint["epoch"] == 1
    keys = [key for key in checkpoint["adapter"] if key != "peft_config"]
    assert any("cls_head_finetune" in key for key in keys)
    assert not any(key.startswith("blocks.blocks.0.attn.qkv.base_layer") or key.startswith("encoder.") for key in keys)
    assert {"python", "numpy", "torch"} <= set(checkpoint["rng"])


def test_resume_after_an_interruption_ends_with_the_same_metrics_as_a_straight_run(scan_root, tmp_path, tiny_config):
    straight = finetune(
        tiny_config("scanobjectnn_hardest", scan_root, extra=["training.max_epoch=2"]), output=tmp_path / "a"
    )
    finetune(tiny_config("scanobjectnn_hardest", scan_root, extra=["training.max_epoch=1"]), output=tmp_path / "b")
    config, last = load_run_for_resume(tmp_path / "b", ["training.max_epoch=2"])
    resumed = finetune(config, output=tmp_path / "b", resume=last)
    history_a = read_run_checkpoint(tmp_path / "a" / "checkpoints" / "last.pth")["history"]
    history_b = read_run_checkpoint(tmp_path / "b" / "checkpoints" / "last.pth")["history"]
    strip = lambda rows: [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]  # noqa: E731
    assert strip(history_a) == strip(history_b)
    for key in ("best_oa", "last_oa", "last_macc", "best_epoch"):
        assert straight[key] == resumed[key]
    adapters_a = read_run_checkpoint(tmp_path / "a" / "checkpoints" / "last.pth")["adapter"]
    adapters_b = read_run_checkpoint(tmp_path / "b" / "checkpoints" / "last.pth")["adapter"]
    for key, value in adapters_a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, adapters_b[key]), key


def test_export_and_run_checkpoint_are_self_contained(finished_run, monkeypatch, tmp_path):
    """Sizes, classes and points travel with the files; relative paths were made absolute."""
    output, config, _ = finished_run
    info = torch.load(output / "model_merged.pth", map_location="cpu")["pcclora_model"]
    assert info["backbone"] == "point_mae" and info["num_classes"] == 15 and len(info["class_names"]) == 15
    assert info["sizes"]["trans_dim"] == 32 and info["npoints"] == config["dataset"]["npoints"]
    monkeypatch.chdir(tmp_path)  # another folder: nothing may depend on the working folder
    plain = backbones.create_backbone("point_mae", checkpoint=output / "model_merged.pth")  # no sizes given
    assert plain.num_classes == 15 and plain.trans_dim == 32 and plain.class_names == info["class_names"]
    saved = read_run_checkpoint(output / "checkpoints" / "best.pth")
    assert saved["pcclora_model"]["class_names"] == info["class_names"]
    assert Path(saved["config"]["dataset"]["root"]).is_absolute()
    result = evaluate_checkpoint(output / "checkpoints" / "best.pth")
    assert result["num_samples"] > 0 and not (tmp_path / "data").exists()


def test_export_loads_strictly_into_a_plain_backbone_with_the_same_logits(finished_run):
    output, config, _ = finished_run
    exported = torch.load(output / "model_merged.pth", map_location="cpu")
    assert list(exported) == ["base_model", "pcclora_model"]  # official layout + how to rebuild it
    assert not any("lora" in key or "base_layer" in key for key in exported["base_model"])
    sizes = {
        key: config["backbone"][key]
        for key in ("trans_dim", "depth", "num_heads", "num_group", "group_size", "encoder_dims")
    }
    plain = backbones.create_backbone(
        "point_mae", num_classes=15, checkpoint=output / "model_merged.pth", **sizes
    ).eval()
    assert backbones.load_checkpoint(plain, output / "model_merged.pth", strict=True).missing == []
    from pcclora.engine.model import build_model

    adapted = build_model(config, 15, log=lambda message: None)
    pcclora.load_adapter_state_dict(adapted, read_run_checkpoint(output / "checkpoints" / "last.pth")["adapter"])
    points = torch.rand(3, 64, 3)
    with torch.no_grad():
        torch.testing.assert_close(plain(points), adapted.eval()(points), rtol=1e-4, atol=1e-5)


def test_test_tool_path_reproduces_the_logged_accuracy_and_votes(finished_run, tmp_path):
    output, _, summary = finished_run
    result = evaluate_checkpoint(output / "checkpoints" / "last.pth", votes=2, export=tmp_path / "m.pth")
    assert result["oa"] == pytest.approx(summary["last_oa"])
    assert result["macc"] == pytest.approx(summary["last_macc"])
    assert result["vote_oa"] == pytest.approx(summary["vote_oa"])  # same seed, same votes
    assert torch.load(tmp_path / "m.pth").keys() == {"base_model", "pcclora_model"}  # + how to rebuild it
    per_class = result["per_class"]
    assert len(per_class) == 15 and sum(row["samples"] for row in per_class) == result["num_samples"]
    assert per_class[0]["class"] == "bag"
    tested = [row for row in per_class if row["samples"]]
    correct = sum(row["accuracy"] * row["samples"] / 100 for row in tested)
    assert correct / result["num_samples"] * 100 == pytest.approx(result["oa"])


def test_summary_records_where_and_with_what_the_run_ran(finished_run):
    _, _, summary = finished_run
    origin = summary["provenance"]
    assert origin["pcclora_version"] == pcclora.__version__ and origin["torch_version"] == torch.__version__
    assert origin["started_utc"].endswith("+00:00") and origin["host"]
    assert origin["git_commit"] is None or len(origin["git_commit"].split("+")[0]) == 40


def test_damaged_or_incomplete_run_checkpoints_are_one_checkpoint_error(finished_run, tmp_path):
    output, _, _ = finished_run
    content = (output / "checkpoints" / "best.pth").read_bytes()
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(content[: len(content) // 2] + bytes(64) + content[len(content) // 2 + 64 :])
    with pytest.raises(backbones.CheckpointError, match=r"damaged.pth.*(CRC-32|truncated, corrupt)"):
        evaluate_checkpoint(damaged)
    incomplete = tmp_path / "incomplete.pth"
    state = read_run_checkpoint(output / "checkpoints" / "best.pth")
    del state["adapter"]
    state["history"] = "?"
    torch.save(state, incomplete)
    message = r"incomplete.pth is marked as a pcclora run checkpoint but its entries are wrong: 'adapter' \(missing"
    with pytest.raises(backbones.CheckpointError, match=message):
        evaluate_checkpoint(incomplete)
    with pytest.raises(backbones.CheckpointError, match=r"'history' \(str, expected list\)"):
        read_run_checkpoint(incomplete)


class _ScriptedLogits(nn.Module):
    """Returns, call after call, the scripted logits for the whole batch (ignores the points)."""

    def __init__(self, script: list[list[float]]) -> None:
        super().__init__()
        self.script = [torch.tensor(row) for row in script]
        self.calls = 0

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        logits = self.script[self.calls % len(self.script)]
        self.calls += 1
        return logits.expand(points.shape[0], -1)


def test_voting_averages_the_logits_of_the_votes_and_never_takes_a_maximum():
    # votes: [10, 0], [0, 6], [0, 6] -> mean [3.3, 4] -> class 1; a max over votes would say class 0
    model = _ScriptedLogits([[10.0, 0.0], [0.0, 6.0], [0.0, 6.0]])
    loader = DataLoader(TensorDataset(torch.rand(4, 80, 3), torch.ones(4, dtype=torch.long)), batch_size=4)
    augment = {"scale_low": 2 / 3, "scale_high": 1.5, "translate": 0.2}
    accuracy = evaluate_votes(
        model, loader, 64, 2, 3, augment, torch.Generator().manual_seed(0), init_distributed("cpu")
    )
    assert model.calls == 3
    assert accuracy.overall == 100.0


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(scan_root, tmp_path, monkeypatch, tiny_config):
    from pcclora.engine import trainer

    real_loss = trainer.classification_loss
    calls = {"count": 0}

    def loss_that_diverges(logits, labels, smoothing=0.0):
        calls["count"] += 1
        loss = real_loss(logits, labels, smoothing)
        return loss * math.nan if calls["count"] > 4 else loss  # 4 batches per epoch: epoch 1 diverges

    monkeypatch.setattr(trainer, "classification_loss", loss_that_diverges)
    config = tiny_config("scanobjectnn_hardest", scan_root, extra=["training.max_epoch=3"])
    with pytest.raises(NonFiniteLossError, match=r"nan at epoch 1, batch 0.*last good checkpoint is kept.*epoch 0"):
        finetune(config, output=tmp_path)
    assert read_run_checkpoint(tmp_path / "checkpoints" / "last.pth")["epoch"] == 0
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "stopped: non-finite loss"


def _all_finite(checkpoint_path) -> bool:
    adapter = read_run_checkpoint(checkpoint_path)["adapter"]
    return all(bool(value.isfinite().all()) for value in adapter.values() if isinstance(value, torch.Tensor))


def test_a_huge_lr_whose_nan_reaches_the_logits_before_the_loss_never_saves_that_epoch(
    scan_root, tmp_path, monkeypatch, tiny_config
):
    # The fault-injection case of issue 11: one AdamW step per epoch (batch 32 of 32 samples) at
    # lr 1e30 leaves weights that give NaN logits while the epoch's only loss was finite. The
    # config check now refuses such an lr (> 10); it is lifted here because the guard must hold
    # whatever made the values non-finite.
    monkeypatch.setattr(runner_module, "check_run_numbers", lambda config: None)
    config = tiny_config(
        "scanobjectnn_hardest", scan_root, extra=["training.max_epoch=4", "training.batch_size=32", "optimizer.lr=1e30"]
    )
    expected = (
        r"non-finite logits .* after epoch 2: training stopped; epoch 2 is not saved; the last good checkpoint "
        r"is kept: .*last.pth \(epoch 1\), and .*best.pth \(epoch 0\); their weights and test logits are finite"
    )
    with pytest.raises(NonFiniteLossError, match=expected):
        finetune(config, output=tmp_path / "run")
    checkpoints = tmp_path / "run" / "checkpoints"
    assert read_run_checkpoint(checkpoints / "last.pth")["epoch"] == 1
    assert _all_finite(checkpoints / "last.pth") and _all_finite(checkpoints / "best.pth")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "stopped: non-finite logits" and summary["last_epoch"] == 1
    assert [int(row["epoch"]) for row in csv.DictReader(open(tmp_path / "run" / "metrics.csv"))] == [0, 1]
    assert evaluate_checkpoint(checkpoints / "last.pth")["epoch"] == 1  # a real score of finite logits
    config, last = load_run_for_resume(tmp_path / "run", ["optimizer.lr=5e-4"])
    resumed = finetune(config, output=tmp_path / "run", resume=last)
    assert resumed["status"] == "finished" and resumed["last_epoch"] == 4
    assert _all_finite(checkpoints / "last.pth")


def test_nan_in_the_weights_after_an_epoch_stops_the_run_before_saving_it(
    scan_root, tmp_path, monkeypatch, tiny_config
):
    real_epoch = classification_module.train_one_epoch

    def epoch_whose_last_step_breaks_a_weight(*args, **kwargs):
        stats = real_epoch(*args, **kwargs)
        if args[7] == 1:
            with torch.no_grad():
                args[1].cls_token.fill_(math.nan)  # the core model's trained cls token
        return stats

    monkeypatch.setattr(classification_module, "train_one_epoch", epoch_whose_last_step_breaks_a_weight)
    config = tiny_config("scanobjectnn_hardest", scan_root, extra=["training.max_epoch=2"])
    with pytest.raises(NonFiniteLossError, match=r"trained tensors hold NaN or Inf after epoch 1 \(cls_token\)"):
        finetune(config, output=tmp_path)
    assert read_run_checkpoint(tmp_path / "checkpoints" / "last.pth")["epoch"] == 0
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "stopped: non-finite weights"


def test_an_evaluation_with_non_finite_logits_is_an_error_not_a_score(finished_run, tmp_path):
    output, _, _ = finished_run
    checkpoint = read_run_checkpoint(output / "checkpoints" / "best.pth")
    head = [key for key in checkpoint["adapter"] if key.startswith("cls_head_finetune") and key.endswith("weight")][-1]
    broken = {
        **checkpoint,
        "adapter": {**checkpoint["adapter"], head: torch.full_like(checkpoint["adapter"][head], math.nan)},
    }
    torch.save(broken, tmp_path / "nan.pth")
    with pytest.raises(NonFiniteLossError, match=rf"nan.pth \(epoch 0\) holds NaN or Inf in {head}.*has no accuracy"):
        evaluate_checkpoint(tmp_path / "nan.pth")
    huge = {
        **checkpoint,
        "adapter": {**checkpoint["adapter"], head: torch.full_like(checkpoint["adapter"][head], 3e38)},
    }
    torch.save(huge, tmp_path / "huge.pth")  # finite weights whose logits overflow
    with pytest.raises(NonFiniteLossError, match=r"huge.pth: the model gives non-finite logits .* not a score"):
        evaluate_checkpoint(tmp_path / "huge.pth")
    loader = DataLoader(TensorDataset(torch.rand(4, 80, 3), torch.ones(4, dtype=torch.long)), batch_size=2)
    context = init_distributed("cpu")
    with pytest.raises(NonFiniteLossError, match="non-finite logits .* on 4 of 4 test samples"):
        classification_module.evaluate(_ScriptedLogits([[math.nan, 0.0]]), loader, 64, 2, context)
    augment = {"scale_low": 2 / 3, "scale_high": 1.5, "translate": 0.2}
    one_bad_vote = _ScriptedLogits([[1.0, 0.0], [math.inf, 0.0]])
    with pytest.raises(NonFiniteLossError, match="non-finite logits"):
        evaluate_votes(one_bad_vote, loader, 64, 2, 2, augment, torch.Generator().manual_seed(0), context)


def test_ctrl_c_keeps_the_finished_epochs_and_the_run_resumes(scan_root, tmp_path, monkeypatch, tiny_config):
    real_epoch = classification_module.train_one_epoch

    def interrupted_epoch(*args, **kwargs):
        if args[7] == 1:  # the epoch argument
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(classification_module, "train_one_epoch", interrupted_epoch)
    config = tiny_config("scanobjectnn_hardest", scan_root, extra=["training.max_epoch=1"])
    summary = finetune(config, output=tmp_path)
    assert summary["status"] == "interrupted" and summary["epochs_run"] == 1
    monkeypatch.setattr(classification_module, "train_one_epoch", real_epoch)
    config, last = load_run_for_resume(tmp_path, [])
    assert finetune(config, output=tmp_path, resume=last)["epochs_run"] == 2


@pytest.mark.parametrize("where", ["write_metrics", "plot_curves"])
def test_ctrl_c_right_after_an_epoch_is_saved_keeps_its_log_line_and_names_it(
    scan_root, tmp_path, monkeypatch, tiny_config, where
):
    from pcclora.engine.run_folder import RunFolder

    real = {"write_metrics": RunFolder.write_metrics, "plot_curves": runner_module.plot_curves}[where]
    calls = {"interrupted": 0}

    def interrupted(*args, **kwargs):  # Ctrl-C once, while epoch 1's files are written
        history = args[1] if where == "write_metrics" else args[0]
        if history[-1]["epoch"] == 1 and not calls["interrupted"]:
            calls["interrupted"] += 1
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    if where == "write_metrics":
        monkeypatch.setattr(RunFolder, "write_metrics", interrupted)
    else:
        monkeypatch.setattr(runner_module, "plot_curves", interrupted)
    config = tiny_config("scanobjectnn_hardest", scan_root, extra=["training.max_epoch=2"])
    summary = finetune(config, output=tmp_path)
    monkeypatch.undo()
    assert summary["status"] == "interrupted" and summary["epochs_run"] == 2 and summary["last_epoch"] == 1
    log = (tmp_path / "log.txt").read_text()
    assert "epoch   1/2" in log
    assert f"interrupted after epoch 1 was saved: {tmp_path / 'checkpoints' / 'last.pth'} holds epoch 1" in log
    assert read_run_checkpoint(tmp_path / "checkpoints" / "last.pth")["epoch"] == 1
    assert [int(row["epoch"]) for row in csv.DictReader(open(tmp_path / "metrics.csv"))] == [0, 1]
    config, last = load_run_for_resume(tmp_path, [])
    assert finetune(config, output=tmp_path, resume=last)["epochs_run"] == 3


def test_a_real_ctrl_c_while_an_epoch_is_saved_waits_until_the_epoch_is_saved_and_logged(
    scan_root, tmp_path, monkeypatch, tiny_config
):
    real_save = runner_module.save_atomic

    def save_with_ctrl_c(state, path):
        if state["epoch"] == 1 and path.name == "last.pth":
            os.kill(os.getpid(), signal.SIGINT)  # the signal arrives while the checkpoints are written
        return real_save(state, path)

    monkeypatch.setattr(runner_module, "save_atomic", save_with_ctrl_c)
    summary = finetune(tiny_config("scanobjectnn_hardest", scan_root, extra=["training.max_epoch=2"]), output=tmp_path)
    assert summary["status"] == "interrupted" and summary["last_epoch"] == 1
    log = (tmp_path / "log.txt").read_text()
    assert "epoch   1/2" in log and "interrupted after epoch 1 was saved" in log
    assert read_run_checkpoint(tmp_path / "checkpoints" / "last.pth")["epoch"] == 1


def test_ctrl_c_during_an_epoch_names_the_epoch_the_checkpoint_holds(scan_root, tmp_path, monkeypatch, tiny_config):
    real_epoch = classification_module.train_one_epoch

    def interrupted_epoch(*args, **kwargs):
        if args[7] == 2:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(classification_module, "train_one_epoch", interrupted_epoch)
    finetune(tiny_config("scanobjectnn_hardest", scan_root, extra=["training.max_epoch=2"]), output=tmp_path)
    log = (tmp_path / "log.txt").read_text()
    assert (
        f"interrupted during epoch 2: {tmp_path / 'checkpoints' / 'last.pth'} holds epoch 1, the last finished" in log
    )


@pytest.mark.parametrize(
    ("config_name", "writer", "extra"),
    [
        ("modelnet40", "write_modelnet40_dat", ["training.deterministic=true"]),
        (
            "point_bert_modelnet40_fewshot",
            "write_fewshot",
            ["dataset.shot=2", "peft.method=lora", "training.batch_size=5"],
        ),
        ("point_bert_scanobjectnn_objbg", None, ["peft.method=full", "dataset.augment.rotate_y=true"]),
    ],
)
def test_one_epoch_on_each_dataset_family(config_name, writer, extra, scan_root, tmp_path, tiny_config, request):
    if writer is None:  # ScanObjectNN OBJ_BG layout: main_split/{training,test}_objectdataset.h5
        root = scan_root.parent / "objbg"
        (root / "main_split").mkdir(parents=True, exist_ok=True)
        for split in ("training", "test"):
            target = root / "main_split" / f"{split}_objectdataset.h5"
            if not target.exists():
                target.symlink_to(scan_root / "main_split" / f"{split}_objectdataset_augmentedrot_scale75.h5")
    else:
        root = request.getfixturevalue(writer)(tmp_path / "data")
    config = tiny_config(config_name, root, extra=extra)
    summary = finetune(config, output=tmp_path / "run")
    assert summary["status"] == "finished" and summary["epochs_run"] == 1
    assert 0.0 <= summary["last_oa"] <= 100.0
    expected_classes = {"modelnet40": 40, "point_bert_modelnet40_fewshot": 5, "point_bert_scanobjectnn_objbg": 15}
    assert summary["num_classes"] == expected_classes[config_name]
    assert torch.are_deterministic_algorithms_enabled() is False  # the run restores the global switch


def test_missing_backbone_checkpoint_names_the_file_and_where_to_get_it(scan_root, tmp_path, tiny_config):
    config = tiny_config("scanobjectnn_hardest", scan_root, extra=[f"backbone.checkpoint={tmp_path / 'pretrain.pth'}"])
    with pytest.raises(backbones.CheckpointError, match=r"pretrain\.pth not found.*Point-MAE.*--ckpt"):
        finetune(config, output=tmp_path / "run")


def test_accuracy_from_predictions():
    accuracy = Accuracy.from_predictions(torch.tensor([0, 0, 1, 2, 2]), torch.tensor([0, 1, 1, 2, 2]), 4)
    assert accuracy.overall == pytest.approx(80.0)
    assert accuracy.mean_class == pytest.approx(100 * (1 + 0.5 + 1) / 3)  # class 3 absent: not averaged
    assert accuracy.confusion.tolist()[1] == [1, 1, 0, 0]


def test_label_smoothing_gives_the_target_one_minus_eps_and_the_rest_eps_over_c_minus_one():
    logits = torch.randn(4, 5)
    labels = torch.tensor([0, 3, 4, 1])
    target = torch.full((4, 5), 0.2 / 4)
    target[torch.arange(4), labels] = 0.8
    expected = -(target * torch.log_softmax(logits, 1)).sum(1).mean()
    torch.testing.assert_close(classification_loss(logits, labels, 0.2), expected)
    torch.testing.assert_close(classification_loss(logits, labels), nn.functional.cross_entropy(logits, labels))


def test_atomic_save_leaves_the_previous_file_when_writing_fails(tmp_path, monkeypatch):
    path = save_atomic({"epoch": 1}, tmp_path / "last.pth")

    def failing_save(obj, stream):
        stream.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        save_atomic({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


@pytest.mark.parametrize("folder_existed", [False, True])
def test_ctrl_c_in_epoch_0_says_there_is_nothing_to_resume_and_leaves_no_half_made_run(
    scan_root, tmp_path, monkeypatch, tiny_config, capsys, folder_existed
):
    def interrupted_epoch(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(classification_module, "train_one_epoch", interrupted_epoch)
    output = tmp_path / "run"
    if folder_existed:
        output.mkdir()
        (output / "notes.txt").write_text("mine")
    summary = finetune(tiny_config("scanobjectnn_hardest", scan_root), output=output)
    assert summary["status"] == "interrupted" and summary["epochs_run"] == 0
    printed = capsys.readouterr().out
    assert "before any epoch finished: there is nothing to resume" in printed and "--resume" not in printed
    if folder_existed:
        assert sorted(path.name for path in output.iterdir()) == ["notes.txt"]
        assert f"the run's files were removed from {output}" in printed
    else:
        assert not output.exists() and f"the run folder {output} was removed" in printed
    monkeypatch.undo()
    assert finetune(tiny_config("scanobjectnn_hardest", scan_root), output=output)["status"] == "finished"


def test_the_task_is_named_by_the_config_and_an_unknown_one_is_refused(scan_root, tmp_path, tiny_config):
    from pcclora.engine.task import get_task, list_tasks

    assert "classification" in list_tasks() and get_task("classification").primary.key == "test_oa"
    config = tiny_config("scanobjectnn_hardest", scan_root, extra=["task=clasification"])
    with pytest.raises(
        backbones.UnknownNameError, match="unknown task 'clasification' \\(did you mean 'classification'"
    ):
        finetune(config, output=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_run_files_get_the_permissions_of_any_other_file(finished_run, tmp_path):
    output, _, _ = finished_run
    probe = tmp_path / "probe"
    probe.write_text("x")  # what open(path, "w") gives under this umask (0644 under the usual 022)
    expected = probe.stat().st_mode & 0o777
    for name in ("checkpoints/last.pth", "checkpoints/best.pth", "model_merged.pth", "metrics.csv", "summary.json"):
        assert (output / name).stat().st_mode & 0o777 == expected, name


# --------------------------------------------------------------------------------------------
# the loss: CE + the method's regularisers
# --------------------------------------------------------------------------------------------


def test_clora_logs_its_weighted_sade_as_the_regulariser_and_the_loss_adds_it(finished_run):
    output, config, _ = finished_run
    rows = list(csv.DictReader(open(output / "metrics.csv")))
    weight = config["peft"]["sade_weight"]
    for row in rows:
        assert float(row["train_reg"]) == pytest.approx(weight * float(row["train_sade"]), rel=1e-4, abs=1e-7)
        assert float(row["train_loss"]) == pytest.approx(
            float(row["train_ce"]) + float(row["train_reg"]), rel=1e-5, abs=1e-6
        )


def test_pointlora_trains_with_its_entropy_loss_and_logs_it(scan_root, tmp_path, tiny_config):
    extra = ["peft.method=pointlora", "peft.pointlora.scales=[[16, 8, 4], [8, 16, 2]]"]
    config = tiny_config("scanobjectnn_hardest", scan_root, extra=["peft.rank=8", "peft.num_bases=4", *extra])
    summary = finetune(config, output=tmp_path / "run")
    assert summary["status"] == "finished" and summary["param_groups"]["selector"] > 0
    (row,) = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    # 0.004 × a negative entropy: in [-0.004 · 1.25 · ln 2, 0)
    assert -0.004 * 1.25 * 0.6932 <= float(row["train_reg"]) < 0 and float(row["train_sade"]) == 0
    assert float(row["train_loss"]) == pytest.approx(float(row["train_ce"]) + float(row["train_reg"]), rel=1e-5)


def test_export_of_a_method_that_does_not_merge_is_refused_before_the_run(scan_root, tmp_path, tiny_config):
    config = tiny_config(
        "scanobjectnn_hardest",
        scan_root,
        extra=[
            "peft.rank=8",
            "peft.num_bases=4",
            "peft.method=idpt",
            "peft.idpt.prompt_layer=1",
            "peft.idpt.dgcnn_k=8",
        ],
    )
    with pytest.raises(pcclora.peft.PeftConfigError, match="--export writes a plain backbone, but method 'idpt'"):
        finetune(config, output=tmp_path / "run", export="")
    assert not (tmp_path / "run").exists()
