"""Garbage collection: least recently used first, too-old models, quotas; never pinned or in use.

GC removes the least recently used models first until the total fits ``max_size`` (and each
family fits its quota), and every model unused for longer than ``max_age``; it never removes a
pinned model, a model in use (a live lease, a download in progress) or the model being fetched,
and says for every model why it was kept or removed. With a quota in the settings, ``ensure``
runs it before a download to make room (:func:`enforce_quota`, :func:`make_room`).
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from dataclasses import dataclass
from typing import Any

from .disk import DiskUsage, Layout, ModelUsage, disk_usage, is_pinned, live_leases
from .errors import QuotaExceededError
from .logs import LOGGER_NAME, log_event
from .settings import format_size

log = logging.getLogger(LOGGER_NAME)

DAY_S = 86400.0


@dataclass(frozen=True)
class GcDecision:
    dir_name: str
    model_id: str
    variant: str | None
    bytes: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "dir_name": self.dir_name,
            "model_id": self.model_id,
            "variant": self.variant,
            "bytes": self.bytes,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class GcReport:
    dry_run: bool
    removed: tuple[GcDecision, ...]
    kept: tuple[GcDecision, ...]
    reclaimed_bytes: int
    total_before: int
    total_after: int
    max_size_bytes: int | None
    max_age_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "reclaimed_bytes": self.reclaimed_bytes,
            "total_before": self.total_before,
            "total_after": self.total_after,
            "max_size_bytes": self.max_size_bytes,
            "max_age_seconds": self.max_age_s,
            "removed": [d.to_dict() for d in self.removed],
            "kept": [d.to_dict() for d in self.kept],
        }


def _fmt_age(seconds: float) -> str:
    return f"{seconds / DAY_S:.1f} days" if seconds >= DAY_S else f"{seconds / 3600:.1f} hours"


def plan_gc(
    usage: DiskUsage,
    *,
    max_size: int | None,
    max_age_s: float | None,
    family_quota: dict[str, int] | None = None,
    protect: frozenset[str] = frozenset(),
    now: float | None = None,
) -> tuple[list[GcDecision], list[GcDecision]]:
    """(remove, keep) with a reason for each; pure, so ``--dry-run`` shows exactly what runs."""
    now = time.time() if now is None else now
    remove: dict[str, GcDecision] = {}
    keep: dict[str, str] = {}
    candidates: list[ModelUsage] = []
    for m in usage.models:
        if m.pinned:
            keep[m.dir_name] = "pinned"
        elif m.dir_name in protect:
            keep[m.dir_name] = "being downloaded now"
        elif m.downloading:
            keep[m.dir_name] = "in use: another process is downloading it"
        elif m.in_use:
            keep[m.dir_name] = "in use by process " + ", ".join(str(p) for p in m.in_use_by)
        else:
            candidates.append(m)

    def take(m: ModelUsage, reason: str) -> None:
        remove[m.dir_name] = GcDecision(m.dir_name, m.model_id, m.variant, m.bytes, reason)

    for m in candidates:
        age = now - (m.last_used or now)
        if max_age_s is not None and age > max_age_s:
            take(m, f"unused for {_fmt_age(age)} (max age {_fmt_age(max_age_s)})")
    lru = sorted(
        (m for m in candidates if m.complete or not m.known),
        key=lambda m: (m.last_used or 0.0, m.dir_name),
    )

    def shrink(members: list[ModelUsage], total: int, limit: int, what: str) -> None:
        for m in members:
            if total <= limit:
                return
            if m.dir_name in remove:
                continue
            take(m, f"least recently used; {what} was {total} bytes, over {limit}")
            total -= m.bytes

    remaining = usage.total_bytes - sum(d.bytes for d in remove.values())
    if max_size is not None:
        shrink(lru, remaining, max_size, "the total")
    for fam, limit in (family_quota or {}).items():
        fam_total = sum(
            m.bytes for m in usage.models if m.family == fam and m.dir_name not in remove
        )
        shrink([m for m in lru if m.family == fam], fam_total, limit, f"family {fam}")
    for m in candidates:
        if m.dir_name in remove:
            continue
        if not m.complete and m.known:
            keep[m.dir_name] = "partial download (resumable); only max age removes it"
        else:
            age = now - (m.last_used or now)
            keep[m.dir_name] = f"within limits (last used {_fmt_age(age)} ago)"
    kept = [
        GcDecision(m.dir_name, m.model_id, m.variant, m.bytes, keep[m.dir_name])
        for m in usage.models
        if m.dir_name in keep
    ]
    return list(remove.values()), kept


def run_gc(
    layout: Layout,
    *,
    max_size: int | None,
    max_age_s: float | None,
    dry_run: bool,
    family_quota: dict[str, int] | None = None,
    protect: frozenset[str] = frozenset(),
) -> GcReport:
    from filelock import FileLock, Timeout

    usage = disk_usage(layout)
    remove, kept = plan_gc(
        usage,
        max_size=max_size,
        max_age_s=max_age_s,
        family_quota=family_quota,
        protect=protect,
    )
    removed: list[GcDecision] = []
    by_name = {m.dir_name: m for m in usage.models}
    for d in remove:
        if dry_run:
            removed.append(d)
            continue
        m = by_name[d.dir_name]
        lock_path = layout.paths.lock_file(d.dir_name)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            kept.append(replace_reason(d, "in use: a download started meanwhile"))
            continue
        try:
            # Checked again under the lock: a lease taken since the plan wins.
            if live_leases(layout.paths, d.dir_name) or is_pinned(layout.paths, d.dir_name):
                kept.append(replace_reason(d, "in use or pinned since the plan was made"))
                continue
            trash = layout.paths.trash_dir()
            trash.mkdir(parents=True, exist_ok=True)
            gone = trash / f"{m.path.name}.{uuid.uuid4().hex[:8]}"
            m.path.replace(gone)
            if not m.complete:
                scratch = m.path.with_name(m.path.name + ".scratch")
                shutil.rmtree(scratch, ignore_errors=True)
        finally:
            lock.release()
        shutil.rmtree(gone, ignore_errors=True)
        layout.paths.last_used_file(d.dir_name).unlink(missing_ok=True)
        removed.append(d)
    reclaimed = sum(d.bytes for d in removed)
    return GcReport(
        dry_run=dry_run,
        removed=tuple(removed),
        kept=tuple(kept),
        reclaimed_bytes=reclaimed,
        total_before=usage.total_bytes,
        total_after=usage.total_bytes - reclaimed,
        max_size_bytes=max_size,
        max_age_s=max_age_s,
    )


def replace_reason(d: GcDecision, reason: str) -> GcDecision:
    return GcDecision(d.dir_name, d.model_id, d.variant, d.bytes, reason)


# ----------------------------------------------------------------------------- quotas


def enforce_quota(layout: Layout, name: str, needed: int) -> None:
    """Keep the models folder within its quotas, collecting LRU models to make room."""
    quota = layout.config.quota_bytes
    fam_quota = dict(layout.config.family_quota_bytes)
    if quota is None and not fam_quota:
        return
    family = layout.family_of(name)
    usage = disk_usage(layout)
    over_total = quota is not None and usage.total_bytes + needed > quota
    fam_limit = fam_quota.get(family)
    fam_used = usage.family_bytes.get(family, 0)
    over_family = fam_limit is not None and fam_used + needed > fam_limit
    if not (over_total or over_family):
        return
    report = run_gc(
        layout,
        max_size=None if quota is None else max(0, quota - needed),
        max_age_s=layout.config.max_age_s,
        dry_run=False,
        family_quota=({family: max(0, fam_limit - needed)} if fam_limit is not None else None),
        protect=frozenset({name}),
    )
    if report.removed:
        log_event(
            log,
            logging.INFO,
            "gc",
            "collected %d model(s), %s, to stay within the quota",
            len(report.removed),
            format_size(report.reclaimed_bytes),
            removed=[d.dir_name for d in report.removed],
            reclaimed_bytes=report.reclaimed_bytes,
        )
    after = disk_usage(layout)
    still_total = quota is not None and after.total_bytes + needed > quota
    still_family = fam_limit is not None and after.family_bytes.get(family, 0) + needed > fam_limit
    if still_total or still_family:
        limit = quota if still_total else fam_limit
        used = after.total_bytes if still_total else after.family_bytes.get(family, 0)
        kept = "; ".join(f"{d.dir_name}: {d.reason}" for d in report.kept) or "nothing else"
        raise QuotaExceededError(
            f"the download needs {format_size(needed)} but the "
            f"{'models folder' if still_total else f'{family} family'} quota of "
            f"{format_size(limit or 0)} has only {format_size(max(0, (limit or 0) - used))} left "
            f"after collecting what may be collected (kept: {kept})",
            fix="raise the quota in the settings, unpin or delete a model "
            "('wan models disk-usage' shows them), then run ensure again",
            details={
                "bytes_needed": needed,
                "quota_bytes": limit,
                "used_bytes": used,
                "kept": [d.to_dict() for d in report.kept],
            },
        )


def make_room(layout: Layout, needed: int, name: str | None = None) -> int:
    """Short of space: with a quota set (the user allowed automatic collection), collect the
    least recently used models until ``needed`` bytes are free; returns the free bytes."""
    free = shutil.disk_usage(layout.config.models_root).free
    if layout.config.quota_bytes is None or free >= needed:
        return free
    usage = disk_usage(layout)
    run_gc(
        layout,
        max_size=max(0, usage.total_bytes - (needed - free)),
        max_age_s=layout.config.max_age_s,
        dry_run=False,
        protect=frozenset({name} if name else ()),
    )
    return shutil.disk_usage(layout.config.models_root).free
