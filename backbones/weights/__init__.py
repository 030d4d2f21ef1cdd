"""Pre-trained weights shipped inside the package, found without a path and checked by SHA-256.

``backbones.create_backbone(name, num_classes=C, pretrained=True)`` and
``backbones.create_pretrainer(name, pretrained=True)`` load the file of ``name`` here after
checking its SHA-256 (a damaged or replaced file is a :class:`~backbones.errors.CheckpointError`).
How each file was made — command, config, seed — is in docs/recipes.md ("The shipped
pre-trained backbone").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from backbones.errors import CheckpointError

WEIGHTS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ShippedWeights:
    """One shipped file.

    Attributes:
        file: its name in this folder.
        sha256: the hex SHA-256 of the file as shipped.
        description: what it is and how it was made, in one line.
    """

    file: str
    sha256: str
    description: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.file


#: Registered name (backbone and pre-training network alike) -> its shipped weights.
SHIPPED_WEIGHTS: dict[str, ShippedWeights] = {}

_VERIFIED: dict[tuple[Path, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shipped_weights_path(name: str) -> Path:
    """The checked path of ``name``'s shipped weights.

    Raises:
        KeyError: ``name`` has no shipped weights (callers check :data:`SHIPPED_WEIGHTS` first).
        CheckpointError: the file is missing or its SHA-256 is not the recorded one.
    """
    weights = SHIPPED_WEIGHTS[name]
    path = weights.path
    if not path.is_file():
        raise CheckpointError(
            f"the shipped weights of {name!r} are missing: {path} does not exist; reinstall pcclora "
            "(the file is package data of 'backbones')"
        )
    stat = path.stat()
    key = (path, stat.st_size, stat.st_mtime_ns)
    if key not in _VERIFIED:
        _VERIFIED[key] = file_sha256(path)
    if _VERIFIED[key] != weights.sha256:
        raise CheckpointError(
            f"the shipped weights of {name!r} are damaged: {path} has SHA-256 {_VERIFIED[key]}, expected "
            f"{weights.sha256}; reinstall pcclora"
        )
    return path
