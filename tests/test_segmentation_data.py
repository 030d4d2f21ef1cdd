"""ShapeNetPart: the loader on hand-written files in the official layout, its errors, the synthetic
writer, and the mIoU functions on hand-made cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backbones.errors import DataError
from datasets import build_dataset, make_synthetic
from datasets.shapenetpart import SHAPENETPART_PARTS, SHAPENETPART_SYNSETS, part_label_category
from pcclora.engine.seg_metrics import part_seg_scores, restricted_predictions, shape_iou

CATEGORIES = list(SHAPENETPART_PARTS)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these tiny models run many small ops, which two threads on a shared
    2-core machine run far slower (no figure depends on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write_layout(root: Path, shapes: dict[str, list[tuple[str, str, np.ndarray]]]) -> Path:
    """``shapes``: split name → [(category, token, rows (P, 7))]."""
    root.mkdir(parents=True)
    (root / "synsetoffset2category.txt").write_text(
        "".join(f"{name}\t{SHAPENETPART_SYNSETS[name]}\n" for name in CATEGORIES)
    )
    (root / "train_test_split").mkdir()
    for split in ("train", "val", "test"):
        entries = []
        for category, token, rows in shapes.get(split, []):
            synset = SHAPENETPART_SYNSETS[category]
            (root / synset).mkdir(exist_ok=True)
            np.savetxt(root / synset / f"{token}.txt", rows, fmt="%.6f")
            entries.append(f"shape_data/{synset}/{token}")
        (root / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
    for synset in SHAPENETPART_SYNSETS.values():
        (root / synset).mkdir(exist_ok=True)
    return root


def _rows(count: int, labels: list[int], seed: int = 0, offset: float = 5.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(count, 3)) * 2 + offset
    normals = rng.normal(size=(count, 3))
    return np.column_stack([xyz, normals, np.resize(labels, count)])


@pytest.fixture
def layout(tmp_path):
    return _write_layout(
        tmp_path / "shapenet",
        {
            "train": [("Airplane", "a1", _rows(40, [0, 1, 2, 3])), ("Mug", "m1", _rows(30, [36, 37], 1))],
            "val": [("Table", "t1", _rows(25, [47, 48], 2))],
            "test": [("Knife", "k1", _rows(50, [22, 23], 3))],
        },
    )


def test_loader_reads_train_plus_val_normalises_and_resamples(layout):
    train = build_dataset("shapenetpart", layout, "train", npoints=64)
    assert len(train) == 3 and sorted(train.labels.tolist()) == [0, 11, 15]
    points, category, parts = train[0]
    assert points.shape == (64, 3) and parts.shape == (64,) and points.dtype == torch.float32
    stored = train.clouds[0][:, :3]
    assert np.allclose(stored.mean(0), 0, atol=1e-5) and np.isclose(np.linalg.norm(stored, axis=1).max(), 1, atol=1e-5)
    assert set(parts.tolist()) <= set(SHAPENETPART_PARTS[CATEGORIES[category]])
    test = build_dataset("shapenetpart", layout, "test", npoints=100, use_normals=True)
    first, again = test[0], test[0]
    assert first[0].shape == (100, 6) and torch.equal(first[0], again[0])  # test resampling is repeatable
    assert test.num_classes == 50 and len(test.class_names) == 50 and test.categories == CATEGORIES


def test_loader_errors_name_the_problem_and_the_layout(tmp_path, layout):
    with pytest.raises(DataError, match="does not exist(.|\n)*synsetoffset2category.txt"):
        build_dataset("shapenetpart", tmp_path / "nowhere", "train")
    (layout / "train_test_split" / "shuffled_val_file_list.json").unlink()
    with pytest.raises(DataError, match="missing file .*shuffled_val_file_list.json(.|\n)*expected layout"):
        build_dataset("shapenetpart", layout, "train")
    (layout / SHAPENETPART_SYNSETS["Knife"] / "k1.txt").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(DataError, match="k1.txt: expected rows of 7 numbers"):
        build_dataset("shapenetpart", layout, "test")
    np.savetxt(layout / SHAPENETPART_SYNSETS["Knife"] / "k1.txt", _rows(10, [22, 30]), fmt="%.6f")
    with pytest.raises(DataError, match=r"part labels \[30\] are outside Knife"):
        build_dataset("shapenetpart", layout, "test")


def test_synthetic_writer_gives_every_category_its_official_parts(tmp_path):
    root = make_synthetic("shapenetpart", tmp_path / "syn", num_train=16, num_test=16, num_points=200, seed=1)
    test = build_dataset("shapenetpart", root, "test", npoints=128)
    train = build_dataset("shapenetpart", root, "train", npoints=128)
    assert len(train) == 16 and len(test) == 16
    owner = part_label_category()
    for index in range(len(test)):
        category = int(test.labels[index])
        used = set(test.parts[index].tolist())
        assert used == set(SHAPENETPART_PARTS[CATEGORIES[category]])  # every part present, none outside
        assert set(owner[list(used)].tolist()) == {category}


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------


def test_shape_iou_counts_a_part_absent_from_prediction_and_truth_as_one():
    target = torch.tensor([0, 0, 1, 1])
    assert shape_iou(torch.tensor([0, 0, 1, 1]), target, (0, 1, 2, 3)) == 1.0  # parts 2, 3 absent: IoU 1
    # part 0: 1/2, part 1: 2/3, parts 2 and 3 absent from both: 1 each
    assert shape_iou(torch.tensor([0, 1, 1, 1]), target, (0, 1, 2, 3)) == pytest.approx((0.5 + 2 / 3 + 1 + 1) / 4)
    # a part predicted but absent from the truth scores 0
    assert shape_iou(torch.tensor([0, 0, 1, 2]), target, (0, 1, 2)) == pytest.approx((1 + 0.5 + 0) / 3)


def test_restricted_predictions_choose_within_the_category():
    logits = torch.zeros(2, 3, 50)
    logits[:, :, 12] = 10.0  # a chair part wins everywhere
    logits[0, :, 1] = 5.0
    logits[1, :, 37] = 1.0
    predictions = restricted_predictions(logits, torch.tensor([0, 11]), {0: (0, 1, 2, 3), 11: (36, 37)})
    assert predictions.tolist() == [[1, 1, 1], [37, 37, 37]]


def test_instance_and_class_miou_differ_on_unbalanced_categories():
    scores = part_seg_scores(
        [1.0, 1.0, 1.0, 0.0], [0, 0, 0, 1], correct_points=30, total_points=40, category_names=CATEGORIES
    )
    assert scores.instance_miou == pytest.approx(75.0)
    assert scores.class_miou == pytest.approx(50.0)  # Airplane 100, Bag 0
    assert scores.per_category == {"Airplane": pytest.approx(100.0), "Bag": pytest.approx(0.0)}
    assert scores.accuracy == pytest.approx(75.0)
