"""The synthetic generator: official layouts, determinism, uniform sampling, learnable classes, CLI."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from datasets import SCANOBJECTNN_CLASSES, DatasetError, build_dataset
from datasets import transforms as T
from datasets.shapes import SHAPES, sample_shape
from datasets.synthetic import MODELNET40_SHAPES, SCANOBJECTNN_SHAPES, make_synthetic

REPO = Path(__file__).resolve().parents[1]


def read_h5(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as handle:
        return {key: np.asarray(handle[key]) for key in handle}


@pytest.fixture(scope="module")
def scan_root(tmp_path_factory) -> Path:
    return make_synthetic(
        "scanobjectnn", tmp_path_factory.mktemp("so"), num_train=45, num_test=30, seed=3, num_points=128
    )


def test_scanobjectnn_layout_reads_back_in_every_variant(scan_root):
    labels = None
    for variant in ("hardest", "objbg", "objonly"):
        train = build_dataset("scanobjectnn", scan_root, "train", variant=variant)
        test = build_dataset("scanobjectnn", scan_root, "test", variant=variant)
        assert (len(train), len(test)) == (45, 30) and train.npoints_available == 128
        assert train.class_names == list(SCANOBJECTNN_CLASSES)
        assert np.bincount(train.labels, minlength=15).tolist() == [3] * 15
        if labels is not None:  # the variants show the same objects under the same labels
            np.testing.assert_array_equal(train.labels, labels)
        labels = train.labels
    raw = read_h5(scan_root / "main_split" / "training_objectdataset_augmentedrot_scale75.h5")
    assert raw["data"].dtype == np.float32 and raw["data"].shape == (45, 128, 3)
    assert raw["label"].shape == (45,) and raw["mask"].shape == (45, 128)


def test_background_only_in_objbg_and_hardest(scan_root):
    objonly = read_h5(scan_root / "main_split_nobg" / "training_objectdataset.h5")
    objbg = read_h5(scan_root / "main_split" / "training_objectdataset.h5")
    assert (objonly["mask"] == 1).all()
    background = 1 - objbg["mask"].mean(1)
    assert background.min() >= 0.14 and background.max() <= 0.36


def test_objects_are_normalised_so_size_is_no_cue(scan_root):
    data = read_h5(scan_root / "main_split_nobg" / "test_objectdataset.h5")["data"]
    np.testing.assert_allclose(np.linalg.norm(data, axis=2).max(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(data.mean(1), 0.0, atol=1e-5)


def test_same_seed_same_files_other_seed_other_files(tmp_path, scan_root):
    again = make_synthetic("scanobjectnn", tmp_path / "a", num_train=45, num_test=30, seed=3, num_points=128)
    other = make_synthetic("scanobjectnn", tmp_path / "b", num_train=45, num_test=30, seed=4, num_points=128)
    name = "main_split/training_objectdataset_augmentedrot_scale75.h5"
    for key in ("data", "label", "mask"):
        np.testing.assert_array_equal(read_h5(again / name)[key], read_h5(scan_root / name)[key])
    assert not np.array_equal(read_h5(other / name)["data"], read_h5(scan_root / name)["data"])


def test_a_variant_written_alone_equals_the_same_variant_written_with_the_others(tmp_path, scan_root):
    alone = make_synthetic(
        "scanobjectnn", tmp_path, num_train=45, num_test=30, seed=3, num_points=128, variants=["objonly"]
    )
    name = "main_split_nobg/test_objectdataset.h5"
    np.testing.assert_array_equal(read_h5(alone / name)["data"], read_h5(scan_root / name)["data"])
    assert not (alone / "main_split").exists()


def test_modelnet40_layout_has_text_files_and_dat_cache(tmp_path):
    root = make_synthetic("modelnet40", tmp_path, num_train=10, num_test=5, seed=0, num_points=64, num_classes=5)
    names = (root / "modelnet40_shape_names.txt").read_text().split()
    assert names == list(MODELNET40_SHAPES[:5])
    first_id = (root / "modelnet40_train.txt").read_text().split()[0]
    rows = (root / first_id.rsplit("_", 1)[0] / f"{first_id}.txt").read_text().splitlines()
    assert len(rows) == 64 and len(rows[0].split(",")) == 6
    assert (root / "modelnet40_train_8192pts_fps.dat").is_file() and (
        root / "modelnet40_test_8192pts_fps.dat"
    ).is_file()
    dataset = build_dataset("modelnet40", root, "train", use_normals=True, npoints=32)
    assert dataset.source == "dat" and dataset.class_names == names and len(dataset) == 10
    points, label = dataset[0]
    assert points.shape == (32, 6) and 0 <= label < 5
    torch.testing.assert_close(points[:, 3:].norm(dim=1), torch.ones(32), atol=1e-4, rtol=0)
    text_only = build_dataset("modelnet40", root, "test", source="txt")
    assert len(text_only) == 5


def test_every_library_shape_samples_finite_points_with_unit_normals():
    rng = np.random.default_rng(0)
    for name in SHAPES:
        points, normals = sample_shape(name, 300, rng)
        assert points.shape == (300, 3) and np.isfinite(points).all(), name
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6, err_msg=name)
    assert len(MODELNET40_SHAPES) == len(SHAPES) == 47 and len(set(MODELNET40_SHAPES)) == 47
    assert set(SCANOBJECTNN_SHAPES) == set(SCANOBJECTNN_CLASSES) and set(SCANOBJECTNN_SHAPES.values()) <= set(SHAPES)


def test_surface_sampling_is_uniform_by_area():
    rng = np.random.default_rng(1)
    points, _ = sample_shape("cube", 60000, rng)  # 1 x h x 1 with h in [0.95, 1.05]
    on_top = np.isclose(points[:, 1], points[:, 1].max()).mean()
    assert abs(on_top - 1 / 6) < 0.015
    points, _ = sample_shape("cone", 60000, rng)  # apex up: the lower half of the side holds 3/4 of it
    side = points[points[:, 1] > points[:, 1].min() + 1e-9]
    lower = (side[:, 1] < (side[:, 1].min() + side[:, 1].max()) / 2).mean()
    assert abs(lower - 0.75) < 0.01


def test_an_interrupted_run_leaves_no_dataset_folder(tmp_path, monkeypatch):
    import datasets.synthetic as synthetic

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "build_dat_cache", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_synthetic("modelnet40", tmp_path / "data" / "mn", num_train=4, num_test=2, num_points=16, num_classes=2)
    assert list((tmp_path / "data").iterdir()) == []


def test_bad_arguments_are_reported(tmp_path):
    with pytest.raises(DatasetError, match="unknown synthetic format 'shapenet'"):
        make_synthetic("shapenet", tmp_path)
    with pytest.raises(DatasetError, match="num_train must be a positive integer, got 0"):
        make_synthetic("scanobjectnn", tmp_path, num_train=0)
    with pytest.raises(DatasetError, match=r"num_classes must be in 2..47, got 50"):
        make_synthetic("modelnet40", tmp_path, num_classes=50)


def load_cli():
    spec = importlib.util.spec_from_file_location("make_synthetic_cli", REPO / "tools" / "make_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_layouts_and_folds(tmp_path, capsys):
    cli = load_cli()
    assert (
        cli.main(
            [
                "--format",
                "modelnet40",
                "--out",
                str(tmp_path / "mn"),
                "--num-train",
                "6",
                "--num-test",
                "6",
                "--num-points",
                "32",
                "--num-classes",
                "3",
            ]
        )
        == 0
    )
    assert "wrote synthetic modelnet40 (6 train + 6 test samples)" in capsys.readouterr().out
    assert (
        cli.main(
            [
                "--format",
                "modelnet40_fewshot",
                "--source",
                str(tmp_path / "mn"),
                "--out",
                str(tmp_path / "fs"),
                "--ways",
                "2",
                "--shots",
                "1",
                "--folds",
                "2",
                "--eval-samples",
                "2",
            ]
        )
        == 0
    )
    assert "wrote 2 fold files" in capsys.readouterr().out
    fold = build_dataset("modelnet40_fewshot", tmp_path / "fs", "test", way=2, shot=1, fold=1)
    assert len(fold) == 4 and set(fold.class_names) <= set(MODELNET40_SHAPES[:3])


def test_cli_reports_errors_in_one_line_without_traceback(tmp_path):
    failed = subprocess.run(
        [
            sys.executable,
            str(REPO / "tools" / "make_synthetic.py"),
            "--format",
            "modelnet40_fewshot",
            "--source",
            str(tmp_path / "missing"),
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 2 and failed.stderr.startswith("error: the ModelNet40 root")
    assert "Traceback" not in failed.stderr


# --------------------------------------------------------------------------------------------
# learnability
# --------------------------------------------------------------------------------------------


class TinyPointNet(nn.Module):
    """Shared per-point MLP, max pool, MLP head: (B, N, 3) -> (B, classes)."""

    def __init__(self, num_classes: int, width: int = 64) -> None:
        super().__init__()
        self.point_mlp = nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2 * width))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(2 * width, width), nn.ReLU(), nn.Linear(width, num_classes))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.head(self.point_mlp(points).max(dim=1).values)


def train_tiny_pointnet(root: Path, variant: str, npoints: int, epochs: int, seed: int = 0) -> float:
    """Train :class:`TinyPointNet` on a synthetic ScanObjectNN variant; return test accuracy."""
    torch.manual_seed(seed)
    train = build_dataset("scanobjectnn", root, "train", variant=variant, npoints=npoints)
    test = build_dataset("scanobjectnn", root, "test", variant=variant, npoints=npoints)
    x_train, y_train = torch.from_numpy(train.points[:, :npoints]), torch.from_numpy(train.labels)
    model = TinyPointNet(train.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(epochs):
        order = torch.randperm(len(x_train))
        for start in range(0, len(order), 32):
            batch = order[start : start + 32]
            loss = nn.functional.cross_entropy(model(T.rotate_y(x_train[batch])), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        predictions = model(torch.from_numpy(test.points[:, :npoints])).argmax(1)
    return float((predictions == torch.from_numpy(test.labels)).float().mean())


def test_a_tiny_pointnet_learns_the_synthetic_classes_well_above_chance(tmp_path):
    root = make_synthetic(
        "scanobjectnn", tmp_path, num_train=300, num_test=150, seed=0, num_points=128, variants=["objonly"]
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: one thread is faster, and fair to a busy machine
    try:
        accuracy = train_tiny_pointnet(root, "objonly", npoints=128, epochs=8)
    finally:
        torch.set_num_threads(threads)
    assert accuracy > 3 / 15  # chance is 1/15 = 6.7 %
