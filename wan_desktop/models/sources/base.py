"""What every source implements, and the sink it writes into."""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..cancel import CancelToken

if TYPE_CHECKING:
    from ..config import OrchestratorConfig
    from ..manifest import ModelSpec, VariantSpec
    from ..requests import SourceGate, TransferSettings

CHUNK_BYTES = 8 * 1024 * 1024
T = TypeVar("T")


@dataclass(frozen=True)
class RemoteFile:
    """One file a source can deliver: its metadata, as far as the source knows it."""

    path: str
    size: int | None
    sha256: str | None
    ref: str = ""  # source-specific locator (object key, URL, absolute path)
    git_sha1: str | None = None  # the Hub's git blob id of a small (non-LFS) file


@dataclass(frozen=True)
class SourceContext:
    model: ModelSpec
    variant: VariantSpec
    dir_name: str
    config: OrchestratorConfig
    scratch: Path  # a folder on the models filesystem the source may use; removed after ensure
    cancel: CancelToken = field(default_factory=CancelToken)
    gate: SourceGate | None = None  # backoff shared by every request to this source

    @property
    def transfer(self) -> TransferSettings:
        from ..requests import transfer_settings

        return transfer_settings(self.config)


class _NoHash:
    """Stands in for sha256 when a benchmark measures transfers without hashing."""

    def update(self, data: bytes | memoryview) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


class FileSink:
    """Appends bytes to a staging file and hashes them as they pass.

    Opening an existing file resumes it: the bytes already there are hashed once and the source
    continues from :attr:`offset`.
    """

    def __init__(
        self,
        path: Path,
        *,
        on_bytes: Callable[[int], None] | None = None,
        cancel: CancelToken | None = None,
        hashing: bool = True,
    ) -> None:
        self.path = path
        self._hash: Any = hashlib.sha256() if hashing else _NoHash()
        self._on_bytes = on_bytes
        self._cancel = cancel
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("ab")
        self.resumed_from = self._fh.tell()
        if self.resumed_from:
            self._hash_existing()
        self.offset = self.resumed_from

    def _hash_existing(self) -> None:
        with self.path.open("rb") as fh:
            remaining = self.resumed_from
            while remaining > 0:
                chunk = fh.read(min(CHUNK_BYTES, remaining))
                if not chunk:
                    break
                self._hash.update(chunk)
                remaining -= len(chunk)

    def write(self, data: bytes | memoryview) -> None:
        if self._cancel is not None:
            self._cancel.raise_if_cancelled()
        self._fh.write(data)
        self._hash.update(data)
        self.offset += len(data)
        if self._on_bytes is not None:
            self._on_bytes(len(data))

    def truncate(self) -> None:
        """Start over (the source cannot resume, or the prefix is known bad)."""
        self._fh.seek(0)
        self._fh.truncate()
        self._hash = hashlib.sha256() if not isinstance(self._hash, _NoHash) else _NoHash()
        self.offset = 0

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def __enter__(self) -> FileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class Source(ABC):
    """A place a model's files can come from. One instance serves one ensure of one model."""

    scheme: ClassVar[str]
    uri: str
    ctx: SourceContext
    extra: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """The URI as it may appear in logs and errors (no secrets)."""
        return self.uri.split("?", 1)[0]

    @abstractmethod
    def list_files(self) -> list[RemoteFile]:
        """Every file the source has for this model (before ``allow_patterns``)."""

    @abstractmethod
    def fetch(self, file: RemoteFile, sink: FileSink) -> None:
        """Deliver the bytes of ``file`` from ``sink.offset`` to the end into ``sink``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and scratch data."""

    def read_bytes(self, file: RemoteFile, limit: int = 64 << 20) -> bytes:
        """A small file's whole content (an ``*.index.json`` read while planning)."""
        sink = _MemorySink(limit)
        self.fetch(file, sink)  # type: ignore[arg-type]
        return bytes(sink.data)


class _MemorySink:
    """Enough of :class:`FileSink` for ``fetch`` to fill memory."""

    def __init__(self, limit: int) -> None:
        self.data = bytearray()
        self.offset = 0
        self.limit = limit

    def write(self, data: bytes | memoryview) -> None:
        self.data += data
        self.offset += len(data)
        if self.offset > self.limit:
            raise ValueError(f"file is larger than {self.limit} bytes")

    def truncate(self) -> None:
        self.data.clear()
        self.offset = 0


class RangedSource(Source):
    """A source that can read any byte range of a file: the transfer engine moves its bytes.

    Large files travel as parallel parts written at their offsets (resumable per part); small
    ones as one stream. ``fetch`` (one stream from ``sink.offset``) comes for free.
    """

    @abstractmethod
    def read_range(
        self, file: RemoteFile, start: int, end: int, write: Callable[[memoryview], None]
    ) -> int:
        """Deliver bytes ``[start, end)`` into ``write``; return how many were delivered.

        Raise :class:`~.http_errors.HttpError` for failures the engine may retry, a
        :class:`~..errors.ModelError` for the others.
        """

    def fetch(self, file: RemoteFile, sink: FileSink) -> None:
        """One stream from ``sink.offset``; a failed request resumes where the sink got to."""
        from .http_errors import HttpError

        end = file.size if file.size is not None else 1 << 62

        def attempt() -> None:
            self.read_range(file, sink.offset, end, sink.write)
            if file.size is not None and sink.offset < file.size:
                raise HttpError(
                    f"{file.path}: the body ended {file.size - sink.offset} bytes short",
                    transient=True,
                    reason="truncated",
                )

        self.retrying(attempt, file.path)

    def retrying(self, call: Callable[[], T], what: str) -> T:
        """``call`` with the engine's retries and this source's backoff gate and error mapping."""
        from ..requests import SourceGate, with_retries

        return with_retries(
            call,
            source=self,
            gate=self.ctx.gate or SourceGate(),
            settings=self.ctx.transfer,
            cancel=self.ctx.cancel,
            what=what,
        )

    def map_error(self, exc: Exception, *, what: str) -> Exception:
        """Turn a final :class:`~.http_errors.HttpError` into the orchestrator's error for this
        source."""
        from .http_errors import http_error_to_model_error

        return http_error_to_model_error(exc, what=what, source=self.describe())
