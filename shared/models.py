"""The pretrained model folders this process offers, by name: a study names a model, never a path.

A site lists its folders in its own site.toml (`[models]`), the server in its kit (`server/models.toml`), a
simulation on its command line. Whatever a study says, it can only pick one of those names; a refusal sent back
says which name failed, never where the folder is or what its files hash to (that detail goes to the local log).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ConfigError

log = logging.getLogger("medfed.models")
MODELS_ENV = "MEDFED_MODELS"  # the server's models.toml, set by `medfed-server start`
_offered: dict[str, OfferedModel] = {}


@dataclass(frozen=True)
class OfferedModel:
    """One local model folder, optionally pinned to the SHA-256 of its weights file."""

    path: Path
    sha256: str = ""


def parse_models(raw: Mapping[str, Any], source: str, base: Path | None = None) -> dict[str, OfferedModel]:
    """`name = "folder"` or `name = { path = "folder", sha256 = "..." }` entries; relative to `base` if given."""
    models = {}
    for name, entry in raw.items():
        spec = entry if isinstance(entry, dict) else {"path": entry}
        if not isinstance(spec.get("path"), str) or set(spec) - {"path", "sha256"}:
            raise ConfigError(f"models.{name}", 'must be a folder, or { path = "...", sha256 = "..." }', source=source)
        path = Path(spec["path"]).expanduser()
        path = path if path.is_absolute() or base is None else base / path
        models[str(name)] = OfferedModel(path, spec.get("sha256", ""))
    return models


def offer_file(path: Path) -> None:
    """Offer the models a TOML file lists (the server kit's models.toml), as `name = "folder"` lines."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("models", f"cannot be read ({exc})", source=f"models file {path}") from exc
    offer(parse_models(raw, f"models file {path}", path.parent))


def offer(models: Mapping[str, OfferedModel]) -> None:
    """Make exactly these models available to this process (replacing what it offered before)."""
    _offered.clear()
    _offered.update(models)


def resolve(name: str, pin: str, files: tuple[str, ...], weights: tuple[str, ...]) -> Path:
    """The offered folder called `name`, holding `files` and one of `weights`, whose weights match `pin` (the
    study's) and the owner's own pin; refusals name the model only."""
    model = _offered.get(name)
    if model is None:
        raise ConfigError("model.encoder", f"names '{name}', which is not a model offered here")
    folder = model.path
    found = next((folder / f for f in weights if (folder / f).is_file()), None)
    missing = [f for f in files if not (folder / f).is_file()] + ([] if found else [" or ".join(weights)])
    if missing:
        log.error("model '%s': folder %s lacks %s (Hugging Face format expected)", name, folder, ", ".join(missing))
        raise ConfigError("model.encoder", f"'{name}' is not usable here (the local log says why)")
    digest = _sha256(found, found.stat().st_mtime_ns, found.stat().st_size)
    for owner, want in (("its owner's", model.sha256), ("the study's", pin)):
        if want and digest != want.lower():
            log.error("model '%s': %s has SHA-256 %s, %s pin is %s", name, found, digest, owner, want)
            raise ConfigError("model.sha256", f"this copy of model '{name}' does not match {owner} pin")
    return folder


@functools.lru_cache(maxsize=16)
def _sha256(path: Path, mtime_ns: int, size: int) -> str:
    return file_sha256(path)


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
