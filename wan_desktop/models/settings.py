"""The orchestrator's persistent settings: a small TOML file in the user config folder.

The app's Settings panel edits it through :func:`load_settings` / :func:`save_settings`;
:class:`~.config.OrchestratorConfig` reads it and lets environment variables override it.
Sizes may be written as ``"200GB"`` and ages as ``"30d"``::

    # orchestrator.toml
    quota = "500GB"                 # all models together; over it, GC removes the LRU ones
    max_age = "90d"                 # models unused this long are collected when room is needed
    max_concurrent_downloads = 4
    parts_per_file = 4              # parallel ranged requests per large file
    part_size = "64MB"
    manifest_public_key = "…"       # ed25519, base64 or hex: models.toml.sig is checked with it
    require_manifest_signature = false

    [family_quota]
    wan22 = "300GB"
"""

from __future__ import annotations

import re
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .atomic import atomic_write
from .errors import SettingsError

SETTINGS_FILE = "orchestrator.toml"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str | int) -> int:
    """``"200GB"`` → 200·10⁹ bytes; ``"64MiB"`` → 64·2²⁰; a bare number is bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"size {text} is negative")
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"size {text!r} is not like 200GB, 64MiB or 1048576")
    number = float(m.group(1))
    unit = (m.group(2) or "").upper().removesuffix("B")  # "GIB" → "GI", "GB" → "G"
    if not unit:
        return int(number)
    power = "KMGT".index(unit[0]) + 1
    return int(number * (1024 if unit.endswith("I") else 1000) ** power)


def format_size(n: float | None) -> str:
    """Bytes for people, the one way the app writes a size: binary units with their IEC names
    (``1.5 GiB``, ``420 KiB``), as the CLI, the API's messages and the desktop app show them."""
    if n is None:
        return "unknown size"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def parse_duration(text: str | float) -> float:
    """``"30d"`` → seconds; also ``s``, ``m``, ``h``, ``w``; a bare number is seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        return float(text)
    m = _DURATION.match(str(text))
    if not m:
        raise ValueError(f"duration {text!r} is not like 30d, 12h or 3600")
    return float(m.group(1)) * _SECONDS[m.group(2).lower()]


@dataclass(frozen=True)
class Settings:
    quota_bytes: int | None = None
    family_quota_bytes: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    max_age_s: float | None = None
    max_concurrent_downloads: int | None = None
    parts_per_file: int | None = None
    part_size_bytes: int | None = None
    manifest_public_key: str | None = None
    require_manifest_signature: bool = False


# file key → (Settings field, parser)
_KEYS: dict[str, tuple[str, Any]] = {
    "quota": ("quota_bytes", parse_size),
    "max_age": ("max_age_s", parse_duration),
    "max_concurrent_downloads": ("max_concurrent_downloads", int),
    "parts_per_file": ("parts_per_file", int),
    "part_size": ("part_size_bytes", parse_size),
    "manifest_public_key": ("manifest_public_key", str),
    "require_manifest_signature": ("require_manifest_signature", bool),
}
_FIELD_TO_KEY = {f: k for k, (f, _) in _KEYS.items()}
_save_lock = threading.Lock()


def load_settings(path: Path) -> Settings:
    """The settings in ``path``; defaults when it does not exist."""
    try:
        raw = path.read_text("utf-8")
    except FileNotFoundError:
        return Settings()
    except OSError as exc:
        raise SettingsError(
            f"cannot read settings {path}: {exc.strerror or exc}",
            fix="fix the file's permissions or set WAN_CONFIG_DIR to another folder",
        ) from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(
            f"settings {path} are not valid TOML: {exc}", fix="fix the syntax at the position shown"
        ) from None
    return settings_from_dict(data, where=str(path))


def settings_from_dict(data: Mapping[str, Any], *, where: str = "settings") -> Settings:
    values: dict[str, Any] = {}
    unknown = set(data) - set(_KEYS) - {"family_quota"}
    if unknown:
        raise SettingsError(
            f"{where} has unknown keys: {', '.join(sorted(unknown))}",
            fix=f"use: {', '.join(sorted([*_KEYS, 'family_quota']))}",
        )
    for key, (name, parse) in _KEYS.items():
        if key not in data:
            continue
        value = data[key]
        try:
            if parse is bool and not isinstance(value, bool):
                raise ValueError("must be true or false")
            values[name] = parse(value)
        except (TypeError, ValueError) as exc:
            raise SettingsError(
                f"{where}: {key} = {value!r} is invalid ({exc})", fix=f"correct or remove {key}"
            ) from None
    fam = data.get("family_quota", {})
    if not isinstance(fam, Mapping):
        raise SettingsError(f"{where}: family_quota must be a table", fix="write [family_quota]")
    try:
        values["family_quota_bytes"] = MappingProxyType(
            {str(k): parse_size(v) for k, v in fam.items()}
        )
    except ValueError as exc:
        raise SettingsError(f"{where}: family_quota: {exc}", fix="write sizes like 300GB") from None
    for name in ("max_concurrent_downloads", "parts_per_file", "part_size_bytes"):
        if values.get(name) is not None and values[name] < 1:
            raise SettingsError(f"{where}: {_FIELD_TO_KEY[name]} must be at least 1", fix="fix it")
    return Settings(**values)


def save_settings(settings: Settings, path: Path) -> None:
    """Write ``settings`` to ``path`` atomically, keeping the file's comments and other layout."""
    import tomlkit

    with _save_lock:
        try:
            doc = tomlkit.parse(path.read_text("utf-8"))
        except FileNotFoundError:
            doc = tomlkit.document()
        defaults = Settings()
        for f in fields(Settings):
            if f.name == "family_quota_bytes":
                continue
            key = _FIELD_TO_KEY[f.name]
            value = getattr(settings, f.name)
            if value == getattr(defaults, f.name):
                doc.pop(key, None)
            else:
                doc[key] = value
        if settings.family_quota_bytes:
            table = tomlkit.table()
            for fam, size in sorted(settings.family_quota_bytes.items()):
                table[fam] = size
            doc["family_quota"] = table
        else:
            doc.pop("family_quota", None)
        atomic_write(path, tomlkit.dumps(doc))
