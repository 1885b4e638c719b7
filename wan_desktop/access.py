"""Who may reach the local API: its defaults and its access token.

Shared by the API server and the desktop app, which never import each other (the app's entry
point starts both). The token is generated on first start and kept in one file for the desktop
app and ``wan serve``: ``WAN_API_TOKEN_FILE`` moves it; otherwise it is ``api-token`` in the config
folder (``WAN_CONFIG_DIR`` moves that). Readable by its owner only. ``wan serve`` also takes a
token from ``--token-file`` or ``WAN_API_TOKEN``, which keep it off the command line.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from wan_desktop.models.atomic import atomic_write
from wan_desktop.models.config import config_dir

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_ORIGINS = (
    "http://localhost:3000",
    "http://127.0.0.1:3000",
    "http://localhost:8080",
    "http://127.0.0.1:8080",
)


def is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


ENV_TOKEN_FILE = "WAN_API_TOKEN_FILE"
# The token for ``wan serve`` itself, kept off the command line (``/proc/PID/cmdline`` is readable
# by every user of the machine).
ENV_TOKEN = "WAN_API_TOKEN"
TOKEN_BYTES = 32
MIN_TOKEN_CHARS = 16


def token_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    override = env.get(ENV_TOKEN_FILE, "").strip()
    if override:
        return Path(override).expanduser()
    return config_dir(env) / "api-token"


def load_token(path: Path | None = None) -> str | None:
    p = path or token_path()
    try:
        token = p.read_text("utf-8").strip()
    except FileNotFoundError:
        return None
    return token or None


def read_token_file(path: Path) -> str:
    """The token kept in ``path`` (``wan serve --token-file``); ValueError saying what to fix."""
    try:
        token = path.expanduser().read_text("utf-8").strip()
    except FileNotFoundError:
        raise ValueError(f"the token file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the token file {path}: {exc}") from None
    if not token:
        raise ValueError(f"the token file {path} is empty; write the access token in it")
    return token


def load_or_create_token(path: Path | None = None) -> str:
    """The saved token, or a new one saved now."""
    p = path or token_path()
    existing = load_token(p)
    if existing:
        return existing
    return new_token(p)


def generate_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def new_token(path: Path | None = None) -> str:
    """Generate and save a new token (the old one stops working at the next start)."""
    token = generate_token()
    save_token(token, path)
    return token


def save_token(token: str, path: Path | None = None) -> None:
    """Keep ``token`` (one the user typed, or a generated one) for the next starts."""
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"an access token needs at least {MIN_TOKEN_CHARS} characters")
    atomic_write(path or token_path(), token + "\n", mode=0o600)
