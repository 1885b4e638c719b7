"""What the manifest offers and what is on disk: one row per model variant, with the
orchestrator's disk usage (sizes, pins, last use, what is in use) beside it. The UI reads it
off-thread through the engine's models view (``face.ModelsView.catalog``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from wan_desktop.models import (
    DiskUsage,
    ModelSpec,
    ModelStatus,
    ModelStore,
    ModelUsage,
    VariantSpec,
)


@dataclass(frozen=True)
class ModelRow:
    spec: ModelSpec
    variant: VariantSpec
    status: ModelStatus
    pinned: bool
    usage: ModelUsage | None = None  # None: nothing of it on disk

    @property
    def key(self) -> tuple[str, str]:
        return (self.spec.id, self.variant.name)

    @property
    def size_bytes(self) -> int | None:
        st = self.status
        if st.complete:
            return st.bytes_present
        return st.bytes_total or st.approx_size_bytes or self.variant.approx_size_bytes

    @property
    def in_use(self) -> bool:
        """Held by a running job or a loaded model (a lease), not merely downloading."""
        return self.usage is not None and bool(self.usage.in_use_by)

    def in_use_text(self) -> str:
        if self.usage is None or not self.usage.in_use_by:
            return ""
        mine = os.getpid() in self.usage.in_use_by
        others = [p for p in self.usage.in_use_by if p != os.getpid()]
        who = ["this app"] if mine else []
        who += [f"process {p}" for p in others]
        return "in use by " + ", ".join(who)


@dataclass(frozen=True)
class Catalog:
    rows: tuple[ModelRow, ...]
    disk: DiskUsage | None  # None where the folder's use is not known (a server's)


def scan(store: ModelStore) -> Catalog:
    """Every variant the user can use now (only the tiny ones in development mode). Blocking."""
    disk = store.disk_usage()
    usage = {m.dir_name: m for m in disk.models}
    rows = []
    for spec in store.manifest:
        # Development mode resolves every model to its tiny variant, status included.
        names = [store.resolve(spec.id)[1].name] if store.config.dev_mode else list(spec.variants)
        names.sort(key=lambda n: (n != spec.default_variant, n))
        for name in names:
            var = spec.variant(name)
            status = store.status(spec.id, name)
            dir_name = store.dir_name(spec, var)
            rows.append(
                ModelRow(spec, var, status, store.is_pinned(spec.id, name), usage.get(dir_name))
            )
    return Catalog(tuple(rows), disk)
