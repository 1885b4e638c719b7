"""The access token: generated on first start, kept in the user config folder, shown in the GUI.

``WAN_API_TOKEN_FILE`` moves the file (tests, several installs). The file is readable by its
owner only.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from wan_desktop.models.config import APP_AUTHOR, APP_NAME

ENV_TOKEN_FILE = "WAN_API_TOKEN_FILE"
TOKEN_BYTES = 32


def token_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    override = env.get(ENV_TOKEN_FILE, "").strip()
    if override:
        return Path(override).expanduser()
    from platformdirs import user_config_path

    return user_config_path(APP_NAME, APP_AUTHOR) / "api-token"


def load_token(path: Path | None = None) -> str | None:
    p = path or token_path()
    try:
        token = p.read_text("utf-8").strip()
    except FileNotFoundError:
        return None
    return token or None


def load_or_create_token(path: Path | None = None) -> str:
    """The saved token, or a new one saved now."""
    p = path or token_path()
    existing = load_token(p)
    if existing:
        return existing
    return new_token(p)


def new_token(path: Path | None = None) -> str:
    """Generate and save a new token (the old one stops working at the next start)."""
    p = path or token_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    tmp.replace(p)
    return token
