"""Keep secrets out of logs, errors and ``--json`` output.

Two nets: every secret value the orchestrator loads (a Hub token, an AWS secret key or session
token) is registered here and replaced wherever it shows up, and every URL loses its query string
(presigned URLs carry their signature, credential and session token there). Error messages and
log records both pass through :func:`redact`.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MASK = "***"
# Shorter values could collide with ordinary words; no real secret is this short.
_MIN_SECRET_LEN = 8

_lock = threading.Lock()
_secrets: set[str] = set()

# A URL's query (?X-Amz-Signature=…&X-Amz-Credential=…) or a bare signed parameter.
_URL_QUERY = re.compile(r"(https?://[^\s?#\"'<>]+)\?[^\s\"'<>]*")
_SIGNED_PARAM = re.compile(
    r"(?i)\b(x-amz-(?:signature|credential|security-token)|signature|sig|token|"
    r"awsaccesskeyid|expires)=[^&\s\"'<>]+"
)
_BEARER = re.compile(r"(?i)\b(bearer|token)\s+[A-Za-z0-9_\-.=:/+]{8,}")
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{8,}")


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears from now on (in this process)."""
    if value and len(value) >= _MIN_SECRET_LEN:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_QUERY.sub(lambda m: f"{m.group(1)}?{MASK}", text)
    text = _SIGNED_PARAM.sub(lambda m: f"{m.group(1)}={MASK}", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return _HF_TOKEN.sub(MASK, text)


def redact_value(value: Any) -> Any:
    """``redact`` applied to every string inside dicts, lists and tuples."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def strip_query(url: str) -> str:
    """The URL without its query or fragment: what may be shown of it."""
    return url.split("?", 1)[0].split("#", 1)[0]
