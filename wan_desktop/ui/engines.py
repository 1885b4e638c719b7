"""Which engine the app drives: this computer's own, or the engine of a ``wan serve`` on another
machine (``remote.RemoteEngine``). Both are an ``EngineFace``: the pages cannot tell them apart.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from wan_desktop.engine import Engine
from wan_desktop.engine.face import EngineFace
from wan_desktop.remote import RemoteEngine
from wan_desktop.remote.http import normalise_url

from . import secrets
from .config import AppSettings, engine_settings

log = logging.getLogger("wan_desktop.ui")


@dataclass(frozen=True)
class EngineChoice:
    url: str = ""  # "" for this computer
    token: str | None = None

    @property
    def remote(self) -> bool:
        return bool(self.url)

    def describe(self) -> str:
        return self.url or "this computer"


def saved_token() -> str | None:
    """The server's access token: the OS keyring's, else the environment's (blocking)."""
    try:
        token = secrets.get(secrets.Secret.server_token)
    except (secrets.KeyringUnavailableError, ImportError) as exc:
        log.info("no saved server token: %s", exc)
        token = None
    env = os.environ.get(secrets.ENV_FALLBACK[secrets.Secret.server_token], "").strip()
    return token or env or None


def choose(settings: AppSettings, url: str | None, token: str | None) -> EngineChoice:
    """The command line's server (``--connect``/``--token``), else the one in the settings."""
    address = (url or settings.engine_url).strip()
    if not address:
        return EngineChoice()
    return EngineChoice(normalise_url(address), token or saved_token())


def open_engine(
    choice: EngineChoice, settings: AppSettings, *, mock: bool = False, dev: bool = False
) -> EngineFace:
    """The engine for ``choice``, not started. Blocking for a server (its hello): a
    ``RemoteError`` says what to do when it cannot be used."""
    local = engine_settings(settings, mock=mock, dev=dev)
    if choice.remote:
        # The result cache and the LoRA library stay in this computer's data folder.
        return RemoteEngine(choice.url, choice.token, data_dir=local.data_dir, start=False)
    return Engine(local, start=False)
