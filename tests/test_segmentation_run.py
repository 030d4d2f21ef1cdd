"""Part segmentation through the tools: a tiny run on synthetic data learns (mIoU above a chance
baseline computed here), tools/test.py evaluates its checkpoint, the merged export loads, the
no-data command gives one clear message, and profile_flops profiles the segmentation model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backbones import create_backbone, load_checkpoint
from datasets import build_dataset, make_synthetic
from pcclora.config import load_config
from pcclora.engine.seg_metrics import part_seg_scores, shape_iou

TOOLS = Path(__file__).resolve().parents[1] / "tools"
TINY = [
    "backbone.trans_dim=32",
    "backbone.depth=2",
    "backbone.num_heads=4",
    "backbone.encoder_dims=32",
    "backbone.num_group=16",
    "backbone.group_size=16",
    "backbone.drop_path_rate=0.0",
    "peft.rank=4",
    "peft.num_bases=2",
]


def run_in_process(name: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run tools/<name>.py's main through run_tool like the command line; (exit code, stdout, stderr)."""
    sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(f"seg_tool_{name}", TOOLS / f"{name}.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    with pytest.raises(SystemExit) as exit_info:
        tool.run_tool(tool.main, argv)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def chance_instance_miou(root: Path, npoints: int, seed: int = 0) -> float:
    """Instance mIoU of uniformly random parts within each shape's category on the test split."""
    test = build_dataset("shapenetpart", root, "test", npoints=npoints)
    gen = torch.Generator().manual_seed(seed)
    ious, categories = [], []
    for index in range(len(test)):
        _, category, parts = test[index]
        allowed = torch.tensor(test.part_ranges[category])
        guess = allowed[torch.randint(len(allowed), (npoints,), generator=gen)]
        ious.append(shape_iou(guess, parts, test.part_ranges[category]))
        categories.append(category)
    return part_seg_scores(ious, categories, 0, 1, test.categories).instance_miou


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread for a run of many tiny ops: on a shared 2-core machine two threads
    contend with other processes and run far slower (the figures do not depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tiny_segmentation_run_learns_and_its_checkpoint_evaluates(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = make_synthetic("shapenetpart", tmp_path / "syn", num_train=64, num_test=32, num_points=256, seed=0)
    settings = [
        *TINY,
        "dataset.npoints=256",
        "training.batch_size=16",
        "training.test_batch_size=32",
        "training.max_epoch=3",
        "training.profile=false",
        "training.tensorboard=false",
        "optimizer.lr=0.003",
        "scheduler.warmup_epochs=0",
        "scheduler.epochs=4",
        "peft.trainable_extra=[pos_embed]",
    ]
    argv = ["--cfg", "shapenetpart.yaml", "--data-root", str(root), "--output", "run", "--export", "--set", *settings]
    code, out, err = run_in_process("finetune", argv, capsys)
    assert code == 0, err
    assert "Ins mIoU" in out and "summary (finished)" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    chance = chance_instance_miou(root, 256)
    assert summary["best_ins_miou"] > chance + 10.0, (summary["best_ins_miou"], chance)  # measured: 38 vs 21
    assert {"best_cls_miou", "last_ins_miou", "last_cls_miou", "best_acc"} <= set(summary)
    assert (tmp_path / "run" / "parts.png").is_file()

    code, out, err = run_in_process("test", ["--ckpt", "run/checkpoints/best.pth", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out[out.index("{") :])  # a slow evaluation prints a progress line first
    assert result["ins_miou"] == pytest.approx(summary["best_ins_miou"])
    assert set(result["per_category_iou"]) == set(build_dataset("shapenetpart", root, "test").categories)
    code, out, _ = run_in_process("test", ["--ckpt", "run/checkpoints/best.pth"], capsys)
    assert code == 0 and "Ins mIoU" in out and "Airplane" in out

    # predictions classify whole clouds: a segmentation checkpoint is refused with one message
    cloud = tmp_path / "cloud.npy"
    np.save(cloud, np.random.default_rng(0).random((300, 3), dtype=np.float32))
    code, _, err = run_in_process("predict", ["--ckpt", "run/checkpoints/best.pth", str(cloud)], capsys)
    assert code == 2 and "part-segmentation model" in err and "Traceback" not in err

    # the merged export is the official segmentation layout and loads strictly into a plain model
    exported = torch.load(tmp_path / "run" / "model_merged.pth", weights_only=False)
    sizes = {s.split("=")[0].split(".")[1]: s.split("=")[1] for s in TINY if s.startswith("backbone.")}
    sizes = {key: float(value) if key == "drop_path_rate" else int(value) for key, value in sizes.items()}
    plain = create_backbone("point_mae_seg", num_classes=50, **sizes)
    report = load_checkpoint(plain, exported)
    assert "model_state_dict" in exported and report.layout == "finetuned" and not report.missing


def test_packaged_config_holds_the_official_segmentation_recipe():
    config = load_config("shapenetpart.yaml")
    assert config["task"] == "segmentation" and config["backbone"]["name"] == "point_mae_seg"
    assert config["backbone"]["num_classes"] == 50 and config["dataset"]["npoints"] == 2048
    assert config["backbone"]["num_group"] == 128 and config["backbone"]["group_size"] == 32
    assert config["optimizer"] == {"name": "adamw", "lr": 0.0002, "weight_decay": 0.05}
    assert config["training"]["batch_size"] == 16 and config["training"]["grad_clip"] == 10.0
    assert config["training"]["max_epoch"] == 299 and config["scheduler"]["epochs"] == 300  # 300 passes
    assert config["scheduler"]["warmup_epochs"] == 10 and config["peft"]["trainable_extra"] == []
    augment = config["dataset"]["augment"]
    assert (augment["scale_low"], augment["scale_high"], augment["translate"]) == (0.8, 1.25, 0.1)


def test_finetune_without_data_ends_in_one_clear_message(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_in_process("finetune", ["--cfg", "shapenetpart.yaml"], capsys)
    assert code == 2
    assert err.startswith("error: ShapeNetPart folder") and "Traceback" not in err
    assert "shapenetcore_partanno_segmentation_benchmark_v0_normal" in err and "synsetoffset2category.txt" in err
    assert "make_synthetic.py --format shapenetpart" in err
    assert not (tmp_path / "runs").exists()


def test_profile_flops_profiles_the_segmentation_model_per_method(capsys):
    argv = ["--cfg", "shapenetpart.yaml", "--json", "--set", *TINY]
    code, out, err = run_in_process("profile_flops", argv, capsys)
    assert code == 0, err
    rows = {row["method"]: row for row in json.loads(out)}
    assert set(rows) == {"clora", "clora_shared", "lora", "full", "linear", "vera"}  # the token-hook ones refuse it
    assert rows["clora"]["params_total"] > rows["linear"]["params_total"]
    assert rows["clora"]["merged"]["macs_conv_linear"] == rows["linear"]["macs_conv_linear"]
    assert rows["linear"]["macs_with_attention"] > rows["linear"]["macs_conv_linear"] > 0
    code, _, err = run_in_process("profile_flops", [*argv, "--method", "idpt"], capsys)
    assert code == 2 and "add_token_hook" in err and "Traceback" not in err


def test_benchmark_measures_a_segmentation_training_step(capsys):
    argv = [
        "--task",
        "segmentation",
        "--only",
        "train",
        "--methods",
        "linear",
        "clora",
        "--num-points",
        "128",
        "--batch-size",
        "2",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--json",
        "--set",
        "backbone.depth=2",
        "backbone.trans_dim=32",
        "backbone.encoder_dims=32",
        "backbone.num_heads=4",
        "backbone.num_group=8",
        "backbone.group_size=8",
    ]
    code, out, err = run_in_process("benchmark", argv, capsys)
    assert code == 0, err
    settings = json.loads(out)["settings"]
    assert settings["backbone"] == "point_mae_seg" and settings["num_classes"] == 50
    assert settings["methods"] == ["linear", "clora"]


def test_compare_refuses_a_segmentation_config_with_one_message(tmp_path, capsys):
    argv = ["--cfg", "shapenetpart.yaml", "--methods", "clora", "linear", "--output", str(tmp_path / "cmp")]
    code, _, err = run_in_process("compare", argv, capsys)
    assert code == 2 and "covers classification" in err and "Traceback" not in err
    assert not (tmp_path / "cmp").exists()
