"""Config resolution: packaged names from any folder, paths, _base_ inheritance, --set overrides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pcclora.config import ConfigError, available_configs, check_run_numbers, load_config, resolve_config_path

OFFICIAL_SETTINGS = {
    # config: (backbone, npoints, num_group, encoder_dims, max_epoch, label_smoothing)
    "scanobjectnn_hardest": ("point_mae", 2048, 128, 384, 300, 0.0),
    "scanobjectnn_objbg": ("point_mae", 2048, 128, 384, 300, 0.0),
    "scanobjectnn_objonly": ("point_mae", 2048, 128, 384, 300, 0.0),
    "modelnet40": ("point_mae", 1024, 64, 384, 300, 0.0),
    "modelnet40_8k": ("point_mae", 8192, 512, 384, 300, 0.0),
    "modelnet40_fewshot": ("point_mae", 1024, 64, 384, 150, 0.0),
    "point_bert_scanobjectnn_hardest": ("point_bert", 1024, 64, 256, 300, 0.2),
    "point_bert_scanobjectnn_objbg": ("point_bert", 1024, 64, 256, 300, 0.2),
    "point_bert_scanobjectnn_objonly": ("point_bert", 1024, 64, 256, 300, 0.2),
    "point_bert_modelnet40": ("point_bert", 1024, 64, 256, 300, 0.2),
    "point_bert_modelnet40_8k": ("point_bert", 8192, 512, 256, 300, 0.2),
    "point_bert_modelnet40_fewshot": ("point_bert", 1024, 64, 256, 150, 0.2),
}


def test_every_packaged_config_is_listed_and_loads_with_the_official_settings():
    packaged = {"demo", "pretrain_shapenet55", "pretrain_tiny_synthetic", "transfer_tiny_synthetic"}
    packaged |= {"shapenetpart", "shapenetpart_synthetic"}  # tests/test_segmentation_run.py
    assert set(OFFICIAL_SETTINGS) | packaged == set(
        available_configs()
    )  # the pre-training configs are checked in test_pretraining.py
    for name, (backbone, npoints, groups, encoder_dims, max_epoch, smoothing) in OFFICIAL_SETTINGS.items():
        config = load_config(name)
        assert config["name"] == name
        assert config["backbone"]["name"] == backbone
        assert config["dataset"]["npoints"] == npoints
        assert config["backbone"]["num_group"] == groups and config["backbone"]["group_size"] == 32
        assert config["backbone"]["encoder_dims"] == encoder_dims
        assert config["training"]["max_epoch"] == max_epoch == config["scheduler"]["epochs"]
        assert config["training"]["label_smoothing"] == smoothing
        assert config["optimizer"] == {"name": "adamw", "lr": 0.0005, "weight_decay": 0.05}
        assert config["training"]["batch_size"] == 32 and config["training"]["grad_clip"] == 10.0
        assert config["scheduler"]["warmup_epochs"] == 10
        assert config["peft"]["method"] == "clora" and config["peft"]["rank"] == 8


def test_bare_name_resolves_with_or_without_suffix_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("scanobjectnn_hardest") == resolve_config_path("scanobjectnn_hardest.yaml")
    assert load_config("scanobjectnn_objbg.yaml")["dataset"]["variant"] == "objbg"


def test_a_path_is_used_as_given_and_its_base_is_found_next_to_it(tmp_path):
    (tmp_path / "shared.yaml").write_text("training:\n  seed: 7\n  batch_size: 16\n")
    (tmp_path / "mine.yaml").write_text("_base_: [scanobjectnn_hardest, shared.yaml]\ntraining:\n  batch_size: 8\n")
    config = load_config(tmp_path / "mine.yaml")
    assert config["name"] == "mine"
    assert config["training"]["seed"] == 7  # from shared.yaml
    assert config["training"]["batch_size"] == 8  # the file wins over its bases
    assert config["backbone"]["num_group"] == 128  # from the packaged base, deep-merged
    assert config["training"]["grad_clip"] == 10.0  # from the defaults


def test_inheritance_cycle_is_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("_base_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="inherits from itself"):
        load_config(tmp_path / "a.yaml")


def test_unknown_config_name_lists_the_packaged_ones_and_the_nearest():
    with pytest.raises(ConfigError) as error:
        load_config("scanobjectnn_hardst")
    assert "did you mean 'scanobjectnn_hardest'" in str(error.value)
    assert "modelnet40_fewshot" in str(error.value)


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("trainig:\n  seed: 1\n", "'training'"),
        ("training:\n  batchsize: 4\n", "'training.batch_size'"),
        ("dataset:\n  augment:\n    rotate: true\n", "'dataset.augment.rotate_y'"),
    ],
)
def test_unknown_key_in_a_file_suggests_the_nearest_valid_key(tmp_path, text, suggestion):
    path = tmp_path / "typo.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=f"did you mean {suggestion}"):
        load_config(path)


def test_a_binary_config_file_is_a_config_error(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\x80\x04\x95garbage\xff\xfe")
    with pytest.raises(ConfigError, match=r"binary.yaml cannot be read as text \(UnicodeDecodeError"):
        load_config(path)


def test_unknown_peft_key_is_reported_by_the_peft_schema(tmp_path):
    path = tmp_path / "peft.yaml"
    path.write_text("peft:\n  rnak: 4\n")
    with pytest.raises(Exception, match="rank"):
        load_config(path)


def test_set_overrides_parse_yaml_values_and_keep_types():
    config = load_config(
        "scanobjectnn_hardest",
        [
            "training.seed=3",
            "optimizer.lr=1",
            "dataset.augment.rotate_y=true",
            "peft.method=lora",
            "peft.rank=16",
            "peft.target_modules=[attn.qkv]",
            "backbone.depth=4",
        ],
    )
    assert config["training"]["seed"] == 3
    assert config["optimizer"]["lr"] == 1.0 and isinstance(config["optimizer"]["lr"], float)
    assert config["dataset"]["augment"]["rotate_y"] is True
    assert config["peft"]["method"] == "lora" and config["peft"]["rank"] == 16
    assert config["peft"]["target_modules"] == ["attn.qkv"]
    assert config["backbone"]["depth"] == 4  # a null default accepts a value


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.seed=abc", "expected an int like the current value 0, got a str"),
        ("training.deterministic=1", "expected a bool"),
        ("optimizer.lr=fast", "expected a float"),
        ("trainig.seed=1", "did you mean 'training.seed'"),
        ("training.sed=1", "did you mean 'training.seed'"),
        ("peft.rnak=4", "did you mean 'peft.rank'"),
        ("training=1", "is a section"),
        ("training.seed", "expected key.sub=value"),
    ],
)
def test_bad_set_override_is_one_clear_error(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config("scanobjectnn_hardest", [override])


# --------------------------------------------------------------------------------------------
# values of config files are checked like --set values (issue 11, item 2)
# --------------------------------------------------------------------------------------------


def _config_file(tmp_path, text: str) -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text("_base_: scanobjectnn_hardest.yaml\n" + text)
    return path


@pytest.mark.parametrize("written", ["1e-4", "1E-4", "+1.0e-4", "0.0001", "'1e-4'"])
def test_a_number_written_as_yaml_reads_it_is_a_float_where_the_default_is_one(tmp_path, written):
    config = load_config(_config_file(tmp_path, f"optimizer:\n  lr: {written}\n"))
    assert config["optimizer"]["lr"] == pytest.approx(1e-4) and isinstance(config["optimizer"]["lr"], float)


def test_set_accepts_numbers_as_people_write_them():
    config = load_config(
        "scanobjectnn_hardest",
        ["optimizer.lr=5e-4", "scheduler.lr_min=1e-6", "training.grad_clip=10", "peft.sade_weight=1e-2"],
    )
    assert config["optimizer"]["lr"] == 5e-4 and config["scheduler"]["lr_min"] == 1e-6
    assert config["training"]["grad_clip"] == 10.0 and isinstance(config["training"]["grad_clip"], float)
    assert config["peft"]["sade_weight"] == 0.01


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("training:\n  seed: abc\n", "mine.yaml: training.seed='abc': expected an int like the default 0, got a str"),
        ("training:\n  batch_size: 1e2\n", "training.batch_size='1e2': expected an int"),
        ("training:\n  amp: 1\n", "training.amp=1: expected a bool like the default False, got an int"),
        ("optimizer:\n  lr: fast\n", "optimizer.lr='fast': expected a float like the default 0.0005, got a str"),
        ("optimizer:\n  lr:\n", "optimizer.lr=None: expected a float like the default 0.0005, got null"),
        ("dataset:\n  variant: 3\n", "dataset.variant=3: expected a str"),
        ("dataset:\n  augment:\n    translate: [0.2]\n", "dataset.augment.translate=[0.2]: expected a float"),
        ("peft:\n  rank: '4'\n", "peft.rank='4': expected an int like the default 8, got a str"),
        ("peft:\n  sade_normalized: 'no'\n", "peft.sade_normalized='no': expected a bool"),
    ],
)
def test_wrong_types_in_a_config_file_are_config_errors_naming_file_and_key(tmp_path, text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(_config_file(tmp_path, text))


def test_file_values_keep_what_they_accepted_before(tmp_path):
    text = (
        "backbone:\n  depth: 4\n  checkpoint: 123\n"  # null defaults take any value, as before
        "peft:\n  alpha: 16.0\n  target_modules: attn.qkv\n  dropout: 1e-1\n"
        "training:\n  grad_clip: 5\n"
    )
    config = load_config(_config_file(tmp_path, text))
    assert config["backbone"]["depth"] == 4 and config["backbone"]["checkpoint"] == 123
    assert config["peft"]["alpha"] == 16.0 and config["peft"]["target_modules"] == ["attn.qkv"]
    assert config["peft"]["dropout"] == 0.1 and config["training"]["grad_clip"] == 5.0


def test_null_on_the_command_line_is_refused_where_the_default_is_not_null():
    with pytest.raises(ConfigError, match=r"--set optimizer.lr=None: expected a float like the current value"):
        load_config("scanobjectnn_hardest", ["optimizer.lr="])
    assert load_config("scanobjectnn_hardest", ["dataset.root=null"])["dataset"]["root"] is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=11", "optimizer.lr must be <= 10, got 11.0"),
        ("optimizer.lr=1e40", "optimizer.lr must be <= 10, got 1e+40"),
        ("optimizer.lr=.inf", "optimizer.lr must be a finite number, got inf"),
        ("training.grad_clip=.nan", "training.grad_clip must be a finite number, got nan"),
        ("scheduler.lr_min=-1e-6", "scheduler.lr_min must be >= 0, got -1e-06"),
        ("scheduler.warmup_lr_init=20", "scheduler.warmup_lr_init must be <= 10, got 20.0"),
    ],
)
def test_absurd_learning_rates_and_non_finite_numbers_are_config_errors(override, message):
    config = load_config("scanobjectnn_hardest", [override])
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_run_numbers(config)


def test_saved_config_reloads_to_the_same_dict(tmp_path):
    import yaml

    from pcclora.config import config_from_dict, dump_config

    config = load_config("point_bert_modelnet40", ["training.seed=5"])
    reloaded = config_from_dict(yaml.safe_load(dump_config(config)), name=config["name"])
    assert reloaded == config


def test_packaged_configs_live_next_to_the_package():
    folder = resolve_config_path("demo").parent
    assert folder == Path(__file__).resolve().parents[1] / "pcclora" / "configs"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("training.batch_size=0", "training.batch_size must be >= 1, got 0"),
        ("optimizer.lr=0", "optimizer.lr must be > 0, got 0"),
        ("training.seed=-3", "training.seed must be >= 0, got -3"),
        ("training.label_smoothing=1.0", "training.label_smoothing must be below 1"),
        ("backbone.num_classes=0", "backbone.num_classes must be >= 1, or null"),
    ],
)
def test_out_of_range_run_numbers_are_config_errors(override, message):
    config = load_config("scanobjectnn_hardest", [override])
    with pytest.raises(ConfigError, match=message):
        check_run_numbers(config)


def test_the_packaged_configs_pass_the_run_number_checks():
    for name in available_configs():
        check_run_numbers(load_config(name))
