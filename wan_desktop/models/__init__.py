"""The model orchestrator: one manifest, many sources, verified atomic installs.

Usable alone (``wan models …`` or this API); imports nothing else of the package.

>>> from wan_desktop.models import ensure, status
>>> path = ensure("t2v-A14B@2.2.0", "tiny")          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .cancel import CancelToken
from .config import OrchestratorConfig
from .disk import DiskUsage, ModelUsage
from .errors import (
    AllSourcesFailedError,
    AuthError,
    ErrorCode,
    IntegrityError,
    InUseError,
    LockTimeoutError,
    ManifestError,
    ManifestSignatureError,
    ModelError,
    ModelNotFoundError,
    ModelNotPresentError,
    NoSpaceError,
    PathInvalidError,
    QuotaExceededError,
    RateLimitError,
    SchemaVersionError,
    SettingsError,
    SourceError,
    VariantNotFoundError,
)
from .gc import GcReport
from .manifest import DEV_LABEL, DEV_VARIANT, Manifest, ModelSpec, VariantSpec
from .manifest_load import load_manifest
from .metrics import exposition as metrics_exposition
from .settings import Settings, load_settings, save_settings
from .store import ModelStore
from .types import DownloadProgress, ModelState, ModelStatus, Phase, VerifyReport, WanPaths

__all__ = [
    "DEV_LABEL",
    "DEV_VARIANT",
    "AllSourcesFailedError",
    "AuthError",
    "CancelToken",
    "DiskUsage",
    "DownloadProgress",
    "ErrorCode",
    "GcReport",
    "InUseError",
    "IntegrityError",
    "LockTimeoutError",
    "Manifest",
    "ManifestError",
    "ManifestSignatureError",
    "ModelError",
    "ModelNotFoundError",
    "ModelNotPresentError",
    "ModelSpec",
    "ModelState",
    "ModelStatus",
    "ModelStore",
    "ModelUsage",
    "NoSpaceError",
    "OrchestratorConfig",
    "PathInvalidError",
    "Phase",
    "QuotaExceededError",
    "RateLimitError",
    "SchemaVersionError",
    "Settings",
    "SettingsError",
    "SourceError",
    "VariantNotFoundError",
    "VariantSpec",
    "VerifyReport",
    "WanPaths",
    "default_store",
    "ensure",
    "get_wan_paths",
    "load_manifest",
    "load_settings",
    "metrics_exposition",
    "save_settings",
    "status",
    "verify",
]

_default: ModelStore | None = None


def default_store() -> ModelStore:
    """A store configured from the environment, made on first use."""
    global _default  # noqa: PLW0603 - one lazily built default per process
    if _default is None:
        _default = ModelStore(OrchestratorConfig.from_env())
    return _default


def ensure(
    model_id: str,
    variant: str | None = None,
    *,
    force: bool = False,
    progress: Callable[[DownloadProgress], None] | None = None,
) -> Path:
    return default_store().ensure(model_id, variant, force=force, progress=progress)


def status(model_id: str, variant: str | None = None) -> ModelStatus:
    return default_store().status(model_id, variant)


def verify(model_id: str, variant: str | None = None) -> VerifyReport:
    return default_store().verify(model_id, variant)


def get_wan_paths(model_id: str, variant: str | None = None) -> WanPaths:
    return default_store().get_wan_paths(model_id, variant)
