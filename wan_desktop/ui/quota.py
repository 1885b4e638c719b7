"""The models-folder quota: kept in the orchestrator's settings file (``orchestrator.toml``),
which every download and ``wan models gc`` read. The GUI edits it there and applies it to the
running store at once. ``WAN_QUOTA`` in the environment wins over the file, and the GUI says so.
"""

from __future__ import annotations

import dataclasses
import os

from wan_desktop.engine import Engine
from wan_desktop.models import ModelStore
from wan_desktop.models import env as envvars
from wan_desktop.models.config import ENV_QUOTA
from wan_desktop.models.settings import load_settings, save_settings

GIB = 1024**3  # the quota field's unit: sizes read in binary units everywhere


def env_override() -> str | None:
    """The ``WAN_QUOTA`` value that overrides the file, if any (the config read it at start)."""
    return envvars.text(os.environ, ENV_QUOTA)


def saved_quota(store: ModelStore) -> int | None:
    """The quota in the settings file (blocking: a small file read)."""
    return load_settings(store.config.settings_path).quota_bytes


def save_quota(store: ModelStore, quota_bytes: int | None) -> None:
    """Write the quota to the settings file, keeping everything else in it. Blocking."""
    path = store.config.settings_path
    save_settings(dataclasses.replace(load_settings(path), quota_bytes=quota_bytes), path)


def apply_quota(engine: Engine, quota_bytes: int | None) -> None:
    """Use the quota in the running engine from now on (GUI thread; unless WAN_QUOTA rules)."""
    if env_override() is not None:
        return
    engine.models.config = dataclasses.replace(engine.models.config, quota_bytes=quota_bytes)
    engine.settings = dataclasses.replace(
        engine.settings,
        models=dataclasses.replace(engine.settings.models, quota_bytes=quota_bytes),
    )
