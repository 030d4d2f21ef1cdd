"""ShapeNet-55 in the official layout: items as the official loader serves them, layout errors, synthetic copies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from backbones.errors import DataError
from datasets import ShapeNet55Dataset, build_dataset, get_dataset_spec, make_synthetic
from datasets.shapenet55 import pc_norm

REPO = Path(__file__).resolve().parents[1]


def test_items_are_random_subsets_normalised_as_the_official_pc_norm(tmp_path, write_shapenet55):
    root = write_shapenet55(tmp_path / "ShapeNet55-34", 6, 3, 300)
    train = build_dataset("shapenet55", root, "train", npoints=64)
    assert len(train) == 6 and train.num_classes == 3 and train.class_names == ["02691156", "03001627", "04379243"]
    stored = np.load(train.path(4))
    torch.manual_seed(0)
    cloud, label = train[4]
    assert cloud.shape == (64, 3) and cloud.dtype == torch.float32 and label == 1
    assert cloud.mean(0).abs().max() < 1e-5 and float(cloud.norm(dim=1).max()) == pytest.approx(1.0)
    # the points are a subset of the stored cloud, normalised after the draw (as the official loader)
    torch.manual_seed(0)
    order = torch.randperm(len(stored))[:64].numpy()
    np.testing.assert_allclose(cloud.numpy(), pc_norm(stored[order]), atol=1e-6)
    assert len(np.unique(order)) == 64  # without replacement
    torch.manual_seed(1)
    assert not torch.equal(train[4][0], cloud)  # a new draw at every read in training
    test = build_dataset("shapenet55", root, "test", npoints=64)
    assert torch.equal(test[2][0], test[2][0])  # a fixed draw per item for the test split


def test_the_root_may_be_the_parent_or_the_list_folder(tmp_path, write_shapenet55):
    write_shapenet55(tmp_path / "data" / "ShapeNet55-34", 6, 3, 300)
    for root in (tmp_path / "data", tmp_path / "data" / "ShapeNet55-34" / "ShapeNet-55"):
        assert len(ShapeNet55Dataset(root, "test", npoints=10)) == 3


def test_the_spec_marks_an_unlabeled_pre_training_set():
    spec = get_dataset_spec("shapenet55")
    assert not spec.labelled and spec.synthetic_format == "shapenet55" and spec.config_options == []
    assert spec.default_root == "data/ShapeNet55-34" and spec.num_classes({}) == 55


def test_a_missing_root_names_the_layout_and_the_source(tmp_path):
    with pytest.raises(DataError, match=r"(?s)root .*nope does not exist.*ShapeNet-55/train\.txt.*Point-BERT DATASET"):
        build_dataset("shapenet55", tmp_path / "nope", "train")


def test_layout_errors_name_the_file(tmp_path, write_shapenet55):
    root = write_shapenet55(tmp_path / "s", 6, 3, 300)
    (root / "ShapeNet-55" / "test.txt").write_text("02691156-good.npy\nbad line\n")
    with pytest.raises(DataError, match=r"test\.txt: line 2 'bad line' is not a file name"):
        ShapeNet55Dataset(root, "test")
    (root / "ShapeNet-55" / "test.txt").write_text("02691156-gone.npy\n")
    with pytest.raises(DataError, match=r"1 of the 1 files listed in .*test\.txt are missing .*first: 02691156-gone"):
        ShapeNet55Dataset(root, "test")
    (root / "ShapeNet-55" / "test.txt").unlink()
    with pytest.raises(DataError, match=r"missing file .*test\.txt"):
        ShapeNet55Dataset(root, "test")
    with pytest.raises(DataError, match="unknown split 'val'"):
        ShapeNet55Dataset(root, "val")
    with pytest.raises(DataError, match="npoints=301 was asked for but the cloud holds only 300"):
        ShapeNet55Dataset(root, "train", npoints=301)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x93NUMPY garbage", "not a readable .npy file"),
        (None, r"shape \(5,\)"),
        ("nan", "NaN or Inf"),
    ],
)
def test_damaged_cloud_files_are_one_error_naming_the_file(tmp_path, content, message, write_shapenet55):
    root = write_shapenet55(tmp_path / "s", 6, 3, 300)
    dataset = ShapeNet55Dataset(root, "train", npoints=16)
    path = dataset.path(3)
    if content is None:
        np.save(path, np.zeros(5, np.float32))
    elif content == "nan":
        np.save(path, np.full((300, 3), np.nan, np.float32))
    else:
        path.write_bytes(content)
    with pytest.raises(DataError, match=rf"{path.name}: .*{message}"):
        dataset[3]


def test_synthetic_copies_are_deterministic_and_have_many_instances_per_shape(tmp_path):
    first = make_synthetic("shapenet55", tmp_path / "a", num_train=94, num_test=47, seed=3, num_points=512)
    again = make_synthetic("shapenet55", tmp_path / "b", num_train=94, num_test=47, seed=3, num_points=512)
    train = build_dataset("shapenet55", first, "train", npoints=512)
    assert len(train) == 94 and train.num_classes == 47 and np.bincount(train.labels).tolist() == [2] * 47
    assert (first / "ShapeNet-55" / "train.txt").read_text() == (again / "ShapeNet-55" / "train.txt").read_text()
    name = train.names[5]
    np.testing.assert_array_equal(np.load(first / "shapenet_pc" / name), np.load(again / "shapenet_pc" / name))
    assert np.load(first / "shapenet_pc" / name).shape == (512, 3)
    info = json.loads((first / "synthetic_info.json").read_text())
    assert info["format"] == "shapenet55" and len(info["class_to_procedural_shape"]) == 47


def test_make_synthetic_tool_writes_the_layout(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_synthetic.py"), "--format", "shapenet55", "--out", "sn"]
        + ["--num-train", "47", "--num-test", "47", "--num-points", "256"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote synthetic shapenet55 (47 train + 47 test samples)" in done.stdout
    assert len(ShapeNet55Dataset(tmp_path / "sn", "test", npoints=256)) == 47
