"""The pre-trained point_mae_tiny shipped in the package: its hash, how it loads, how a damaged copy fails."""

from __future__ import annotations

import shutil

import pytest
import torch

import backbones
from backbones import create_backbone, create_pretrainer
from backbones.errors import CheckpointError
from backbones.weights import SHIPPED_WEIGHTS, file_sha256
from pcclora.config import load_config
from pcclora.engine.model import build_model

SHIPPED = SHIPPED_WEIGHTS["point_mae_tiny"]


def test_the_shipped_file_is_a_few_mb_with_its_recorded_sha256():
    assert SHIPPED.path.is_file() and SHIPPED.path.parent.name == "weights"
    assert SHIPPED.path.stat().st_size < 8 * 2**20
    assert file_sha256(SHIPPED.path) == SHIPPED.sha256


def test_pretrained_true_loads_it_as_any_pre_training_file():
    model = create_backbone("point_mae_tiny", num_classes=15, pretrained=True)
    report = model.checkpoint_report
    # the tiny analogue of the official report: 4 blocks instead of 12, a 2-block decoder
    assert report.layout == "point_mae_pretrain" and len(report.loaded) == 18 + 4 + 4 * 11 + 2
    assert sorted({key.split(".")[0] for key in report.missing}) == ["cls_head_finetune", "cls_pos", "cls_token"]
    assert len(report.unexpected) == 1 + 4 + 2 * 11 + 2 + 2
    by_path = create_backbone("point_mae", num_classes=15, checkpoint=SHIPPED.path)  # the sizes come from the file
    assert by_path.trans_dim == 128 and by_path.depth == 4 and by_path.num_heads == 4
    for key in report.loaded:
        assert torch.equal(model.state_dict()[key], by_path.state_dict()[key])
    pretrainer = create_pretrainer("point_mae_tiny", pretrained=True)
    assert pretrainer.checkpoint_report.layout == "point_mae_pretrainer" and not pretrainer.checkpoint_report.missing


def test_the_configs_take_it_with_backbone_pretrained(capsys):
    config = load_config("demo")
    assert config["backbone"]["name"] == "point_mae_tiny" and config["backbone"]["pretrained"] is True
    model = build_model(config, 15, log=print)
    assert "layout point_mae_pretrain" in capsys.readouterr().out
    assert model.peft_config["method"] == "clora"


@pytest.mark.parametrize("damage", ["byte", "missing"])
def test_a_damaged_or_missing_shipped_file_is_a_checkpoint_error(tmp_path, monkeypatch, damage):
    copy = tmp_path / SHIPPED.file
    shutil.copy(SHIPPED.path, copy)
    if damage == "byte":
        content = bytearray(copy.read_bytes())
        content[len(content) // 2] ^= 0xFF
        copy.write_bytes(bytes(content))
        message = r"shipped weights of 'point_mae_tiny' are damaged: .* has SHA-256 [0-9a-f]{64}, expected"
    else:
        copy.unlink()
        message = "shipped weights of 'point_mae_tiny' are missing"
    monkeypatch.setattr(backbones.weights, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(CheckpointError, match=message):
        create_backbone("point_mae_tiny", num_classes=3, pretrained=True)
