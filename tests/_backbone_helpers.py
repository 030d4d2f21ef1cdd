"""State dicts with the official Point-MAE / Point-BERT key names and shapes (docs/formats.md).

Written out from the published model definitions, independently of ``backbones``, so that the
tests check our module tree against the official one rather than against itself.
"""

from __future__ import annotations

import torch

Shapes = dict[str, tuple[int, ...]]


def _linear(prefix: str, fan_in: int, fan_out: int, bias: bool = True) -> Shapes:
    shapes = {f"{prefix}.weight": (fan_out, fan_in)}
    if bias:
        shapes[f"{prefix}.bias"] = (fan_out,)
    return shapes


def _conv1x1(prefix: str, fan_in: int, fan_out: int) -> Shapes:
    return {f"{prefix}.weight": (fan_out, fan_in, 1), f"{prefix}.bias": (fan_out,)}


def _batch_norm(prefix: str, width: int) -> Shapes:
    return {
        f"{prefix}.weight": (width,),
        f"{prefix}.bias": (width,),
        f"{prefix}.running_mean": (width,),
        f"{prefix}.running_var": (width,),
        f"{prefix}.num_batches_tracked": (),
    }


def _layer_norm(prefix: str, width: int) -> Shapes:
    return {f"{prefix}.weight": (width,), f"{prefix}.bias": (width,)}


def mini_pointnet_shapes(prefix: str, encoder_dims: int) -> Shapes:
    """``Encoder``: first_conv.{0,1,3}, second_conv.{0,1,3}."""
    return {
        **_conv1x1(f"{prefix}first_conv.0", 3, 128),
        **_batch_norm(f"{prefix}first_conv.1", 128),
        **_conv1x1(f"{prefix}first_conv.3", 128, 256),
        **_conv1x1(f"{prefix}second_conv.0", 512, 512),
        **_batch_norm(f"{prefix}second_conv.1", 512),
        **_conv1x1(f"{prefix}second_conv.3", 512, encoder_dims),
    }


def transformer_shapes(prefix: str, depth: int = 12, dim: int = 384) -> Shapes:
    """``TransformerEncoder.blocks.{i}``: norm1, attn.qkv (no bias), attn.proj, norm2, mlp.fc1/fc2."""
    shapes: Shapes = {}
    for i in range(depth):
        block = f"{prefix}blocks.{i}"
        shapes.update(_layer_norm(f"{block}.norm1", dim))
        shapes.update(_linear(f"{block}.attn.qkv", dim, 3 * dim, bias=False))
        shapes.update(_linear(f"{block}.attn.proj", dim, dim))
        shapes.update(_layer_norm(f"{block}.norm2", dim))
        shapes.update(_linear(f"{block}.mlp.fc1", dim, 4 * dim))
        shapes.update(_linear(f"{block}.mlp.fc2", 4 * dim, dim))
    return shapes


def _pos_embed(prefix: str, dim: int = 384) -> Shapes:
    return {**_linear(f"{prefix}.0", 3, 128), **_linear(f"{prefix}.2", 128, dim)}


def _tokens(prefix: str, names: tuple[str, ...], dim: int = 384) -> Shapes:
    return {f"{prefix}{name}": (1, 1, dim) for name in names}


def point_mae_encoder_shapes(prefix: str = "") -> Shapes:
    """The 156 entries ``MaskTransformer`` (pre-training) shares with the fine-tuning model."""
    return {
        **mini_pointnet_shapes(f"{prefix}encoder.", 384),
        **_pos_embed(f"{prefix}pos_embed"),
        **transformer_shapes(f"{prefix}blocks."),
        **_layer_norm(f"{prefix}norm", 384),
    }


def point_mae_finetuned_shapes(num_classes: int) -> Shapes:
    """Official ``PointTransformer`` (Point-MAE fine-tuning): 174 entries."""
    head = {
        **_linear("cls_head_finetune.0", 768, 256),
        **_batch_norm("cls_head_finetune.1", 256),
        **_linear("cls_head_finetune.4", 256, 256),
        **_batch_norm("cls_head_finetune.5", 256),
        **_linear("cls_head_finetune.8", 256, num_classes),
    }
    return {**_tokens("", ("cls_token", "cls_pos")), **point_mae_encoder_shapes(), **head}


def point_mae_decoder_shapes(prefix: str = "module.") -> Shapes:
    """The 53 decoder-side entries of Point-MAE ``pretrain.pth`` (decoder depth 4)."""
    return {
        f"{prefix}mask_token": (1, 1, 384),
        **_pos_embed(f"{prefix}decoder_pos_embed"),
        **transformer_shapes(f"{prefix}MAE_decoder.", depth=4),  # a bare ModuleList: MAE_decoder.blocks.{i}
        **_layer_norm(f"{prefix}MAE_decoder.norm", 384),
        **_conv1x1(f"{prefix}increase_dim.0", 384, 3 * 32),
    }


def point_mae_pretrain_shapes() -> Shapes:
    """Point-MAE ``pretrain.pth`` ``base_model``: 209 entries, all ``module.``-prefixed."""
    return {**point_mae_encoder_shapes("module.MAE_encoder."), **point_mae_decoder_shapes("module.")}


def point_bert_backbone_shapes(prefix: str = "") -> Shapes:
    """The 160 entries shared by Point-BERT's pre-training encoder and fine-tuning model."""
    return {
        **_tokens(prefix, ("cls_token", "cls_pos")),
        **mini_pointnet_shapes(f"{prefix}encoder.", 256),
        **_linear(f"{prefix}reduce_dim", 256, 384),
        **_pos_embed(f"{prefix}pos_embed"),
        **transformer_shapes(f"{prefix}blocks."),
        **_layer_norm(f"{prefix}norm", 384),
    }


def point_bert_finetuned_shapes(num_classes: int) -> Shapes:
    """Official Point-BERT ``PointTransformer``: 164 entries."""
    head = {**_linear("cls_head_finetune.0", 768, 256), **_linear("cls_head_finetune.3", 256, num_classes)}
    return {**point_bert_backbone_shapes(), **head}


def point_bert_mask_transformer_shapes(prefix: str) -> Shapes:
    """``MaskTransformer`` of Point-BERT pre-training: 167 entries (cls_dim 512, 8192 dVAE tokens)."""
    return {
        **point_bert_backbone_shapes(prefix),
        f"{prefix}mask_token": (1, 1, 384),
        **_linear(f"{prefix}lm_head", 384, 8192),
        **_linear(f"{prefix}cls_head.0", 384, 512),
        **_linear(f"{prefix}cls_head.2", 512, 512),
    }


def point_bert_pretrain_shapes() -> Shapes:
    """``Point-BERT.pth`` ``base_model``: query and momentum encoders, some dVAE entries, the queue."""
    return {
        **point_bert_mask_transformer_shapes("transformer_q."),
        **point_bert_mask_transformer_shapes("transformer_k."),
        **mini_pointnet_shapes("dvae.encoder.", 256),
        **_conv1x1("dvae.dgcnn_1.input_trans", 256, 128),
        "dvae.codebook": (8192, 256),
        "queue": (512, 16384),
        "queue_ptr": (1,),
    }


def make_state_dict(shapes: Shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors of the given shapes (BatchNorm counters as int64 scalars).

    Uniform rather than normal values: filling 22M entries is the slow part of these tests.
    """
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked") or key == "queue_ptr":
            state[key] = torch.randint(0, 1000, shape, generator=gen, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.empty(shape).uniform_(-0.05, 0.05, generator=gen)
    return state
