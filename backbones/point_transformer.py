"""The plain point-patch transformer classifier that Point-MAE, Point-BERT, ACT and ReCon share.

Pipeline (docs/formats.md), for a cloud (B, N, 3):

1. ``group_divider``: FPS picks G centres, kNN takes k points around each → neighborhood
   (B, G, k, 3) relative to the centres, centres (B, G, 3).
2. ``encoder`` (mini-PointNet) → one token per patch; Point-BERT then applies ``reduce_dim``.
3. ``pos_embed`` of each centre; a learned ``cls_token`` with its own ``cls_pos`` is prepended.
4. ``blocks``: pre-norm transformer, position added before every block; final ``norm``.
5. Pooled feature concat[cls token, max over patch tokens] (B, 2·trans_dim) → ``cls_head_finetune``.

Subclasses choose the head, whether tokens are projected (``reduce_dim``, :meth:`project_tokens`),
the learned tokens in front of the patch tokens (:meth:`prefix_tokens`; ReCon adds two) and the
pooling (:meth:`pool`), and may replace ``blocks`` by any module called as ``blocks(x, pos)``.

Extension points (for adapters that change the forward; docs/architecture.md, "Token hooks"):

- :meth:`PointPatchTransformer.embed_group`: tokenise and embed a cloud at any group count and
  size (extra token groups through the same frozen patch encoder and ``pos_embed``);
- :class:`TokenState`: what flows from the embedding to the pooling — the token sequence, the
  positions added before every block, the patch centres and input points of the current
  forward, where the patch tokens sit, and a per-forward scratch dict;
- token hooks (:meth:`PointPatchTransformer.add_token_hook`): modules whose ``begin``,
  ``before_block``, ``run_block``, ``after_block`` and ``pool`` methods are called at those
  points of every forward — tokens and positions before the blocks, per-block changes or a
  replacement of one block's call, the pooling of the final tokens;
- :meth:`PointPatchTransformer.forward_blocks`: the per-block loop, to override when a subclass's
  blocks need another call (it must call the hooks as the default does);
- :meth:`PointPatchTransformer.resize_head_input`: a head that reads a wider pooled feature;
- ``Block.attention_residual`` / ``Block.mlp_residual`` (:mod:`backbones.layers`): the two halves
  of a block, for a branch between them.

Without hooks the forward computes exactly what it computed before these points existed.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from .errors import InputShapeError, ModelConfigError
from .layers import TransformerEncoder, init_all_but_head, linear_drop_path_rates
from .patch_encoder import PatchEncoder
from .tokenizer import Group, check_points, group_points


@dataclass
class TokenState:
    """The tokens of one forward between the patch embedding and the pooling.

    Token hooks read and replace these fields in place; the backbone reads them back after each
    hook call.

    Attributes:
        model: the backbone running the forward (for :meth:`PointPatchTransformer.embed_group`).
        points: the input clouds, (B, N, 3), in the model's dtype.
        center: the patch centres of this forward, (B, G, 3), in patch-token order.
        x: the token sequence, (B, T, C): ``num_prefix`` tokens (the cls token first, then any
            tokens a hook inserted in front of the patches), the G patch tokens, then any tokens
            a hook appended.
        pos: (B, T, C), added to ``x`` before every block; ``None`` once a hook has dropped the
            positions (nothing is added any more).
        num_prefix: tokens in front of the patch tokens (1 = the cls token alone).
        scratch: per-forward values hooks share (e.g. something computed once from ``center``).
    """

    model: nn.Module
    points: torch.Tensor
    center: torch.Tensor
    x: torch.Tensor
    pos: torch.Tensor | None
    num_prefix: int = 1
    scratch: dict[str, Any] = field(default_factory=dict)

    @property
    def num_patches(self) -> int:
        """G, the number of patch tokens."""
        return self.center.shape[1]

    @property
    def patch_slice(self) -> slice:
        """Where the patch tokens sit in ``x`` (and ``pos``)."""
        return slice(self.num_prefix, self.num_prefix + self.num_patches)

    def block_input(self) -> torch.Tensor:
        """What the next block reads: ``x + pos``, or ``x`` once the positions are dropped."""
        return self.x if self.pos is None else self.x + self.pos


class PointPatchTransformer(nn.Module):
    """Base class; see :class:`backbones.PointMAE`, :class:`backbones.PointBERT`, :class:`backbones.ACT`
    and :class:`backbones.ReCon`.

    Args:
        num_classes: C, outputs of the head.
        trans_dim: token width of the transformer.
        depth: number of transformer blocks.
        num_heads: attention heads (``trans_dim`` must be divisible by it).
        num_group: G, patches per cloud (FPS centres).
        group_size: k, points per patch.
        encoder_dims: output width of the mini-PointNet.
        drop_path_rate: stochastic depth of the last block; rates rise linearly from 0.
        mlp_ratio: hidden width of the block MLPs relative to ``trans_dim``.
        fused_attention: use ``F.scaled_dot_product_attention`` (``False``: explicit softmax).
        tokenizer_backend: FPS/kNN backend, ``"auto"``, ``"torch"`` or ``"pytorch3d"``.
    """

    #: Modules that form the classification head (PEFT keeps them trainable).
    head_module_names: ClassVar[tuple[str, ...]] = ("cls_head_finetune",)
    #: Modules between the tokenizer and the transformer; when none of their parameters needs a
    #: gradient and the input points do not either, tokenizer + patch embedding run under
    #: ``torch.no_grad()`` (lean PEFT training). Points that require grad (saliency maps,
    #: adversarial examples) keep autograd on there, so that the gradient reaches the input.
    patch_embedding_names: ClassVar[tuple[str, ...]] = ("encoder", "pos_embed")
    #: The official default sizes, overridable by keyword (official config names).
    default_config: ClassVar[dict[str, Any]] = {}
    #: Learned tokens in front of the patch tokens: the cls token (ReCon adds its image and text
    #: queries, :meth:`prefix_tokens`); :meth:`pool` max-pools the tokens after them.
    num_prefix_tokens: ClassVar[int] = 1

    def __init__(
        self,
        num_classes: int,
        *,
        trans_dim: int,
        depth: int,
        num_heads: int,
        num_group: int,
        group_size: int,
        encoder_dims: int,
        drop_path_rate: float,
        mlp_ratio: float = 4.0,
        fused_attention: bool = True,
        tokenizer_backend: str = "auto",
    ) -> None:
        super().__init__()
        check_transformer_sizes(
            drop_path_rate,
            num_classes=num_classes,
            trans_dim=trans_dim,
            depth=depth,
            num_heads=num_heads,
            num_group=num_group,
            group_size=group_size,
            encoder_dims=encoder_dims,
        )
        num_classes, trans_dim, depth, num_heads, num_group, group_size, encoder_dims = (
            int(v) for v in (num_classes, trans_dim, depth, num_heads, num_group, group_size, encoder_dims)
        )
        self.num_classes = num_classes
        self.trans_dim = trans_dim
        self.depth = depth
        self.num_heads = num_heads
        self.num_group = num_group
        self.group_size = group_size
        self.encoder_dims = encoder_dims
        self.drop_path_rate = float(drop_path_rate)

        self.group_divider = Group(num_group, group_size, backend=tokenizer_backend)
        self.encoder = PatchEncoder(encoder_dims)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, trans_dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, trans_dim))
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, trans_dim))
        self.blocks = self.build_blocks(linear_drop_path_rates(drop_path_rate, depth), mlp_ratio, fused_attention)
        self.norm = nn.LayerNorm(trans_dim)
        self._token_hook_names: tuple[str, ...] = ()

    def build_blocks(self, drop_path_rates: list[float], mlp_ratio: float, fused_attention: bool) -> nn.Module:
        """The transformer, called as ``blocks(x, pos)``: a :class:`TransformerEncoder` of
        ``len(drop_path_rates)`` blocks of width ``trans_dim`` (ReCon builds its own)."""
        return TransformerEncoder(
            self.trans_dim, self.num_heads, drop_path_rates, mlp_ratio=mlp_ratio, fused_attention=fused_attention
        )

    def _init_backbone_weights(self) -> None:
        """Initialise everything but the head as the official models do from scratch.

        The head keeps PyTorch's default initialisation, which is what the official fine-tuning
        scripts use when they start from a pre-trained checkpoint (their ``_init_weights`` runs
        only when there is no checkpoint).
        """
        init_all_but_head(self)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.cls_pos, std=0.02)

    # ----------------------------------------------------------------------------------------
    # forward
    # ----------------------------------------------------------------------------------------

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map encoder tokens (B, G, encoder_dims) to the transformer width (B, G, trans_dim)."""
        return tokens

    def patch_embedding_requires_grad(self) -> bool:
        """Whether any parameter of the patch embedding (``patch_embedding_names``) needs a gradient."""
        return any(p.requires_grad for name in self.patch_embedding_names for p in getattr(self, name).parameters())

    def embed_patches(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenise and embed: points (B, N, 3) → tokens (B, G, trans_dim), positions (B, G, trans_dim)."""
        tokens, pos, _ = self._embed(points, self.group_divider(points))
        return tokens, pos

    def _embed(
        self, points: torch.Tensor, grouped: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        neighborhood, center = grouped
        tokens = self.project_tokens(self.encoder(neighborhood))
        return tokens, self.pos_embed(center), center

    @contextlib.contextmanager
    def _embedding_grad_mode(self, points: torch.Tensor) -> Iterator[None]:
        """``no_grad`` when nothing upstream of the transformer trains and the points need no gradient."""
        lean = torch.is_grad_enabled() and not points.requires_grad and not self.patch_embedding_requires_grad()
        with torch.no_grad() if lean else contextlib.nullcontext():
            yield

    def embed_group(
        self, points: torch.Tensor, num_group: int | None = None, group_size: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokenise and embed at any group count and size, through the model's own patch embedding.

        Args:
            points: (B, N, 3) clouds in the model's dtype (already checked).
            num_group: G' centres (default: the model's ``num_group``).
            group_size: k' points per patch (default: the model's ``group_size``).

        Returns:
            tokens (B, G', trans_dim), positions (B, G', trans_dim), centres (B, G', 3). Runs
            without autograd under the same rule as the model's own embedding (nothing there
            trains and the points need no gradient).
        """
        with self._embedding_grad_mode(points):
            if num_group is None and group_size is None:
                grouped = self.group_divider(points)
            else:
                grouped = group_points(
                    points,
                    self.num_group if num_group is None else num_group,
                    self.group_size if group_size is None else group_size,
                    self.group_divider.backend,
                )
            return self._embed(points, grouped)

    def check_input(self, points: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` unless ``points`` is a finite float (B, N, 3) cloud that is
        large enough for ``num_group`` centres and ``group_size`` neighbours."""
        check_cloud(points, self.num_group, self.group_size)

    def prefix_tokens(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned tokens put before the patch tokens and their positions, each
        (B, ``num_prefix_tokens``, trans_dim): here ``cls_token`` with ``cls_pos``."""
        return self.cls_token.expand(batch, -1, -1), self.cls_pos.expand(batch, -1, -1)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised tokens (B, T, C) → the pooled feature: concat[cls token, max over the tokens
        after the prefix] (B, 2·C)."""
        return torch.cat([x[:, 0], x[:, self.num_prefix_tokens :].amax(dim=1)], dim=-1)

    # ----------------------------------------------------------------------------------------
    # token hooks
    # ----------------------------------------------------------------------------------------

    def add_token_hook(self, name: str, hook: nn.Module) -> None:
        """Register ``hook`` as submodule ``name`` and call it at the token stages of every forward.

        A hook may define any of these methods (missing ones are skipped); hooks are called in
        the order they were added, and each may change the :class:`TokenState` in place:

        - ``begin(state)``: after the cls token and its position are prepended, before block 0
          (``state.x`` is [cls, patch tokens]);
        - ``before_block(index, state)`` and ``after_block(index, state)``: around block ``index``
          (``after_block`` sees the block's output in ``state.x``);
        - ``run_block(index, block, x, state)``: may compute block ``index`` itself from its input
          ``x`` (``state.block_input()``) and return the output; ``None`` leaves it to the next
          hook or to ``block(x)``;
        - ``pool(state)``: may return the pooled feature (B, F) from the final, normalised tokens;
          ``None`` leaves it to the next hook or to the default pooling.

        Raises:
            ModelConfigError: ``name`` is taken by another attribute or hook.
        """
        if hasattr(self, name):
            raise ModelConfigError(
                f"{type(self).__name__} already has an attribute {name!r}; give the token hook another name"
            )
        self.add_module(name, hook)
        self._token_hook_names = (*self._token_hook_names, name)

    def token_hooks(self) -> list[nn.Module]:
        """The registered token hooks, in call order."""
        return [getattr(self, name) for name in getattr(self, "_token_hook_names", ())]

    def _call_hooks(self, method: str, *args: Any) -> None:
        for hook in self.token_hooks():
            function = getattr(hook, method, None)
            if function is not None:
                function(*args)

    # ----------------------------------------------------------------------------------------
    # forward
    # ----------------------------------------------------------------------------------------

    def prepare_tokens(self, points: torch.Tensor) -> TokenState:
        """Embed ``points`` and prepend the prefix tokens (:meth:`prefix_tokens`) and their
        positions: the state before block 0.

        Args:
            points: (B, N, 3), checked and in the model's dtype.
        """
        tokens, pos, center = self.embed_group(points)
        prefix, prefix_pos = self.prefix_tokens(tokens.shape[0])
        x = torch.cat([prefix, tokens], dim=1)
        pos = torch.cat([prefix_pos, pos], dim=1)
        return TokenState(model=self, points=points, center=center, x=x, pos=pos, num_prefix=self.num_prefix_tokens)

    def forward_blocks(self, state: TokenState) -> TokenState:
        """Run every block on ``state.x`` (positions added before each), calling the token hooks.

        Without hooks this is ``blocks(x, pos)``, exactly as before the hooks existed. A
        subclass whose blocks need another call overrides this and keeps the hook calls.
        """
        hooks = self.token_hooks()
        if not hooks:
            state.x = self.blocks(state.x, state.pos)
            return state

        def run(blocks: nn.ModuleList) -> torch.Tensor:
            for index, block in enumerate(blocks):
                self._call_hooks("before_block", index, state)
                x = state.block_input()
                output = None
                for hook in hooks:
                    run_block = getattr(hook, "run_block", None)
                    output = run_block(index, block, x, state) if run_block is not None else None
                    if output is not None:
                        break
                state.x = block(x) if output is None else output
                self._call_hooks("after_block", index, state)
            return state.x

        state.x = self.blocks(state.x, state.pos, runner=run)
        return state

    def pool_tokens(self, state: TokenState) -> torch.Tensor:
        """Pooled feature of the final tokens: the first hook's ``pool``, else :meth:`pool`
        (concat[cls token, max over the tokens after the prefix], (B, 2·trans_dim))."""
        for hook in self.token_hooks():
            pool = getattr(hook, "pool", None)
            pooled = pool(state) if pool is not None else None
            if pooled is not None:
                return pooled
        return self.pool(state.x)

    def forward_tokens(self, points: torch.Tensor) -> TokenState:
        """The final, normalised tokens of ``points`` (B, N, 3) with the rest of their state."""
        self.check_input(points)
        state = self.prepare_tokens(points.to(self.cls_token.dtype))
        self._call_hooks("begin", state)
        state = self.forward_blocks(state)
        state.x = self.norm(state.x)
        return state

    def forward_features(self, points: torch.Tensor) -> torch.Tensor:
        """Pooled feature: points (B, N, 3) → (B, 2·trans_dim) = concat[cls token, max over patches]
        (or what a token hook's ``pool`` gives)."""
        return self.pool_tokens(self.forward_tokens(points))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Class logits: points (B, N, 3) → (B, num_classes)."""
        return self.cls_head_finetune(self.forward_features(points))

    def resize_head_input(self, in_features: int) -> None:
        """Make the head read a pooled feature of ``in_features`` (e.g. 3·trans_dim).

        The first ``nn.Linear`` of each head module is replaced by a freshly initialised one
        (PyTorch's default initialisation, as the official fine-tuning heads) with the same
        output size; the rest of the head stays. Subclasses with another head override this.

        Raises:
            ModelConfigError: a head module has no ``nn.Linear``.
        """
        for head_name in self.head_module_names:
            head = getattr(self, head_name)
            first = next(((n, m) for n, m in head.named_modules() if isinstance(m, nn.Linear)), None)
            if first is None:
                raise ModelConfigError(
                    f"head {head_name!r} of {type(self).__name__} has no nn.Linear to resize; "
                    "override resize_head_input for this head"
                )
            name, linear = first
            replacement = nn.Linear(
                in_features,
                linear.out_features,
                bias=linear.bias is not None,
                device=linear.weight.device,
                dtype=linear.weight.dtype,
            )
            if not name:  # the head is the Linear itself
                setattr(self, head_name, replacement)
                continue
            parent_name, _, child_name = name.rpartition(".")
            setattr(head.get_submodule(parent_name) if parent_name else head, child_name, replacement)

    def set_fused_attention(self, fused: bool) -> None:
        """Switch every block between SDPA (``True``) and explicit softmax attention."""
        for block in self.blocks.blocks:
            block.attn.fused = fused

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, trans_dim={self.trans_dim}, depth={self.depth}, "
            f"num_heads={self.num_heads}, num_group={self.num_group}, group_size={self.group_size}, "
            f"encoder_dims={self.encoder_dims}, drop_path_rate={self.drop_path_rate}"
        )


def check_cloud(points: torch.Tensor, num_group: int, group_size: int) -> None:
    """Raise :class:`InputShapeError` unless ``points`` is a finite float (B, N, 3) cloud with at
    least ``num_group`` and ``group_size`` points."""
    check_points(points)
    num_points = points.shape[1]
    for what, need in (("num_group", num_group), ("group_size", group_size)):
        if num_points < need:
            raise InputShapeError(
                f"the clouds have {num_points} points but this model's {what} is {need}: give at "
                f"least {need} points per cloud or build the model with a smaller {what}"
            )
    if not torch.isfinite(points).all():
        bad = int((~torch.isfinite(points)).sum())
        raise InputShapeError(f"points contain {bad} NaN or infinite coordinates; clean or drop those clouds first")


def check_transformer_sizes(drop_path_rate: float, **sizes: int) -> None:
    """Raise :class:`ModelConfigError` unless every size is a positive integer, ``drop_path_rate``
    is in [0, 1) and ``trans_dim`` is divisible by ``num_heads``."""
    _check_sizes(**sizes)
    if not 0.0 <= drop_path_rate < 1.0:
        raise ModelConfigError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    trans_dim, num_heads = sizes["trans_dim"], sizes["num_heads"]
    if trans_dim % num_heads != 0:
        raise ModelConfigError(
            f"trans_dim {trans_dim} is not divisible by num_heads {num_heads}; "
            f"choose num_heads among the divisors of trans_dim (the official model uses 384 / 6)"
        )


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ModelConfigError(f"{name} must be a positive integer, got {value!r}")
