"""The server's models as the app's models view (``engine.face.ModelsView``): its manifest and
what its models folder holds (its disk use, quota and max age), with download, verify, delete,
pin, clean-up and the quota run on the server by the same code as there."""

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
from wan_desktop.models.manifest import LoraPackSpec
from wan_desktop.models.manifest_load import manifest_of

from .http import Http


class RemoteModels:
    def __init__(self, http: Http, dev_mode: Callable[[], bool]) -> None:
        self._http = http
        self._dev_mode = dev_mode
        self._lock = threading.Lock()
        self._manifest: Manifest | None = None
        # As the server last said (``disk_usage``): read by the pages on the GUI thread.
        self._quota_bytes: int | None = None
        self._quota_override: str | None = None
        self._max_age_s: float | None = None

    def _entries(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self._http.get("/models")
        specs = [from_wire(ModelSpec, e["spec"]) for e in entries]
        packs = [from_wire(LoraPackSpec, p) for p in self._http.get("/models/lora-packs")]
        with self._lock:
            self._manifest = manifest_of(specs, loras={p.id: p for p in packs})
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
        with self._lock:
            return self._max_age_s

    @property
    def quota_bytes(self) -> int | None:
        with self._lock:
            return self._quota_bytes

    @property
    def quota_override(self) -> str | None:
        with self._lock:
            return self._quota_override

    def resolve(self, model_id: str, variant: str | None = None) -> tuple[ModelSpec, VariantSpec]:
        return self.manifest.resolve(model_id, variant, dev_mode=self.dev_mode)

    def catalog(self) -> Catalog:
        rows = []
        entries = self._entries()
        usage_of, _saved = self._disk()
        usage = {m.dir_name: m for m in usage_of.models}
        for entry in entries:
            spec = self.manifest.get(entry["spec"]["id"])
            variants: dict[str, Any] = entry.get("variants") or {}
            names = [entry["variant"]] if self.dev_mode else list(variants)
            names.sort(key=lambda n: (n != spec.default_variant, n))
            for name in names:
                v = variants[name]
                status: ModelStatus = from_wire(ModelStatus, v["status"])
                used = usage.get(str(v.get("dir_name")))
                var = spec.variant(name)
                rows.append(ModelRow(spec, var, status, bool(v.get("pinned")), used))
        return Catalog(tuple(rows), usage_of)

    def _disk(self) -> tuple[DiskUsage, int | None]:
        """The server's models folder use and its saved quota; keeps what the pages read."""
        body = self._http.get("/models/disk")
        usage: DiskUsage = from_wire(DiskUsage, body["usage"])
        with self._lock:
            self._quota_bytes = usage.quota_bytes
            self._quota_override = body.get("quota_override")
            age = body.get("max_age_s")
            self._max_age_s = float(age) if age is not None else None
        saved = body.get("saved_quota")
        return usage, int(saved) if saved is not None else None

    def disk_usage(self) -> DiskUsage:
        return self._disk()[0]

    def verify(self, model_id: str, variant: str | None = None) -> VerifyReport:
        body = self._http.post(f"/models/{quote(model_id)}/verify", {"variant": variant})
        report: VerifyReport = from_wire(VerifyReport, body)
        return report

    def delete(self, model_id: str, variant: str | None = None) -> int:
        params = {"variant": variant} if variant else None
        body = self._http.delete(f"/models/{quote(model_id)}", params=params)
        return int((body or {}).get("freed") or 0)

    def discard_partial(self, dir_name: str) -> int:
        body = self._http.post(f"/models/partial/{quote(dir_name, safe='')}/discard")
        return int((body or {}).get("freed") or 0)

    def pin(self, model_id: str, variant: str | None = None, *, pinned: bool = True) -> bool:
        body = {"pinned": pinned, "variant": variant}
        answer = self._http.post(f"/models/{quote(model_id)}/pin", body)
        return bool((answer or {}).get("pinned"))

    def gc(self, *, max_size: int | None = None, dry_run: bool = False) -> GcReport:
        """The server's own clean-up (``wan models gc`` there), previewed or done."""
        body = self._http.post("/models/gc", {"max_size": max_size, "dry_run": dry_run})
        report: GcReport = from_wire(GcReport, body)
        return report

    def saved_quota(self) -> int | None:
        return self._disk()[1]

    def set_quota(self, quota_bytes: int | None) -> None:
        body = self._http.put("/models/quota", {"quota_bytes": quota_bytes})
        with self._lock:
            in_force = (body or {}).get("quota_bytes")
            self._quota_bytes = int(in_force) if in_force is not None else None
