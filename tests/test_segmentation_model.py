"""The Point-MAE part-segmentation model: official key names and shapes, checkpoint layouts,
the 3-NN interpolation, forward semantics, adapters, merging and export.

The key → shape table below is written from the official ``segmentation/models/pt.py``
(``get_model``) and ``pointnet2_utils.PointNetFeaturePropagation``: the Point-MAE encoder
(mini-PointNet, pos_embed, 12 blocks, norm; no cls token), ``label_conv`` (Conv1d 16→64 without
bias, BatchNorm1d, LeakyReLU), ``propagation_0`` (in 1152 + 3, mlp [1536, 1024]), ``convs1``
3392→512, ``convs2`` 512→256, ``convs3`` 256→50, ``bns1`` / ``bns2``.
"""

from __future__ import annotations

import pytest
import torch

import backbones
import pcclora
from backbones import CheckpointError, InputShapeError, create_backbone, load_checkpoint
from backbones.errors import ConfigError
from backbones.point_mae_seg import feature_blocks
from backbones.propagation import three_nn_interpolate
from pcclora.engine.checkpoint import export_merged_state_dict

pytestmark = pytest.mark.filterwarnings("ignore:for .*num_batches_tracked.*meta:UserWarning")

TINY = dict(trans_dim=32, depth=2, num_heads=4, encoder_dims=32, num_group=8, group_size=8, drop_path_rate=0.0)
#: Parameters of the official segmentation model (BatchNorm statistics not counted) and of its head.
OFFICIAL_PARAMETERS = 27_063_730
OFFICIAL_HEAD_PARAMETERS = 5_238_706


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these tiny models run many small ops, which two threads on a shared
    2-core machine run far slower (no figure depends on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _seg_head_shapes(dim: int = 384, parts: int = 50, categories: int = 16) -> dict:
    shapes = {"label_conv.0.weight": (64, categories, 1)}
    shapes.update(_bn("label_conv.1", 64))
    shapes.update(_conv("propagation_0.mlp_convs.0", 3 * dim + 3, 4 * dim))
    shapes.update(_conv("propagation_0.mlp_convs.1", 4 * dim, 1024))
    shapes.update(_bn("propagation_0.mlp_bns.0", 4 * dim))
    shapes.update(_bn("propagation_0.mlp_bns.1", 1024))
    shapes.update(_conv("convs1", 1024 + 6 * dim + 64, 512))
    shapes.update(_conv("convs2", 512, 256))
    shapes.update(_conv("convs3", 256, parts))
    shapes.update(_bn("bns1", 512))
    shapes.update(_bn("bns2", 256))
    return shapes


def _conv(prefix: str, fan_in: int, fan_out: int) -> dict:
    return {f"{prefix}.weight": (fan_out, fan_in, 1), f"{prefix}.bias": (fan_out,)}


def _bn(prefix: str, width: int) -> dict:
    keys = ("weight", "bias", "running_mean", "running_var")
    return {**{f"{prefix}.{key}": (width,) for key in keys}, f"{prefix}.num_batches_tracked": ()}


def _official_seg_shapes(official_shapes) -> dict:
    return {**official_shapes.point_mae_encoder(), **_seg_head_shapes()}


def _meta_model():
    with torch.device("meta"):
        return create_backbone("point_mae_seg", num_classes=50, num_shape_classes=16)


def _tiny(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_backbone("point_mae_seg", num_classes=50, **{**TINY, **overrides})


def _points(batch: int = 3, num_points: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, num_points, 3, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# official layout
# --------------------------------------------------------------------------------------------


def test_full_size_state_dict_has_the_official_keys_and_shapes(official_shapes):
    model = _meta_model()
    official = _official_seg_shapes(official_shapes)
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert ours == official
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMETERS
    head = sum(p.numel() for name in model.head_module_names for p in model.get_submodule(name).parameters())
    assert head == OFFICIAL_HEAD_PARAMETERS
    assert official_shapes.parameter_count(official) == OFFICIAL_PARAMETERS
    assert model.feature_blocks == (3, 7, 11) == feature_blocks(12)


def test_full_size_pretrain_file_loads_with_a_sensible_report(official_shapes):
    model = _meta_model()
    state = {key: torch.empty(shape, device="meta") for key, shape in official_shapes.point_mae_pretrain().items()}
    report = load_checkpoint(model, {"base_model": state})
    encoder = set(official_shapes.point_mae_encoder())
    assert report.layout == "point_mae_pretrain"
    assert set(report.loaded) == encoder
    assert set(report.missing) == set(_seg_head_shapes())  # the head starts fresh
    assert set(report.unexpected) == {key[len("module.") :] for key in official_shapes.point_mae_decoder()}


def test_official_finetuned_segmentation_checkpoint_loads_strictly_with_its_values():
    source = _tiny(seed=1)
    for module in source.modules():  # non-trivial BN statistics
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.1, 0.1)
    checkpoint = {
        "epoch": 7,
        "train_acc": 0.9,
        "inctance_avg_iou": 0.85,
        "model_state_dict": {f"module.{key}": value for key, value in source.state_dict().items()},
        "optimizer_state_dict": {"state": {}, "param_groups": []},
    }
    target = _tiny(seed=2)
    report = load_checkpoint(target, checkpoint)
    assert report.layout == "finetuned" and not report.missing and not report.unexpected
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    broken = dict(checkpoint, model_state_dict={k: v for k, v in source.state_dict().items() if "convs3" not in k})
    with pytest.raises(CheckpointError, match="convs3"):
        load_checkpoint(_tiny(), broken)


# --------------------------------------------------------------------------------------------
# interpolation and forward
# --------------------------------------------------------------------------------------------


def _naive_interpolate(points, centers, features):
    batch, num_points, _ = points.shape
    out = torch.zeros(batch, num_points, features.shape[-1], dtype=features.dtype)
    for b in range(batch):
        for n in range(num_points):
            distances = [float(((points[b, n] - centers[b, s]) ** 2).sum()) for s in range(centers.shape[1])]
            nearest = sorted(range(len(distances)), key=lambda s: distances[s])[:3]
            weights = [1.0 / (distances[s] + 1e-8) for s in nearest]
            total = sum(weights)
            for s, weight in zip(nearest, weights, strict=True):
                out[b, n] += weight / total * features[b, s]
    return out


def test_three_nn_interpolation_matches_a_loop_reference():
    gen = torch.Generator().manual_seed(0)
    points, centers = torch.rand(2, 20, 3, generator=gen, dtype=torch.float64), torch.rand(2, 6, 3, generator=gen)
    centers = centers.double()
    features = torch.randn(2, 6, 5, generator=gen, dtype=torch.float64)
    assert torch.allclose(
        three_nn_interpolate(points, centers, features), _naive_interpolate(points, centers, features)
    )
    # a point on a centre takes (almost exactly) that centre's features; one centre: copied everywhere
    on_centre = three_nn_interpolate(centers[:, :1], centers, features)
    assert torch.allclose(on_centre[:, 0], features[:, 0], atol=1e-6)
    single = three_nn_interpolate(points, centers[:, :1], features[:, :1])
    assert torch.equal(single, features[:, :1].expand(2, 20, 5))


def test_forward_gives_per_point_logits_and_takes_labels_as_indices_or_one_hot():
    model = _tiny().eval()
    points = _points()
    labels = torch.tensor([0, 5, 15])
    with torch.no_grad():
        logits = model(points, labels)
        same = model(points, torch.nn.functional.one_hot(labels, 16).float())
        other = model(points, torch.tensor([1, 5, 15]))
    assert logits.shape == (3, 64, 50)
    assert torch.equal(logits, same)
    assert not torch.allclose(logits[0], other[0]) and torch.allclose(logits[1:], other[1:])
    with pytest.raises(InputShapeError, match="categories outside"):
        model(points, torch.tensor([0, 16, 1]))
    with pytest.raises(InputShapeError, match="shape_label must be"):
        model(points, torch.zeros(3, 7))
    assert feature_blocks(2) == (0, 0, 1) and feature_blocks(4) == (0, 2, 3)


def _official_forward(model, points, one_hot):
    """The official ``get_model.forward`` written out from its code (own loops, own order), on the
    model's tokenizer and layers: blocks 3/7/11 → norm → concat, max / mean repeated, label_conv,
    propagation of [xyz, interpolated], convs; log_softmax dropped (same argmax)."""
    batch, num_points, _ = points.shape
    neighborhood, center = model.group_divider(points)
    x, pos = model.encoder(neighborhood), model.pos_embed(center)
    kept = []
    for index, block in enumerate(model.blocks.blocks):
        x = block(x + pos)
        if index in (3, 7, 11):
            kept.append(model.norm(x).transpose(-1, -2))
    x = torch.cat(kept, dim=1)
    x_max = x.max(2)[0].unsqueeze(-1).repeat(1, 1, num_points)
    x_avg = x.mean(2).unsqueeze(-1).repeat(1, 1, num_points)
    label = model.label_conv(one_hot.view(batch, 16, 1)).repeat(1, 1, num_points)
    global_feature = torch.cat((x_max, x_avg, label), 1)
    distances = torch.cdist(points, center) ** 2
    dists, idx = distances.sort(dim=-1)
    weight = 1.0 / (dists[:, :, :3] + 1e-8)
    weight = weight / weight.sum(dim=2, keepdim=True)
    features = x.transpose(1, 2)
    gathered = torch.stack([features[b][idx[b, :, :3]] for b in range(batch)])  # (B, N, 3, C)
    interpolated = (gathered * weight.unsqueeze(-1)).sum(2).transpose(1, 2)
    f = torch.cat([points.transpose(1, 2), interpolated], dim=1)
    for conv, bn in zip(model.propagation_0.mlp_convs, model.propagation_0.mlp_bns, strict=True):
        f = torch.relu(bn(conv(f)))
    x = torch.cat((f, global_feature), 1)
    x = torch.relu(model.bns1(model.convs1(x)))
    x = torch.relu(model.bns2(model.convs2(x)))
    return model.convs3(x).permute(0, 2, 1)


def test_forward_equals_the_official_forward_written_out():
    model = _tiny(seed=4, depth=12).eval()
    for module in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    points, labels = _points(2, 96), torch.tensor([4, 12])
    with torch.no_grad():
        ours = model(points, labels)
        reference = _official_forward(model, points, torch.nn.functional.one_hot(labels, 16).float())
    assert model.feature_blocks == (3, 7, 11)
    assert torch.allclose(ours, reference, atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------------------------
# adapters, merging, export
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["clora", "lora", "clora_shared", "full", "linear", "vera"])
def test_linear_methods_apply_and_train_the_segmentation_head(method):
    model = pcclora.apply_peft(_tiny(), {"method": method})
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    for head in model.head_module_names:
        assert all(f"{head}.{name}" in trainable for name, _ in model.get_submodule(head).named_parameters()), head
    if method not in ("full", "linear"):
        assert any(not name.startswith(model.head_module_names) for name in trainable)  # the adapters
    out = model(_points(2), torch.tensor([1, 2]))
    out.sum().backward()


@pytest.mark.parametrize("method", ["idpt", "dapt", "ppt", "pointgst", "pointlora"])
def test_token_hook_methods_refuse_the_segmentation_model_clearly(method):
    with pytest.raises(ConfigError, match="add_token_hook"):
        pcclora.apply_peft(_tiny(), {"method": method})


def test_clora_adapted_model_merges_exactly_and_exports_a_plain_state_dict(randomize_adapters):
    model = pcclora.apply_peft(_tiny(), {"method": "clora", "rank": 4, "num_bases": 2})
    randomize_adapters(model, seed=3)
    model.eval()
    points, labels = _points(2), torch.tensor([3, 9])
    with torch.no_grad():
        adapted = model(points, labels)
        merged_model = pcclora.merge_adapters(model)
        merged = merged_model(points, labels)
    assert torch.allclose(adapted, merged, atol=1e-5, rtol=1e-5)
    plain = _tiny(seed=5).eval()
    load_checkpoint(plain, {"model_state_dict": export_merged_state_dict(merged_model)}, strict=True)
    with torch.no_grad():
        assert torch.allclose(plain(points, labels), adapted, atol=1e-5, rtol=1e-5)


def test_registry_lists_the_segmentation_backbone_apart_from_the_classifiers():
    assert "point_mae_seg" in backbones.list_backbones()
    assert "point_mae_seg" not in backbones.classification_backbones()
    assert backbones.backbone_task("point_mae_seg") == "segmentation"
    assert backbones.backbone_defaults("point_mae_seg")["num_shape_classes"] == 16
