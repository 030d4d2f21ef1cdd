"""Checkpoint loading for every published layout (docs/formats.md) and its error messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backbones import CheckpointError, create_backbone, load_checkpoint
from backbones.checkpoint import checkpoint_filter_fn

TINY = dict(trans_dim=32, depth=2, num_heads=4, encoder_dims=32, num_group=8, group_size=8)


def _tiny_mae(num_classes: int = 5, **kw):
    return create_backbone("point_mae", num_classes=num_classes, **{**TINY, **kw})


def _wrap(state: dict, container: str, module_prefix: bool) -> dict:
    if module_prefix:
        state = {f"module.{k}": v for k, v in state.items()}
    return {container: state, "epoch": 300, "metrics": {"acc": 90.0}}


# Full-size (12 × 384) models and official state dicts are built once per module: constructing
# and filling 22M parameters dominates these tests. Every test loads a complete set of the tensors
# it checks, so sharing the models between tests does not couple them.


@pytest.fixture(scope="module")
def point_mae_15():
    return create_backbone("point_mae", num_classes=15)


@pytest.fixture(scope="module")
def point_bert_40():
    return create_backbone("point_bert", num_classes=40)


@pytest.fixture(scope="module")
def official_point_mae_finetuned(make_state_dict, official_shapes):
    shapes = official_shapes.point_mae_finetuned(15)
    assert len(shapes) == 174
    return make_state_dict(shapes)


@pytest.fixture(scope="module")
def official_point_bert_finetuned(make_state_dict, official_shapes):
    shapes = official_shapes.point_bert_finetuned(40)
    assert len(shapes) == 164
    return make_state_dict(shapes)


# --------------------------------------------------------------------------------------------
# official fine-tuned files load strictly
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["base_model", "model"])
@pytest.mark.parametrize("module_prefix", [False, True])
def test_official_point_mae_finetuned_layout_loads_strictly(
    container, module_prefix, point_mae_15, official_point_mae_finetuned
):
    report = load_checkpoint(point_mae_15, _wrap(official_point_mae_finetuned, container, module_prefix))
    assert report.layout == "finetuned"
    assert (len(report.loaded), report.missing, report.unexpected) == (174, [], [])
    loaded = point_mae_15.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in official_point_mae_finetuned.items())


@pytest.mark.parametrize("container", ["base_model", "model"])
@pytest.mark.parametrize("module_prefix", [False, True])
def test_official_point_bert_finetuned_layout_loads_strictly(
    container, module_prefix, point_bert_40, official_point_bert_finetuned
):
    report = load_checkpoint(point_bert_40, _wrap(official_point_bert_finetuned, container, module_prefix))
    assert (report.layout, len(report.loaded), report.missing, report.unexpected) == ("finetuned", 164, [], [])
    loaded = point_bert_40.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in official_point_bert_finetuned.items())


# --------------------------------------------------------------------------------------------
# pre-training layouts: the documented loaded / missing / unexpected sets
# --------------------------------------------------------------------------------------------


def test_point_mae_pretrain_layout_loads_encoder_and_reports_decoder_as_unexpected(
    point_mae_15, make_state_dict, official_shapes
):
    shapes = official_shapes.point_mae_pretrain()
    assert len(shapes) == 209
    assert sum(key.startswith("module.MAE_encoder.") for key in shapes) == 156
    pretrain = make_state_dict(shapes, seed=1)
    report = load_checkpoint(point_mae_15, {"base_model": pretrain, "epoch": 300})

    head = {key for key in official_shapes.point_mae_finetuned(15) if key.startswith("cls_head_finetune.")}
    decoder = {key[len("module.") :] for key in official_shapes.point_mae_decoder("module.")}
    assert report.layout == "point_mae_pretrain"
    assert len(report.loaded) == 156
    assert set(report.missing) == {"cls_token", "cls_pos"} | head
    assert len(decoder) == 53 and set(report.unexpected) == decoder
    assert "unexpected (not used): mask_token, decoder_pos_embed.* (4), MAE_decoder.* (46)" in report.summary()
    state = point_mae_15.state_dict()
    assert all(torch.equal(state[key], pretrain[f"module.MAE_encoder.{key}"]) for key in report.loaded)


def test_point_bert_pretrain_layout_keeps_query_encoder_only(point_bert_40, make_state_dict, official_shapes):
    shapes = official_shapes.point_bert_pretrain()
    assert sum(key.startswith("transformer_q.") for key in shapes) == 167
    pretrain = make_state_dict(shapes, seed=1)
    report = load_checkpoint(point_bert_40, {"base_model": pretrain})

    assert report.layout == "point_bert_pretrain"
    assert len(report.loaded) == 160
    assert set(report.missing) == {
        key for key in official_shapes.point_bert_finetuned(40) if key.startswith("cls_head_")
    }
    assert sorted(report.unexpected) == ["lm_head.bias", "lm_head.weight", "mask_token"]
    dropped = {"queue", "queue_ptr", "dvae.codebook", "transformer_k.cls_token", "transformer_q.cls_head.0.weight"}
    assert dropped <= set(report.ignored)
    state = point_bert_40.state_dict()
    # The query encoder is loaded, not the momentum copy (made different by the random fill).
    assert all(torch.equal(state[key], pretrain[f"transformer_q.{key}"]) for key in report.loaded)
    assert not torch.equal(state["cls_token"], pretrain["transformer_k.cls_token"])


@pytest.mark.parametrize(
    "prefix, layout", [("ACT_encoder.", "act_pretrain"), ("GPT_Transformer.", "pointgpt_pretrain")]
)
def test_related_pretrain_prefixes_are_stripped_and_loaded_non_strictly(prefix, layout):
    source = _tiny_mae()
    backbone = {k: v for k, v in source.state_dict().items() if not k.startswith(("cls_", "cls_head"))}
    checkpoint = {"base_model": {f"{prefix}{k}": v for k, v in backbone.items()} | {"decoder.w": torch.zeros(2)}}
    model = _tiny_mae()
    report = load_checkpoint(model, checkpoint)
    assert report.layout == layout
    assert set(report.loaded) == set(backbone)
    assert report.unexpected == ["decoder.w"]
    assert "cls_token" in report.missing


def test_filter_fn_strips_module_prefix_and_passes_plain_state_dicts_through():
    plain = {"norm.weight": torch.ones(2)}
    assert checkpoint_filter_fn(plain).layout == "state_dict"
    wrapped = checkpoint_filter_fn({"model": {"module.norm.weight": torch.ones(2)}})
    assert (wrapped.layout, list(wrapped.state_dict)) == ("finetuned", ["norm.weight"])


# --------------------------------------------------------------------------------------------
# round trips through files
# --------------------------------------------------------------------------------------------


def test_exported_state_dict_reproduces_logits_in_eval_mode(tmp_path):
    torch.manual_seed(0)
    trained = _tiny_mae().train()
    points = torch.randn(4, 64, 3)
    trained(points)  # moves the BatchNorm running statistics away from their init
    trained.eval()
    path = tmp_path / "finetuned.pth"
    # Official containers also pickle numpy metrics, which weights_only=True refuses.
    torch.save({"base_model": trained.state_dict(), "epoch": 7, "metrics": {"acc": np.float64(91.5)}}, path)

    restored = create_backbone("point_mae", num_classes=5, checkpoint=path, **TINY).eval()
    assert restored.checkpoint_report.layout == "finetuned"
    with torch.no_grad():
        assert torch.equal(restored(points), trained(points))


def test_plain_state_dict_file_loads_strictly(tmp_path):
    source = create_backbone("point_bert", num_classes=3, **TINY)
    path = tmp_path / "plain.pt"
    torch.save(source.state_dict(), path)
    model = create_backbone("point_bert", num_classes=3, **TINY)
    report = load_checkpoint(model, path)
    assert (report.layout, report.missing, report.unexpected) == ("state_dict", [], [])
    assert str(path) in report.summary()


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_missing_file_is_reported_with_its_path(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match="not found.*nope.pth"):
        load_checkpoint(_tiny_mae(), path)


def test_garbage_file_is_a_checkpoint_error_naming_the_path(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.pth"):
        load_checkpoint(_tiny_mae(), path)


def test_truncated_file_is_a_checkpoint_error_naming_the_path(tmp_path):
    full = tmp_path / "full.pth"
    torch.save({"base_model": _tiny_mae().state_dict()}, full)
    data = full.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.pth.*truncated, corrupt"):
        load_checkpoint(_tiny_mae(), truncated)


def _damage_tensor_bytes(path, entry_suffix="data/0"):
    """Zero 16 bytes inside the stored data of one tensor of a zip-format checkpoint."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = next(item for item in archive.infolist() if item.filename.endswith(entry_suffix))
    content = bytearray(path.read_bytes())
    name_length = int.from_bytes(content[info.header_offset + 26 : info.header_offset + 28], "little")
    extra_length = int.from_bytes(content[info.header_offset + 28 : info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length + 8
    content[start : start + 16] = bytes(16)
    path.write_bytes(bytes(content))


def test_damaged_tensor_bytes_are_caught_by_the_crc_instead_of_loading_wrong_numbers(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"base_model": _tiny_mae().state_dict()}, path)
    _damage_tensor_bytes(path)
    with pytest.raises(CheckpointError, match=r"model.pth: its entry '.*data/0' fails the CRC-32 check; the file is"):
        load_checkpoint(_tiny_mae(), path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:100] + bytes(200) + data[300:],  # zeroed zip headers
        lambda data: data[: len(data) - 30],  # truncated end of the central directory
        lambda data: bytes(len(data)),  # all zeros
        lambda data: b"PK\x03\x04" + bytes(range(256)) * 4,  # a zip signature, then garbage
    ],
    ids=["zeroed-headers", "truncated-end", "all-zeros", "garbage-after-signature"],
)
def test_damaged_checkpoint_files_are_one_checkpoint_error_naming_the_file(tmp_path, damage):
    path = tmp_path / "model.pth"
    torch.save({"base_model": _tiny_mae().state_dict()}, path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*model.pth"):
        load_checkpoint(_tiny_mae(), path)


def test_file_without_a_dict_is_rejected(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError, match="holds a Tensor, expected a dict"):
        load_checkpoint(_tiny_mae(), path)


def test_shape_mismatch_names_key_and_both_shapes_and_leaves_model_untouched():
    source = _tiny_mae(num_classes=40)
    model = _tiny_mae(num_classes=15)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(
        CheckpointError, match=r"cls_head_finetune\.8\.weight: checkpoint \(40, 256\) vs model \(15, 256\)"
    ):
        load_checkpoint(model, {"base_model": source.state_dict()})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_checkpoint_without_backbone_keys_is_rejected():
    unrelated = {"base_model": {"features.0.weight": torch.zeros(3, 3), "classifier.bias": torch.zeros(3)}}
    with pytest.raises(CheckpointError, match="nothing of the PointMAE backbone.*features.0.weight"):
        load_checkpoint(_tiny_mae(), unrelated)


def test_head_only_checkpoint_counts_as_no_backbone():
    head_only = {k: v for k, v in _tiny_mae().state_dict().items() if k.startswith("cls_head_finetune.")}
    with pytest.raises(CheckpointError, match="nothing of the PointMAE backbone"):
        load_checkpoint(_tiny_mae(), head_only)


def test_strict_layout_with_missing_keys_fails_and_non_strict_loads():
    partial = {k: v for k, v in _tiny_mae().state_dict().items() if k != "norm.weight"}
    with pytest.raises(CheckpointError, match="1 missing \\[norm.weight\\].*strict=False"):
        load_checkpoint(_tiny_mae(), partial)
    report = load_checkpoint(_tiny_mae(), partial, strict=False)
    assert report.missing == ["norm.weight"]
