"""Credentials in the OS keyring (service ``wan-desktop``), where the model sources read them:
the Hugging Face token, and the S3 key pair (used when the environment names no AWS keys).

On a machine with no keyring backend (a headless Linux box has none) nothing is stored: the
Settings panel says so and points at the environment variables instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from wan_desktop.access import ENV_TOKEN
from wan_desktop.models.sources import hf, s3

SERVICE = hf.KEYRING_SERVICE


class Secret(enum.StrEnum):
    # The names the sources read them by: one place for each.
    hf_token = hf.KEYRING_USER
    s3_access_key = s3.KEYRING_ACCESS_KEY_ID
    s3_secret_key = s3.KEYRING_SECRET_ACCESS_KEY
    server_token = "wan-server-token"  # the access token of the `wan serve` the app drives


ENV_FALLBACK = {
    Secret.hf_token: "HF_TOKEN",
    Secret.s3_access_key: "AWS_ACCESS_KEY_ID",
    Secret.s3_secret_key: "AWS_SECRET_ACCESS_KEY",
    Secret.server_token: ENV_TOKEN,  # the variable `wan serve` reads its token from
}


@dataclass(frozen=True)
class KeyringStatus:
    available: bool
    backend: str
    message: str


class KeyringUnavailableError(RuntimeError):
    pass


def status() -> KeyringStatus:
    """Whether secrets can be stored here (may talk to D-Bus: call it off the GUI thread)."""
    try:
        import keyring
        from keyring.backends import fail

        backend = keyring.get_keyring()
        name = type(backend).__name__
        if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
            raise KeyringUnavailableError("no keyring backend is available")
        backend.get_password(SERVICE, "probe")  # a locked or absent service fails here
    except Exception as exc:  # ImportError, KeyringError, D-Bus errors
        return KeyringStatus(
            False,
            "none",
            f"No OS keyring is available here ({exc}). Secrets cannot be saved; set "
            + ", ".join(ENV_FALLBACK.values())
            + " in the environment instead.",
        )
    return KeyringStatus(True, name, f"Stored in the OS keyring ({name}).")


def get(secret: Secret) -> str | None:
    import keyring

    try:
        return keyring.get_password(SERVICE, str(secret))
    except Exception as exc:
        raise KeyringUnavailableError(f"the keyring could not be read: {exc}") from exc


def set_secret(secret: Secret, value: str | None) -> None:
    """Store ``value``; an empty value removes the secret."""
    import keyring

    try:
        if value:
            keyring.set_password(SERVICE, str(secret), value)
        elif keyring.get_password(SERVICE, str(secret)) is not None:
            keyring.delete_password(SERVICE, str(secret))
    except Exception as exc:
        raise KeyringUnavailableError(f"the keyring could not be written: {exc}") from exc
