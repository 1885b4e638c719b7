"""The server's models as the app's models view (``engine.face.ModelsView``): its manifest and
what its models folder holds, with download, verify, delete and pin run on the server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from wan_desktop.engine.model_catalog import Catalog, ModelRow
from wan_desktop.engine.wire import from_wire
from wan_desktop.models import (
    DiskUsage,
    GcReport,
    Manifest,
    ModelSpec,
    ModelStatus,
    VariantSpec,
    VerifyReport,
)
from wan_desktop.models.manifest_load import manifest_of

from .errors import RemoteError
from .http import Http


class ServerSideOnlyError(RemoteError):
    def __init__(self, what: str, command: str) -> None:
        super().__init__(f"{what} is the server's to manage", f"run `{command}` on the server")


class RemoteModels:
    def __init__(self, http: Http, dev_mode: Callable[[], bool]) -> None:
        self._http = http
        self._dev_mode = dev_mode
        self._lock = threading.Lock()
        self._manifest: Manifest | None = None

    def _entries(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self._http.get("/models")
        specs = [from_wire(ModelSpec, e["spec"]) for e in entries]
        with self._lock:
            self._manifest = manifest_of(specs)
        return entries

    @property
    def manifest(self) -> Manifest:
        with self._lock:
            known = self._manifest
        if known is None:
            self._entries()
            with self._lock:
                known = self._manifest
        assert known is not None
        return known

    @property
    def dev_mode(self) -> bool:
        return self._dev_mode()

    @property
    def local_mirror(self) -> Path | None:
        return None  # the server's own sources are named by its status lines

    @property
    def max_age_s(self) -> float | None:
        return None

    @property
    def quota_bytes(self) -> int | None:
        return None

    @property
    def quota_override(self) -> str | None:
        return None

    def resolve(self, model_id: str, variant: str | None = None) -> tuple[ModelSpec, VariantSpec]:
        return self.manifest.resolve(model_id, variant, dev_mode=self.dev_mode)

    def catalog(self) -> Catalog:
        rows = []
        for entry in self._entries():
            spec = self.manifest.get(entry["spec"]["id"])
            variants: dict[str, Any] = entry.get("variants") or {}
            names = [entry["variant"]] if self.dev_mode else list(variants)
            names.sort(key=lambda n: (n != spec.default_variant, n))
            for name in names:
                v = variants[name]
                status: ModelStatus = from_wire(ModelStatus, v["status"])
                rows.append(ModelRow(spec, spec.variant(name), status, bool(v.get("pinned"))))
        return Catalog(tuple(rows), None)

    def disk_usage(self) -> DiskUsage:
        raise ServerSideOnlyError("the server's models folder", "wan models disk-usage")

    def verify(self, model_id: str, variant: str | None = None) -> VerifyReport:
        body = self._http.post(f"/models/{quote(model_id)}/verify", {"variant": variant})
        report: VerifyReport = from_wire(VerifyReport, body)
        return report

    def delete(self, model_id: str, variant: str | None = None) -> int:
        params = {"variant": variant} if variant else None
        body = self._http.delete(f"/models/{quote(model_id)}", params=params)
        return int((body or {}).get("freed") or 0)

    def discard_partial(self, dir_name: str) -> int:
        # The server's partial downloads are not listed here (its folder's use is not sent).
        raise ServerSideOnlyError("a partial download on the server", "wan models disk-usage")

    def pin(self, model_id: str, variant: str | None = None, *, pinned: bool = True) -> bool:
        body = {"pinned": pinned, "variant": variant}
        answer = self._http.post(f"/models/{quote(model_id)}/pin", body)
        return bool((answer or {}).get("pinned"))

    def gc(self, *, max_size: int | None = None, dry_run: bool = False) -> GcReport:
        raise ServerSideOnlyError("cleaning up the server's models folder", "wan models gc")

    def saved_quota(self) -> int | None:
        raise ServerSideOnlyError("the server's models quota", "wan models gc --max-size …")

    def set_quota(self, quota_bytes: int | None) -> None:
        raise ServerSideOnlyError("the server's models quota", "wan models gc --max-size …")
