"""Orchestrator configuration: every environment variable of ``models/`` is read here, once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

APP_NAME = "wan-desktop"
APP_AUTHOR = "WanDesktop"

ENV_MODELS_ROOT = "MODELS_ROOT"
ENV_MANIFEST = "WAN_MODELS_MANIFEST"
ENV_DEV_MODE = "WAN_DEV_MODE"
ENV_LOCAL_MIRROR = "WAN_LOCAL_MIRROR"
ENV_LOCK_TIMEOUT = "WAN_LOCK_TIMEOUT"
ENV_MAX_CONCURRENT_DOWNLOADS = "WAN_MAX_CONCURRENT_DOWNLOADS"
ENV_FREE_SPACE_RESERVE = "WAN_FREE_SPACE_RESERVE_MB"

# Hours, not seconds: the lock holder may be downloading 60 GB.
DEFAULT_LOCK_TIMEOUT_S = 6 * 3600.0
DEFAULT_MAX_CONCURRENT_DOWNLOADS = 4
# Keep this much free after a download so the OS and the app keep working.
DEFAULT_FREE_SPACE_RESERVE_BYTES = 512 * 1024 * 1024

TRUTHY = frozenset({"1", "true", "yes", "on"})


def env_flag(name: str, environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    return env.get(name, "").strip().lower() in TRUTHY


def default_models_root() -> Path:
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, APP_AUTHOR) / "models"


def _source_manifest() -> Path:
    # Source checkout: the manifest sits at the repository root.
    return Path(__file__).resolve().parents[2] / "models.toml"


def _packaged_manifest() -> Path:
    # Wheels and bundles carry it as package data.
    return Path(__file__).resolve().parents[1] / "resources" / "models.toml"


def default_manifest_path() -> Path:
    packaged = _packaged_manifest()
    return packaged if packaged.is_file() else _source_manifest()


@dataclass(frozen=True)
class OrchestratorConfig:
    models_root: Path
    manifest_path: Path
    dev_mode: bool = False
    local_mirror: Path | None = None
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
    max_concurrent_downloads: int = DEFAULT_MAX_CONCURRENT_DOWNLOADS
    free_space_reserve_bytes: int = DEFAULT_FREE_SPACE_RESERVE_BYTES
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls, environ: dict[str, str] | None = None, **overrides: object
    ) -> OrchestratorConfig:
        env = dict(os.environ if environ is None else environ)
        root = env.get(ENV_MODELS_ROOT)
        manifest = env.get(ENV_MANIFEST)
        mirror = env.get(ENV_LOCAL_MIRROR)
        cfg = cls(
            models_root=Path(root).expanduser() if root else default_models_root(),
            manifest_path=Path(manifest).expanduser() if manifest else default_manifest_path(),
            dev_mode=env_flag(ENV_DEV_MODE, env),
            local_mirror=Path(mirror).expanduser() if mirror else None,
            lock_timeout_s=_float(env, ENV_LOCK_TIMEOUT, DEFAULT_LOCK_TIMEOUT_S),
            max_concurrent_downloads=max(
                1, int(_float(env, ENV_MAX_CONCURRENT_DOWNLOADS, DEFAULT_MAX_CONCURRENT_DOWNLOADS))
            ),
            free_space_reserve_bytes=int(
                _float(env, ENV_FREE_SPACE_RESERVE, DEFAULT_FREE_SPACE_RESERVE_BYTES / 2**20)
                * 2**20
            ),
        )
        return replace(cfg, **overrides) if overrides else cfg  # type: ignore[arg-type]


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number; unset it or give a number") from None
