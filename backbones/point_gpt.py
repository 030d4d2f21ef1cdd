"""PointGPT fine-tuning model (Chen et al., NeurIPS 2023), official module and key names.

The classification model of github.com/CGuangyan-BIT/PointGPT (``models/PointGPT.py``,
``PointTransformer``, with ``GPT_extractor`` / ``GPT_generator`` of ``models/GPT.py``), for a
cloud (B, N, 3):

1. **Patches in sequence order.** ``group_divider``: FPS centres and kNN patches as in Point-MAE;
   then the patches are *sorted* (official ``simplied_morton_sorting``): the sequence starts at
   the first FPS centre and each next patch is the not yet visited centre nearest (``torch.cdist``)
   to the previous one, the lowest index on ties (:func:`sort_patches`).
2. ``encoder``: the mini-PointNet (``encoder_dims`` 384) or its wider version (768 / 1024,
   :class:`backbones.patch_encoder.LargePatchEncoder`) → tokens t_1 … t_G.
3. ``pos_embed``: a fixed sine/cosine embedding of the centre coordinates (no parameters,
   :class:`SinePositionEmbedding`).
4. ``blocks`` (the *extractor*, ``GPT_extractor``): the sequence is ``[sos, cls_token, t_1 … t_G]``
   with positions ``[cls_pos, sos_pos, pe(c_1) … pe(c_G)]`` (sic: the learned start token gets
   ``cls_pos`` and the cls token gets ``sos_pos``, as in the official forward); every layer
   adds the positions and runs a GPT block under a **causal mask** (token i attends to 0 … i);
   then ``ln_f``. A GPT block normalises first and adds the attention to the *normalised* input:
   ``x = ln_1(x); x = x + attn(x); x = x + mlp(ln_2(x))``.
5. Feature: ``blocks.cls_norm`` of the extractor output, concat[token 1 (the cls token), max
   over tokens 2 …] (B, 2·trans_dim) → ``blocks.cls_head_finetune`` (the three-layer head).
   Under the causal mask the cls token sees only the start token and itself, so the first half
   of the feature does not depend on the points; the official model is used as it is.
6. ``generator_blocks`` (``GPT_generator``, ``decoder_depth`` layers) predict each next patch from
   the extractor's outputs with relative-direction positions; the official fine-tuning adds
   3 × (Chamfer-L1 + Chamfer-L2) of that prediction to the loss. It does not change the logits;
   :meth:`PointGPT.forward_generation` runs it.

Attention is the official ``nn.MultiheadAttention`` layout: a fused in-projection *parameter*
``attn.in_proj_weight`` (3E, E) / ``attn.in_proj_bias`` and ``attn.out_proj``; the MLP is
``mlp.0`` / ``mlp.2``. The in-projection is not an ``nn.Linear``, so linear adapters (LoRA,
CLoRA) adapt ``attn.out_proj``, ``mlp.0`` and ``mlp.2`` of the extractor
(:attr:`PointGPT.peft_target_modules`); see the README for the method/target table.

Sizes (official configs): PointGPT-S 12 × 384, 6 heads; -B 12 × 768, 12 heads; -L 24 × 1024,
16 heads; all with a 4-layer generator. The official model reads but never uses
``drop_path_rate`` (its blocks have no stochastic depth); it is accepted and stored here likewise.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelConfigError
from .layers import init_all_but_head, mlp3_head
from .patch_encoder import LargePatchEncoder, PatchEncoder
from .point_transformer import check_cloud
from .tokenizer import Group

#: ``encoder_dims`` above this use :class:`LargePatchEncoder` (official: 384 small; 768, 1024 large).
SMALL_ENCODER_MAX_DIMS = 384
#: Classes of the LabeledHybrid set that PointGPT-B/L are post-pre-trained on.
POST_PRETRAIN_CLASSES = 87


def sort_patches(center: torch.Tensor) -> torch.Tensor:
    """The official patch order: (B, G, 3) centres → (B, G) indices.

    Starts at centre 0 (the first FPS centre); each next index is the not yet visited centre
    with the smallest ``torch.cdist`` distance to the previous one (``argmin``: the lowest index
    on ties). No gradient flows through the indices.
    """
    with torch.no_grad():
        batch, groups, _ = center.shape
        distances = torch.cdist(center, center)  # (B, G, G), the official call
        rows = torch.arange(batch, device=center.device)
        order = torch.zeros(batch, groups, dtype=torch.long, device=center.device)
        distances[:, :, 0] = math.inf
        last = order[:, 0]
        for step in range(1, groups):
            nearest = distances[rows, last].argmin(dim=-1)
            order[:, step] = nearest
            distances[rows, :, nearest] = math.inf
            last = nearest
    return order


def _gather(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """values (B, G, ...) reordered along G by order (B, G)."""
    index = order.reshape(*order.shape, *([1] * (values.dim() - 2))).expand(-1, -1, *values.shape[2:])
    return values.gather(1, index)


class SinePositionEmbedding(nn.Module):
    """Fixed sine/cosine embedding of 3-D coordinates (official ``PositionEmbeddingCoordsSine``).

    Each coordinate gets F = ``d_model // 3 // 2 * 2`` features, interleaved
    ``[sin(x·s/T^(0/F)), cos(x·s/T^(0/F)), sin(x·s/T^(2/F)), cos(x·s/T^(2/F)), …]`` with
    s = 2π·scale and T = ``temperature``; the 3·F features are zero-padded to ``d_model``.
    """

    def __init__(self, n_dim: int = 3, d_model: int = 384, temperature: float = 10000.0, scale: float = 1.0):
        super().__init__()
        self.n_dim = n_dim
        self.d_model = d_model
        self.num_pos_feats = d_model // n_dim // 2 * 2
        self.temperature = temperature
        self.padding = d_model - self.num_pos_feats * n_dim
        self.scale = scale * 2 * math.pi

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        """(…, n_dim) → (…, d_model)."""
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=xyz.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="trunc") / self.num_pos_feats)
        divided = (xyz * self.scale).unsqueeze(-1) / dim_t  # (…, n_dim, F)
        embedding = torch.stack([divided[..., 0::2].sin(), divided[..., 1::2].cos()], dim=-1)
        return F.pad(embedding.reshape(*xyz.shape[:-1], -1), (0, self.padding))

    def extra_repr(self) -> str:
        return f"n_dim={self.n_dim}, d_model={self.d_model}, temperature={self.temperature}"


class FusedInProjection(nn.Module):
    """``F.linear`` with weights held by its parent (the official ``in_proj_weight`` is a parameter
    of the attention, not a Linear module): a module only so that compute counters see a linear
    layer here (``counts_as_linear``); it has no parameters and no state-dict entries."""

    counts_as_linear = True

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return F.linear(x, weight, bias)


class GPTAttention(nn.Module):
    """Self-attention with ``nn.MultiheadAttention``'s parameters (``in_proj_weight`` (3E, E),
    ``in_proj_bias`` (3E), ``out_proj``), batch-first, optionally causal.

    ``out_proj`` is called as a module, so it can be wrapped by an adapter.
    """

    def __init__(self, dim: int, num_heads: int, fused: bool = True) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.fused = fused
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.in_proj = FusedInProjection()
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)  # nn.MultiheadAttention's initialisation
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: torch.Tensor, causal: bool = True) -> torch.Tensor:
        """(B, T, E) → (B, T, E); ``causal``: token i attends to tokens 0 … i."""
        batch, tokens, width = x.shape
        qkv = self.in_proj(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        else:
            scores = (q @ k.transpose(-2, -1)) * self.head_dim**-0.5
            if causal:
                blocked = torch.ones(tokens, tokens, dtype=torch.bool, device=x.device).triu(1)
                scores = scores.masked_fill(blocked, -math.inf)
            out = scores.softmax(dim=-1) @ v
        return self.out_proj(out.transpose(1, 2).reshape(batch, tokens, width))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, fused={self.fused}"


class GPTBlock(nn.Module):
    """Official GPT ``Block``: ``x = ln_1(x); x = x + attn(x); x = x + mlp(ln_2(x))`` (causal)."""

    def __init__(self, dim: int, num_heads: int, fused_attention: bool = True) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.attn = GPTAttention(dim, num_heads, fused=fused_attention)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 4), nn.GELU(), nn.Linear(dim * 4, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_1(x)
        x = x + self.attn(x)
        return x + self.mlp(self.ln_2(x))


class GPTExtractor(nn.Module):
    """Official ``GPT_extractor``: ``sos``, ``layers``, ``ln_f``, ``increase_dim`` (unused in
    classification), and the classification ``cls_head_finetune`` and ``cls_norm``."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        num_layers: int,
        num_classes: int,
        trans_dim: int,
        group_size: int,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.sos = nn.Parameter(torch.zeros(embed_dim))
        self.layers = nn.ModuleList(GPTBlock(embed_dim, num_heads, fused_attention) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(embed_dim)
        self.increase_dim = nn.Sequential(nn.Conv1d(trans_dim, 3 * group_size, 1))
        self.cls_head_finetune = mlp3_head(trans_dim * 2, num_classes)
        self.cls_norm = nn.LayerNorm(trans_dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x (B, T, E) without the start token, pos (B, T + 1, E) → ``ln_f`` output (B, T + 1, E)
        of ``[sos, x]`` under the causal mask."""
        h = torch.cat([self.sos.expand(x.shape[0], 1, -1), x], dim=1)
        for layer in self.layers:
            h = layer(h + pos)
        return self.ln_f(h)


class GPTGenerator(nn.Module):
    """Official ``GPT_generator``: ``sos`` (unused by its forward), ``layers``, ``ln_f``, and
    ``increase_dim`` that turns each token into the next patch's ``group_size`` points."""

    def __init__(
        self, embed_dim: int, num_heads: int, num_layers: int, trans_dim: int, group_size: int, fused: bool = True
    ) -> None:
        super().__init__()
        self.sos = nn.Parameter(torch.zeros(embed_dim))
        self.layers = nn.ModuleList(GPTBlock(embed_dim, num_heads, fused) for _ in range(num_layers))
        self.ln_f = nn.LayerNorm(embed_dim)
        self.increase_dim = nn.Sequential(nn.Conv1d(trans_dim, 3 * group_size, 1))

    def forward(self, h: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """h, pos (B, G, E) → predicted patches (B·G, group_size, 3), causal."""
        batch, length, _ = h.shape
        for layer in self.layers:
            h = layer(h + pos)
        h = self.ln_f(h)
        return self.increase_dim(h.transpose(1, 2)).transpose(1, 2).reshape(batch * length, -1, 3)


class PointGPT(nn.Module):
    """PointGPT classifier (module docstring); the defaults are PointGPT-S's.

    Args:
        num_classes: C, outputs of the head.
        trans_dim, encoder_dims: token width (equal in every official config; the head and the
            learned tokens are ``trans_dim`` wide, the blocks ``encoder_dims``).
        depth: extractor layers. decoder_depth: generator layers.
        num_heads: attention heads (extractor and generator).
        num_group, group_size: G patches of k points.
        drop_path_rate: read and stored, not used (as in the official model).
        fused_attention: SDPA (``True``) or explicit softmax attention.
        tokenizer_backend: FPS/kNN backend, ``"auto"``, ``"torch"`` or ``"pytorch3d"``.
    """

    #: Checkpoint layouts tried first (backbones.checkpoint): the post-pre-trained B/L files.
    checkpoint_layouts: ClassVar[tuple[str, ...]] = ("pointgpt_post_pretrain", "pointgpt_pretrain")
    #: The classification head (a module path: it lives inside the extractor).
    head_module_names: ClassVar[tuple[str, ...]] = ("blocks.cls_head_finetune",)
    #: Modules between the tokenizer and the transformer (``pos_embed`` has no parameters).
    patch_embedding_names: ClassVar[tuple[str, ...]] = ("encoder", "pos_embed")
    #: Default adapter targets: the extractor's linear layers (the generator does not make logits).
    peft_target_modules: ClassVar[tuple[str, ...]] = (
        "blocks.layers.*.attn.out_proj",
        "blocks.layers.*.mlp.0",
        "blocks.layers.*.mlp.2",
    )
    default_config: ClassVar[dict[str, Any]] = {
        "trans_dim": 384,
        "depth": 12,
        "num_heads": 6,
        "num_group": 128,
        "group_size": 32,
        "encoder_dims": 384,
        "decoder_depth": 4,
        "drop_path_rate": 0.1,
    }

    def __init__(
        self,
        num_classes: int,
        *,
        fused_attention: bool = True,
        tokenizer_backend: str = "auto",
        **overrides: Any,
    ) -> None:
        super().__init__()
        sizes = {**self.default_config, **overrides}
        unknown = sorted(set(sizes) - set(PointGPT.default_config))
        if unknown:
            raise ModelConfigError(f"{type(self).__name__} has no option {unknown[0]!r}")
        counts = {key: sizes[key] for key in ("trans_dim", "depth", "num_heads", "num_group", "group_size")}
        counts |= {"encoder_dims": sizes["encoder_dims"], "num_classes": num_classes}
        for name, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ModelConfigError(f"{name} must be a positive integer, got {value!r}")
        decoder_depth = sizes["decoder_depth"]
        if isinstance(decoder_depth, bool) or not isinstance(decoder_depth, numbers.Integral) or decoder_depth < 0:
            raise ModelConfigError(f"decoder_depth must be a non-negative integer, got {decoder_depth!r}")
        if sizes["encoder_dims"] != sizes["trans_dim"]:
            raise ModelConfigError(
                f"PointGPT needs encoder_dims == trans_dim (the learned tokens are trans_dim wide and are "
                f"added to encoder tokens), got encoder_dims={sizes['encoder_dims']}, trans_dim={sizes['trans_dim']}"
            )
        if sizes["trans_dim"] % sizes["num_heads"] != 0:
            raise ModelConfigError(
                f"trans_dim {sizes['trans_dim']} is not divisible by num_heads {sizes['num_heads']}; choose "
                f"num_heads among the divisors of trans_dim (the official models use 384 / 6, 768 / 12, 1024 / 16)"
            )
        if not 0.0 <= float(sizes["drop_path_rate"]) < 1.0:
            raise ModelConfigError(f"drop_path_rate must be in [0, 1), got {sizes['drop_path_rate']}")
        self.num_classes = int(num_classes)
        self.trans_dim = int(sizes["trans_dim"])
        self.encoder_dims = int(sizes["encoder_dims"])
        self.depth = int(sizes["depth"])
        self.decoder_depth = int(decoder_depth)
        self.num_heads = int(sizes["num_heads"])
        self.num_group = int(sizes["num_group"])
        self.group_size = int(sizes["group_size"])
        self.drop_path_rate = float(sizes["drop_path_rate"])

        self.group_divider = Group(self.num_group, self.group_size, backend=tokenizer_backend)
        encoder_class = PatchEncoder if self.encoder_dims <= SMALL_ENCODER_MAX_DIMS else LargePatchEncoder
        self.encoder = encoder_class(self.encoder_dims)
        self.pos_embed = SinePositionEmbedding(3, self.encoder_dims, 10000.0, 1.0)
        self.blocks = GPTExtractor(
            self.encoder_dims,
            self.num_heads,
            self.depth,
            self.num_classes,
            self.trans_dim,
            self.group_size,
            fused_attention,
        )
        self.generator_blocks = GPTGenerator(
            self.encoder_dims, self.num_heads, self.decoder_depth, self.trans_dim, self.group_size, fused_attention
        )
        self.norm = nn.LayerNorm(self.trans_dim)  # built by the official model, never used in its forward
        self.cls_token = nn.Parameter(torch.zeros(1, 1, self.trans_dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, self.trans_dim))
        self.sos_pos = nn.Parameter(torch.zeros(1, 1, self.trans_dim))
        self._init_weights()

    def _init_weights(self) -> None:
        """The official from-scratch initialisation; the head keeps PyTorch's default (as in the
        official fine-tuning from a checkpoint)."""
        init_all_but_head(self)
        nn.init.normal_(self.blocks.sos)
        nn.init.normal_(self.generator_blocks.sos)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.cls_pos, std=0.02)

    # ----------------------------------------------------------------------------------------
    # forward
    # ----------------------------------------------------------------------------------------

    def check_input(self, points: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` unless ``points`` is a finite float (B, N, 3) cloud with
        at least ``num_group`` and ``group_size`` points."""
        check_cloud(points, self.num_group, self.group_size)

    def patch_embedding_requires_grad(self) -> bool:
        """Whether any parameter of the patch embedding (``patch_embedding_names``) needs a gradient."""
        return any(p.requires_grad for name in self.patch_embedding_names for p in getattr(self, name).parameters())

    def sorted_patches(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points (B, N, 3) → neighborhood (B, G, k, 3), center (B, G, 3) in sequence order."""
        neighborhood, center = self.group_divider(points)
        order = sort_patches(center)
        return _gather(neighborhood, order), _gather(center, order)

    def embed_patches(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """points → tokens (B, G, E), positions pe(centres) (B, G, E), neighborhood, center."""
        neighborhood, center = self.sorted_patches(points)
        return self.encoder(neighborhood), self.pos_embed(center), neighborhood, center

    def _embed(self, points: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.check_input(points)
        points = points.to(self.cls_token.dtype)
        lean = torch.is_grad_enabled() and not points.requires_grad and not self.patch_embedding_requires_grad()
        if lean:  # nothing upstream of the transformer is trained nor wants a gradient
            with torch.no_grad():
                return self.embed_patches(points)
        return self.embed_patches(points)

    def extract(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """The extractor on ``[sos, cls_token, tokens]`` with ``[cls_pos, sos_pos, pos]``: (B, G + 2, E)."""
        batch = tokens.shape[0]
        x = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
        pos = torch.cat([self.cls_pos.expand(batch, -1, -1), self.sos_pos.expand(batch, -1, -1), pos], dim=1)
        return self.blocks(x, pos)

    def forward_features(self, points: torch.Tensor) -> torch.Tensor:
        """Pooled feature: points (B, N, 3) → (B, 2·trans_dim) = concat[cls token, max over patches]
        of ``blocks.cls_norm`` of the extractor output."""
        tokens, pos, _, _ = self._embed(points)
        h = self.blocks.cls_norm(self.extract(tokens, pos))
        return torch.cat([h[:, 1], h[:, 2:].amax(dim=1)], dim=-1)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Class logits: points (B, N, 3) → (B, num_classes)."""
        return self.blocks.cls_head_finetune(self.forward_features(points))

    def forward_generation(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The official fine-tuning forward with its generation branch.

        Returns:
            logits (B, C); the generator's patches (B·G, k, 3), each predicted from the patches
            before it; their targets, the sorted patches in absolute coordinates (B·G, k, 3).
            The official loss is CE + 3 · (Chamfer-L1 + Chamfer-L2)(prediction, target).
        """
        tokens, pos, neighborhood, center = self._embed(points)
        encoded = self.extract(tokens, pos)
        h = self.blocks.cls_norm(encoded)
        logits = self.blocks.cls_head_finetune(torch.cat([h[:, 1], h[:, 2:].amax(dim=1)], dim=-1))
        step = center[:, 1:] - center[:, :-1]
        direction = step / torch.linalg.vector_norm(step, dim=-1, keepdim=True)
        relative = self.pos_embed(torch.cat([center[:, :1], direction], dim=1))
        inputs = torch.cat([encoded[:, :1], encoded[:, 2:-1]], dim=1)  # sos output, t_1 … t_{G-1}
        generated = self.generator_blocks(inputs, relative)
        target = (neighborhood + center.unsqueeze(2)).reshape(-1, self.group_size, 3)
        return logits, generated, target

    def set_fused_attention(self, fused: bool) -> None:
        """Switch every extractor and generator layer between SDPA and explicit softmax attention."""
        for layer in (*self.blocks.layers, *self.generator_blocks.layers):
            layer.attn.fused = fused

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, trans_dim={self.trans_dim}, depth={self.depth}, "
            f"decoder_depth={self.decoder_depth}, num_heads={self.num_heads}, num_group={self.num_group}, "
            f"group_size={self.group_size}, encoder_dims={self.encoder_dims}"
        )


class PointGPTS(PointGPT):
    """PointGPT-S (official ``cfgs/PointGPT-S``): 12 × 384, 6 heads, mini-PointNet 384."""


class PointGPTB(PointGPT):
    """PointGPT-B (official ``cfgs/PointGPT-B``): 12 × 768, 12 heads, wide mini-PointNet 768."""

    default_config: ClassVar[dict[str, Any]] = {
        **PointGPT.default_config,
        "trans_dim": 768,
        "num_heads": 12,
        "encoder_dims": 768,
        "drop_path_rate": 0.2,
    }


class PointGPTL(PointGPT):
    """PointGPT-L (official ``cfgs/PointGPT-L``): 24 × 1024, 16 heads, wide mini-PointNet 1024."""

    default_config: ClassVar[dict[str, Any]] = {
        **PointGPT.default_config,
        "trans_dim": 1024,
        "depth": 24,
        "num_heads": 16,
        "encoder_dims": 1024,
        "drop_path_rate": 0.2,
    }
