"""Point clouds from single files (npy, txt/xyz, ASCII and binary PLY, h5), folders and globs."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from backbones.errors import DataError
from datasets.cloud_files import expand_cloud_paths, read_cloud_file


def _cloud(num_points: int = 50, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(num_points, 3)).astype(np.float32)


def _write_ply(path, points, encoding: str, extra_before: bool = False) -> None:
    """A PLY file with float x, y, z, a uchar colour and (optionally) an element before the vertices."""
    header = ["ply", f"format {encoding} 1.0", "comment written by the test"]
    if extra_before:
        header += ["element camera 1", "property float focal"]
    header += [f"element vertex {len(points)}", "property float x", "property float y", "property float z"]
    header += ["property uchar red", "element face 0", "property list uchar int vertex_indices", "end_header"]
    with open(path, "wb") as stream:
        stream.write(("\n".join(header) + "\n").encode("ascii"))
        if encoding == "ascii":
            if extra_before:
                stream.write(b"1.5\n")
            for x, y, z in points:
                stream.write(f"{x} {y} {z} 200\n".encode("ascii"))
            return
        order = "<" if encoding == "binary_little_endian" else ">"
        if extra_before:
            stream.write(np.array([1.5], dtype=order + "f4").tobytes())
        table = np.zeros(
            len(points), dtype=[("x", order + "f4"), ("y", order + "f4"), ("z", order + "f4"), ("r", "u1")]
        )
        table["x"], table["y"], table["z"], table["r"] = points[:, 0], points[:, 1], points[:, 2], 200
        stream.write(table.tobytes())


@pytest.mark.parametrize("encoding", ["ascii", "binary_little_endian", "binary_big_endian"])
@pytest.mark.parametrize("extra_before", [False, True])
def test_ply_vertices_are_read_in_every_encoding(tmp_path, encoding, extra_before):
    points = _cloud()
    path = tmp_path / "cloud.ply"
    _write_ply(path, points, encoding, extra_before)
    [(name, read)] = read_cloud_file(path)
    assert name == str(path)
    np.testing.assert_allclose(read, points, rtol=1e-6)


@pytest.mark.parametrize(("suffix", "delimiter"), [(".txt", ","), (".xyz", " "), (".pts", "\t")])
def test_text_clouds_with_extra_columns_and_comments(tmp_path, suffix, delimiter):
    points = _cloud()
    normals = np.ones_like(points)
    path = tmp_path / f"cloud{suffix}"
    rows = [delimiter.join(f"{v:.6f}" for v in row) for row in np.hstack([points, normals])]
    path.write_text("# x y z nx ny nz\n" + "\n".join(rows) + "\n")
    [(_, read)] = read_cloud_file(path)
    np.testing.assert_allclose(read, points, atol=1e-6)


def test_npy_and_h5_with_several_clouds_are_named_by_index(tmp_path):
    stack = np.stack([_cloud(seed=i) for i in range(3)])
    np.save(tmp_path / "three.npy", stack)
    with h5py.File(tmp_path / "three.h5", "w") as handle:
        handle["data"] = stack
        handle["label"] = np.zeros(3)
    for path in (tmp_path / "three.npy", tmp_path / "three.h5"):
        clouds = read_cloud_file(path)
        assert [name for name, _ in clouds] == [f"{path}#{i}" for i in range(3)]
        np.testing.assert_array_equal(clouds[2][1], stack[2])


def test_folders_and_globs_expand_to_sorted_cloud_files(tmp_path):
    for name in ("b.npy", "a.npy", "notes.md"):
        (tmp_path / name).write_bytes(b"")
    assert expand_cloud_paths([tmp_path]) == [tmp_path / "a.npy", tmp_path / "b.npy"]
    assert expand_cloud_paths([str(tmp_path / "*.npy"), tmp_path / "a.npy"]) == [tmp_path / "a.npy", tmp_path / "b.npy"]
    with pytest.raises(DataError, match="no such file, folder or matching pattern"):
        expand_cloud_paths([tmp_path / "missing*.ply"])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("garbage.ply", b"\x00\x01garbage", "not a PLY file"),
        (
            "short.ply",
            b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\n"
            b"property float y\nproperty float z\nend_header\n\x00\x00",
            "truncated",
        ),
        ("novertex.ply", b"ply\nformat ascii 1.0\nelement face 0\nend_header\n", "no 'vertex' element"),
        ("two.txt", b"1,2\n3,4\n", r"shape \(2, 2\)"),
        ("words.xyz", b"a b c\n", "cannot read it as a .xyz point cloud"),
        ("nan.txt", b"1,2,3\nnan,0,0\n", "NaN or Inf"),
        ("bad.npy", b"not numpy", "cannot read it as a .npy point cloud"),
        ("bad.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 64, "cannot read it as a .h5 point cloud"),
        ("empty.txt", b"# nothing\n", "holds no points"),
        ("cloud.obj", b"v 1 2 3\n", "unknown point-cloud file type '.obj'"),
    ],
)
def test_unreadable_files_are_one_clear_error_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as error:
        read_cloud_file(path)
    assert name in str(error.value)
