"""Loaders read each official layout, written here in miniature, and reject bad input clearly."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import datasets
from backbones.errors import ToolkitError, UnknownNameError
from backbones.tokenizer import farthest_point_sample
from datasets import (
    MODELNET40_CLASSES,
    SCANOBJECTNN_CLASSES,
    DatasetError,
    ModelNet40Dataset,
    ModelNetFewShotDataset,
    ScanObjectNNDataset,
    build_dataset,
    make_fewshot_folds,
    pc_normalize,
)
from datasets import modelnet40 as modelnet40_module

SCAN_FILES = {
    "hardest": "main_split/{split}_objectdataset_augmentedrot_scale75.h5",
    "objbg": "main_split/{split}_objectdataset.h5",
    "objonly": "main_split_nobg/{split}_objectdataset.h5",
}


# --------------------------------------------------------------------------------------------
# writers of the official layouts in miniature
# --------------------------------------------------------------------------------------------


def write_h5(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)


def scan_arrays(samples: int, seed: int, points: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(samples, points, 3)).astype(np.float32)
    labels = (np.arange(samples) % 15).astype(np.int8)
    return data, labels


def write_scanobjectnn(root: Path, samples: int = 20) -> dict[str, dict[str, np.ndarray]]:
    """All three variants with different contents; returns {variant/split: data}."""
    written = {}
    for v, (variant, pattern) in enumerate(SCAN_FILES.items()):
        for s, (split, prefix) in enumerate((("train", "training"), ("test", "test"))):
            data, labels = scan_arrays(samples + s, seed=10 * v + s)
            write_h5(
                root / pattern.format(split=prefix), data=data, label=labels, mask=np.ones(data.shape[:2], np.int32)
            )
            written[f"{variant}/{split}"] = data
    return written


def write_modelnet_text(
    root: Path, classes: list[str], per_class: dict[str, int], points: int = 40, seed: int = 0
) -> dict[str, list[np.ndarray]]:
    """modelnet40_normal_resampled text layout; returns {split: clouds in id order}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(classes) + "\n")
    clouds: dict[str, list[np.ndarray]] = {}
    number = 1
    for split, count in per_class.items():
        ids, clouds[split] = [], []
        for name in classes:
            for _ in range(count):
                shape_id = f"{name}_{number:04d}"
                number += 1
                cloud = rng.normal(size=(points, 6)).astype(np.float32)
                (root / name).mkdir(exist_ok=True)
                np.savetxt(root / name / f"{shape_id}.txt", cloud, delimiter=",", fmt="%.6f")
                ids.append(shape_id)
                clouds[split].append(cloud)
        (root / f"modelnet40_{split}.txt").write_text("\n".join(ids) + "\n")
    return clouds


def write_dat(path: Path, clouds: list[np.ndarray], labels: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump([clouds, [np.array([label], np.int32) for label in labels]], handle)


def write_modelnet_h5(root: Path, samples: int = 12, points: int = 32) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    written = {}
    for split in ("train", "test"):
        entries, all_data, all_labels = [], [], []
        for part in range(2):
            name = f"ply_data_{split}{part}.h5"
            data = rng.normal(size=(samples, points, 3)).astype(np.float32)
            normal = rng.normal(size=(samples, points, 3)).astype(np.float32)
            labels = rng.integers(0, 40, size=(samples, 1)).astype(np.uint8)
            write_h5(root / name, data=data, label=labels, normal=normal)
            entries.append(f"data/modelnet40_ply_hdf5_2048/{name}")  # the official list's paths
            all_data.append(np.concatenate([data, normal], -1))
            all_labels.append(labels[:, 0])
        (root / f"{split}_files.txt").write_text("\n".join(entries) + "\n")
        written[split] = (np.concatenate(all_data), np.concatenate(all_labels))
    (root / "shape_names.txt").write_text("\n".join(MODELNET40_CLASSES) + "\n")
    return written


# --------------------------------------------------------------------------------------------
# ScanObjectNN
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["hardest", "objbg", "objonly"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_scanobjectnn_reads_each_variant_file(tmp_path, variant, split):
    written = write_scanobjectnn(tmp_path)
    dataset = build_dataset("scanobjectnn", tmp_path, split, variant=variant, shuffle_points=False)
    expected = written[f"{variant}/{split}"]
    assert len(dataset) == len(expected)
    assert dataset.num_classes == 15 and dataset.class_names == list(SCANOBJECTNN_CLASSES)
    assert dataset.npoints_available == 64
    points, label = dataset[3]
    assert points.dtype == torch.float32 and points.shape == (64, 3)
    assert isinstance(label, int) and label == 3
    np.testing.assert_array_equal(points.numpy(), expected[3])


def test_scanobjectnn_train_items_are_point_permutations_test_items_are_stable(tmp_path):
    written = write_scanobjectnn(tmp_path)
    train = ScanObjectNNDataset(tmp_path, "train", "objbg")
    test = ScanObjectNNDataset(tmp_path, "test", "objbg")
    torch.manual_seed(0)
    shuffled, _ = train[0]
    assert not torch.equal(shuffled, torch.from_numpy(written["objbg/train"][0]))
    np.testing.assert_array_equal(np.sort(shuffled.numpy(), axis=0), np.sort(written["objbg/train"][0], axis=0))
    assert torch.equal(test[0][0], test[0][0])
    np.testing.assert_array_equal(test[0][0].numpy(), written["objbg/test"][0])


def test_scanobjectnn_accepts_parent_folder_and_variant_folder(tmp_path):
    written = write_scanobjectnn(tmp_path / "ScanObjectNN")
    from_parent = ScanObjectNNDataset(tmp_path, "test", "objonly", shuffle_points=False)
    np.testing.assert_array_equal(from_parent[0][0].numpy(), written["objonly/test"][0])
    from_variant_folder = ScanObjectNNDataset(tmp_path / "ScanObjectNN" / "main_split_nobg", "test", "objonly")
    assert len(from_variant_folder) == len(written["objonly/test"])


def test_scanobjectnn_variant_folder_of_another_variant_is_refused(tmp_path):
    write_scanobjectnn(tmp_path)
    with pytest.raises(DatasetError, match="main_split/test_objectdataset.h5"):
        ScanObjectNNDataset(tmp_path / "main_split_nobg", "test", "objbg")


def test_scanobjectnn_npoints_takes_the_first_points(tmp_path):
    written = write_scanobjectnn(tmp_path)
    dataset = ScanObjectNNDataset(tmp_path, "test", "hardest", npoints=16)
    np.testing.assert_array_equal(dataset[1][0].numpy(), written["hardest/test"][1][:16])


def test_missing_scanobjectnn_root_names_path_layout_and_source(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as error:
        build_dataset("scanobjectnn", missing, "train", variant="hardest")
    message = str(error.value)
    assert str(missing) in message and "does not exist" in message
    assert "training_objectdataset_augmentedrot_scale75.h5" in message and "main_split_nobg/" in message
    assert "hkust-vgd.github.io/scanobjectnn" in message


def test_missing_scanobjectnn_file_names_it(tmp_path):
    write_scanobjectnn(tmp_path)
    (tmp_path / "main_split_nobg" / "test_objectdataset.h5").unlink()
    with pytest.raises(DatasetError, match=r"no main_split_nobg/test_objectdataset.h5 under"):
        ScanObjectNNDataset(tmp_path, "test", "objonly")


def test_wrong_h5_key_is_reported_with_the_keys_present(tmp_path):
    data, labels = scan_arrays(5, 0)
    write_h5(tmp_path / "main_split" / "test_objectdataset.h5", points=data, label=labels)
    with pytest.raises(DatasetError, match=r"no dataset 'data'.*holds \['label', 'points'\]"):
        ScanObjectNNDataset(tmp_path, "test", "objbg")


def test_wrong_point_shape_is_reported(tmp_path):
    data, labels = scan_arrays(5, 0)
    write_h5(tmp_path / "main_split" / "test_objectdataset.h5", data=data[..., :2], label=labels)
    with pytest.raises(DatasetError, match=r"shape \(5, 64, 2\), expected \(samples, points, 3\)"):
        ScanObjectNNDataset(tmp_path, "test", "objbg")


def test_label_count_mismatch_is_reported(tmp_path):
    data, labels = scan_arrays(5, 0)
    write_h5(tmp_path / "main_split" / "test_objectdataset.h5", data=data, label=labels[:4])
    with pytest.raises(DatasetError, match=r"labels have shape \(4,\), expected \(5,\)"):
        ScanObjectNNDataset(tmp_path, "test", "objbg")


def test_nan_coordinates_are_reported_with_the_sample(tmp_path):
    data, labels = scan_arrays(5, 0)
    data[2, 7, 1] = np.nan
    data[4, 0, 0] = np.inf
    write_h5(tmp_path / "main_split" / "test_objectdataset.h5", data=data, label=labels)
    with pytest.raises(DatasetError, match=r"2 sample\(s\) hold NaN or Inf coordinates \(first: sample 2\)"):
        ScanObjectNNDataset(tmp_path, "test", "objbg")


def test_labels_out_of_range_are_reported(tmp_path):
    data, labels = scan_arrays(5, 0)
    labels[3] = 15
    write_h5(tmp_path / "main_split" / "test_objectdataset.h5", data=data, label=labels)
    with pytest.raises(DatasetError, match=r"label 15 of sample 3 is outside 0..14"):
        ScanObjectNNDataset(tmp_path, "test", "objbg")


def test_more_points_than_stored_is_reported(tmp_path):
    write_scanobjectnn(tmp_path)
    with pytest.raises(DatasetError, match=r"npoints=2048 was asked for but the samples hold only 64 points"):
        ScanObjectNNDataset(tmp_path, "test", "objbg", npoints=2048)


def test_not_an_h5_file_is_reported(tmp_path):
    path = tmp_path / "main_split" / "test_objectdataset.h5"
    path.parent.mkdir()
    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(DatasetError, match="not a readable h5 file"):
        ScanObjectNNDataset(tmp_path, "test", "objbg")


# --------------------------------------------------------------------------------------------
# ModelNet40
# --------------------------------------------------------------------------------------------


def test_pc_normalize_centres_and_scales_into_the_unit_sphere():
    cloud = np.random.default_rng(0).normal(3.0, 5.0, size=(100, 3))
    normalised = pc_normalize(cloud)
    np.testing.assert_allclose(normalised.mean(0), 0, atol=1e-9)
    assert np.isclose(np.linalg.norm(normalised, axis=1).max(), 1.0)
    np.testing.assert_allclose(pc_normalize(np.stack([cloud, cloud + 1]))[1], normalised, atol=1e-9)


def test_text_layout_builds_the_official_dat_cache_once(tmp_path, monkeypatch):
    clouds = write_modelnet_text(tmp_path, ["cup", "night_stand", "vase"], {"train": 3, "test": 2})
    calls = []
    original = modelnet40_module.build_dat_content
    monkeypatch.setattr(modelnet40_module, "build_dat_content", lambda *a: calls.append(a) or original(*a))
    first = build_dataset("modelnet40", tmp_path, "train", source="txt")
    cache = tmp_path / "modelnet40_train_8192pts_fps.dat"
    stamp = cache.stat().st_mtime_ns
    second = build_dataset("modelnet40", tmp_path, "train", source="txt")
    assert len(calls) == 1 and cache.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    assert first.class_names == ["cup", "night_stand", "vase"] and first.num_classes == 3
    np.testing.assert_array_equal(first.labels, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(first.points, second.points)
    # The cache holds the official structure: FPS-ordered (P, 6) float32 clouds, (1,) int32 labels.
    with open(cache, "rb") as handle:
        points, labels = pickle.load(handle)
    assert len(points) == 9 and points[0].dtype == np.float32 and points[0].shape == (40, 6)
    assert labels[4].dtype == np.int32 and labels[4].shape == (1,) and labels[4][0] == 1
    raw = torch.from_numpy(clouds["train"][4])
    order = farthest_point_sample(raw[None, :, :3].contiguous(), 40)[0]
    np.testing.assert_allclose(points[4], raw[order].numpy(), atol=1e-6)


def test_modelnet_items_are_normalised_fps_prefixes_with_optional_normals(tmp_path):
    clouds = write_modelnet_text(tmp_path, ["a", "b"], {"train": 2, "test": 2})
    dataset = ModelNet40Dataset(tmp_path, "test", npoints=10, use_normals=True, shuffle_points=False)
    points, label = dataset[3]
    assert points.shape == (10, 6) and points.dtype == torch.float32 and label == 1
    raw = clouds["test"][3]
    order = farthest_point_sample(torch.from_numpy(raw)[None, :, :3].contiguous(), 10)[0].numpy()
    np.testing.assert_allclose(points[:, :3].numpy(), pc_normalize(raw[:, :3])[order], atol=1e-5)
    np.testing.assert_allclose(points[:, 3:].numpy(), raw[order, 3:], atol=1e-6)
    xyz_only = ModelNet40Dataset(tmp_path, "test", npoints=10, shuffle_points=False)
    assert xyz_only[3][0].shape == (10, 3) and xyz_only.npoints_available == 40


def test_dat_files_alone_use_the_official_class_names(tmp_path):
    rng = np.random.default_rng(1)
    clouds = [rng.normal(size=(50, 6)).astype(np.float32) for _ in range(4)]
    write_dat(tmp_path / "modelnet40_test_8192pts_fps.dat", clouds, [0, 39, 7, 7])
    dataset = build_dataset("modelnet40", tmp_path, "test", source="dat", npoints=20)
    assert dataset.class_names == list(MODELNET40_CLASSES) and dataset.num_classes == 40
    assert [dataset[i][1] for i in range(4)] == [0, 39, 7, 7]
    np.testing.assert_allclose(dataset[1][0].numpy(), pc_normalize(clouds[1][:, :3])[:20], atol=1e-5)


def test_auto_source_prefers_the_dat_cache_and_finds_nested_folders(tmp_path):
    folder = tmp_path / "ModelNet" / "modelnet40_normal_resampled"
    write_modelnet_text(folder, ["a", "b"], {"train": 1, "test": 1})
    write_dat(
        folder / "modelnet40_test_8192pts_fps.dat", [np.ones((8, 6), np.float32) * [1, 2, 3, 0, 0, 1]] * 2, [1, 0]
    )
    dataset = ModelNet40Dataset(tmp_path, "test")
    assert dataset.source == "dat" and dataset.npoints_available == 8 and dataset.class_names == ["a", "b"]
    assert [dataset[i][1] for i in range(2)] == [1, 0]


def test_h5_layout_resolves_listed_paths_by_file_name(tmp_path):
    written = write_modelnet_h5(tmp_path / "modelnet40_ply_hdf5_2048")
    dataset = build_dataset("modelnet40", tmp_path, "train", source="auto", use_normals=True, shuffle_points=False)
    data, labels = written["train"]
    assert dataset.source == "h5" and len(dataset) == 24 and dataset.npoints_available == 32
    points, label = dataset[13]
    assert points.shape == (32, 6) and label == labels[13]
    np.testing.assert_allclose(points[:, :3].numpy(), pc_normalize(data[13, :, :3]), atol=1e-5)
    np.testing.assert_allclose(points[:, 3:].numpy(), data[13, :, 3:], atol=1e-6)
    assert dataset.class_names == list(MODELNET40_CLASSES)


def test_text_layout_errors_name_the_file(tmp_path):
    write_modelnet_text(tmp_path, ["a", "b"], {"train": 1, "test": 1})
    (tmp_path / "b" / "b_0004.txt").unlink()
    with pytest.raises(DatasetError, match=r"missing file .*b_0004.txt\nexpected layout"):
        ModelNet40Dataset(tmp_path, "test", source="txt")
    (tmp_path / "b" / "b_0004.txt").write_text("1,2,3\n4,5,6\n")
    with pytest.raises(DatasetError, match=r"b_0004.txt: holds rows of shape \(2, 3\)"):
        ModelNet40Dataset(tmp_path, "test", source="txt")
    (tmp_path / "modelnet40_test.txt").write_text("c_0001\n")
    with pytest.raises(DatasetError, match=r"names class 'c', which is not in"):
        ModelNet40Dataset(tmp_path, "test", source="txt")


def test_interrupted_cache_write_leaves_no_file(tmp_path, monkeypatch):
    write_modelnet_text(tmp_path, ["a"], {"train": 2, "test": 1})

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pickle, "dump", fail)
    with pytest.raises(KeyboardInterrupt):
        datasets.build_dat_cache(tmp_path, "train")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a",
        "modelnet40_shape_names.txt",
        "modelnet40_test.txt",
        "modelnet40_train.txt",
    ]


def test_truncated_dat_is_reported(tmp_path):
    write_dat(tmp_path / "modelnet40_train_8192pts_fps.dat", [np.zeros((8, 6), np.float32)] * 3, [0, 1, 2])
    path = tmp_path / "modelnet40_train_8192pts_fps.dat"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DatasetError, match=r"cannot unpickle .*truncated or corrupt"):
        ModelNet40Dataset(tmp_path, "train")


def test_dat_with_wrong_structure_or_values_is_reported(tmp_path):
    path = tmp_path / "modelnet40_train_8192pts_fps.dat"
    with open(path, "wb") as handle:
        pickle.dump({"points": []}, handle)
    with pytest.raises(DatasetError, match=r"expected a pickled \[list of \(8192, 6\) arrays"):
        ModelNet40Dataset(tmp_path, "train")
    write_dat(path, [np.zeros((8, 3), np.float32)], [0])
    with pytest.raises(DatasetError, match=r"per-point shapes \[\(3,\)\], expected \(points, 6\)"):
        ModelNet40Dataset(tmp_path, "train", use_normals=True)
    write_dat(path, [np.full((8, 6), np.nan, np.float32)], [0])
    with pytest.raises(DatasetError, match="NaN or Inf"):
        ModelNet40Dataset(tmp_path, "train")
    write_dat(path, [np.ones((8, 6), np.float32)], [40])
    with pytest.raises(DatasetError, match=r"labels go up to 40 .* official list has 40 classes"):
        ModelNet40Dataset(tmp_path, "train")


def test_missing_modelnet_root_names_layouts_and_source(tmp_path):
    with pytest.raises(DatasetError) as error:
        build_dataset("modelnet40", tmp_path, "train")
    message = str(error.value)
    assert "no modelnet40_train_8192pts_fps.dat or modelnet40_shape_names.txt" in message
    assert "modelnet40_ply_hdf5_2048/" in message and "Point-BERT" in message


def test_h5_normals_asked_for_but_absent_are_reported(tmp_path):
    write_h5(tmp_path / "ply_data_test0.h5", data=np.zeros((2, 8, 3), np.float32), label=np.zeros((2, 1), np.uint8))
    (tmp_path / "test_files.txt").write_text("ply_data_test0.h5\n")
    with pytest.raises(DatasetError, match="use_normals=True but the file has no 'normal' dataset"):
        ModelNet40Dataset(tmp_path, "test", use_normals=True)


# --------------------------------------------------------------------------------------------
# few-shot folds
# --------------------------------------------------------------------------------------------


@pytest.fixture()
def fewshot_source(tmp_path):
    source = tmp_path / "modelnet"
    write_modelnet_text(source, ["a", "b", "c", "d"], {"train": 4, "test": 3}, points=24)
    return source


def test_fewshot_folds_round_trip(tmp_path, fewshot_source):
    out = tmp_path / "ModelNetFewshot"
    written = make_fewshot_folds(fewshot_source, out, ways=[3], shots=[2], folds=2, seed=5, eval_samples=3)
    assert sorted(p.relative_to(out).as_posix() for p in written) == ["3way2shot/0.pkl", "3way2shot/1.pkl"]
    with open(out / "3way2shot" / "1.pkl", "rb") as handle:
        fold = pickle.load(handle)
    assert len(fold["train"]) == 6 and len(fold["test"]) == 9
    cloud, label, original = fold["train"][0]
    assert cloud.shape == (24, 6) and cloud.dtype == np.float32 and 0 <= label < 3 and 0 <= original < 4
    train = build_dataset("modelnet40_fewshot", out, "train", way=3, shot=2, fold=1, shuffle_points=False)
    test = build_dataset("modelnet40_fewshot", out, "test", way=3, shot=2, fold=1, npoints=16)
    assert len(train) == 6 and len(test) == 9 and train.num_classes == 3
    assert np.bincount(train.labels).tolist() == [2, 2, 2] and np.bincount(test.labels).tolist() == [3, 3, 3]
    assert test[0][0].shape == (16, 3)
    np.testing.assert_allclose(train[0][0].numpy(), pc_normalize(cloud[:, :3]), atol=1e-5)
    names = {label: "abcd"[original] for _, label, original in fold["train"]}
    assert train.class_names == [names[i] for i in range(3)]
    # Train and test samples are disjoint; folds differ; the same seed gives the same folds.
    train_keys = {c.tobytes() for c, _, _ in fold["train"]}
    assert not train_keys & {c.tobytes() for c, _, _ in fold["test"]}
    again = make_fewshot_folds(fewshot_source, tmp_path / "again", ways=[3], shots=[2], folds=2, seed=5, eval_samples=3)
    assert again[1].read_bytes() == written[1].read_bytes()
    assert written[0].read_bytes() != written[1].read_bytes()


def test_fewshot_reads_the_underscore_folder_name(tmp_path, fewshot_source):
    make_fewshot_folds(fewshot_source, tmp_path / "fs", ways=[2], shots=[1], folds=1, eval_samples=2)
    os.rename(tmp_path / "fs" / "2way1shot", tmp_path / "fs" / "2way_1shot")
    assert len(ModelNetFewShotDataset(tmp_path / "fs", "test", way=2, shot=1, fold=0)) == 4


def test_fewshot_errors(tmp_path, fewshot_source):
    with pytest.raises(DatasetError, match=r"(?s)5way10shot/0.pkl.*5way_10shot/0.pkl.*expected layout"):
        build_dataset("modelnet40_fewshot", tmp_path, "train", way=5, shot=10, fold=0)
    with pytest.raises(DatasetError, match=r"5-way folds need 5 classes but the source has 4"):
        make_fewshot_folds(fewshot_source, tmp_path / "x", ways=[5], shots=[1], folds=1)
    with pytest.raises(DatasetError, match=r"has 4 train samples, a 2-way 5-shot fold needs 5"):
        make_fewshot_folds(fewshot_source, tmp_path / "x", ways=[2], shots=[5], folds=1)
    path = make_fewshot_folds(fewshot_source, tmp_path / "fs", ways=[2], shots=[1], folds=1, eval_samples=2)[0]
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        ModelNetFewShotDataset(tmp_path / "fs", "train", way=2, shot=1, fold=0)
    with open(path, "wb") as handle:
        pickle.dump({"train": [(np.zeros((8, 6), np.float32), 2, 0)], "test": []}, handle)
    with pytest.raises(DatasetError, match=r"label 2 of sample 0 is outside 0..1"):
        ModelNetFewShotDataset(tmp_path / "fs", "train", way=2, shot=1, fold=0)
    with pytest.raises(DatasetError, match=r"'test' must be a non-empty list"):
        ModelNetFewShotDataset(tmp_path / "fs", "test", way=2, shot=1, fold=0)


# --------------------------------------------------------------------------------------------
# build_dataset
# --------------------------------------------------------------------------------------------


def test_unknown_dataset_name_lists_the_valid_ones(tmp_path):
    with pytest.raises(
        UnknownNameError,
        match=r"unknown dataset 'shapenet' \(did you mean 'shapenet55'\?\); "
        "choose one of scanobjectnn, modelnet40, modelnet40_fewshot, shapenet55, shapenetpart",
    ):
        build_dataset("shapenet", tmp_path, "train")


def test_unknown_option_lists_the_valid_ones(tmp_path):
    with pytest.raises(
        ToolkitError,
        match=r"unknown option\(s\) num_points for dataset 'modelnet40'; valid options: npoints, use_normals, source",
    ):
        build_dataset("modelnet40", tmp_path, "train", num_points=1024)


def test_unknown_split_variant_and_source_are_reported(tmp_path):
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        build_dataset("scanobjectnn", tmp_path, "val")
    with pytest.raises(
        DatasetError, match="unknown ScanObjectNN variant 'pb_t50_rs'; choose one of hardest, objbg, objonly"
    ):
        build_dataset("scanobjectnn", tmp_path, "train", variant="pb_t50_rs")
    with pytest.raises(DatasetError, match="unknown ModelNet40 source 'ply'"):
        build_dataset("modelnet40", tmp_path, "train", source="ply")


# --------------------------------------------------------------------------------------------
# damaged files (issue 11): any failure to parse a file is one DatasetError naming it
# --------------------------------------------------------------------------------------------


def zero_bytes_at(path: Path, marker: bytes) -> None:
    """Zero the 4 bytes of an h5 metadata signature, as a bad copy or a bad disk sector does."""
    content = bytearray(path.read_bytes())
    start = content.index(marker)
    content[start : start + len(marker)] = bytes(len(marker))
    path.write_bytes(bytes(content))


H5_DAMAGES = {
    "symbol table node": lambda path: zero_bytes_at(path, b"SNOD"),
    "b-tree": lambda path: zero_bytes_at(path, b"TREE"),
    "local heap": lambda path: zero_bytes_at(path, b"HEAP"),
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:1500]),
}


@pytest.mark.parametrize("damage", list(H5_DAMAGES))
def test_damaged_scanobjectnn_h5_metadata_is_one_error_naming_the_file(tmp_path, damage):
    write_scanobjectnn(tmp_path)
    path = tmp_path / SCAN_FILES["objbg"].format(split="test")
    H5_DAMAGES[damage](path)
    with pytest.raises(DatasetError, match=rf"{path.name}: not a readable h5 file .*truncated or corrupt"):
        ScanObjectNNDataset(tmp_path, "test", "objbg")


def test_damaged_modelnet_h5_and_its_list_file_are_one_error_naming_the_file(tmp_path):
    write_modelnet_h5(tmp_path)
    zero_bytes_at(tmp_path / "ply_data_test1.h5", b"SNOD")
    with pytest.raises(DatasetError, match=r"ply_data_test1.h5: not a readable h5 file"):
        ModelNet40Dataset(tmp_path, "test", source="h5")
    (tmp_path / "test_files.txt").write_bytes(b"\xff\xfe\x00\x81garbage\x00")
    with pytest.raises(DatasetError, match=r"test_files.txt: not a readable text file \(UnicodeDecodeError"):
        ModelNet40Dataset(tmp_path, "test", source="h5")


def test_binary_text_layout_files_are_one_error_naming_the_file(tmp_path):
    write_modelnet_text(tmp_path, ["a", "b"], {"train": 1, "test": 1})
    (tmp_path / "b" / "b_0004.txt").write_bytes(b"\x00\x9f\x92\x96" * 8)
    with pytest.raises(DatasetError, match=r"b_0004.txt: not comma-separated numbers"):
        ModelNet40Dataset(tmp_path, "test", source="txt")
    (tmp_path / "modelnet40_shape_names.txt").write_bytes(b"\xc3\x28\xa0\xa1")
    with pytest.raises(DatasetError, match=r"modelnet40_shape_names.txt: not a readable text file"):
        ModelNet40Dataset(tmp_path, "test", source="txt")


def _frame_length(value: int):
    """A protocol-4 pickle whose 8-byte frame length is damaged (an overflow or a huge allocation)."""

    def damage(path: Path) -> None:
        content = bytearray(path.read_bytes())
        content[3:11] = value.to_bytes(8, "little")
        path.write_bytes(bytes(content))

    return damage


PICKLE_DAMAGES = {
    "frame length overflows": _frame_length(2**64 - 1),
    "frame length too big for memory": _frame_length(2**62),
    "zeroed middle": lambda path: path.write_bytes(path.read_bytes()[:40] + bytes(64) + path.read_bytes()[104:]),
    "garbage": lambda path: path.write_bytes(b"\x80\x04garbage that is not a pickle"),
}


@pytest.mark.parametrize("damage", list(PICKLE_DAMAGES))
def test_damaged_dat_and_fewshot_pickles_are_one_error_naming_the_file(tmp_path, fewshot_source, damage):
    path = tmp_path / "dat" / "modelnet40_train_8192pts_fps.dat"
    path.parent.mkdir()
    with open(path, "wb") as handle:
        pickle.dump([[np.zeros((8, 6), np.float32)] * 3, [np.array([i], np.int32) for i in range(3)]], handle, 4)
    PICKLE_DAMAGES[damage](path)
    with pytest.raises(DatasetError, match=r"modelnet40_train_8192pts_fps.dat: cannot unpickle"):
        ModelNet40Dataset(tmp_path / "dat", "train")
    fold = make_fewshot_folds(fewshot_source, tmp_path / "fs", ways=[2], shots=[1], folds=1, eval_samples=2)[0]
    PICKLE_DAMAGES[damage](fold)
    with pytest.raises(DatasetError, match=r"0.pkl: cannot unpickle"):
        ModelNetFewShotDataset(tmp_path / "fs", "train", way=2, shot=1, fold=0)
