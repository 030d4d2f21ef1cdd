"""The backbone's extension points: token hooks, extra groups, head resizing, the two block halves.

Every registered point-patch backbone is tested: without hooks (and with hooks that change
nothing) the logits are bit-identical to the pipeline composed by hand from the modules; hooks
are called at the documented points, in order, with the state they are promised.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import backbones
from backbones.errors import ModelConfigError
from backbones.point_transformer import PointPatchTransformer, TokenState

ALL = backbones.classification_backbones()
#: The zoo's point-patch transformers (PointGPT is not one: its own sorted, causal extractor).
ZOO = [name for name in ALL if not name.startswith("pointgpt")]


def _points(batch: int = 2, num_points: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, num_points, 3, generator=torch.Generator().manual_seed(seed))


def _hand_composed_logits(model: nn.Module, points: torch.Tensor) -> torch.Tensor:
    """The pipeline of docs/formats.md written out from the modules (the pre-hook forward)."""
    neighborhood, center = model.group_divider(points)
    tokens = model.project_tokens(model.encoder(neighborhood))
    pos = model.pos_embed(center)
    prefix, prefix_pos = model.prefix_tokens(tokens.shape[0])  # the cls token (ReCon: cls, image, text)
    x = torch.cat([prefix, tokens], dim=1)
    pos = torch.cat([prefix_pos, pos], dim=1)
    for block in model.blocks.blocks:
        x = block(x + pos)
    x = model.norm(x)
    return model.cls_head_finetune(model.pool(x))


class Recorder(nn.Module):
    """A hook that defines every stage, records the calls and changes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def begin(self, state):
        self.calls.append(("begin", tuple(state.x.shape), state.num_prefix))

    def before_block(self, index, state):
        self.calls.append(("before", index))

    def run_block(self, index, block, x, state):
        self.calls.append(("run", index))
        return None

    def after_block(self, index, state):
        self.calls.append(("after", index))

    def pool(self, state):
        self.calls.append(("pool", tuple(state.x.shape)))
        return None


def test_the_point_patch_backbones_are_all_but_pointgpt(tiny_backbone):
    for name in ALL:
        assert isinstance(tiny_backbone(name), PointPatchTransformer) == (name in ZOO), name


@pytest.mark.parametrize("name", ZOO)
def test_logits_are_bit_identical_to_the_hand_composed_pipeline(name, tiny_backbone):
    torch.manual_seed(0)
    model = tiny_backbone(name).eval()
    points = _points()
    with torch.no_grad():
        assert torch.equal(model(points), _hand_composed_logits(model, points))
        hooked = copy.deepcopy(model)
        recorder = Recorder()
        hooked.add_token_hook("recorder", recorder)
        assert torch.equal(hooked(points), model(points))
    depth = len(model.blocks.blocks)
    prefix = model.num_prefix_tokens
    expected = [("begin", (2, prefix + model.num_group, model.trans_dim), prefix)]
    for index in range(depth):
        expected += [("before", index), ("run", index), ("after", index)]
    expected.append(("pool", (2, prefix + model.num_group, model.trans_dim)))
    assert recorder.calls == expected


def test_hooks_see_the_centres_points_and_positions_of_the_forward(tiny_backbone):
    torch.manual_seed(0)
    model = tiny_backbone("point_mae").eval()
    points = _points()
    seen: dict[str, torch.Tensor] = {}

    class Peek(nn.Module):
        def begin(self, state):
            seen.update(center=state.center, points=state.points, pos=state.pos, x=state.x)
            assert state.model is model and state.patch_slice == slice(1, 1 + model.num_group)

    model.add_token_hook("peek", Peek())
    with torch.no_grad():
        model(points)
        neighborhood, center = model.group_divider(points)
        assert torch.equal(seen["center"], center)
        assert torch.equal(seen["points"], points)
        assert torch.equal(seen["pos"][:, 1:], model.pos_embed(center))
        assert torch.equal(seen["x"][:, 1:], model.encoder(neighborhood))


def test_a_hook_can_insert_tokens_drop_positions_run_blocks_and_pool(tiny_backbone):
    torch.manual_seed(0)
    model = tiny_backbone("point_mae", depth=3).eval()
    points = _points()

    class Changes(nn.Module):
        def begin(self, state):  # positions once, then none
            state.x, state.pos = state.block_input(), None

        def run_block(self, index, block, x, state):
            return block.mlp_residual(block.attention_residual(x)) if index == 1 else None

        def after_block(self, index, state):  # a zero token after cls
            state.x = torch.cat([state.x[:, :1], torch.zeros_like(state.x[:, :1]), state.x[:, 1:]], dim=1)
            state.num_prefix += 1

        def pool(self, state):
            return state.x[:, state.patch_slice].mean(dim=1).repeat(1, 2)

    model.add_token_hook("changes", Changes())
    with torch.no_grad():
        state = model.forward_tokens(points)
        logits = model(points)
    assert state.num_prefix == 4 and state.x.shape[1] == 4 + model.num_group and state.pos is None
    # the same by hand: positions once, a zero token inserted after each block
    neighborhood, center = model.group_divider(points)
    x = torch.cat([model.cls_token.expand(2, -1, -1), model.encoder(neighborhood)], dim=1)
    x = x + torch.cat([model.cls_pos.expand(2, -1, -1), model.pos_embed(center)], dim=1)
    with torch.no_grad():
        for block in model.blocks.blocks:
            x = block(x)
            x = torch.cat([x[:, :1], torch.zeros_like(x[:, :1]), x[:, 1:]], dim=1)
        x = model.norm(x)
        expected = model.cls_head_finetune(x[:, 4:].mean(dim=1).repeat(1, 2))
    torch.testing.assert_close(logits, expected)


@pytest.mark.parametrize("name", ZOO)
def test_embed_group_reuses_the_patch_embedding_at_any_size(name, tiny_backbone):
    torch.manual_seed(0)
    model = tiny_backbone(name).eval()
    points = _points(num_points=64)
    with torch.no_grad():
        tokens, pos, center = model.embed_group(points)
        expected_tokens, expected_pos = model.embed_patches(points)
        assert torch.equal(tokens, expected_tokens) and torch.equal(pos, expected_pos)
        tokens, pos, center = model.embed_group(points, 5, 12)
    assert tokens.shape == (2, 5, model.trans_dim) and pos.shape == tokens.shape and center.shape == (2, 5, 3)


def test_embed_group_runs_without_autograd_only_when_nothing_there_trains(tiny_backbone):
    model = tiny_backbone("point_mae").train()
    points = _points(num_points=64)
    tokens, _, _ = model.embed_group(points, 4, 8)
    assert tokens.requires_grad
    for module_name in model.patch_embedding_names:
        getattr(model, module_name).requires_grad_(False)
    tokens, _, _ = model.embed_group(points, 4, 8)
    assert not tokens.requires_grad
    tokens, _, _ = model.embed_group(points.clone().requires_grad_(), 4, 8)
    assert tokens.requires_grad


@pytest.mark.parametrize("name", ZOO)
def test_resize_head_input_replaces_the_first_linear_only(name, tiny_backbone):
    model = tiny_backbone(name)
    head = model.cls_head_finetune
    rest = [id(m) for m in list(head)[1:]]
    model.resize_head_input(3 * model.trans_dim)
    assert head[0].in_features == 3 * model.trans_dim and [id(m) for m in list(head)[1:]] == rest
    assert model.cls_head_finetune(torch.randn(4, 3 * model.trans_dim)).shape == (4, model.num_classes)


def test_resize_head_input_of_a_bare_linear_head_and_of_a_head_without_one(tiny_backbone):
    model = tiny_backbone("point_mae")
    model.cls_head_finetune = nn.Linear(2 * model.trans_dim, 5)
    model.resize_head_input(7)
    assert isinstance(model.cls_head_finetune, nn.Linear) and model.cls_head_finetune.in_features == 7
    model.cls_head_finetune = nn.Sequential(nn.ReLU())
    with pytest.raises(ModelConfigError, match="has no nn.Linear to resize"):
        model.resize_head_input(7)


def test_a_hook_name_that_is_taken_is_refused(tiny_backbone):
    model = tiny_backbone("point_mae")
    with pytest.raises(ModelConfigError, match="already has an attribute 'encoder'"):
        model.add_token_hook("encoder", nn.Identity())
    model.add_token_hook("one", nn.Identity())
    with pytest.raises(ModelConfigError, match="'one'"):
        model.add_token_hook("one", nn.Identity())
    assert [type(h) for h in model.token_hooks()] == [nn.Identity]


def test_block_forward_is_the_composition_of_its_two_halves():
    torch.manual_seed(0)
    block = backbones.Block(16, 2, drop_path=0.0).eval()
    x = torch.randn(2, 5, 16)
    assert torch.equal(block(x), block.mlp_residual(block.attention_residual(x)))


def test_token_state_slices_and_block_input():
    x = torch.randn(1, 6, 4)
    state = TokenState(model=nn.Identity(), points=x, center=torch.zeros(1, 3, 3), x=x, pos=torch.ones(1, 6, 4))
    assert state.num_patches == 3 and state.patch_slice == slice(1, 4)
    assert torch.equal(state.block_input(), x + 1)
    state.pos = None
    assert state.block_input() is x
