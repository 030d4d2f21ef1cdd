"""Predictions on a user's own clouds: the same logits as evaluation, names from the checkpoint."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import pcclora
from backbones.errors import ConfigError, DataError
from datasets import build_dataset
from datasets.transforms import fps_subsample
from pcclora.engine import finetune
from pcclora.engine.model_source import load_model_for_inference

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, write_scanobjectnn, tiny_config):
    """A finished tiny CLoRA run (checkpoints + merged export) and its ScanObjectNN-layout data."""
    root = tmp_path_factory.mktemp("predict")
    scan = write_scanobjectnn(root / "ScanObjectNN")
    config = tiny_config("scanobjectnn_hardest", scan, extra=["training.max_epoch=0"])
    finetune(config, output=root / "run", export="")
    test = build_dataset("scanobjectnn", scan, "test", variant="hardest")
    return root, config, test


def _expected_probabilities(root: Path, clouds: np.ndarray, npoints: int) -> torch.Tensor:
    """What evaluation computes: FPS to npoints, the trained model, softmax."""
    loaded = load_model_for_inference(root / "run" / "checkpoints" / "best.pth")
    with torch.no_grad():
        return loaded.model(fps_subsample(torch.from_numpy(clouds), npoints)).softmax(-1)


def test_predictions_equal_the_evaluation_path_for_run_checkpoints_and_exports(trained):
    root, config, test = trained
    clouds = np.stack([test[i][0].numpy() for i in range(3)])
    np.save(root / "three.npy", clouds)
    expected = _expected_probabilities(root, clouds, config["dataset"]["npoints"])
    for checkpoint in (root / "run" / "checkpoints" / "best.pth", root / "run" / "model_merged.pth"):
        rows = pcclora.predict(checkpoint, root / "three.npy", top_k=3)
        assert [row["name"] for row in rows] == [f"{root / 'three.npy'}#{i}" for i in range(3)]
        for row, probabilities in zip(rows, expected, strict=True):
            top = probabilities.topk(3)
            assert [entry["index"] for entry in row["top"]] == top.indices.tolist()
            assert [entry["probability"] for entry in row["top"]] == pytest.approx(top.values.tolist(), abs=1e-5)
            assert row["top"][0]["class"] in test.class_names  # ScanObjectNN names from the checkpoint


def test_the_cli_reads_every_format_and_writes_csv_and_json(trained):
    root, _, test = trained
    folder = root / "clouds"
    folder.mkdir(exist_ok=True)
    cloud = test[0][0].numpy()
    np.savetxt(folder / "a.xyz", cloud)
    np.savetxt(folder / "b.txt", np.hstack([cloud, cloud]), delimiter=",")
    with h5py.File(folder / "c.h5", "w") as handle:
        handle["data"] = cloud[None]
    with open(folder / "d.ply", "wb") as stream:
        stream.write(f"ply\nformat binary_little_endian 1.0\nelement vertex {len(cloud)}\n".encode())
        stream.write(b"property float x\nproperty float y\nproperty float z\nend_header\n")
        stream.write(cloud.astype("<f4").tobytes())
    ckpt = str(root / "run" / "model_merged.pth")
    for output in (root / "p.csv", root / "p.json"):
        done = subprocess.run(
            [
                sys.executable,
                str(TOOLS / "predict.py"),
                "--ckpt",
                ckpt,
                str(folder),
                "--top-k",
                "2",
                "--output",
                str(output),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
    with open(root / "p.csv") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["name", "num_points", "class_1", "prob_1", "class_2", "prob_2"] and len(rows) == 5
    predictions = json.loads((root / "p.json").read_text())
    assert len({row["top"][0]["class"] for row in predictions}) == 1  # the same cloud in four formats
    assert all(row["num_points"] == len(cloud) for row in predictions)


def test_unreadable_or_too_small_clouds_and_bad_options_are_clear_errors(trained):
    root, _, _ = trained
    ckpt = root / "run" / "checkpoints" / "best.pth"
    np.save(root / "tiny.npy", np.zeros((3, 3), dtype=np.float32))
    with pytest.raises(DataError, match="tiny.npy: 3 points is too few"):
        pcclora.predict(ckpt, root / "tiny.npy")
    (root / "broken.ply").write_bytes(b"not a ply")
    with pytest.raises(DataError, match="broken.ply: not a PLY file"):
        pcclora.predict(ckpt, root / "broken.ply")
    with pytest.raises(DataError, match="no such file, folder or matching pattern"):
        pcclora.predict(ckpt, root / "missing*.npy")
    with pytest.raises(ConfigError, match="top_k must be >= 1"):
        pcclora.predict(ckpt, root / "tiny.npy", top_k=0)
    official = root / "official.pth"
    torch.save({"base_model": torch.load(root / "run" / "model_merged.pth")["base_model"]}, official)
    with pytest.raises(ConfigError, match="give the config it was trained with"):
        pcclora.predict(official, root / "tiny.npy")
