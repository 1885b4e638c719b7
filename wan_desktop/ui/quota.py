"""The models-folder quota: kept by the orchestrator's own settings file when it has one.

The disk manager (quotas, pins, collection) reads ``orchestrator.toml`` through
``wan_desktop.models.settings``; this adapter writes the quota there, so the GUI and
``wan models gc`` agree. Without that module the quota is only remembered in the app's settings.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from wan_desktop.models import ModelStore

GB = 1000**3


def _settings_module() -> Any | None:
    try:
        return importlib.import_module("wan_desktop.models.settings")
    except ImportError:
        return None


def supported(store: ModelStore) -> bool:
    module = _settings_module()
    return (
        module is not None
        and hasattr(module, "load_settings")
        and hasattr(module, "save_settings")
        and hasattr(store.config, "settings_path")
    )


def save_quota(store: ModelStore, quota_gb: float | None) -> bool:
    """Write the quota to the orchestrator's settings; False when this build has none."""
    module = _settings_module()
    if module is None or not supported(store):
        return False
    path = getattr(store.config, "settings_path")  # noqa: B009 - absent before the disk manager
    current = module.load_settings(path)
    quota = None if not quota_gb else int(quota_gb * GB)
    module.save_settings(dataclasses.replace(current, quota_bytes=quota), path)
    return True
