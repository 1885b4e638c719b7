"""The app's own settings: a JSON file in the user config folder, and how they shape the engine.

``WAN_CONFIG_DIR`` moves the folder (tests, portable installs). Engine environment variables
(``MODELS_ROOT``, ``WAN_OUTPUTS_DIR``, ``WAN_IDLE_UNLOAD_S``, ``WAN_DEV_MODE``) win over the file,
so a developer's shell always has the last word. Secrets never go in this file (see ``secrets``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from wan_desktop.access import (
    DEFAULT_HOST,
    DEFAULT_ORIGINS,
    MIN_TOKEN_CHARS,
    is_loopback,
    load_or_create_token,
    load_token,
    save_token,
)
from wan_desktop.engine import EngineSettings
from wan_desktop.engine.settings import ENV_IDLE_UNLOAD, ENV_OUTPUTS_DIR, ENV_PREVIEW_EVERY
from wan_desktop.models import env as envvars
from wan_desktop.models.atomic import atomic_write
from wan_desktop.models.config import (
    ENV_DEV_MODE,
    ENV_MODELS_ROOT,
    OrchestratorConfig,
    config_dir,
)

SETTINGS_FILE = "desktop.json"
PREVIEW_EVERY_MAX = 100


@dataclass(frozen=True)
class AppSettings:
    models_dir: str | None = None  # None: the orchestrator's default (MODELS_ROOT)
    outputs_dir: str | None = None
    idle_unload_min: float = 10.0
    dev_mode: bool = False
    api_enabled: bool = False
    api_host: str = DEFAULT_HOST
    api_port: int = 8000
    api_token: str = ""
    api_origins: tuple[str, ...] = DEFAULT_ORIGINS
    notifications: bool = True
    preview_every: int = 2  # a live preview of the frames every N steps while generating; 0 off
    welcomed: bool = False  # the first-run card was dismissed
    # The engine the app drives: "" this computer's, else a `wan serve` address (its token is
    # kept in the OS keyring, never here).
    engine_url: str = ""
    # The last job each form queued ("wan", "explainer" → its parameters): the forms open with them.
    last_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # keys a newer version wrote

    def validate(self) -> dict[str, str]:
        """Field → what is wrong (empty when the settings are usable)."""
        errors: dict[str, str] = {}
        if not 1 <= self.api_port <= 65535:
            errors["api_port"] = f"port {self.api_port} is not 1–65535"
        if self.idle_unload_min < 0:
            errors["idle_unload_min"] = "use 0 (never) or a number of minutes"
        if not 0 <= self.preview_every <= PREVIEW_EVERY_MAX:
            errors["preview_every"] = f"use 0 (off) to {PREVIEW_EVERY_MAX} steps"
        if not is_loopback(self.api_host) and not self.api_token:
            errors["api_token"] = "a non-loopback address needs an access token"
        elif self.api_token and len(self.api_token) < MIN_TOKEN_CHARS:
            errors["api_token"] = f"use at least {MIN_TOKEN_CHARS} characters (or generate one)"
        for origin in self.api_origins:
            if not origin.startswith(("http://", "https://")):
                errors["api_origins"] = f"{origin!r} must start with http:// or https://"
        for name in ("models_dir", "outputs_dir"):
            value = getattr(self, name)
            if value and not Path(value).expanduser().is_absolute():
                errors[name] = "give an absolute folder path"
        return errors

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["api_origins"] = list(self.api_origins)
        del d["api_token"]  # kept in the API's own token file, shared with `wan serve`
        extra = d.pop("extra")
        return {**extra, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AppSettings:
        known = {f.name for f in fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in d.items() if k in known}
        if "api_origins" in kwargs:
            kwargs["api_origins"] = tuple(str(o) for o in kwargs["api_origins"])
        settings = cls(**kwargs, extra={k: v for k, v in d.items() if k not in known})
        types = {"api_port": int, "idle_unload_min": float, "preview_every": int}
        for name, kind in types.items():
            if not isinstance(getattr(settings, name), int | float):
                raise ValueError(f"{name} must be a number")
            settings = replace(settings, **{name: kind(getattr(settings, name))})
        return settings


class SettingsStore:
    """Loads and saves ``AppSettings``; a broken file is kept aside, never overwritten."""

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (directory or config_dir()) / SETTINGS_FILE
        self.load_error: str | None = None

    def load(self) -> AppSettings:
        self.load_error = None
        try:
            raw = self.path.read_text("utf-8")
        except FileNotFoundError:
            return AppSettings()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("the file does not hold a JSON object")
            return AppSettings.from_dict(data)
        except (ValueError, TypeError) as exc:
            backup = self.path.with_name(f"{SETTINGS_FILE}.broken-{int(time.time())}")
            self.path.replace(backup)
            self.load_error = (
                f"the settings file was unreadable ({exc}); it was kept as {backup.name} "
                "and the defaults are in use"
            )
            return AppSettings()

    def save(self, settings: AppSettings) -> None:
        errors = settings.validate()
        if errors:
            raise ValueError("; ".join(f"{k}: {v}" for k, v in errors.items()))
        text = json.dumps(settings.to_dict(), indent=2, sort_keys=True)
        atomic_write(self.path, text, mode=0o600)  # folders and hosts of this user
        if settings.api_token and settings.api_token != load_token():
            save_token(settings.api_token)

    def load_or_init(self) -> AppSettings:
        """The settings, with the API's access token (generated and saved on first start)."""
        return replace(self.load(), api_token=load_or_create_token())


# The environment variable that wins over each of the app's settings (see engine_settings).
ENV_FOR_SETTING = {
    "models_dir": ENV_MODELS_ROOT,
    "outputs_dir": ENV_OUTPUTS_DIR,
    "idle_unload_min": ENV_IDLE_UNLOAD,
    "preview_every": ENV_PREVIEW_EVERY,
    "dev_mode": ENV_DEV_MODE,
}


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """The settings an environment variable decides now: setting → (variable, its value). An
    empty variable decides nothing, except WAN_DEV_MODE, whose presence decides (empty is off)."""
    env = os.environ if environ is None else environ
    found = {}
    for setting, var in ENV_FOR_SETTING.items():
        value = env.get(var)
        if value or (var == ENV_DEV_MODE and value is not None):
            found[setting] = (var, value or "")
    return found


def engine_settings(
    app: AppSettings,
    *,
    mock: bool = False,
    dev: bool = False,
    environ: dict[str, str] | None = None,
) -> EngineSettings:
    """Engine settings from the environment, with the app's settings where the env is silent."""
    env = dict(os.environ if environ is None else environ)
    wins = env_overrides(env)
    models = OrchestratorConfig.from_env(env)
    if app.models_dir and "models_dir" not in wins:
        models = replace(models, models_root=Path(app.models_dir).expanduser())
    if dev or (app.dev_mode and "dev_mode" not in wins) or envvars.flag(env, ENV_DEV_MODE):
        models = replace(models, dev_mode=True)
    overrides: dict[str, Any] = {"models": models}
    if app.outputs_dir and "outputs_dir" not in wins:
        overrides["outputs_dir"] = Path(app.outputs_dir).expanduser()
    if "idle_unload_min" not in wins:
        overrides["idle_unload_s"] = app.idle_unload_min * 60.0
    if "preview_every" not in wins:
        overrides["preview_every"] = app.preview_every
    settings = EngineSettings.from_env(env, **overrides)
    return replace(settings, mock=True) if mock else settings
