"""Reading checkpoints of every published layout into the backbones (docs/formats.md).

All key remapping lives in :func:`checkpoint_filter_fn`. Layouts it recognises (after a leading
``module.`` / ``base_model.`` is stripped from every key):

==========================  ====================================================  ===========
layout                      how it is recognised / what happens                   default
==========================  ====================================================  ===========
``point_bert_pretrain``     ``transformer_q.*`` keys (``Point-BERT.pth``):         non-strict
                            ``transformer_q.X`` → ``X``; ``transformer_q.cls_head.*``,
                            ``transformer_k.*``, ``dvae.*``, ``queue*`` ignored.
``recon_pretrain``          ``MAE_encoder.*`` keys *and* ``MAE_encoder.img_token``  non-strict
                            (ReCon): ``MAE_encoder.X`` → ``X``; the frozen
                            teachers ``img_encoder.*`` / ``text_encoder.*`` ignored.
``point_mae_pretrain``      ``MAE_encoder.*`` keys (Point-MAE ``pretrain.pth``):   non-strict
                            ``MAE_encoder.X`` → ``X``; decoder-side keys stay and
                            are reported unexpected.
``point_mae_pretrainer``    only for the pre-training network                      strict
                            (``create_pretrainer("point_mae")``): the same file,
                            every key kept as it is (encoder and decoder).
``act_pretrain``            ``ACT_encoder.*`` (ACT): ``ACT_encoder.X`` → ``X``;     non-strict
                            the frozen teacher ``dvae_tokenizer.*`` ignored.
``pointgpt_pretrain``       ``GPT_Transformer.*`` (PointGPT): prefix stripped.     non-strict
``pointgpt_post_pretrain``  only for PointGPT models: a file in the fine-tuned      non-strict
                            layout whose head has 87 outputs (post-pre-training on
                            LabeledHybrid) loaded into a model with another class
                            count: ``blocks.cls_head_finetune.*`` ignored (as the
                            official loader drops it).
``finetuned``               the model's own keys inside ``base_model`` / ``model``  strict
                            / ``state_dict`` / ``model_state_dict`` (official
                            fine-tuned releases, the official segmentation
                            ``best_model.pth``, this toolkit's exports).
``state_dict``              a bare state dict with the model's own keys.          strict
==========================  ====================================================  ===========

A model may name layouts in ``checkpoint_layouts`` (class attribute, layout names); those are
tried first, and layouts that depend on the model (``pointgpt_post_pretrain``) are tried only
then. Layouts that share an encoder prefix are told apart by the file's keys (ReCon's encoder
has ``img_token``, Point-MAE's not), so a file is recognised the same whatever it is loaded into.
The expected loaded / missing / unexpected sets of each layout are in docs/formats.md.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError

logger = logging.getLogger(__name__)

#: Keys that hold the model's state dict inside a training checkpoint, in lookup order.
CONTAINER_KEYS = ("base_model", "model", "state_dict", "model_state_dict")
#: Prefixes removed from every key before the layout is decided.
WRAPPER_PREFIXES = ("module.", "base_model.")
#: Layouts that must match the model exactly (when ``strict`` is not given).
STRICT_LAYOUTS = ("finetuned", "state_dict")


@dataclass(frozen=True)
class CheckpointLayout:
    """A pre-training (or other non-fine-tuned) checkpoint layout: how it is recognised and remapped.

    Attributes:
        name: the layout name reported in :class:`LoadReport`.
        prefix: the encoder's key prefix; a file is of this layout when a key starts with it,
            and the prefix is stripped from those keys.
        dropped: key prefixes ignored on purpose (teachers, momentum encoders, queues), checked
            before ``prefix``; they are listed in :attr:`LoadReport.ignored`.
        marker: a key that must be present too (tells apart layouts that share ``prefix``).
        generic: tried for every model; ``False``: only for models that name it in
            ``checkpoint_layouts``.
        strip: remove ``prefix`` from the keys; ``False``: the model's keys carry it too (a
            pre-training network loading its own layout).
        strict: the file must match the model exactly unless the caller says otherwise.
    """

    name: str
    prefix: str
    dropped: tuple[str, ...] = ()
    marker: str | None = None
    generic: bool = True
    strip: bool = True
    strict: bool = False

    def matches(self, tensors: Mapping[str, torch.Tensor], model: nn.Module | None) -> bool:
        """Whether the tensors (wrapper prefixes already stripped) are of this layout."""
        if self.marker is not None and self.marker not in tensors:
            return False
        return any(key.startswith(self.prefix) for key in tensors)

    def remap(self, tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """(tensors under the model's key names, keys ignored on purpose)."""
        remapped: dict[str, torch.Tensor] = {}
        ignored: list[str] = []
        for key, value in tensors.items():
            if self.dropped and key.startswith(self.dropped):
                ignored.append(key)
            elif key.startswith(self.prefix) and self.strip:
                remapped[key[len(self.prefix) :]] = value
            else:
                remapped[key] = value
        return remapped, ignored


@dataclass(frozen=True)
class HeadDroppingLayout(CheckpointLayout):
    """A file in the fine-tuned layout whose head was trained for ``head_classes`` other classes
    (PointGPT's post-pre-training): the head keys (under ``prefix``) are ignored, the rest loads."""

    head_key: str = ""
    head_classes: int = 0

    def matches(self, tensors: Mapping[str, torch.Tensor], model: nn.Module | None) -> bool:
        head = tensors.get(self.head_key)
        num_classes = getattr(model, "num_classes", None)
        return (
            head is not None
            and head.dim() >= 1
            and head.shape[0] == self.head_classes
            and num_classes is not None
            and num_classes != self.head_classes
        )

    def remap(self, tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        remapped = {key: value for key, value in tensors.items() if not key.startswith(self.prefix)}
        return remapped, [key for key in tensors if key.startswith(self.prefix)]


#: Every layout but ``finetuned`` / ``state_dict``, in the order they are tried.
CHECKPOINT_LAYOUTS: dict[str, CheckpointLayout] = {
    layout.name: layout
    for layout in (
        CheckpointLayout(
            "point_bert_pretrain",
            "transformer_q.",
            dropped=("transformer_q.cls_head.", "transformer_k.", "dvae.", "queue"),
        ),
        CheckpointLayout(
            "recon_pretrain", "MAE_encoder.", dropped=("img_encoder.", "text_encoder."), marker="MAE_encoder.img_token"
        ),
        CheckpointLayout("point_mae_pretrain", "MAE_encoder."),
        CheckpointLayout("point_mae_pretrainer", "MAE_encoder.", generic=False, strip=False, strict=True),
        CheckpointLayout("act_pretrain", "ACT_encoder.", dropped=("dvae_tokenizer.",)),
        CheckpointLayout("pointgpt_pretrain", "GPT_Transformer."),
        HeadDroppingLayout(
            "pointgpt_post_pretrain",
            "blocks.cls_head_finetune.",
            generic=False,
            head_key="blocks.cls_head_finetune.8.weight",
            head_classes=87,
        ),
    )
}
#: Entry of this toolkit's exports that says how to rebuild the model: ``{"backbone": name,
#: "sizes": {official size names}, "num_classes": C, "class_names": [...], ...}``. Loaders of the
#: official code read only ``base_model`` and ignore it.
MODEL_INFO_KEY = "pcclora_model"


@dataclass
class RemappedCheckpoint:
    """A checkpoint turned into this model family's key names.

    Attributes:
        state_dict: tensors under the model's key names (unknown keys kept as they are).
        layout: the recognised layout (see the module docstring).
        ignored: keys the layout rule drops on purpose (momentum encoder, dVAE, queue, ...)
            and entries that are not tensors.
    """

    state_dict: dict[str, torch.Tensor]
    layout: str
    ignored: list[str] = field(default_factory=list)

    @property
    def strict_by_default(self) -> bool:
        """Fine-tuned and plain layouts (and a pre-training network's own) must match the model
        exactly; pre-training files loaded into a fine-tuning model not."""
        layout = CHECKPOINT_LAYOUTS.get(self.layout)
        return self.layout in STRICT_LAYOUTS or (layout is not None and layout.strict)


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did.

    Attributes:
        layout: recognised layout name.
        source: the file path, or ``"<dict>"``.
        loaded: model keys that received a tensor.
        missing: model keys the checkpoint did not provide (they keep their initial values).
        unexpected: checkpoint keys (after remapping) that the model does not have.
        ignored: checkpoint keys dropped on purpose by the layout rule.
    """

    layout: str
    source: str
    loaded: list[str]
    missing: list[str]
    unexpected: list[str]
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few human-readable lines: counts, then the missing and unexpected key names."""
        lines = [
            f"checkpoint {self.source} (layout {self.layout}): {len(self.loaded)} tensors loaded, "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.ignored)} ignored"
        ]
        if self.missing:
            lines.append("  missing (kept at init): " + _by_module(self.missing))
        if self.unexpected:
            lines.append("  unexpected (not used): " + _by_module(self.unexpected))
        return "\n".join(lines)


def _by_module(keys: list[str]) -> str:
    """``a.x, a.y, b`` → ``a.* (2), b``: key names grouped by their top-level module."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        groups.setdefault(key.split(".", 1)[0], []).append(key)
    return ", ".join(
        members[0] if len(members) == 1 else f"{name}.* ({len(members)})" for name, members in groups.items()
    )


def _short_list(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


# --------------------------------------------------------------------------------------------
# reading files
# --------------------------------------------------------------------------------------------


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU.

    A file in torch's zip format (everything ``torch.save`` writes since torch 1.6) is first
    checked against the CRC-32 sums of its zip entries, which ``torch.load`` does not do: a
    damaged byte in the tensor data is reported instead of loading wrong numbers.

    ``weights_only=True`` is tried first. Official training checkpoints also pickle their
    metrics (numpy scalars, metric objects) next to the weights, which the weights-only
    unpickler refuses; for those the file is read again with ``weights_only=False``. That runs
    the pickle, so it is only ever done for a path the user handed over explicitly — never load
    a checkpoint from a source you do not trust.

    Raises:
        CheckpointError: the file is missing, unreadable, truncated, damaged (a zip entry whose
            CRC-32 does not match, or any failure to parse it), or holds something other than a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        _check_zip_crc(path)
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            logger.info("%s holds non-tensor Python objects; reading it with weights_only=False", path)
            obj = torch.load(path, map_location="cpu", weights_only=False)
    except CheckpointError:
        raise
    except MemoryError:
        raise CheckpointError(
            f"cannot read checkpoint {path} (out of memory); a size field in the file is damaged, or the file "
            "is too big for this machine's memory; download or export it again"
        ) from None
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for bad files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(exc).__name__}: {first_line}); the file is truncated, "
            "corrupt or not a PyTorch checkpoint; download or export it again"
        ) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(obj).__name__}, expected a dict (a state dict or "
            f"a training checkpoint with a 'base_model' entry)"
        )
    return dict(obj)


def _check_zip_crc(path: Path) -> None:
    """Raise when an entry of a zip-format checkpoint does not match its stored CRC-32.

    Files in torch's legacy format (not a zip) carry no checksum and are not checked; entries
    stored with a CRC of 0 (written with ``torch.serialization.set_crc32_options(False)``) neither.
    """
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.CRC == 0:
                continue
            try:
                with archive.open(info) as stream:  # checks the CRC-32 when it reaches the end
                    while stream.read(1 << 24):
                        pass
            except zipfile.BadZipFile:
                raise CheckpointError(
                    f"cannot read checkpoint {path}: its entry {info.filename!r} fails the CRC-32 check; "
                    "the file is damaged (a bad copy or disk); download or export it again"
                ) from None


# --------------------------------------------------------------------------------------------
# remapping
# --------------------------------------------------------------------------------------------


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                changed = True
    return key


def _unwrap(checkpoint: Mapping[str, Any]) -> tuple[Mapping[str, Any], bool]:
    """The state dict inside a training checkpoint, and whether it came from a container."""
    for key in CONTAINER_KEYS:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            return inner, True
    return checkpoint, False


def checkpoint_filter_fn(checkpoint: Mapping[str, Any], model: nn.Module | None = None) -> RemappedCheckpoint:
    """Turn any supported checkpoint layout into the backbone's key names.

    Args:
        checkpoint: a training checkpoint (``{'base_model': sd, ...}``, ``{'model': sd}``,
            ``{'state_dict': sd}``) or a bare state dict, as returned by ``torch.load``.
        model: the model it will be loaded into, or None. Its ``checkpoint_layouts`` (layout
            names) are tried first; layouts that depend on the model are tried only for models
            that name them.

    Returns:
        The remapped tensors, the layout name and the keys dropped on purpose.
    """
    raw, from_container = _unwrap(checkpoint)
    tensors: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    for key, value in raw.items():
        if isinstance(value, torch.Tensor):
            tensors[_strip_prefixes(str(key))] = value
        else:
            ignored.append(str(key))

    for layout in layouts_for(model):
        if layout.matches(tensors, model):
            remapped, dropped = layout.remap(tensors)
            return RemappedCheckpoint(remapped, layout.name, ignored + dropped)

    return RemappedCheckpoint(tensors, "finetuned" if from_container else "state_dict", ignored)


def layouts_for(model: nn.Module | None) -> list[CheckpointLayout]:
    """The layouts tried for ``model``, in order: the ones it names, then the generic ones.

    Raises:
        CheckpointError: the model names a layout that does not exist.
    """
    named = list(getattr(model, "checkpoint_layouts", ()) or ())
    unknown = [name for name in named if name not in CHECKPOINT_LAYOUTS]
    if unknown:
        raise CheckpointError(
            f"{type(model).__name__}.checkpoint_layouts names {unknown}, which are not layouts; "
            f"known layouts: {', '.join(CHECKPOINT_LAYOUTS)}"
        )
    ordered = [CHECKPOINT_LAYOUTS[name] for name in named]
    ordered += [layout for layout in CHECKPOINT_LAYOUTS.values() if layout.generic and layout.name not in named]
    return ordered


# --------------------------------------------------------------------------------------------
# loading into a model
# --------------------------------------------------------------------------------------------


def _head_prefixes(model: nn.Module) -> tuple[str, ...]:
    return tuple(f"{name}." for name in getattr(model, "head_module_names", ()))


def stored_model_info(checkpoint: Mapping[str, Any]) -> dict[str, Any] | None:
    """The rebuild information a checkpoint of this toolkit carries (:data:`MODEL_INFO_KEY`), or None."""
    info = checkpoint.get(MODEL_INFO_KEY)
    return dict(info) if isinstance(info, Mapping) else None


def load_checkpoint(
    model: nn.Module,
    source: str | os.PathLike | Mapping[str, Any],
    *,
    strict: bool | None = None,
    source_name: str | None = None,
) -> LoadReport:
    """Load a checkpoint of any supported layout into ``model``.

    Args:
        model: a backbone from :func:`backbones.create_backbone` (or any module whose key names
            follow the official models, docs/formats.md).
        source: a file path, or a dict already read with ``torch.load``.
        source_name: how the report names a dict source (default ``"<dict>"``).
        strict: require that the checkpoint covers every model key and has no extra keys.
            ``None`` (default): strict for fine-tuned / plain layouts, non-strict for
            pre-training layouts (which lack the cls token and the head by design).

    Returns:
        A :class:`LoadReport` (its summary is also logged at INFO level to ``backbones.checkpoint``).
        Nothing is written into the model when an error is raised.

    Raises:
        CheckpointError: unreadable file, a tensor whose shape differs from the model's (the
            message names the key and both shapes), nothing of the backbone in the checkpoint,
            or — when strict — missing or unexpected keys.
    """
    if isinstance(source, Mapping):
        checkpoint, source_name = source, source_name or "<dict>"
    else:
        checkpoint, source_name = read_checkpoint(source), str(source)
    remapped = checkpoint_filter_fn(checkpoint, model)
    strict = remapped.strict_by_default if strict is None else strict

    model_state = model.state_dict()
    ckpt = remapped.state_dict
    loaded = [key for key in model_state if key in ckpt]
    missing = [key for key in model_state if key not in ckpt]
    unexpected = [key for key in ckpt if key not in model_state]

    mismatched = [key for key in loaded if tuple(ckpt[key].shape) != tuple(model_state[key].shape)]
    if mismatched:
        details = "; ".join(
            f"{key}: checkpoint {tuple(ckpt[key].shape)} vs model {tuple(model_state[key].shape)}"
            for key in mismatched[:5]
        )
        more = f" (and {len(mismatched) - 5} more)" if len(mismatched) > 5 else ""
        raise CheckpointError(
            f"checkpoint {source_name} (layout {remapped.layout}) does not fit the model: {details}{more}. "
            f"Build the model with the sizes the checkpoint was trained with (num_classes, trans_dim, "
            f"encoder_dims, ...)"
        )

    head = _head_prefixes(model)
    if not any(not key.startswith(head) for key in loaded):
        sample = ", ".join(list(ckpt)[:5]) or "(no tensors)"
        example = next((key for key in model_state if not key.startswith(head)), "")
        prefixes = ", ".join(repr(layout.prefix) for layout in CHECKPOINT_LAYOUTS.values() if layout.generic)
        raise CheckpointError(
            f"checkpoint {source_name} contains nothing of the {type(model).__name__} backbone; "
            f"its first keys are: {sample}. Expected its official keys such as {example!r} "
            f"(optionally under 'base_model', 'module.' or a pre-training prefix: {prefixes})"
        )

    if strict and (missing or unexpected):
        raise CheckpointError(
            f"checkpoint {source_name} (layout {remapped.layout}) does not match the model exactly: "
            f"{len(missing)} missing [{_short_list(missing, 6)}], {len(unexpected)} unexpected "
            f"[{_short_list(unexpected, 6)}]. Pass strict=False to load what matches"
        )

    model.load_state_dict({key: ckpt[key] for key in loaded}, strict=False)
    report = LoadReport(
        layout=remapped.layout,
        source=source_name,
        loaded=loaded,
        missing=missing,
        unexpected=unexpected,
        ignored=remapped.ignored,
    )
    logger.info("%s", report.summary())
    return report
