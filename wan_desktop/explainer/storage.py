"""Copying a finished video's files to S3 (or any S3-compatible server), with retries.

Objects mirror the local outputs layout under the configured prefix:
``<prefix>/<job_id>.mp4``, ``<prefix>/thumbnails/<job_id>.jpg``, ``<prefix>/<job_id>.srt``,
``<prefix>/<job_id>.json``. Each upload is checked (size) and retried up to three times with
exponential backoff on errors that can pass (connection, timeouts, 5xx, throttling); wrong keys
or a missing bucket fail at once with what to fix. Credentials come from boto3's own chain.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wan_desktop.models.cancel import CancelToken
from wan_desktop.models.retry import Backoff, with_retries

from .settings import S3Settings

UPLOAD_ATTEMPTS = 3
CONTENT_TYPES = {
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".srt": "application/x-subrip",
    ".json": "application/json",
}
FATAL_CODES = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "NoSuchBucket",
        "InvalidBucketName",
        "AllAccessDisabled",
    }
)


class StorageError(Exception):
    def __init__(self, message: str, *, recoverable: bool) -> None:
        super().__init__(message)
        self.recoverable = recoverable


def s3_client(s3: S3Settings) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        # One try per call: the retries (and their log lines) are ours.
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=60,
        s3={"addressing_style": "path"} if s3.endpoint_url else {},
    )
    # A fresh session: boto3's default one keeps the credentials it found first.
    return boto3.session.Session().client(
        "s3", endpoint_url=s3.endpoint_url, region_name=s3.region or "us-east-1", config=config
    )


def object_key(s3: S3Settings, relative: str) -> str:
    return f"{s3.prefix}/{relative}" if s3.prefix else relative


class S3Uploader:
    def __init__(
        self,
        s3: S3Settings,
        *,
        base_s: float = 1.0,
        cancel: CancelToken | None = None,
        on_event: Callable[[str, str], None] | None = None,
        client: Any = None,
    ) -> None:
        if not s3.bucket:
            raise ValueError("no bucket configured")
        self.s3 = s3
        self.bucket = s3.bucket
        self.base_s = base_s
        self.cancel = cancel
        self.on_event = on_event
        self.client = client or s3_client(s3)

    def upload_all(self, files: Mapping[str, tuple[Path, str]]) -> dict[str, str]:
        """Upload ``{name: (path, relative key)}``; returns ``{name: s3://bucket/key}``."""
        return {name: self.upload(path, rel) for name, (path, rel) in files.items()}

    def url_for(self, relative: str) -> str:
        return f"s3://{self.bucket}/{object_key(self.s3, relative)}"

    def upload(self, path: Path, relative: str) -> str:
        key = object_key(self.s3, relative)
        size = path.stat().st_size

        def once() -> str:
            self._put(path, key, size)
            return f"s3://{self.bucket}/{key}"

        def on_retry(attempt: int, exc: Exception, delay: float) -> None:
            if self.on_event is not None:
                self.on_event(
                    "warning",
                    f"upload of {path.name} to s3://{self.bucket}/{key}: attempt "
                    f"{attempt}/{UPLOAD_ATTEMPTS} failed ({exc}); retrying in {delay:.1f} s",
                )

        url = with_retries(
            once,
            backoff=Backoff(tries=UPLOAD_ATTEMPTS, base_s=self.base_s),
            transient=lambda e: isinstance(e, StorageError) and e.recoverable,
            on_retry=on_retry,
            cancel=self.cancel,
        )
        if self.on_event is not None:
            self.on_event("info", f"uploaded {path.name} ({size} bytes) to {url}")
        return url

    def _put(self, path: Path, key: str, size: int) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"ContentType": CONTENT_TYPES.get(path.suffix, "application/octet-stream")}
        try:
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra)
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = str(err.get("Code") or "")
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in FATAL_CODES or status in (401, 403, 404):
                raise StorageError(
                    _fatal_hint(code or str(status), self.bucket), recoverable=False
                ) from exc
            raise StorageError(
                f"{code or status}: {err.get('Message') or exc}", recoverable=True
            ) from exc
        except (BotoCoreError, OSError) as exc:
            # boto3's transfer wraps a failed request; connection trouble may pass.
            if "credentials" in str(exc).lower():
                raise StorageError(
                    "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a "
                    "profile)",
                    recoverable=False,
                ) from exc
            raise StorageError(str(exc), recoverable=True) from exc
        except Exception as exc:  # s3transfer's own wrapper errors
            if type(exc).__name__ in ("S3UploadFailedError", "RetriesExceededError"):
                text = str(exc)
                fatal = next((c for c in FATAL_CODES if c in text), None)
                if fatal:
                    raise StorageError(_fatal_hint(fatal, self.bucket), recoverable=False) from exc
                raise StorageError(text, recoverable=True) from exc
            raise
        if int(head.get("ContentLength", -1)) != size:
            raise StorageError(
                f"stored size {head.get('ContentLength')} differs from {size} bytes",
                recoverable=True,
            )


def _fatal_hint(code: str, bucket: str) -> str:
    if code in ("NoSuchBucket", "404"):
        return f"bucket {bucket!r} does not exist: create it or fix OUTPUT_S3_BUCKET"
    if code in ("InvalidBucketName",):
        return f"{bucket!r} is not a valid bucket name: fix OUTPUT_S3_BUCKET"
    return (
        f"the S3 server refused the upload ({code}): check AWS_ACCESS_KEY_ID / "
        f"AWS_SECRET_ACCESS_KEY and that they may write to bucket {bucket!r}"
    )


def presigned_url(s3: S3Settings, uri: str, *, expires_s: int = 3600, client: Any = None) -> str:
    """An HTTP URL for an ``s3://bucket/key`` the job recorded (for API clients)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return str(
        (client or s3_client(s3)).generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
        )
    )
