"""Point-MAE's pre-training network: official keys and shapes, masks, loss, checkpoints both ways."""

from __future__ import annotations

import pytest
import torch

import backbones
from backbones import create_backbone, create_pretrainer, list_pretrainers, pretrainer_defaults
from backbones.chamfer import chamfer_l1, chamfer_l2
from backbones.errors import ConfigError, InputShapeError, ModelConfigError, UnknownNameError

TINY = dict(
    trans_dim=32,
    encoder_dims=32,
    depth=2,
    num_heads=2,
    decoder_depth=1,
    decoder_num_heads=2,
    num_group=16,
    group_size=8,
)


def tiny(**overrides):
    return create_pretrainer("point_mae", **{**TINY, **overrides})


def points(batch: int = 3, count: int = 128, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, count, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def full_size():
    torch.manual_seed(0)
    return create_pretrainer("point_mae")


@pytest.fixture(scope="module")
def official_file(tmp_path_factory, official_shapes, make_state_dict):
    """An official pretrain.pth: 209 ``module.``-prefixed tensors under base_model, plus numpy metrics."""
    path = tmp_path_factory.mktemp("official") / "pretrain.pth"
    torch.save({"base_model": make_state_dict(official_shapes.point_mae_pretrain(), seed=1), "epoch": 300}, path)
    return path


def test_registry_lists_the_pretrainers_with_the_official_defaults():
    assert list_pretrainers() == ["point_mae", "point_mae_tiny"]
    defaults = pretrainer_defaults("point_mae")
    assert defaults == {
        "trans_dim": 384,
        "depth": 12,
        "num_heads": 6,
        "num_group": 64,
        "group_size": 32,
        "encoder_dims": 384,
        "drop_path_rate": 0.1,
        "mlp_ratio": 4.0,
        "decoder_depth": 4,
        "decoder_num_heads": 6,
        "mask_ratio": 0.6,
        "mask_type": "rand",
        "loss": "cdl2",
    }


def test_full_size_state_dict_has_the_official_keys_and_shapes(full_size, official_shapes):
    ours = {key: tuple(value.shape) for key, value in full_size.state_dict().items()}
    official = {key.removeprefix("module."): shape for key, shape in official_shapes.point_mae_pretrain().items()}
    assert ours == official and len(ours) == 209
    encoder = {key: shape for key, shape in ours.items() if key.startswith("MAE_encoder.")}
    assert {key.removeprefix("MAE_encoder."): shape for key, shape in encoder.items()} == (
        official_shapes.point_mae_encoder()
    )
    assert sum(p.numel() for p in full_size.parameters()) == official_shapes.parameter_count(official) == 29_006_432


def test_the_official_pretrain_file_loads_strictly_to_continue_pre_training(official_file, make_state_dict):
    model = create_pretrainer("point_mae", checkpoint=official_file)
    report = model.checkpoint_report
    assert report.layout == "point_mae_pretrainer" and len(report.loaded) == 209
    assert report.missing == [] and report.unexpected == []
    stored = torch.load(official_file)["base_model"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, stored[f"module.{key}"]), key


def test_our_file_loads_into_the_classifier_exactly_as_the_official_file_does(full_size, official_file, tmp_path):
    ours = tmp_path / "ours.pth"
    torch.save({"base_model": full_size.state_dict()}, ours)
    from_official = create_backbone("point_mae", num_classes=15, checkpoint=official_file).checkpoint_report
    model = create_backbone("point_mae", num_classes=15, checkpoint=ours)
    from_ours = model.checkpoint_report
    assert from_ours.layout == from_official.layout == "point_mae_pretrain"
    assert from_ours.loaded == from_official.loaded and len(from_ours.loaded) == 156
    assert from_ours.missing == from_official.missing and len(from_ours.missing) == 18
    assert from_ours.unexpected == from_official.unexpected and len(from_ours.unexpected) == 53
    assert from_ours.summary().splitlines()[1:] == from_official.summary().splitlines()[1:]
    encoder = full_size.MAE_encoder.state_dict()
    classifier = model.state_dict()
    assert all(torch.equal(value, classifier[key]) for key, value in encoder.items())


def test_save_and_load_round_trip_gives_the_same_network_and_loss(tmp_path):
    torch.manual_seed(1)
    model = tiny().eval()
    path = tmp_path / "tiny.pth"
    torch.save({"base_model": model.state_dict()}, path)
    again = create_pretrainer("point_mae", checkpoint=path, **TINY).eval()
    assert again.checkpoint_report.missing == [] and again.checkpoint_report.unexpected == []
    cloud = points()
    mask = model.random_mask(model.group_divider(cloud)[1], torch.Generator().manual_seed(0))
    assert torch.equal(model(cloud, mask=mask), again(cloud, mask=mask))


def test_a_file_of_other_sizes_is_refused_naming_key_and_shapes(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save({"base_model": tiny().state_dict()}, path)
    with pytest.raises(backbones.CheckpointError, match=r"MAE_encoder\..* checkpoint \(.*\) vs model"):
        create_pretrainer("point_mae", checkpoint=path, **{**TINY, "trans_dim": 64, "encoder_dims": 64})


def test_an_explicit_mask_gives_a_deterministic_loss():
    torch.manual_seed(2)
    model = tiny().eval()
    cloud = points(seed=3)
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[:, [1, 4, 5, 9, 10, 11, 12, 15, 0]] = True  # int(0.6 * 16) = 9 per cloud
    first, second = model(cloud, mask=mask), model(cloud, mask=mask)
    assert torch.equal(first, second) and first.dtype == torch.float32
    other = mask.roll(1, dims=1)
    assert not torch.equal(model(cloud, mask=other), first)
    # a mask with another count is still allowed when every cloud has the same count
    few = torch.zeros(3, 16, dtype=torch.bool)
    few[:, :2] = True
    assert torch.isfinite(model(cloud, mask=few))


def test_the_loss_is_chamfer_of_the_rebuilt_patches_against_the_masked_neighbourhoods():
    torch.manual_seed(4)
    model = tiny().eval()
    cloud = points(seed=5)
    generator = torch.Generator().manual_seed(1)
    out = model.reconstruct(cloud, generator=generator)
    mask, neighborhood = out["mask"], out["neighborhood"]
    masked = int(0.6 * 16)
    assert mask.shape == (3, 16) and (mask.sum(1) == masked).all()
    assert out["rebuilt"].shape == out["target"].shape == (3 * masked, 8, 3)
    assert torch.equal(out["target"], neighborhood[mask].reshape(3 * masked, 8, 3))
    loss = model(cloud, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loss, chamfer_l2(out["rebuilt"], out["target"]))
    l1 = tiny(loss="cdl1")
    l1.load_state_dict(model.state_dict())
    l1.eval()
    assert torch.equal(l1(cloud, mask=mask), chamfer_l1(out["rebuilt"], out["target"]))


def test_random_masks_follow_the_seed_and_the_type():
    model = tiny()
    center = points(4, 16, seed=6)
    first = model.random_mask(center, torch.Generator().manual_seed(0))
    assert torch.equal(first, model.random_mask(center, torch.Generator().manual_seed(0)))
    assert not torch.equal(first, model.random_mask(center, torch.Generator().manual_seed(1)))
    assert (first.sum(1) == 9).all()
    block = tiny(mask_type="block")
    mask = block.random_mask(center, torch.Generator().manual_seed(0))
    assert (mask.sum(1) == 9).all()
    for cloud, cloud_mask in zip(center, mask, strict=True):
        # some centre (the drawn one) has every masked centre at most as far as every visible one
        distances = torch.cdist(cloud, cloud)
        assert any(distances[start][cloud_mask].max() <= distances[start][~cloud_mask].min() for start in range(16))


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.zeros(3, 15, dtype=torch.bool), r"shape \(3, 16\)"),
        (torch.zeros(3, 16), "bool tensor"),
        (torch.zeros(3, 16, dtype=torch.bool), "at least 1"),
        (torch.ones(3, 16, dtype=torch.bool), "at most 15"),
        (torch.arange(16).expand(3, 16) < torch.tensor([[3], [4], [4]]), "the same number of patches"),
    ],
)
def test_unusable_masks_are_input_shape_errors(mask, message):
    model = tiny()
    with pytest.raises(InputShapeError, match=message):
        model(points(), mask=mask)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mask_ratio": 0.01}, "masks 0 of num_group 16"),
        ({"mask_ratio": 1.0}, r"mask_ratio must be a number in \(0, 1\)"),
        ({"mask_type": "grid"}, "mask_type must be one of rand, block"),
        ({"loss": "emd"}, "loss must be one of cdl2, cdl1"),
        ({"decoder_num_heads": 3}, "not divisible by decoder_num_heads 3"),
        ({"encoder_dims": 64}, "encoder_dims == trans_dim"),
        ({"decoder_depth": 0}, "decoder_depth must be a positive integer"),
    ],
)
def test_impossible_sizes_are_model_config_errors(overrides, message):
    with pytest.raises(ModelConfigError, match=message):
        tiny(**overrides)


def test_unknown_names_and_shipped_weights_are_refused_clearly():
    with pytest.raises(UnknownNameError, match="unknown pre-training network 'point_bert'"):
        create_pretrainer("point_bert")
    with pytest.raises(UnknownNameError, match="has no option 'mask_rate'.*did you mean 'mask_ratio'"):
        create_pretrainer("point_mae", mask_rate=0.5)
    with pytest.raises(ConfigError, match="'point_mae' has no pre-trained weights shipped"):
        create_pretrainer("point_mae", pretrained=True)
    with pytest.raises(ConfigError, match="not both"):
        create_backbone("point_mae_tiny", num_classes=3, pretrained=True, checkpoint="x.pth")


def test_a_few_steps_of_pre_training_lower_the_loss():
    torch.manual_seed(7)
    model = tiny(drop_path_rate=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    cloud = points(4, 128, seed=8)
    mask = model.random_mask(model.group_divider(cloud)[1], torch.Generator().manual_seed(0))
    model.train()
    losses = []
    for _ in range(25):
        loss = model(cloud, mask=mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_pooled_features_see_the_whole_cloud():
    model = tiny().eval()
    features = model.forward_features(points())
    assert features.shape == (3, 64) and torch.isfinite(features).all()
