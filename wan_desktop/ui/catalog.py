"""What the manifest offers and what is on disk: one row per model variant, read off-thread."""

from __future__ import annotations

from dataclasses import dataclass

from wan_desktop.models import ModelSpec, ModelStatus, ModelStore, VariantSpec


@dataclass(frozen=True)
class ModelRow:
    spec: ModelSpec
    variant: VariantSpec
    status: ModelStatus
    pinned: bool | None  # None: this store has no pins

    @property
    def key(self) -> tuple[str, str]:
        return (self.spec.id, self.variant.name)

    @property
    def size_bytes(self) -> int | None:
        st = self.status
        if st.complete:
            return st.bytes_present
        return st.bytes_total or st.approx_size_bytes or self.variant.approx_size_bytes


def supports_pins(store: ModelStore) -> bool:
    return callable(getattr(store, "pin", None)) and callable(getattr(store, "is_pinned", None))


def scan(store: ModelStore) -> list[ModelRow]:
    """Every variant the user can use now (only the tiny ones in development mode). Blocking."""
    rows = []
    # Pins come with the disk manager; until then the store has no is_pinned.
    is_pinned = getattr(store, "is_pinned", None) if supports_pins(store) else None
    for spec in store.manifest:
        names = [store.resolve(spec.id)[1].name] if store.config.dev_mode else list(spec.variants)
        names.sort(key=lambda n: (n != spec.default_variant, n))
        for name in names:
            var = spec.variant(name)
            status = store.status(spec.id, name)
            pinned = bool(is_pinned(spec.id, name)) if is_pinned is not None else None
            rows.append(ModelRow(spec, var, status, pinned))
    return rows
