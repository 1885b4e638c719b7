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
from wan_desktop.models.settings import format_size


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
    def disk_bytes(self) -> int:
        """What it takes on disk now, its folder (or its partial download's) as the disk usage
        measures it: the number the quota, Clean up and Delete count, so every page says it."""
        return self.usage.bytes if self.usage is not None else self.status.bytes_present

    @property
    def size_bytes(self) -> int | None:
        """Its size on disk when installed, else what it will take (to download or build)."""
        st = self.status
        if st.complete:
            return self.disk_bytes
        return st.bytes_total or st.approx_size_bytes or self.variant.approx_size_bytes

    @property
    def built_here(self) -> bool:
        """A development variant: built on this machine from random weights, never downloaded."""
        return self.variant.development

    def to_get_text(self) -> str:
        """What getting it means, with its size: "64.0 GiB to download", "436 KiB, built here"."""
        size = format_size(self.size_bytes)
        return f"{size}, built here" if self.built_here else f"{size} to download"

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
    disk: DiskUsage | None  # None where the folder's use could not be read


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
