"""Links to the S3 copies of explainer outputs (``s3://`` addresses on the job).

In ``s3_only`` storage mode a finished job keeps no local files: its ``JobOutput`` paths are
``s3://bucket/key``. The API answers such files with a redirect to a presigned HTTP URL, signed
with the explainer's S3 settings (endpoint, region) and boto3's usual credentials. The boto3
client is made once per settings and reused (making one costs tens of milliseconds).
"""

from __future__ import annotations

import threading
from typing import Any

from fastapi import HTTPException

from wan_desktop.engine import Engine, EngineError, JobKind

PRESIGN_EXPIRES_S = 3600


class RemoteLinks:
    def __init__(self, engine: Engine, *, expires_s: int = PRESIGN_EXPIRES_S) -> None:
        self.engine = engine
        self.expires_s = expires_s
        self._clients: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def link(self, uri: str) -> str:
        """A presigned URL for ``s3://bucket/key``; 503 with what to fix when none can be made."""
        try:
            from wan_desktop.explainer.pipeline import ExplainerPipeline
            from wan_desktop.explainer.storage import presigned_url, s3_client

            pipeline = self.engine.pipeline(JobKind.explainer)
            if not isinstance(pipeline, ExplainerPipeline):
                raise EngineError(f"the explainer pipeline is a {type(pipeline).__name__}")
            s3 = pipeline.settings.s3
            with self._lock:
                client = self._clients.get(s3)
                if client is None:
                    client = self._clients[s3] = s3_client(s3)
            return presigned_url(s3, uri, expires_s=self.expires_s, client=client)
        except (EngineError, ImportError) as exc:
            raise HTTPException(
                503, detail=f"the file is in S3 ({uri}) but explainer storage is unavailable: {exc}"
            ) from None
        except Exception as exc:  # botocore: no credentials, bad endpoint configuration
            raise HTTPException(
                503,
                detail=f"the file is in S3 ({uri}) but no link could be signed ({exc}): set "
                "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and OUTPUT_S3_ENDPOINT_URL for the "
                "server that holds it",
            ) from None

    def try_link(self, uri: str) -> str | None:
        """A presigned URL, or None when none can be made (for optional links)."""
        try:
            return self.link(uri)
        except HTTPException:
            return None
