"""``s3://bucket/prefix``: a model folder in S3 or any S3-compatible store (MinIO, SeaweedFS…).

Listing and credentials go through boto3 (endpoint, region and keys from the ``AWS_*`` variables
read by :mod:`..config`; with no keys and no ``AWS_PROFILE`` there, the pair the desktop app
stores in the OS keyring, service ``wan-desktop``; else boto3's profile chain). The bytes travel
as presigned ranged GETs through the transfer engine, like every HTTP-like source.

Sizes come from the listing. S3 keeps no sha256 of an object by default, so hashes are taken from,
in order:

1. a ``.wan-complete.json`` object under the prefix: the completion marker of a Wan Desktop models
   folder, uploaded with the folder (``aws s3 sync MODELS_ROOT/wan22/<model> s3://…/<model>``
   copies it, as it is a plain file), listing ``files[]: {path, size, sha256}``;
2. the object's user metadata ``sha256`` (``x-amz-meta-sha256``, 64 hex digits), e.g.
   ``aws s3 cp f s3://… --metadata sha256=$(sha256sum f | cut -c1-64)``;
3. none: the size is checked and the computed hash is recorded in the model's marker.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import S3Config
from ..errors import AuthError, ErrorCode, MissingDependencyError, RateLimitError, SourceError
from ..marker import file_hashes
from ..paths import COMPLETE_MARKER
from ..redact import register_secret
from .base import RangedSource, RemoteFile
from .http import HttpClient
from .http_errors import HttpError

SHA256_META = "sha256"
PRESIGN_EXPIRES_S = 3600
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_AUTH_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "ExpiredToken",
        "InvalidToken",
        "InvalidClientTokenId",
        "AuthorizationHeaderMalformed",
        "403",
        "401",
    }
)


# Where the desktop app's Settings page keeps the key pair (the same service as the HF token).
KEYRING_SERVICE = "wan-desktop"
KEYRING_ACCESS_KEY_ID = "s3-access-key-id"
KEYRING_SECRET_ACCESS_KEY = "s3-secret-access-key"


def keyring_keys() -> tuple[str, str] | None:
    """The key pair stored in the OS keyring, or None (no pair, no backend, a locked keyring)."""
    try:
        import keyring

        key_id = keyring.get_password(KEYRING_SERVICE, KEYRING_ACCESS_KEY_ID)
        secret = keyring.get_password(KEYRING_SERVICE, KEYRING_SECRET_ACCESS_KEY)
    except Exception:  # keyring missing, no backend, no D-Bus: boto3's own chain decides
        return None
    return (key_id, secret) if key_id and secret else None


def with_credentials(s3: S3Config) -> S3Config:
    """``s3`` with the keyring's pair when the environment names neither keys nor a profile."""
    if s3.access_key_id or s3.profile or not s3.use_keyring:
        return s3
    pair = keyring_keys()
    if pair is None:
        return s3
    return replace(s3, access_key_id=pair[0], secret_access_key=pair[1], session_token=None)


def parse_s3_uri(uri: str) -> tuple[str, str]:
    rest = uri.removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise SourceError(f"{uri} names no bucket", fix="write s3://bucket/prefix")
    return bucket, prefix.strip("/")


@dataclass
class S3Source(RangedSource):
    scheme = "s3"
    _s3: Any = None
    _http: HttpClient | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def bucket(self) -> str:
        return parse_s3_uri(self.uri)[0]

    @property
    def prefix(self) -> str:
        return parse_s3_uri(self.uri)[1]

    def _auth_fix(self) -> str:
        s3 = self.ctx.config.s3
        where = s3.endpoint_url or "AWS"
        return (
            f"check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or the S3 keys "
            f"in the app's Settings) for {where}: they must be valid there and allowed to list "
            f"and read s3://{self.bucket}/{self.prefix}; set AWS_ENDPOINT_URL for a non-AWS server"
        )

    def client(self) -> Any:
        with self._lock:
            if self._s3 is None:
                try:
                    import boto3
                    from botocore.config import Config
                    from botocore.exceptions import BotoCoreError
                except ImportError:
                    raise MissingDependencyError(
                        "s3:// sources need boto3",
                        fix="install the remote extra: pip install -e '.[remote]'",
                    ) from None
                s3 = with_credentials(self.ctx.config.s3)
                register_secret(s3.secret_access_key)
                register_secret(s3.session_token)
                try:
                    session = boto3.session.Session(
                        aws_access_key_id=s3.access_key_id,
                        aws_secret_access_key=s3.secret_access_key,
                        aws_session_token=s3.session_token,
                        region_name=s3.region or ("us-east-1" if s3.endpoint_url else None),
                        profile_name=None if s3.access_key_id else s3.profile,
                    )
                    self._s3 = session.client(
                        "s3",
                        endpoint_url=s3.endpoint_url,
                        config=Config(
                            signature_version="s3v4",
                            s3={"addressing_style": "path" if s3.endpoint_url else "auto"},
                            retries={"max_attempts": 3, "mode": "standard"},
                            connect_timeout=15,
                            read_timeout=self.ctx.config.stall_timeout_s,
                        ),
                    )
                except BotoCoreError as exc:
                    raise AuthError(
                        f"cannot set up S3 access: {type(exc).__name__}", fix=self._auth_fix()
                    ) from None
            return self._s3

    def http(self) -> HttpClient:
        with self._lock:
            if self._http is None:
                self._http = HttpClient.for_source(self.ctx.config, "s3")
            return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def _boto_error(self, exc: BaseException, what: str) -> Exception:
        from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

        where = f"s3://{self.bucket}/{self.prefix}"
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return AuthError(f"no S3 credentials to read {where}", fix=self._auth_fix())
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            details = {"source": self.describe(), "s3_code": code, "status": status}
            if code in _AUTH_CODES or status in (401, 403):
                return AuthError(
                    f"S3 refused the credentials for {where} ({code or status})",
                    fix=self._auth_fix(),
                    details=details,
                )
            if code == "NoSuchBucket":
                return SourceError(
                    f"bucket {self.bucket} does not exist",
                    fix="check WAN_S3_BUCKET and AWS_ENDPOINT_URL",
                    details=details,
                )
            if code in ("SlowDown", "503", "TooManyRequests"):
                return RateLimitError(
                    f"S3 asked to slow down while listing {where}",
                    fix="try again in a few minutes",
                    details=details,
                )
            return SourceError(f"S3 failed on {what} ({code or status})", details=details)
        return SourceError(
            f"cannot reach S3 for {what} ({type(exc).__name__})",
            fix="check AWS_ENDPOINT_URL and the network",
            details={"source": self.describe()},
        )

    def list_files(self) -> list[RemoteFile]:
        from botocore.exceptions import BotoCoreError, ClientError

        s3 = self.client()
        objects: dict[str, tuple[str, int]] = {}
        base = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
            for page in pages:
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    rel = key[len(base) :]
                    if rel and not rel.endswith("/"):
                        objects[rel] = (key, int(obj["Size"]))
            known = self._marker_hashes(objects)
        except (ClientError, BotoCoreError) as exc:
            raise self._boto_error(exc, "the file list") from None
        if not objects:
            raise SourceError(
                f"s3://{self.bucket}/{self.prefix} holds no files",
                code=ErrorCode.incomplete_download,
                fix="upload the model folder there, or fix the prefix",
            )
        missing = [rel for rel in objects if rel not in known and not rel.startswith(".")]
        if missing:
            known.update(self._metadata_hashes({r: objects[r][0] for r in missing}))
        files = []
        for rel, (key, size) in sorted(objects.items()):
            if rel.split("/")[-1].startswith("."):
                continue  # markers and hidden files travel as metadata, not model files
            meta = known.get(rel)
            sha = meta[1] if meta is not None and meta[0] in (None, size) else None
            files.append(RemoteFile(path=rel, size=size, sha256=sha, ref=key))
        return files

    def _marker_hashes(
        self, objects: dict[str, tuple[str, int]]
    ) -> dict[str, tuple[int | None, str]]:
        if COMPLETE_MARKER not in objects:
            return {}
        body = self.client().get_object(Bucket=self.bucket, Key=objects[COMPLETE_MARKER][0])
        try:
            return file_hashes(json.loads(body["Body"].read(16 << 20)))
        except ValueError:
            return {}

    def _metadata_hashes(self, keys: dict[str, str]) -> dict[str, tuple[int | None, str]]:
        from botocore.exceptions import BotoCoreError, ClientError

        s3 = self.client()

        def head(item: tuple[str, str]) -> tuple[str, str | None]:
            rel, key = item
            try:
                meta = s3.head_object(Bucket=self.bucket, Key=key).get("Metadata", {})
            except (ClientError, BotoCoreError) as exc:
                raise self._boto_error(exc, f"the metadata of {rel}") from None
            value = str(meta.get(SHA256_META, "")).lower()
            return rel, value if _SHA256.match(value) else None

        with ThreadPoolExecutor(8, thread_name_prefix="wan-s3-head") as pool:
            results = list(pool.map(head, keys.items()))
        return {rel: (None, sha) for rel, sha in results if sha}

    def presigned_url(self, key: str) -> str:
        url: str = self.client().generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=PRESIGN_EXPIRES_S,
        )
        return url

    def read_range(
        self, file: RemoteFile, start: int, end: int, write: Callable[[memoryview], None]
    ) -> int:
        return self.http().read_range(self.presigned_url(file.ref), start, end, write)

    def map_error(self, exc: Exception, *, what: str) -> Exception:
        if isinstance(exc, HttpError) and exc.status in (401, 403):
            return AuthError(
                f"S3 refused a read of {what} (HTTP {exc.status})",
                fix=self._auth_fix(),
                details={"source": self.describe(), "status": exc.status},
            )
        return super().map_error(exc, what=what)
