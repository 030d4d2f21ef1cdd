"""The contract every registered backbone keeps, tested for each name ``list_backbones()`` returns.

A new backbone is tested here by registering it: forward and features, the head and patch
embedding it declares, a checkpoint round trip, and every adapter method (CLoRA starts equal to
the backbone and merges exactly). ``head_module_names`` and ``patch_embedding_names`` are module
paths (PointGPT's head is ``blocks.cls_head_finetune``), looked up with ``get_submodule``.
"""

from __future__ import annotations

import copy

import pytest
import torch

import backbones
from pcclora.peft import apply_peft, merge_adapters

ZOO = backbones.classification_backbones()  # point_mae_seg: tests/test_segmentation_model.py
ADAPTER_METHODS = ("clora", "clora_shared", "lora")


def _points(batch: int = 2, num_points: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, num_points, 3, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ZOO)
def test_forward_gives_logits_that_the_head_makes_from_the_features(name, tiny_backbone):
    torch.manual_seed(0)
    model = tiny_backbone(name, num_classes=7).eval()
    points = _points(3)
    with torch.no_grad():
        logits = model(points)
        features = model.forward_features(points)
    assert logits.shape == (3, 7) and features.shape[0] == 3
    head = model.get_submodule(model.head_module_names[0])
    torch.testing.assert_close(head(features), logits)


@pytest.mark.parametrize("name", ZOO)
def test_declared_head_and_patch_embedding_modules_exist(name, tiny_backbone):
    model = tiny_backbone(name)
    for module_name in (*model.head_module_names, *model.patch_embedding_names):
        assert isinstance(model.get_submodule(module_name), torch.nn.Module), module_name
    assert model.num_classes == 5


@pytest.mark.parametrize("name", ZOO)
def test_a_saved_state_dict_loads_strictly_and_gives_the_same_logits(name, tiny_backbone, tmp_path):
    torch.manual_seed(0)
    model = tiny_backbone(name).eval()
    path = tmp_path / "model.pth"
    torch.save({"base_model": model.state_dict()}, path)
    torch.manual_seed(1)
    sizes = {key: getattr(model, key) for key in backbones.backbone_defaults(name) if hasattr(model, key)}
    loaded = backbones.create_backbone(name, num_classes=5, checkpoint=path, **sizes).eval()
    assert loaded.checkpoint_report.missing == [] and loaded.checkpoint_report.unexpected == []
    points = _points()
    with torch.no_grad():
        torch.testing.assert_close(loaded(points), model(points))


@pytest.mark.parametrize("method", ADAPTER_METHODS)
@pytest.mark.parametrize("name", ZOO)
def test_adapters_start_at_the_backbone_and_merge_exactly(name, method, tiny_backbone):
    torch.manual_seed(0)
    plain = tiny_backbone(name).eval()
    adapted = apply_peft(copy.deepcopy(plain), {"method": method, "rank": 2, "num_bases": 2}).eval()
    points = _points()
    with torch.no_grad():
        torch.testing.assert_close(adapted(points), plain(points))
        for parameter_name, parameter in adapted.named_parameters():
            if parameter_name.endswith(("coefficients", "lora_up")):
                parameter.normal_(0.0, 0.3)
        unmerged = adapted(points)
        assert not torch.allclose(unmerged, plain(points))
        torch.testing.assert_close(merge_adapters(adapted)(points), unmerged, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["full", "linear"])
@pytest.mark.parametrize("name", ZOO)
def test_full_and_linear_train_what_they_should(name, method, tiny_backbone):
    model = apply_peft(tiny_backbone(name), {"method": method})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = model.head_module_names[0]
    assert any(n.startswith(f"{head}.") for n in trainable)
    everything = {n for n, _ in model.named_parameters()}
    assert (trainable == everything) == (method == "full")


@pytest.mark.parametrize("name", ZOO)
def test_frozen_patch_embedding_runs_without_autograd_and_the_rest_trains(name, tiny_backbone):
    model = tiny_backbone(name).train()
    for module_name in model.patch_embedding_names:
        model.get_submodule(module_name).requires_grad_(False)
    seen: list[bool] = []
    first = model.get_submodule(model.patch_embedding_names[0])
    first.register_forward_hook(lambda mod, inp, out: seen.append(torch.is_grad_enabled()))
    model(_points()).sum().backward()
    assert seen == [False]
    head = model.get_submodule(model.head_module_names[0])
    assert all(p.grad is not None for p in head.parameters() if p.requires_grad)
