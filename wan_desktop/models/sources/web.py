"""``https://…`` (and ``http://…``): a model folder behind plain or presigned URLs.

The URL points at a listing: a JSON document with ``files[]: {path, size, sha256?, url?}``, the
shape of a Wan Desktop completion marker. A URL ending in ``/`` means ``<url>.wan-complete.json``,
so a models folder served by any web server is a source as it is. A file's bytes come from its
``url`` (absolute, or relative to the listing), else from the listing's folder plus its path.

Presigned URLs work the same way: sign the listing object's URL for the manifest, and put each
file's own presigned URL in the listing (``url``). Signatures live in query strings, which are
never shown in logs or errors.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ErrorCode, SourceError
from ..paths import COMPLETE_MARKER
from ..redact import strip_query
from .base import RangedSource, RemoteFile
from .http import HttpClient

LISTING_SCHEMA = "files[]: {path, size, sha256?, url?}"


@dataclass
class WebSource(RangedSource):
    scheme = "https"
    _client: HttpClient | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def listing_url(self) -> str:
        u = urllib.parse.urlsplit(self.uri)
        if u.path.endswith("/"):
            return urllib.parse.urlunsplit(u._replace(path=u.path + COMPLETE_MARKER))
        return self.uri

    def client(self) -> HttpClient:
        with self._lock:
            if self._client is None:
                self._client = HttpClient.for_source(self.ctx.config, "web")
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def list_files(self) -> list[RemoteFile]:
        doc, _ = self.retrying(lambda: self.client().get_json(self.listing_url), "the listing")
        entries = doc.get("files") if isinstance(doc, dict) else None
        if not isinstance(entries, list):
            raise SourceError(
                f"{strip_query(self.listing_url)} is not a file listing",
                code=ErrorCode.incomplete_download,
                fix=f"serve a JSON document with {LISTING_SCHEMA}",
            )
        base = self.listing_url
        files = []
        for e in entries:
            try:
                path = str(e["path"])
                size = int(e["size"])
            except (KeyError, TypeError, ValueError):
                raise SourceError(
                    f"{strip_query(base)} has an entry without path and size",
                    fix=f"each entry needs {LISTING_SCHEMA}",
                ) from None
            if e.get("url"):
                url = urllib.parse.urljoin(base, str(e["url"]))
            else:
                u = urllib.parse.urlsplit(base)
                folder = u.path.rsplit("/", 1)[0] + "/"
                url = urllib.parse.urlunsplit(u._replace(path=folder + urllib.parse.quote(path)))
            sha = e.get("sha256")
            files.append(RemoteFile(path=path, size=size, sha256=sha or None, ref=url))
        return files

    def read_range(
        self, file: RemoteFile, start: int, end: int, write: Callable[[memoryview], None]
    ) -> int:
        return self.client().read_range(file.ref, start, end, write)
