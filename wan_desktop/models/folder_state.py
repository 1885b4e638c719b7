"""A model folder's state as its files show it: ``status`` reads sizes and the completion marker
(no network, no hashing), ``verify`` re-hashes every file and records the verdict.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from . import partials
from .atomic import atomic_write_json
from .integrity import sha256_file
from .logs import LOGGER_NAME, install_redaction
from .manifest import ModelSpec, VariantSpec
from .marker import CompletionMarker, read_marker, write_marker
from .paths import CORRUPT_MARKER, ModelPaths, model_dir_name
from .staging import PLAN_FILE, folder_bytes, partial_reason, read_json, utc_now
from .types import Mismatch, ModelState, ModelStatus, VerifyReport

log = logging.getLogger(LOGGER_NAME)
install_redaction(log)


def folder_status(paths: ModelPaths, spec: ModelSpec, var: VariantSpec) -> ModelStatus:
    """The variant's state from what is on disk: no network, no hashing, no side effects."""
    name = model_dir_name(spec.id, var.name, spec.default_variant)
    final = paths.model_dir(spec.id, var.name, spec.default_variant)
    base = ModelStatus(
        model_id=spec.id,
        variant=var.name,
        state=ModelState.not_present,
        path=final,
        development=var.development,
        label=var.label,
        reason="not downloaded",
        approx_size_bytes=var.approx_size_bytes,
        bytes_needed=_known_total(var),
    )
    marker = read_marker(final)
    if marker is not None:
        return _installed_status(base, final, marker)
    staging = paths.staging_dir(name)
    plan = read_json(staging / PLAN_FILE)
    staged = folder_bytes(staging) + partials.staged_part_bytes(staging)
    if final.is_dir():
        return replace(
            base,
            state=ModelState.partial,
            bytes_present=folder_bytes(final),
            bytes_needed=None,
            reason="folder exists without a completion marker; run ensure",
        )
    if plan is None and not staged:
        return base
    total = needed = n_files = None
    if plan is not None:
        sizes = [f.get("size") for f in plan.get("files", [])]
        n_files = len(sizes)
        if all(isinstance(s, int) for s in sizes):
            total = sum(int(s) for s in sizes if s is not None)
            needed = max(0, total - staged)
    return replace(
        base,
        state=ModelState.partial,
        files_total=n_files,
        bytes_present=staged,
        bytes_total=total,
        bytes_needed=needed,
        source=plan.get("source") if plan else None,
        reason=partial_reason(spec.id, (plan or {}).get("failed")),
    )


def _installed_status(base: ModelStatus, final: Path, marker: CompletionMarker) -> ModelStatus:
    files = marker.files
    missing: list[str] = []
    wrong_size: list[str] = []
    present = 0
    for f in files:
        try:
            size = (final / f.path).stat().st_size
        except OSError:
            missing.append(f.path)
            continue
        present += size
        if size != f.size:
            wrong_size.append(f.path)
    st = replace(
        base,
        files_total=len(files),
        files_present=len(files) - len(missing),
        missing=tuple(missing),
        bytes_present=present,
        bytes_total=marker.total_bytes,
        source=marker.source,
        completed_at=marker.completed_at,
        verified_at=marker.verified_at,
    )
    corrupt = read_json(final / CORRUPT_MARKER)
    if corrupt is None and not missing and not wrong_size:
        return replace(
            st, state=ModelState.complete, bytes_needed=0, reason="complete and verified"
        )
    bad = tuple(sorted({*(corrupt or {}).get("files", []), *wrong_size}))
    why = (
        f"verification found {len(bad)} damaged file(s)"
        if corrupt is not None
        else f"{len(missing)} file(s) missing, {len(wrong_size)} of the wrong size"
    )
    damaged = {*missing, *bad}
    return replace(
        st,
        state=ModelState.corrupt,
        corrupt_files=bad,
        bytes_needed=sum(f.size for f in files if f.path in damaged),
        reason=f"{why}; run ensure to repair",
    )


def verify_folder(
    spec: ModelSpec, var: VariantSpec, final: Path, marker: CompletionMarker
) -> VerifyReport:
    """Re-hash every file of ``final`` against ``marker``; record the verdict for ``status``."""
    t0 = time.monotonic()
    listed = {f.path: f for f in marker.files}
    mismatches: list[Mismatch] = []
    missing: list[str] = []
    hashed = 0
    for rel, f in listed.items():
        p = final / rel
        if not p.is_file():
            missing.append(rel)
            continue
        digest, size = sha256_file(p)
        hashed += size
        if size != f.size or digest != f.sha256:
            mismatches.append(Mismatch(rel, f.size, size, f.sha256, digest))
    extra = sorted(
        p.relative_to(final).as_posix()
        for p in final.rglob("*")
        if p.is_file()
        and not p.name.startswith(".wan-")
        and p.relative_to(final).as_posix() not in listed
    )
    report = VerifyReport(
        model_id=spec.id,
        variant=var.name,
        path=final,
        checked=tuple(listed),
        mismatches=tuple(mismatches),
        missing=tuple(missing),
        extra=tuple(extra),
        bytes_hashed=hashed,
        seconds=time.monotonic() - t0,
    )
    if report.ok:
        (final / CORRUPT_MARKER).unlink(missing_ok=True)
        write_marker(final, marker.verified(utc_now()))
    else:
        atomic_write_json(
            final / CORRUPT_MARKER,
            {
                "detected_at": utc_now(),
                "files": sorted([m.path for m in mismatches] + missing),
                "mismatches": [m.to_dict() for m in mismatches],
            },
        )
        log.warning("verify %s: %d damaged, %d missing", spec.id, len(mismatches), len(missing))
    return report


def _known_total(var: VariantSpec) -> int | None:
    if var.files and all(f.size is not None for f in var.files):
        return sum(f.size or 0 for f in var.files if not f.optional)
    return None
