"""Run configurations: packaged YAML files, ``_base_`` inheritance and ``--set`` overrides.

A configuration is a nested dict with the top-level ``task`` and seven sections (``backbone``,
``peft``, ``dataset``, ``optimizer``, ``scheduler``, ``training``, and ``pretraining``, read by
pre-training runs only). Configs of the official repositories (Point-MAE,
Point-BERT, ACT, ReCon, PointGPT) are read as they are and translated
(:mod:`pcclora.official_config`). Every file is merged on top of the packaged
``_base_/defaults.yaml``, which is also the schema: a key that is not there is a mistake and is
reported with the nearest valid key. The ``peft`` block belongs to :mod:`pcclora.peft`; its keys
and defaults come from :func:`pcclora.resolve_peft_config`.

>>> cfg = load_config("scanobjectnn_hardest", ["peft.rank=4"])  # doctest: +SKIP
>>> cfg["peft"]["rank"]                                          # doctest: +SKIP
4
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from backbones.errors import ConfigError, UnknownNameError, did_you_mean, unknown_name_message
from pcclora.peft import PEFT_METHODS, resolve_peft_config
from pcclora.peft.config import peft_schema

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULTS_FILE = CONFIG_DIR / "_base_" / "defaults.yaml"
BASE_KEY = "_base_"
PEFT_SECTION = "peft"
#: Keys of the ``backbone:`` section that are not model sizes.
BACKBONE_KEYS = ("name", "checkpoint", "pretrained", "num_classes")
#: Packaged folders that hold config pieces, not configs: ``_base_`` and the per-method recipes.
PIECE_FOLDERS = (BASE_KEY, "methods")


def available_configs() -> list[str]:
    """Names of the packaged Point-MAE / Point-BERT configs (without ``.yaml``), ``_base_`` pieces
    excluded; the other backbones' configs are :func:`backbone_configs`."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))


def backbone_configs() -> list[str]:
    """The packaged configs of the other zoo backbones, one folder per backbone as in the official
    repositories: ``act/scanobjectnn_hardest``, ``pointgpt_l/modelnet40``, …"""
    return sorted(
        f"{path.parent.name}/{path.stem}"
        for path in CONFIG_DIR.glob("*/*.yaml")
        if path.parent.name not in PIECE_FOLDERS
    )


def config_name(path: Path) -> str:
    """A config's run name: its file stem; ``<backbone>_<stem>`` for a packaged backbone-folder
    config (``recon/scanobjectnn_hardest`` → ``recon_scanobjectnn_hardest``)."""
    path = Path(path).resolve()
    folder = path.parent
    if folder.parent == CONFIG_DIR.resolve() and folder.name not in PIECE_FOLDERS:
        return f"{folder.name}_{path.stem}"
    return path.stem


def config_description(name: str) -> str:
    """The first comment line of a packaged config (what it is), without the ``#``."""
    for line in (CONFIG_DIR / f"{name}.yaml").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def resolve_config_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """Find a config file.

    An existing path (absolute, relative to the current folder, or relative to
    ``relative_to`` for ``_base_`` entries) is used as given; otherwise a bare name such as
    ``scanobjectnn_hardest`` or ``scanobjectnn_hardest.yaml`` is looked up among the packaged
    configs.
    """
    raw = Path(name_or_path).expanduser()
    candidates = [raw]
    if relative_to is not None and not raw.is_absolute():
        candidates.insert(0, relative_to / raw)
    if not raw.is_absolute():
        candidates.append(CONFIG_DIR / raw)
        if raw.suffix != ".yaml":
            candidates.append(CONFIG_DIR / raw.with_name(raw.name + ".yaml"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    names = available_configs() + backbone_configs()
    raise ConfigError(
        f"config {str(name_or_path)!r} not found (neither a file nor a packaged config)"
        f"{did_you_mean(str(name_or_path).removesuffix('.yaml'), names)}; packaged configs: {', '.join(names)}"
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"config {path} cannot be read as text ({type(error).__name__}: {error}); give a YAML file"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a mapping of sections, found {type(data).__name__}")
    return data


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``update`` merged into ``base``; nested mappings merge, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_with_bases(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The file's mapping with its ``_base_`` files (a name or a list) merged underneath."""
    if path in chain:
        cycle = " -> ".join(str(p.name) for p in (*chain, path))
        raise ConfigError(f"config {path} inherits from itself ({cycle}); remove the cycle in '_base_'")
    data = _read_yaml(path)
    bases = data.pop(BASE_KEY, None) or []
    data = check_values(data, f"config {path}")
    if isinstance(bases, str):
        bases = [bases]
    merged: dict[str, Any] = {}
    for base in bases:
        base_path = resolve_config_path(base, relative_to=path.parent)
        merged = deep_merge(merged, _load_with_bases(base_path, (*chain, path)))
    return deep_merge(merged, data)


#: A string that a person means as a number: ``1e-4``, ``5E-4``, ``+0.5``, ``.5``, ``3``.
_NUMBER_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
#: Keys whose default is an int but that take any number.
_ANY_NUMBER_KEYS = frozenset({"peft.alpha"})


def _defaults() -> dict[str, Any]:
    """``defaults.yaml`` with every key of the ``peft`` block (common keys and each method's
    option block) and its default: the schema of every value."""
    defaults = _read_yaml(DEFAULTS_FILE)
    defaults[PEFT_SECTION] = peft_schema()
    return defaults


def check_value(
    dotted: str, value: Any, expected: Any, label: str, shown: str = "the default", nullable: bool = False
) -> Any:
    """``value`` checked against ``expected`` (the default, or the current value) and converted.

    The rules, one for config files and ``--set`` alike:

    - ``expected`` is None: any value (sizes and paths whose default is null);
    - null is accepted only where ``nullable`` (the key's default is null);
    - a float takes an int or a string that reads as a number (``1e-4``: YAML reads it as a
      string), and returns a float; ``peft.alpha`` takes any number;
    - a bool takes only true/false; an int only an int; a list also one string (a list of one);
    - anything else needs the type of ``expected``.

    Args:
        dotted: the key, e.g. ``"optimizer.lr"``.
        label: how the message starts, e.g. ``"--set optimizer.lr='x'"``.
        shown: how the message names ``expected``: ``"the default"`` or ``"the current value"``.

    Raises:
        ConfigError: ``"<label>: expected a float like the default 0.0005, got a str"``.
    """
    if expected is None or (value is None and nullable):
        return value
    number_text = isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()) is not None
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if value is None:
        accepted = False
    elif isinstance(expected, bool):
        accepted = isinstance(value, bool)
    elif isinstance(expected, float) or dotted in _ANY_NUMBER_KEYS:
        if number_text:
            return float(value)
        accepted = is_number
        if accepted and isinstance(expected, float):
            return float(value)
    elif isinstance(expected, int):
        accepted = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(expected, list):
        if isinstance(value, str):
            return [value]
        accepted = isinstance(value, list)
    else:
        accepted = isinstance(value, type(expected))
    if not accepted:
        got = "null" if value is None else _type_name(value)
        raise ConfigError(f"{label}: expected {_type_name(expected)} like {shown} {expected!r}, got {got}")
    return value


def check_values(
    config: Mapping[str, Any], label: str, schema: Mapping[str, Any] | None = None, prefix: str = ""
) -> dict[str, Any]:
    """A copy of ``config`` (part of a config file) with every key and value checked against the defaults.

    Args:
        label: how messages start, e.g. ``"config my.yaml"``.
        schema: the defaults of this level (None = the whole :func:`_defaults`).

    Raises:
        UnknownNameError: a key that is not in the defaults (with the nearest valid one); unknown
            keys of the ``peft`` block are left to :func:`pcclora.resolve_peft_config`.
        ConfigError: a section that is not a mapping, or a value of the wrong type (:func:`check_value`).
    """
    schema = _defaults() if schema is None else schema
    checked: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if key not in schema:
            if prefix.startswith(f"{PEFT_SECTION}."):  # the peft schema reports its own unknown keys
                checked[key] = value
                continue
            valid = [f"{prefix}{name}" for name in schema]
            raise UnknownNameError(unknown_name_message("config key", dotted, valid))
        if isinstance(schema[key], Mapping):
            if dotted == PEFT_SECTION and value is None:
                checked[key] = value
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"{label}: config key {dotted!r} must be a section (a mapping), got {value!r}")
            checked[key] = check_values(value, label, schema[key], prefix=f"{dotted}.")
        else:
            checked[key] = check_value(
                dotted, value, schema[key], f"{label}: {dotted}={value!r}", nullable=schema[key] is None
            )
    return checked


def _resolve_peft(block: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(resolve_peft_config(block))  # the adapters own the peft block's schema


def _without_unused_common_keys(block: Any) -> Any:
    """The ``peft`` block without the common keys its method does not read (see :func:`load_config`)."""
    from pcclora.peft import METHODS

    if not isinstance(block, Mapping):
        return block
    spec = METHODS.get(block.get("method", "clora"))
    if spec is None or spec.common_keys is None:
        return dict(block)
    from pcclora.peft.methods import COMMON_KEYS

    return {key: value for key, value in block.items() if key not in COMMON_KEYS or key in spec.common_keys}


def size_overrides(backbone_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The model sizes a ``backbone:`` section sets, as keyword options of ``create_backbone``.

    Every key of the section other than :data:`BACKBONE_KEYS` is a size under the backbone's
    official config name; ``None`` means the backbone's default and is left out.
    """
    return {key: value for key, value in backbone_cfg.items() if key not in BACKBONE_KEYS and value is not None}


def _dotted_keys(config: Mapping[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in config.items():
        keys.append(f"{prefix}{key}")
        if isinstance(value, Mapping):
            keys.extend(_dotted_keys(value, f"{prefix}{key}."))
    return keys


def _type_name(value: Any) -> str:
    name = "list" if isinstance(value, list) else type(value).__name__
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"training.seed=3"`` -> (``["training", "seed"]``, 3); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key.sub=value, e.g. --set training.seed=1")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_override(
    config: dict[str, Any], reference: Mapping[str, Any], text: str, schema: Mapping[str, Any] | None = None
) -> None:
    """Apply one ``key.sub=value`` to ``config`` in place, checked against ``reference``.

    ``reference`` is the fully resolved config (defaults filled), so a key the user did not
    write but that has a default can be overridden, and the value is checked against it with
    :func:`check_value`, like the values of a config file (``1e-4`` is a float where one is
    expected). Null is accepted where the default (``schema``, None = :func:`_defaults`) is null.

    Raises:
        UnknownNameError: an unknown key (with the nearest valid one).
        ConfigError: not ``key=value``, a section instead of a key, or a value of the wrong type.
    """
    path, value = parse_override(text)
    node_ref: Any = reference
    for depth, part in enumerate(path):
        dotted = ".".join(path[: depth + 1])
        if not isinstance(node_ref, Mapping) or part not in node_ref:
            valid = _dotted_keys(reference)
            raise UnknownNameError(
                f"--set {text!r}: unknown config key {dotted!r}{did_you_mean('.'.join(path), valid)}"
            )
        node_ref = node_ref[part]
    if isinstance(node_ref, Mapping):
        raise ConfigError(f"--set {text!r}: {'.'.join(path)!r} is a section; set one of its keys instead")
    default: Any = _defaults() if schema is None else schema
    for part in path:
        default = default.get(part) if isinstance(default, Mapping) else None
    dotted = ".".join(path)
    value = check_value(
        dotted, value, node_ref, f"--set {dotted}={value!r}", shown="the current value", nullable=default is None
    )
    node = config
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def _merge_onto_defaults(raw: Mapping[str, Any]) -> dict[str, Any]:
    raw = check_values(raw, "config")
    return deep_merge(_read_yaml(DEFAULTS_FILE), raw)


#: Folder of the packaged per-method recipes (``methods/<method>.yaml``).
METHOD_RECIPE_DIR = CONFIG_DIR / "methods"


def method_recipe(method: str) -> dict[str, Any]:
    """The packaged recipe of ``method`` (``configs/methods/<method>.yaml``): the ``peft:`` block
    and the settings where the official recipe differs from the defaults (augmentation, drop
    path, ...). A method without a recipe file gets ``{"peft": {"method": method}}``.

    Raises:
        UnknownNameError: ``method`` is not a PEFT method.
    """
    if method not in PEFT_METHODS:
        raise UnknownNameError(unknown_name_message("peft method", method, PEFT_METHODS, cutoff=0.6))
    path = METHOD_RECIPE_DIR / f"{method}.yaml"
    recipe = _load_with_bases(path) if path.is_file() else {}
    return deep_merge(recipe, {PEFT_SECTION: {"method": method}})


def load_config(
    name_or_path: str | Path,
    overrides: Iterable[str] = (),
    method: str | None = None,
    lenient_peft: bool = False,
    echo: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Load a config by packaged name or path, apply ``--set`` overrides, fill all defaults.

    A file in the official repositories' schema (``optimizer.type``, ``model.NAME``, nested
    dataset ``_base_`` files, …) is translated first (:mod:`pcclora.official_config`); ``echo``
    receives the translation, one line per official key (the tools print it).

    Args:
        name_or_path: ``"scanobjectnn_hardest"``, ``"scanobjectnn_hardest.yaml"``,
            ``"recon/scanobjectnn_hardest"`` or a path (also of an official config).
        overrides: ``"section.key=value"`` strings; values are parsed as YAML and must have the
            type of the value they replace.
        method: merge the packaged recipe of this PEFT method (:func:`method_recipe`) over the
            config before the overrides (``tools/finetune.py --method``, ``tools/compare.py``).
        lenient_peft: leave out the ``peft`` block's common keys (``rank``, ``num_bases``, ...)
            that its method does not read instead of refusing a non-default value, so that one
            list of overrides can serve several methods (``tools/compare.py``,
            ``tools/profile_flops.py``).
        echo: called with each line of an official config's translation.

    Returns:
        The resolved config (a plain nested dict), with ``config["name"]`` set to the file stem
        (``<backbone>_<stem>`` for a packaged backbone-folder config).

    Raises:
        ConfigError: unknown name, invalid YAML, unknown key (with the nearest valid one), a
            value of the wrong type, an invalid ``peft`` block, or official keys without an
            equivalent.
    """
    path = resolve_config_path(name_or_path)
    data = _read_yaml(path)
    from pcclora.official_config import is_official_config, translate_official_config

    if is_official_config(data):
        translation = translate_official_config(path, data)
        for line in translation.lines:
            if echo is not None:
                echo(line)
        raw = translation.config
    else:
        raw = _load_with_bases(path)
    if method is not None:
        raw = deep_merge(raw, method_recipe(method))
    return config_from_dict(raw, overrides, name=config_name(path), lenient_peft=lenient_peft)


def config_from_dict(
    raw: Mapping[str, Any], overrides: Iterable[str] = (), name: str = "config", lenient_peft: bool = False
) -> dict[str, Any]:
    """Resolve an already loaded mapping (e.g. a run's saved ``config.yaml``) like :func:`load_config`.

    A ``name`` entry in ``raw`` (written into every resolved config) is replaced by ``name``.
    ``lenient_peft``: as :func:`load_config`.
    """
    raw = {key: value for key, value in raw.items() if key != "name"}
    merged = _merge_onto_defaults(raw)
    if lenient_peft:
        merged[PEFT_SECTION] = _without_unused_common_keys(merged.get(PEFT_SECTION))
    overrides = list(overrides)
    if overrides:
        reference = copy.deepcopy(merged)
        # every peft key may be set (any method's options too); values are checked against the
        # current ones, and against the defaults where the block does not hold them
        reference[PEFT_SECTION] = deep_merge(peft_schema(), _resolve_peft(merged.get(PEFT_SECTION)))
        schema = _defaults()
        for text in overrides:
            apply_override(merged, reference, text, schema)
    if lenient_peft:
        merged[PEFT_SECTION] = _without_unused_common_keys(merged.get(PEFT_SECTION))
    _default_targets_of_backbone(merged)
    merged[PEFT_SECTION] = _resolve_peft(merged.get(PEFT_SECTION))
    derive_schedule_length(merged)
    merged["name"] = name
    return merged


def _default_targets_of_backbone(config: dict[str, Any]) -> None:
    """Fill ``peft.target_modules`` with the backbone's own default targets (PointGPT's extractor
    ``attn.out_proj`` / ``mlp.0`` / ``mlp.2``) when the config and ``--set`` do not name any; likewise
    ``peft.trainable_extra`` for a backbone that declares its own (``point_mae_seg``: none)."""
    peft = config.get(PEFT_SECTION)
    if peft is not None and not isinstance(peft, Mapping):
        return  # resolve_peft_config reports it
    from backbones.registry import backbone_target_modules, backbone_trainable_extra

    name = str(config["backbone"]["name"])
    targets = backbone_target_modules(name)
    if targets and (peft is None or "target_modules" not in peft):
        peft = config[PEFT_SECTION] = {**(peft or {}), "target_modules": targets}
    extra = backbone_trainable_extra(name)
    if extra is not None and (peft is None or "trainable_extra" not in peft):
        config[PEFT_SECTION] = {**(peft or {}), "trainable_extra": extra}


#: The official warm-up, in epochs; a run shorter than ten times this warms up for a tenth of it.
DEFAULT_WARMUP_EPOCHS = 10


def derive_schedule_length(config: dict[str, Any]) -> None:
    """Fill ``scheduler.epochs`` and ``scheduler.warmup_epochs`` left null from the run length, in place.

    ``epochs`` becomes ``training.max_epoch`` (at least 1), so the cosine ends where the run ends
    (the official 300 / 300); ``warmup_epochs`` becomes 10, or a tenth of the run when it has
    fewer than 100 epochs, so a shortened run (``--set training.max_epoch=1``) trains at the
    configured lr instead of spending every epoch in warm-up. Values the user set stay.
    """
    scheduler, max_epoch = config["scheduler"], config["training"]["max_epoch"]
    if not isinstance(max_epoch, int) or isinstance(max_epoch, bool):
        return  # check_run_numbers reports it
    if scheduler["epochs"] is None:
        scheduler["epochs"] = max(max_epoch, 1)
    if scheduler["warmup_epochs"] is None:
        scheduler["warmup_epochs"] = min(DEFAULT_WARMUP_EPOCHS, max_epoch // 10)


#: The largest learning rate a config may set (optimizer.lr, scheduler.lr_min, warmup_lr_init).
#: AdamW moves every weight by about lr per step, so even 10 destroys any pre-trained weight;
#: much larger values overflow float32 inside the optimizer.
MAX_LEARNING_RATE = 10.0

# Each number of a run: its smallest value, whether that value itself is allowed, its largest.
_RUN_NUMBER_BOUNDS = (
    ("dataset.npoints", 1, True, None),
    ("training.max_epoch", 0, True, None),
    ("training.seed", 0, True, None),
    ("training.batch_size", 1, True, None),
    ("training.test_batch_size", 1, True, None),
    ("training.num_workers", 0, True, None),
    ("training.grad_clip", 0, True, None),
    ("training.vote", 0, True, None),
    ("training.progress_interval", 0, True, None),
    ("training.label_smoothing", 0, True, None),
    ("training.cls_lr_scale", 0, False, None),
    ("optimizer.lr", 0, False, MAX_LEARNING_RATE),
    ("optimizer.weight_decay", 0, True, None),
    ("scheduler.epochs", 1, True, None),
    ("scheduler.warmup_epochs", 0, True, None),
    ("scheduler.lr_min", 0, True, MAX_LEARNING_RATE),
    ("scheduler.warmup_lr_init", 0, True, MAX_LEARNING_RATE),
    ("pretraining.val_every", 0, True, None),
    ("pretraining.probe_l2", 0, True, None),
    ("pretraining.probe_max_iter", 1, True, None),
    ("pretraining.probe.npoints", 1, True, None),
)


def check_run_numbers(config: Mapping[str, Any]) -> None:
    """Check the training, optimizer and scheduler numbers of a resolved config before a run starts.

    Every number must be finite and in its range; the learning rates at most
    :data:`MAX_LEARNING_RATE`.

    Raises:
        ConfigError: a number that is not a finite number or out of range (e.g.
            ``training.batch_size=0``, ``optimizer.lr=-1``, ``optimizer.lr=1e40``, ``training.grad_clip=.nan``).
    """
    for dotted, low, inclusive, high in _RUN_NUMBER_BOUNDS:
        value: Any = config
        for part in dotted.split("."):
            value = value[part]
        hint = f"(set it in the config or with --set {dotted}=...)"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{dotted} must be a finite number, got {value!r} {hint}")
        if value < low or (value == low and not inclusive):
            bound = f">= {low}" if inclusive else f"> {low}"
            raise ConfigError(f"{dotted} must be {bound}, got {value} {hint}")
        if high is not None and value > high:
            raise ConfigError(f"{dotted} must be <= {high:g}, got {value} {hint}")
    num_classes = config["backbone"]["num_classes"]
    if num_classes is not None and num_classes < 1:
        raise ConfigError(
            f"backbone.num_classes must be >= 1, or null for the dataset's class count; got {num_classes}"
        )
    if config["training"]["label_smoothing"] >= 1:
        raise ConfigError(f"training.label_smoothing must be below 1, got {config['training']['label_smoothing']}")


#: Config keys that hold paths of files the run reads.
PATH_KEYS = (("dataset", "root"), ("backbone", "checkpoint"), ("pretraining", "probe", "root"))


def with_absolute_paths(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` whose data folder and backbone checkpoint are absolute paths.

    A run stores its config in its folder and in its checkpoints; absolute paths let ``test.py``,
    ``--resume`` and predictions find the same files from any working folder.
    """
    resolved = copy.deepcopy(dict(config))
    for *sections, key in PATH_KEYS:
        node = resolved
        for section in sections:
            node = node[section]
        if node[key] is not None:  # str(): YAML reads a bare number as an int
            node[key] = str(Path(str(node[key])).expanduser().absolute())
    return resolved


def dump_config(config: Mapping[str, Any]) -> str:
    """The config as YAML text, keys in the order they were defined."""
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)
