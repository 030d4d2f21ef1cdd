"""Official fine-tuning configs read as they are: every one of the five repositories, translated.

The test writes each repository's ``cfgs/`` tree with the official keys and values (block and
flow YAML styles, numbers like ``2e-5`` that YAML reads as strings, nested dataset ``_base_``
files named relative to the repository root) and checks the translation key by key, the runner
recipe added from the packaged ``_base_`` files, the refusals, and that the tools print it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pcclora.config import ConfigError, check_run_numbers, load_config
from pcclora.official_config import is_official_config, translate_official_config

DATASET_FILES = {
    "ScanObjectNN_hardest.yaml": "NAME: ScanObjectNN_hardest\nROOT: data/ScanObjectNN/main_split\n",
    "ScanObjectNN_objectbg.yaml": "NAME: ScanObjectNN\nROOT: data/ScanObjectNN/main_split\n",
    "ScanObjectNN_objectonly.yaml": "NAME: ScanObjectNN\nROOT: data/ScanObjectNN/main_split_nobg\n",
    "ModelNet40.yaml": (
        "NAME: ModelNet\nDATA_PATH: data/ModelNet/modelnet40_normal_resampled\nN_POINTS: 8192\n"
        "NUM_CATEGORY: 40\nUSE_NORMALS: FALSE\n"
    ),
    "ModelNet40FewShot.yaml": (
        "NAME: ModelNetFewShot\nDATA_PATH: data/ModelNetFewshot\nN_POINTS: 8192\nNUM_CATEGORY: 40\nUSE_NORMALS: FALSE\n"
    ),
}
#: dataset file per task, the one of ``test`` for few-shot, and the translation it must give.
TASKS = {
    "scan_hardest": ("ScanObjectNN_hardest.yaml", None, ("scanobjectnn", "hardest")),
    "scan_objbg": ("ScanObjectNN_objectbg.yaml", None, ("scanobjectnn", "objbg")),
    "scan_objonly": ("ScanObjectNN_objectonly.yaml", None, ("scanobjectnn", "objonly")),
    "modelnet": ("ModelNet40.yaml", None, ("modelnet40", None)),
    "modelnet_8k": ("ModelNet40.yaml", None, ("modelnet40", None)),
    "fewshot": ("ModelNet40FewShot.yaml", "ModelNet40.yaml", ("modelnet40_fewshot", None)),
}
POINTS = {
    "scan": (2048, 128, 15),
    "modelnet": (1024, 64, 40),
    "modelnet_8k": (8192, 512, 40),
    "fewshot": (1024, 64, 40),
}


def _points(task: str) -> tuple[int, int, int]:
    return POINTS["scan" if task.startswith("scan") else task]


# Each official fine-tuning config: repository, file, task, model fields, (lr, epochs, warm-up,
# batch, max_epoch), expected backbone. Values as in the repositories.
def _model(width, depth, heads, encoder, drop, extra=None):
    return dict(
        trans_dim=width, depth=depth, num_heads=heads, encoder_dims=encoder, drop_path_rate=drop, **(extra or {})
    )


MAE = _model(384, 12, 6, 384, 0.1)
BERT = _model(384, 12, 6, 256, 0.1)
ACT = {**{k: v for k, v in MAE.items() if k != "trans_dim"}, "embed_dim": 384, "transfer_type": "full"}
RECON = _model(384, 12, 6, 384, 0.2, {"type": "full"})
GPT = {
    "s": _model(384, 12, 6, 384, 0.1, {"decoder_depth": 4}),
    "b": _model(768, 12, 12, 768, 0.2, {"decoder_depth": 4}),
    "l": _model(1024, 24, 16, 1024, 0.2, {"decoder_depth": 4}),
}
CONFIGS = []
for task in ("scan_hardest", "scan_objbg", "scan_objonly", "modelnet", "modelnet_8k", "fewshot"):
    epochs = 150 if task == "fewshot" else 300
    CONFIGS.append(("Point-MAE", f"cfgs/{task}.yaml", task, MAE, ("0.0005", epochs, 10, 32, epochs), "point_mae"))
    CONFIGS.append(("ACT", f"cfgs/full/{task}.yaml", task, ACT, (0.0005, epochs, 10, 32, epochs), "act"))
    recon_lr = "5e-4" if task == "fewshot" else ("2e-5" if task.startswith("scan") else "1e-5")
    drop = {"drop_path_rate": 0.1} if task == "fewshot" else {}
    CONFIGS.append(
        ("ReCon", f"cfgs/full/{task}.yaml", task, {**RECON, **drop}, (recon_lr, epochs, 10, 32, epochs), "recon")
    )
    bert_file = {
        "scan_hardest": "ScanObjectNN_models/PointTransformer_hardest.yaml",
        "fewshot": "Fewshot_models/PointTransformer.yaml",
    }
    if task in bert_file:
        CONFIGS.append(
            ("Point-BERT", f"cfgs/{bert_file[task]}", task, BERT, ("0.0005", epochs, 10, 32, epochs), "point_bert")
        )
    gpt_recipe = {
        "s": {"scan_hardest": (0.0001, 300, 30, 64, 300), "modelnet": (0.0001, 300, 10, 128, 300)},
        "b": {"scan_hardest": (0.0001, 30, 10, 64, 30), "modelnet": (0.0001, 50, 10, 128, 50)},
        "l": {"scan_hardest": (0.0001, 50, 10, 64, 50), "modelnet": (0.0001, 50, 10, 128, 50)},
    }
    for size in "sbl":
        recipe = gpt_recipe[size].get(task, (0.0001, 300, 10, 32, 300))
        fields = {**GPT[size], **({"loss": "cdl2", "weight_center": 1} if task.startswith("modelnet") else {})}
        CONFIGS.append(
            ("PointGPT", f"cfgs/PointGPT-{size.upper()}/{task}.yaml", task, fields, recipe, f"pointgpt_{size}")
        )
CONFIGS.append(
    (
        "ACT",
        "cfgs/mlp3/scan_hardest_mlp3.yaml",
        "scan_hardest",
        {**ACT, "transfer_type": "mlp-3"},
        (0.001, 300, 10, 32, 300),
        "act",
    )
)
CONFIGS.append(
    (
        "ReCon",
        "cfgs/mlp3/finetune_scan_hardest.yaml",
        "scan_hardest",
        {**RECON, "type": "mlp3"},
        ("1e-4", 300, 10, 32, 300),
        "recon",
    )
)


def _flow(value) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + " }"
    return str(value)


def _write_official(root: Path, repo: str, file: str, task: str, model: dict, recipe: tuple) -> Path:
    """One official config under ``root/<repo>/`` with its dataset files, in the repository's style."""
    lr, epochs, warmup, batch, max_epoch = recipe
    repo_root = root / repo
    (repo_root / "cfgs" / "dataset_configs").mkdir(parents=True, exist_ok=True)
    for name, text in DATASET_FILES.items():
        (repo_root / "cfgs" / "dataset_configs" / name).write_text(text)
    train_file, test_file, _ = TASKS[task]
    test_file = test_file or train_file
    npoints, groups, classes = _points(task)
    fields = {"NAME": "PointTransformer", **model, "cls_dim": 40 if repo == "Point-BERT" else classes}
    fields |= {"group_size": 32, "num_group": groups}
    if repo == "Point-BERT" and task.startswith("scan"):
        npoints, fields["num_group"] = 1024, 64
    base = "cfgs/dataset_configs/"
    if repo in ("Point-MAE", "Point-BERT", "ReCon"):  # flow style, as in those repositories
        text = (
            f"optimizer : {{\n  type: AdamW,\n  kwargs: {{\n  lr : {lr},\n  weight_decay : 0.05\n}}}}\n\n"
            f"scheduler: {{\n  type: CosLR,\n  kwargs: {{\n    epochs: {epochs},\n"
            f"    initial_epochs : {warmup}\n}}}}\n\n"
            f"dataset : {{\n  train : {{ _base_: {base}{train_file},\n            others: {{subset: 'train'}}}},\n"
            f"  val : {{ _base_: {base}{train_file},\n            others: {{subset: 'test'}}}},\n"
            f"  test : {{ _base_: {base}{test_file},\n            others: {{subset: 'test'}}}}}}\n"
            f"model : {_flow(fields)}\n\n"
            f"npoints: {npoints}\ntotal_bs : {batch}\nstep_per_update : 1\nmax_epoch : {max_epoch}\n"
            "grad_norm_clip : 10\n"
        )
        if repo == "Point-BERT":
            text += "\n\nconsider_metric: CDL1\n"
    else:  # block style (ACT, PointGPT)
        model_lines = "".join(f"  {k}: {v}\n" for k, v in fields.items())
        text = (
            f"optimizer:\n  type: AdamW\n  kwargs:\n    lr: {lr}\n    weight_decay: 0.05\n\n"
            f"scheduler:\n  type: CosLR\n  kwargs:\n    epochs: {epochs}\n    initial_epochs: {warmup}\n\n"
            f"dataset:\n  train:\n    _base_: {base}{train_file}\n    others:\n      subset: train\n"
            f"  val:\n    _base_: {base}{train_file}\n    others:\n      subset: test\n"
            f"  test:\n    _base_: {base}{test_file}\n    others:\n      subset: test\n\n"
            f"model:\n{model_lines}\n"
            f"npoints: {npoints}\ntotal_bs: {batch}\nstep_per_update: 1\nmax_epoch: {max_epoch}\ngrad_norm_clip: 10\n"
        )
    path = repo_root / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("repo, file, task, model, recipe, backbone", CONFIGS, ids=[f"{c[0]}:{c[1]}" for c in CONFIGS])
def test_every_official_fine_tuning_config_translates(tmp_path, monkeypatch, repo, file, task, model, recipe, backbone):
    path = _write_official(tmp_path, repo, file, task, model, recipe)
    monkeypatch.chdir(tmp_path / repo)  # the official code runs from the repository root
    lines: list[str] = []
    config = load_config(file, echo=lines.append)
    check_run_numbers(config)

    lr, epochs, warmup, batch, max_epoch = recipe
    npoints, groups, classes = _points(task)
    dataset_name, variant = TASKS[task][2]
    assert config["name"] == path.stem
    assert config["backbone"]["name"] == backbone
    width = model.get("trans_dim", model.get("embed_dim"))
    assert config["backbone"]["trans_dim"] == width and config["backbone"]["depth"] == model["depth"]
    assert config["backbone"]["num_heads"] == model["num_heads"]
    assert config["backbone"]["encoder_dims"] == model["encoder_dims"]
    assert config["backbone"]["drop_path_rate"] == model["drop_path_rate"]
    assert config["backbone"]["group_size"] == 32
    assert config["dataset"]["name"] == dataset_name
    if variant is not None:
        assert config["dataset"]["variant"] == variant
    if repo == "Point-BERT":
        assert config["backbone"]["num_classes"] == 40 and config["training"]["label_smoothing"] == 0.2
        if task.startswith("scan"):
            npoints, groups = 1024, 64
    else:
        assert config["backbone"]["num_classes"] == classes
    assert config["backbone"]["num_group"] == groups and config["dataset"]["npoints"] == npoints
    assert config["optimizer"] == {"name": "adamw", "lr": pytest.approx(float(lr)), "weight_decay": 0.05}
    assert (config["scheduler"]["epochs"], config["scheduler"]["warmup_epochs"]) == (epochs, warmup)
    assert (config["training"]["batch_size"], config["training"]["max_epoch"]) == (batch, max_epoch)
    assert config["training"]["grad_clip"] == 10.0
    if backbone.startswith("pointgpt"):
        assert config["backbone"]["decoder_depth"] == 4
        assert config["peft"]["target_modules"] == [
            "blocks.layers.*.attn.out_proj",
            "blocks.layers.*.mlp.0",
            "blocks.layers.*.mlp.2",
        ]
    expected_method = "linear" if model.get("type") == "mlp3" or model.get("transfer_type") == "mlp-3" else "clora"
    assert config["peft"]["method"] == expected_method

    # the runners' recipe: ACT rotation only everywhere, ReCon rotation on ScanObjectNN and 10x head lr
    rotation_only = backbone == "act" or (backbone == "recon" and dataset_name == "scanobjectnn")
    augment = config["dataset"]["augment"]
    assert augment["rotate_y"] is rotation_only
    assert (augment["scale_low"], augment["translate"]) == ((1.0, 0.0) if rotation_only else (2 / 3, 0.2))
    assert config["training"]["cls_lr_scale"] == (10.0 if backbone == "recon" else 1.0)
    assert config["scheduler"]["lr_min"] == (1e-7 if backbone == "act" else 1e-6)

    # one line per official key
    text = "\n".join(lines)
    assert lines[0].startswith(f"official {repo} config") and "translated" in lines[0]
    for official in ("optimizer.type", "optimizer.kwargs.lr", "scheduler.kwargs.initial_epochs", "model.NAME",
                     "model.cls_dim", "model.num_group", "npoints", "total_bs", "max_epoch", "grad_norm_clip",
                     "dataset.train._base_.NAME", "step_per_update"):  # fmt: skip
        assert f"\n  {official}: " in "\n" + text, official
    assert f"model.NAME: 'PointTransformer' -> backbone.name: {backbone!r}" in text


def test_dataset_files_are_found_from_the_folders_above_the_config(tmp_path, monkeypatch):
    path = _write_official(
        tmp_path, "Point-MAE", "cfgs/scan_objonly.yaml", "scan_objonly", MAE, ("5e-4", 300, 10, 32, 300)
    )
    monkeypatch.chdir(tmp_path)  # not the repository root
    config = load_config(path)
    assert (config["dataset"]["variant"], config["dataset"]["root"]) == ("objonly", "data/ScanObjectNN/main_split_nobg")
    assert config["name"] == "scan_objonly"


def test_fewshot_notes_the_command_line_way_shot_fold_and_the_test_section(tmp_path):
    path = _write_official(tmp_path, "Point-MAE", "cfgs/fewshot.yaml", "fewshot", MAE, ("5e-4", 150, 10, 32, 150))
    translation = translate_official_config(path)
    text = "\n".join(translation.lines)
    assert "dataset.test: 'modelnet40' -> (read only by the official --test" in text
    assert "--way/--shot/--fold" in text and "dataset.way" in text


def test_a_missing_dataset_file_names_where_it_was_looked_for(tmp_path):
    path = tmp_path / "alone.yaml"
    path.write_text(
        "optimizer: {type: AdamW, kwargs: {lr: 0.0005, weight_decay: 0.05}}\n"
        "dataset: {train: {_base_: cfgs/dataset_configs/Nope.yaml, others: {subset: train}}}\n"
        "model: {NAME: PointTransformer, trans_dim: 384}\n"
    )
    with pytest.raises(ConfigError, match=r"dataset.train._base_ 'cfgs/dataset_configs/Nope.yaml' not found"):
        load_config(path)


def test_keys_without_an_equivalent_are_refused_together(tmp_path):
    path = _write_official(
        tmp_path, "Point-MAE", "cfgs/scan_hardest.yaml", "scan_hardest", MAE, ("5e-4", 300, 10, 32, 300)
    )
    text = path.read_text().replace("type: AdamW", "type: SGD").replace("step_per_update : 1", "step_per_update : 4")
    text = text.replace("weight_decay : 0.05", "weight_decay : 0.05, momentum: 0.9") + "bnmscheduler: {type: Lambda}\n"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    for part in ("optimizer.type: 'SGD' (pcclora trains with AdamW only)",
                 "optimizer.kwargs.momentum: 0.9",
                 "step_per_update: 4 (pcclora has no gradient accumulation",
                 "bnmscheduler: {'type': 'Lambda'} (unknown official config key)"):  # fmt: skip
        assert part in message, part
    assert "everything else translates" in message


@pytest.mark.parametrize(
    "model, expected",
    [
        ("{NAME: Point_MAE, group_size: 32}", "model.NAME: 'Point_MAE' (Point-MAE's pre-training model"),
        ("{NAME: ReCon, group_size: 32}", "model.NAME: 'ReCon' (ReCon's pre-training model"),
        ("{NAME: PointTransformerSVM, trans_dim: 384}", "model.NAME: 'PointTransformerSVM'"),
        ("{NAME: PointTransformer, trans_dim: 384, type: linear}", "model.type: 'linear' (a single Linear head"),
        ("{NAME: PointTransformer, embed_dim: 384, transfer_type: side}", "model.transfer_type: 'side'"),
        ("{NAME: PointTransformer, trans_dim: 384, mask_ratio: 0.6}", "model.mask_ratio: 0.6"),
    ],
)
def test_models_without_an_equivalent_are_refused(tmp_path, model, expected):
    path = _write_official(
        tmp_path, "Point-MAE", "cfgs/scan_hardest.yaml", "scan_hardest", MAE, ("5e-4", 300, 10, 32, 300)
    )
    text = path.read_text()
    start = text.index("model :")
    end = text.index("npoints")
    path.write_text(text[:start] + f"model : {model}\n\n" + text[end:])
    with pytest.raises(ConfigError, match="no equivalent in pcclora for") as error:
        load_config(path)
    assert expected in str(error.value)


def test_other_datasets_are_refused(tmp_path):
    path = _write_official(
        tmp_path, "Point-MAE", "cfgs/scan_hardest.yaml", "scan_hardest", MAE, ("5e-4", 300, 10, 32, 300)
    )
    (path.parents[1] / "cfgs/dataset_configs/ShapeNet-55.yaml").write_text(
        "NAME: ShapeNet\nDATA_PATH: data/ShapeNet55\n"
    )
    path.write_text(path.read_text().replace("ScanObjectNN_hardest.yaml", "ShapeNet-55.yaml"))
    with pytest.raises(ConfigError, match=r"dataset.train._base_.NAME: 'ShapeNet' \(datasets here"):
        load_config(path)


def test_own_sections_in_an_official_file_are_kept_and_set_overrides_apply(tmp_path):
    path = _write_official(
        tmp_path, "ReCon", "cfgs/full/scan_hardest.yaml", "scan_hardest", RECON, ("2e-5", 300, 10, 32, 300)
    )
    path.write_text(path.read_text() + "\npeft:\n  method: lora\n  rank: 4\n")
    config = load_config(path, ["peft.rank=2", "training.max_epoch=3"])
    assert (config["peft"]["method"], config["peft"]["rank"]) == ("lora", 2)
    assert config["training"]["max_epoch"] == 3 and config["optimizer"]["lr"] == pytest.approx(2e-5)


def test_official_schema_is_recognised_by_its_keys():
    assert is_official_config({"optimizer": {"type": "AdamW", "kwargs": {}}})
    assert is_official_config({"model": {"NAME": "PointTransformer"}})
    assert is_official_config({"dataset": {"train": {"_base_": "x.yaml"}}})
    assert not is_official_config({"optimizer": {"lr": 1e-3}, "dataset": {"name": "scanobjectnn"}})
    assert not is_official_config(load_config("scanobjectnn_hardest"))


def test_the_tools_print_the_translation_and_keep_json_clean(tmp_path, monkeypatch, capsys):
    from pcclora.cli import profile_flops

    fields = {**GPT["s"], "depth": 1, "decoder_depth": 1, "trans_dim": 32, "encoder_dims": 32, "num_heads": 4}
    path = _write_official(
        tmp_path, "PointGPT", "cfgs/PointGPT-S/scan_hardest.yaml", "scan_hardest", fields, (0.0001, 300, 30, 64, 300)
    )
    monkeypatch.chdir(tmp_path / "PointGPT")
    code = profile_flops.main(
        ["--cfg", str(path), "--method", "lora", "--json", "--set", "backbone.num_group=16", "dataset.npoints=256"]
    )
    assert code == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result[0]["method"] == "lora" and result[0]["params_trainable"] > 0
    assert "official PointGPT config" in captured.err and "backbone.name: 'pointgpt_s'" in captured.err
