"""Optional ed25519 signature of the manifest.

``models.toml.sig`` next to the manifest holds the detached signature of the file's exact bytes,
base64-encoded. When it exists it is verified before the manifest is parsed, with the public key
from the settings (``manifest_public_key``, base64 or hex); a bad signature, or a signature with
no key to check it, is ``MANIFEST_SIGNATURE_ERROR``. With ``require_manifest_signature`` a missing
signature is refused too. pynacl is imported only when there is something to check.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from .errors import ManifestSignatureError, MissingDependencyError

SIGNATURE_SUFFIX = ".sig"
KEY_BYTES = 32


def signature_path(manifest: Path) -> Path:
    return manifest.with_name(manifest.name + SIGNATURE_SUFFIX)


def _decode(text: str, what: str) -> bytes:
    text = text.strip()
    try:
        if len(text) in (KEY_BYTES * 2, 128) and all(c in "0123456789abcdefABCDEF" for c in text):
            return bytes.fromhex(text)
        return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        raise ManifestSignatureError(
            f"the {what} is neither base64 nor hex",
            fix=f"write the {what} as base64 (or hex)",
        ) from None


def _nacl() -> tuple[type, type[Exception]]:
    try:
        from nacl.exceptions import BadSignatureError
        from nacl.signing import VerifyKey
    except ImportError:
        raise MissingDependencyError(
            "checking the manifest's signature needs pynacl",
            fix="install the remote extra: pip install -e '.[remote]'",
        ) from None
    return VerifyKey, BadSignatureError


def verify_manifest_signature(
    manifest: Path, *, public_key: str | None, required: bool = False
) -> bool:
    """True when a signature was present and good; False when there is none (and none needed)."""
    sig_file = signature_path(manifest)
    if not sig_file.is_file():
        if required:
            raise ManifestSignatureError(
                f"{manifest} has no signature ({sig_file.name}) and the settings require one",
                fix="use a signed models.toml, or turn off require_manifest_signature",
                details={"manifest": str(manifest)},
            )
        return False
    if not public_key:
        raise ManifestSignatureError(
            f"{manifest} is signed ({sig_file.name}) but no public key is set to check it",
            fix="set manifest_public_key in the settings (or WAN_MANIFEST_PUBLIC_KEY), or remove "
            "the signature file",
            details={"manifest": str(manifest)},
        )
    verify_key_cls, bad_signature = _nacl()
    key = _decode(public_key, "manifest public key")
    signature = _decode(sig_file.read_text("ascii", errors="replace"), "manifest signature")
    try:
        verify_key_cls(key).verify(manifest.read_bytes(), signature)
    except bad_signature:
        raise ManifestSignatureError(
            f"the signature of {manifest} does not match its content or the public key",
            fix="the manifest was changed after it was signed, or the key is not the signer's: "
            "restore the signed models.toml or check manifest_public_key",
            details={"manifest": str(manifest)},
        ) from None
    except (ValueError, TypeError) as exc:
        raise ManifestSignatureError(
            f"cannot check the signature of {manifest}: {exc}",
            fix="the key must be 32 bytes and the signature 64 bytes (ed25519)",
        ) from None
    return True


def sign_manifest(manifest: Path, private_key: bytes) -> Path:
    """Write ``models.toml.sig`` for ``manifest`` with an ed25519 seed (32 bytes)."""
    from nacl.signing import SigningKey

    signed = SigningKey(private_key).sign(manifest.read_bytes())
    out = signature_path(manifest)
    out.write_text(base64.b64encode(signed.signature).decode("ascii") + "\n", "ascii")
    return out


def public_key_of(private_key: bytes) -> str:
    from nacl.signing import SigningKey

    return base64.b64encode(bytes(SigningKey(private_key).verify_key)).decode("ascii")
