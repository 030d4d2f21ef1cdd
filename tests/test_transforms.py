"""Batch transforms: distribution bounds, determinism by generator, device and dtype follow the input."""

from __future__ import annotations

import math

import pytest
import torch

from backbones.errors import InputShapeError
from backbones.tokenizer import farthest_point_sample, gather_points
from datasets import transforms as T

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cloud(batch: int = 4, points: int = 64, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, points, channels, generator=seeded(seed))


def test_scale_and_translate_stays_within_its_ranges():
    batch = 512
    points = torch.zeros(batch, 2, 3)
    points[:, 1] = 1.0  # origin -> translation, (1,1,1) - origin -> scale
    out = T.scale_and_translate(points, generator=seeded())
    shift, scale = out[:, 0], out[:, 1] - out[:, 0]
    assert shift.abs().max() <= 0.2 and shift.abs().max() > 0.18
    assert scale.min() >= 2 / 3 - 1e-6 and scale.max() <= 3 / 2 + 1e-6
    assert scale.min() < 0.7 and scale.max() > 1.45
    # per axis, per sample: the three axis scales differ
    assert (scale[:, 0] != scale[:, 1]).all()


def test_scale_and_translate_leaves_normals_alone_and_input_untouched():
    points = cloud(channels=6)
    before = points.clone()
    out = T.scale_and_translate(points, generator=seeded())
    assert torch.equal(points, before)
    assert torch.equal(out[..., 3:], points[..., 3:])
    assert not torch.allclose(out[..., :3], points[..., :3])


def test_rotate_y_keeps_height_and_distances_and_turns_normals():
    points = cloud(batch=256, channels=6)
    out = T.rotate_y(points, generator=seeded())
    torch.testing.assert_close(out[..., 1], points[..., 1])
    torch.testing.assert_close(out[..., :3].norm(dim=-1), points[..., :3].norm(dim=-1))
    torch.testing.assert_close(out[..., 3:].norm(dim=-1), points[..., 3:].norm(dim=-1))
    angle_xyz = torch.atan2(out[:, 0, 2], out[:, 0, 0]) - torch.atan2(points[:, 0, 2], points[:, 0, 0])
    angle_normal = torch.atan2(out[:, 0, 5], out[:, 0, 3]) - torch.atan2(points[:, 0, 5], points[:, 0, 3])
    torch.testing.assert_close(
        torch.remainder(angle_xyz - angle_normal + math.pi, 2 * math.pi), torch.full((256,), math.pi)
    )
    # angles spread over the whole circle
    turned = torch.remainder(angle_xyz, 2 * math.pi)
    assert turned.min() < 0.3 and turned.max() > 2 * math.pi - 0.3


def test_jitter_is_clipped():
    points = torch.zeros(8, 500, 3)
    out = T.jitter(points, sigma=0.05, clip=0.02, generator=seeded())
    assert out.abs().max() <= 0.02 and (out.abs() == 0.02).any()
    assert 0 < out.std() < 0.05


def test_random_point_dropout_replaces_points_by_the_first_one():
    points = cloud(batch=64, points=200)
    out = T.random_point_dropout(points, max_ratio=0.5, generator=seeded())
    same_as_first = (out == out[:, :1]).all(-1)[:, 1:]
    unchanged = (out == points).all(-1)[:, 1:]
    assert (same_as_first | unchanged).all()
    ratio = same_as_first.float().mean(1)
    assert ratio.max() <= 0.65 and ratio.min() < 0.1 and ratio.max() > 0.3
    assert torch.equal(out[:, 0], points[:, 0])


def test_fps_points_for_follows_the_official_runner():
    assert [T.fps_points_for(n) for n in (1024, 2048, 4096, 8192)] == [1200, 2400, 4800, 8192]
    assert T.fps_points_for(512) == 600 and T.fps_points_for(10000) == 10000


def test_fps_resample_draws_a_random_subset_of_the_fps_pool_per_sample():
    points = cloud(batch=3, points=300)
    out = T.fps_resample(points, npoints=32, fps_points=40, generator=seeded())
    assert out.shape == (3, 32, 3)
    pool = gather_points(points, farthest_point_sample(points, 40))
    positions = []
    for b in range(3):
        matches = (out[b, :, None, :] == pool[b, None, :, :]).all(-1)  # (32, 40)
        assert matches.sum(1).eq(1).all()  # every point comes from the pool exactly once
        assert matches.sum(0).le(1).all()  # no pool point twice
        positions.append(matches.float().argmax(1))
    assert not torch.equal(positions[0], positions[1])  # each sample has its own subset


def test_fps_resample_of_all_points_is_a_permutation_and_keeps_normals():
    points = cloud(batch=2, points=50, channels=6)
    out = T.fps_resample(points, npoints=50, generator=seeded())  # pool 59 capped at 50
    for b in range(2):
        torch.testing.assert_close(out[b][out[b][:, 0].argsort()], points[b][points[b][:, 0].argsort()])


def test_fps_resample_refuses_more_points_than_the_cloud_has():
    with pytest.raises(InputShapeError, match="cannot re-sample 64 points from clouds of 50 points"):
        T.fps_resample(cloud(points=50), npoints=64)


def test_fps_subsample_is_plain_fps():
    points = cloud()
    torch.testing.assert_close(T.fps_subsample(points, 16), gather_points(points, farthest_point_sample(points, 16)))


@pytest.mark.parametrize(
    "transform",
    [
        T.scale_and_translate,
        T.rotate_y,
        T.jitter,
        T.random_point_dropout,
        lambda p, generator: T.fps_resample(p, 32, generator=generator),
    ],
    ids=["scale_and_translate", "rotate_y", "jitter", "dropout", "fps_resample"],
)
def test_same_generator_seed_same_result_other_seed_other_result(transform):
    points = cloud(points=64)
    assert torch.equal(transform(points, generator=seeded(1)), transform(points, generator=seeded(1)))
    assert not torch.equal(transform(points, generator=seeded(1)), transform(points, generator=seeded(2)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_follows_input_device_and_dtype(device, dtype):
    points = cloud(points=64).to(device=device, dtype=dtype)
    generator = seeded()  # a CPU generator also drives a CUDA batch
    outputs = [
        T.scale_and_translate(points, generator=generator),
        T.rotate_y(points, generator=generator),
        T.jitter(points, generator=generator),
        T.random_point_dropout(points, generator=generator),
        T.fps_resample(points, 32, generator=generator),
        T.scale_and_translate(points),
    ]
    for out in outputs:
        assert out.device == points.device and out.dtype == dtype


def test_wrong_shape_is_refused():
    with pytest.raises(InputShapeError, match=r"shape \(B, N, 3 or more\), got \(64, 3\)"):
        T.rotate_y(torch.zeros(64, 3))
