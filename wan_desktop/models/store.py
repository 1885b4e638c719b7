"""``ModelStore``: make a model present, complete and verified; say what state it is in.

``ensure`` is the one entry point that moves bytes. Under a cross-process lock it plans the files
from the manifest and the source's metadata, checks free space before any byte moves, fetches into
a staging folder on the same filesystem (resuming what an earlier run left), verifies size and
sha256 of every file, writes a completion marker and renames the folder into place. A model that
is partial or corrupt is never reported complete: completeness is the marker, and the marker is
only written after verification.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from . import disk, gc, health, metrics, requests, transfer
from . import sources as _sources
from .atomic import atomic_write_json, fsync_dir
from .config import OrchestratorConfig
from .errors import (
    AllSourcesFailedError,
    CancelledError,
    ErrorCode,
    IntegrityError,
    InUseError,
    LockTimeoutError,
    ModelError,
    ModelNotPresentError,
    NoSpaceError,
    PathInvalidError,
    QuotaExceededError,
    SourceAttempt,
)
from .integrity import sha256_file
from .logs import LOGGER_NAME, correlation, install_redaction, log_event
from .manifest import Manifest, ModelSpec, VariantSpec, load_manifest
from .marker import CompletionMarker, MarkedFile, read_marker, write_marker
from .paths import (
    COMPLETE_MARKER,
    CORRUPT_MARKER,
    ModelPaths,
    model_dir_name,
    path_guidance,
    safe_join,
    storage_error,
)
from .planning import PlannedFile, integrity_problem, plan_files
from .progress import ProgressCallback, Reporter
from .settings import format_size
from .sources import CancelToken, FileSink, RangedSource, Source, SourceContext
from .staging import (
    PLAN_FILE,
    PlanState,
    folder_bytes,
    partial_reason,
    read_json,
    utc_now,
)
from .types import (
    Mismatch,
    ModelState,
    ModelStatus,
    Phase,
    VerifyReport,
    WanPaths,
)

log = logging.getLogger(LOGGER_NAME)
install_redaction(log)

SCRATCH_SUFFIX = ".scratch"
MAX_FILE_ATTEMPTS = (
    3  # a file whose bytes fail verification is fetched again, this many times in all
)
LOCK_POLL_S = 0.25


class ModelStore:
    """The models folder: one instance per process is enough, and it is safe across threads."""

    def __init__(
        self,
        config: OrchestratorConfig | None = None,
        *,
        manifest: Manifest | None = None,
    ) -> None:
        self.config = config or OrchestratorConfig.from_env()
        self._manifest = manifest
        self.paths = ModelPaths(self.config.models_root)

    # ----------------------------------------------------------------------------- lookups

    @property
    def manifest(self) -> Manifest:
        if self._manifest is None:
            from .signing import verify_manifest_signature

            # The signature, when there is one, is checked before a byte of the file is used.
            verify_manifest_signature(
                self.config.manifest_path,
                public_key=self.config.manifest_public_key,
                required=self.config.require_manifest_signature,
            )
            self._manifest = load_manifest(self.config.manifest_path)
        return self._manifest

    def resolve(self, model_id: str, variant: str | None = None) -> tuple[ModelSpec, VariantSpec]:
        return self.manifest.resolve(model_id, variant, dev_mode=self.config.dev_mode)

    def dir_name(self, spec: ModelSpec, var: VariantSpec) -> str:
        return model_dir_name(spec.id, var.name, spec.default_variant)

    def model_path(self, model_id: str, variant: str | None = None) -> Path:
        spec, var = self.resolve(model_id, variant)
        return self.paths.model_dir(spec.id, var.name, spec.default_variant)

    # ------------------------------------------------------------------------------ status

    def status(self, model_id: str, variant: str | None = None) -> ModelStatus:
        """The model's state from what is on disk: no network, no hashing, no side effects."""
        spec, var = self.resolve(model_id, variant)
        name = self.dir_name(spec, var)
        final = self.paths.model_dir(spec.id, var.name, spec.default_variant)
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
            return self._installed_status(base, final, marker)
        staging = self.paths.staging_dir(name)
        plan = read_json(staging / PLAN_FILE)
        staged = folder_bytes(staging) + transfer.staged_part_bytes(staging)
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

    def _installed_status(
        self, base: ModelStatus, final: Path, marker: CompletionMarker
    ) -> ModelStatus:
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

    def completion(self, model_id: str, variant: str | None = None) -> CompletionMarker | None:
        """The installed model's completion record (files, hashes, source, dates); None when
        it is not installed."""
        spec, var = self.resolve(model_id, variant)
        return read_marker(self.paths.model_dir(spec.id, var.name, spec.default_variant))

    def list_status(self) -> list[ModelStatus]:
        out: list[ModelStatus] = []
        for spec in self.manifest:
            names = [self.resolve(spec.id)[1].name] if self.config.dev_mode else list(spec.variants)
            out.extend(self.status(spec.id, v) for v in names)
        return out

    # ----------------------------------------------------------------------------- verify

    def verify(self, model_id: str, variant: str | None = None) -> VerifyReport:
        """Re-hash every file against the completion marker; record the verdict for ``status``."""
        spec, var = self.resolve(model_id, variant)
        final = self.paths.model_dir(spec.id, var.name, spec.default_variant)
        marker = read_marker(final)
        if marker is None:
            st = self.status(spec.id, var.name)
            raise ModelNotPresentError(
                f"{spec.id} ({var.name}) is not complete ({st.state}): nothing to verify",
                fix=f"run: wan models ensure --only {spec.id}",
                details={"model": spec.id, "variant": var.name, "state": str(st.state)},
            )
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

    # --------------------------------------------------------------------------- engine API

    def get_wan_paths(self, model_id: str, variant: str | None = None) -> WanPaths:
        spec, var = self.resolve(model_id, variant)
        st = self.status(spec.id, var.name)
        if not st.complete:
            raise ModelNotPresentError(
                f"{spec.id} ({var.name}) is not ready: {st.reason}",
                fix=f"run: wan models ensure --only {spec.id}",
                details={"model": spec.id, "variant": var.name, "state": str(st.state)},
            )
        comps = {
            c: st.path / c
            for c in (*spec.components, *spec.optional_components)
            if (st.path / c).is_dir()
        }
        return WanPaths(
            model_id=spec.id,
            variant=var.name,
            dtype=var.dtype,
            development=var.development,
            label=var.label,
            root=st.path,
            components=comps,
        )

    # ------------------------------------------------------------------------------ ensure

    def ensure(
        self,
        model_id: str,
        variant: str | None = None,
        *,
        force: bool = False,
        progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Path:
        """Make the model complete and verified; return its folder.

        ``force`` re-checks every file of a complete model and re-fetches the ones that fail.
        """
        spec, var = self.resolve(model_id, variant)
        name = self.dir_name(spec, var)
        final = self.paths.model_dir(spec.id, var.name, spec.default_variant)
        if not force and self.status(spec.id, var.name).complete:
            return final
        cancel = cancel or CancelToken()
        reporter = Reporter(spec.id, var.name, progress)
        with correlation() as cid:
            log_event(
                log,
                logging.INFO,
                "ensure_start",
                "ensure %s (%s)",
                spec.id,
                var.name,
                model=spec.id,
                variant=var.name,
                force=force,
            )
            try:
                try:
                    path = self._ensure_locked(spec, var, name, final, force, reporter, cancel)
                except ModelError:
                    raise
                except OSError as exc:  # the models folder: read-only, a file, the disk full
                    raise storage_error(exc, self.config.models_root) from exc
            except ModelError as exc:
                log_event(
                    log,
                    logging.ERROR,
                    "ensure_failed",
                    "ensure %s failed: [%s] %s",
                    spec.id,
                    exc.code,
                    exc.message,
                    model=spec.id,
                    variant=var.name,
                    code=str(exc.code),
                    correlation_id=cid,
                )
                raise
            disk.touch_last_used(self.paths, name)
            log_event(
                log,
                logging.INFO,
                "ensure_complete",
                "%s (%s) is complete at %s",
                spec.id,
                var.name,
                path,
                model=spec.id,
                variant=var.name,
                bytes_transferred=reporter.transferred,
            )
            return path

    def _ensure_locked(
        self,
        spec: ModelSpec,
        var: VariantSpec,
        name: str,
        final: Path,
        force: bool,
        reporter: Reporter,
        cancel: CancelToken,
    ) -> Path:
        with self._lock(name, reporter, cancel):
            self._recover_swap(name, final)
            if not force and self.status(spec.id, var.name).complete:
                reporter.phase(Phase.complete)
                return final
            attempts: list[SourceAttempt] = []
            for expanded, shown in _sources.configured(
                var.sources, model_dir=name, attempts=attempts
            ):
                cancel.raise_if_cancelled()
                skipped = health.recent_failure(expanded, self.config)
                if skipped is not None:
                    attempts.append(skipped)
                    log_event(
                        log,
                        logging.INFO,
                        "source_skipped",
                        "skipping %s: it failed moments ago",
                        shown,
                        source=shown,
                    )
                    continue
                t0 = time.monotonic()
                metrics.download_started(shown)
                log_event(log, logging.INFO, "source_start", "trying %s", shown, source=shown)
                try:
                    self._ensure_from(spec, var, name, final, expanded, reporter, cancel)
                except (CancelledError, NoSpaceError, QuotaExceededError) as exc:
                    metrics.download_failed(shown, str(exc.code), time.monotonic() - t0)
                    raise
                except ModelError as exc:
                    metrics.download_failed(shown, str(exc.code), time.monotonic() - t0)
                    log_event(
                        log,
                        logging.WARNING,
                        "source_failed",
                        "source %s failed for %s: %s",
                        shown,
                        spec.id,
                        exc,
                        source=shown,
                        code=str(exc.code),
                    )
                    attempt = SourceAttempt(shown, exc.code, str(exc))
                    attempts.append(attempt)
                    health.remember_failure(expanded, self.config, attempt)
                    continue
                except OSError as exc:
                    # Writing the models folder failed (read-only, the disk full): no source helps.
                    err = storage_error(exc, self.config.models_root)
                    metrics.download_failed(shown, str(err.code), time.monotonic() - t0)
                    raise err from None
                metrics.download_completed(shown, time.monotonic() - t0)
                reporter.phase(Phase.complete)
                return final
            failure = AllSourcesFailedError(
                f"{spec.id} ({var.name})",
                attempts,
                fix="check the messages per source; set WAN_LOCAL_MIRROR or a token if needed",
            )
            if failure.code is ErrorCode.checksum_fail:
                failure.fix = (
                    "a file's bytes did not match the manifest: if the manifest's size or sha256 "
                    f"is wrong, write them from a source you trust with 'wan models lock {spec.id}'"
                    "; if the source's copy is damaged, try another source"
                )
            raise failure

    @staticmethod
    def clear_source_failures() -> None:
        """Forget every recently failed source (a user pressed "retry now")."""
        health.clear()

    @contextlib.contextmanager
    def _lock(self, name: str, reporter: Reporter, cancel: CancelToken) -> Iterator[None]:
        from filelock import FileLock, Timeout

        lock_path = self.paths.lock_file(name)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_path))
        deadline = time.monotonic() + self.config.lock_timeout_s
        waited = False
        while True:
            cancel.raise_if_cancelled()
            try:
                # The first try does not wait, so "waiting for another process" shows at once.
                poll = LOCK_POLL_S if waited else 0.0
                lock.acquire(timeout=min(poll, max(0.0, deadline - time.monotonic())))
                break
            except Timeout:
                if not waited:
                    reporter.phase(Phase.waiting)
                    waited = True
                if time.monotonic() >= deadline:
                    raise LockTimeoutError(
                        f"another process has held the lock on {name} for over "
                        f"{self.config.lock_timeout_s:.0f} s",
                        fix="wait for the other download to finish, or stop it; a lock of a "
                        f"killed process frees itself ({lock_path})",
                        details={"lock": str(lock_path)},
                    ) from None
        try:
            yield
        finally:
            lock.release()

    def _recover_swap(self, name: str, final: Path) -> None:
        """Finish a rename that a crash interrupted: a complete staging folder and no final one."""
        staging = self.paths.staging_dir(name)
        if not final.exists() and (staging / COMPLETE_MARKER).is_file():
            final.parent.mkdir(parents=True, exist_ok=True)
            (staging / PLAN_FILE).unlink(missing_ok=True)
            staging.replace(final)
            log.info("finished an interrupted install of %s", name)

    def _ensure_from(
        self,
        spec: ModelSpec,
        var: VariantSpec,
        name: str,
        final: Path,
        uri: str,
        reporter: Reporter,
        cancel: CancelToken,
    ) -> None:
        staging = self.paths.staging_dir(name)
        scratch = staging.with_name(staging.name + SCRATCH_SUFFIX)
        staging.mkdir(parents=True, exist_ok=True)
        scratch.mkdir(parents=True, exist_ok=True)
        source = self.open_source(spec, var, uri, scratch=scratch, cancel=cancel)
        reporter.source = source.describe()
        try:
            reporter.phase(Phase.planning)
            planned = self._plan(spec, var, source)
            problems = path_guidance(staging, [p.path for p in planned])
            if problems:
                raise PathInvalidError(
                    "; ".join(problems), fix="follow the advice above, then run ensure again"
                )
            state = PlanState.open(staging, source.describe(), planned)
            self._reuse_final_files(final, staging, planned, state)
            self._preflight(planned, state, staging, name)
            self._fetch_all(source, planned, staging, state, reporter, cancel)
            reporter.phase(Phase.finalizing)
            now = utc_now()
            marker = CompletionMarker(
                model_id=spec.id,
                variant=var.name,
                dtype=var.dtype,
                development=var.development,
                label=var.label,
                source=source.describe(),
                completed_at=now,
                verified_at=now,
                files=tuple(
                    MarkedFile(p.path, state.done[p.path]["size"], state.done[p.path]["sha256"])
                    for p in planned
                ),
            )
            # Stray files from an older plan must not ride along into the model folder.
            keep = {p.path for p in planned} | {PLAN_FILE}
            for p in list(staging.rglob("*")):
                if p.is_file() and p.relative_to(staging).as_posix() not in keep:
                    p.unlink()
            write_marker(staging, marker)
            (staging / PLAN_FILE).unlink(missing_ok=True)
            self._swap_into_place(staging, final)
        finally:
            source.close()
            shutil.rmtree(scratch, ignore_errors=True)

    def open_source(
        self,
        spec: ModelSpec,
        var: VariantSpec,
        uri: str,
        *,
        scratch: Path,
        cancel: CancelToken | None = None,
    ) -> Source:
        """A source of ``spec``'s variant at ``uri`` (expanded), with its own backoff gate."""
        ctx = SourceContext(
            model=spec,
            variant=var,
            dir_name=self.dir_name(spec, var),
            config=self.config,
            scratch=scratch,
            cancel=cancel or CancelToken(),
            gate=requests.SourceGate(),
        )
        return _sources.open_source(uri, ctx)

    def _plan(self, spec: ModelSpec, var: VariantSpec, source: Source) -> list[PlannedFile]:
        return plan_files(spec, var, source)

    def _reuse_final_files(
        self, final: Path, staging: Path, planned: list[PlannedFile], state: PlanState
    ) -> None:
        """Repair: files of an existing model folder that still verify are linked, not fetched."""
        if not final.is_dir():
            return
        for p in planned:
            if p.path in state.done or p.sha256 is None:
                continue
            src = final / p.path
            if not src.is_file() or (p.size is not None and src.stat().st_size != p.size):
                continue
            digest, size = sha256_file(src)
            if digest != p.sha256:
                continue
            dest = safe_join(staging, p.path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.unlink(missing_ok=True)
            try:
                os.link(src, dest)
            except OSError:
                shutil.copy2(src, dest)
            state.mark_done(p.path, size, digest, dest)

    def _preflight(
        self, planned: list[PlannedFile], state: PlanState, staging: Path, name: str
    ) -> None:
        needed = 0
        for p in planned:
            if p.path in state.done or p.size is None:
                continue
            needed += max(0, p.size - transfer.staged_bytes(staging / p.path))
        self._check_quota(name, needed)
        free = shutil.disk_usage(self.config.models_root).free
        if needed + self.config.free_space_reserve_bytes > free:
            free = self._make_room(needed + self.config.free_space_reserve_bytes, name)
        if needed + self.config.free_space_reserve_bytes > free:
            raise NoSpaceError(
                f"not enough disk space: the download needs {format_size(needed)} more (plus "
                f"{format_size(self.config.free_space_reserve_bytes)} kept free) and "
                f"{self.config.models_root} has {format_size(free)} free",
                fix="free some space, run 'wan models gc', or set MODELS_ROOT to a larger disk",
                details={
                    "bytes_needed": needed,
                    "bytes_free": free,
                    "reserve": self.config.free_space_reserve_bytes,
                },
            )

    def _check_quota(self, name: str, needed: int) -> None:
        gc.enforce_quota(self.layout(), name, needed)

    def _make_room(self, needed: int, name: str | None = None) -> int:
        """Hook for garbage collection when space is short; returns the free bytes afterwards."""
        return gc.make_room(self.layout(), needed, name)

    def _fetch_all(
        self,
        source: Source,
        planned: list[PlannedFile],
        staging: Path,
        state: PlanState,
        reporter: Reporter,
        cancel: CancelToken,
    ) -> None:
        todo = [p for p in planned if p.path not in state.done]
        sizes = [p.size for p in planned]
        reporter.begin(
            files_total=len(planned),
            files_done=len(planned) - len(todo),
            bytes_total=sum(s for s in sizes if s is not None) if None not in sizes else None,
            bytes_done=sum(state.done[p.path]["size"] for p in planned if p.path in state.done),
        )
        if not todo:
            return
        # Largest first: the long transfers (and their hashing) start at once and the small files
        # fill the gaps, instead of a few big files running alone at the end.
        todo.sort(key=lambda p: -(p.size or 0))
        # One failed file stops its siblings at their next chunk, without cancelling the caller.
        batch = cancel.child()
        try:
            transfer.run_all(
                lambda p: self._fetch_one(source, p, staging, state, reporter, batch),
                todo,
                workers=self.config.max_concurrent_downloads,
                batch=batch,
                name="wan-fetch",
            )
        except CancelledError:
            cancel.raise_if_cancelled()
            raise
        finally:
            with contextlib.suppress(OSError):
                state.flush()

    def _fetch_one(
        self,
        source: Source,
        p: PlannedFile,
        staging: Path,
        state: PlanState,
        reporter: Reporter,
        cancel: CancelToken,
    ) -> None:
        dest = safe_join(staging, p.path)
        last_error: IntegrityError | None = None
        hashing = self.config.verify_sha256
        for attempt in range(1, MAX_FILE_ATTEMPTS + 1):
            cancel.raise_if_cancelled()
            file_progress = reporter.file_started(p.path, p.size)
            digest: str | None
            if p.data is not None and attempt == 1:
                # Read while planning (a shard index): its bytes are here already.
                digest = transfer.write_known(dest, p.data)
                size = len(p.data)
                file_progress(size)
                metrics.bytes_received(source.describe(), size)
            elif isinstance(source, RangedSource) and p.size is not None:
                digest = transfer.fetch_file(
                    source,
                    p.remote,
                    dest,
                    size=p.size,
                    expected_sha256=p.sha256,
                    settings=requests.transfer_settings(self.config),
                    gate=source.ctx.gate or requests.SourceGate(),
                    cancel=cancel,
                    on_bytes=file_progress,
                    on_resumed=lambda n: reporter.resumed(p.path, n),
                )
                size = dest.stat().st_size
            else:
                if p.size is not None and dest.is_file() and dest.stat().st_size > p.size:
                    dest.unlink()  # longer than the file can be: not a prefix of it
                with FileSink(dest, on_bytes=file_progress, cancel=cancel, hashing=hashing) as sink:
                    reporter.resumed(p.path, sink.resumed_from)
                    if p.size is None or sink.offset < p.size:
                        source.fetch(p.remote, sink)
                    size, digest = sink.offset, sink.hexdigest() or None
            reporter.file_finished(p.path)
            problem = integrity_problem(p, size, digest, dest, source.describe(), hashing)
            if problem is None:
                state.mark_done(p.path, size, digest or p.sha256 or "", dest)
                return
            log_event(
                log,
                logging.WARNING,
                "integrity_retry",
                "attempt %d/%d: %s",
                attempt,
                MAX_FILE_ATTEMPTS,
                problem[1],
                file=p.path,
                code=str(problem[0]),
            )
            reporter.discard(size)
            transfer.discard(dest)
            last_error = IntegrityError(
                problem[1],
                code=problem[0],
                fix="the source's copy may be damaged; another source will be tried",
                details={
                    "file": p.path,
                    "source": source.describe(),
                    "expected_sha256": p.sha256,
                    "actual_sha256": digest,
                    "expected_size": p.size,
                    "actual_size": size,
                },
            )
        assert last_error is not None
        state.mark_failed(p.path, last_error, source.describe())
        raise last_error

    def _swap_into_place(self, staging: Path, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if final.exists():
            trash = self.paths.trash_dir()
            trash.mkdir(parents=True, exist_ok=True)
            old = trash / f"{final.name}.{uuid.uuid4().hex[:8]}"
            final.replace(old)
        staging.replace(final)
        fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    # ------------------------------------------------------------------------------ delete

    def delete(self, model_id: str, variant: str | None = None) -> int:
        """Remove a model (and any partial download of it); returns the bytes freed."""
        spec, var = self.resolve(model_id, variant)
        name = self.dir_name(spec, var)
        final = self.paths.model_dir(spec.id, var.name, spec.default_variant)
        staging = self.paths.staging_dir(name)
        freed = 0
        leases = disk.live_leases(self.paths, name)
        if leases:
            pids = ", ".join(str(lease.get("pid")) for lease in leases)
            raise InUseError(
                f"{spec.id} ({var.name}) is in use by process {pids}",
                fix="finish or cancel the job that uses it (or unload the model), then delete it",
                details={"model": spec.id, "variant": var.name, "pids": pids},
            )
        with self._lock(name, Reporter(spec.id, var.name, None), CancelToken()):
            for folder in (final, staging, staging.with_name(staging.name + SCRATCH_SUFFIX)):
                if folder.exists():
                    freed += folder_bytes(folder)
                    trash = self.paths.trash_dir()
                    trash.mkdir(parents=True, exist_ok=True)
                    gone = trash / f"{folder.name}.{uuid.uuid4().hex[:8]}"
                    folder.replace(gone)
                    shutil.rmtree(gone, ignore_errors=True)
        return freed

    # -------------------------------------------------------------------------------- disk

    @contextlib.contextmanager
    def use(self, model_id: str, variant: str | None = None) -> Iterator[Path]:
        """Mark the model in use for the ``with`` block: GC leaves it alone; records last use.

        Take the lease before ``ensure`` and hold it while the model is loaded::

            with store.use("T2V-A14B"):
                path = store.ensure("T2V-A14B")
                pipeline = load(path)
        """
        spec, var = self.resolve(model_id, variant)
        name = self.dir_name(spec, var)
        with disk.lease(self.paths, name):
            yield self.paths.model_dir(spec.id, var.name, spec.default_variant)

    def pin(self, model_id: str, variant: str | None = None, *, pinned: bool = True) -> bool:
        """Pin (or unpin) a model so GC never removes it; returns whether anything changed."""
        spec, var = self.resolve(model_id, variant)
        return disk.set_pinned(self.paths, self.dir_name(spec, var), pinned)

    def is_pinned(self, model_id: str, variant: str | None = None) -> bool:
        spec, var = self.resolve(model_id, variant)
        return disk.is_pinned(self.paths, self.dir_name(spec, var))

    def layout(self) -> disk.Layout:
        """Which folder holds which model, for disk accounting and garbage collection."""
        known: dict[str, tuple[str, str, str]] = {}
        try:
            for spec in self.manifest:
                for name, var in spec.variants.items():
                    known[self.dir_name(spec, var)] = (spec.id, name, spec.family)
        except ModelError as exc:  # a broken manifest must not hide what is on disk: say so
            return disk.Layout(self.paths, self.config, known, manifest_error=str(exc))
        return disk.Layout(self.paths, self.config, known)

    def disk_usage(self) -> disk.DiskUsage:
        return disk.disk_usage(self.layout())

    def gc(
        self,
        *,
        max_size: int | None = None,
        max_age_s: float | None = None,
        dry_run: bool = False,
    ) -> gc.GcReport:
        """Collect least recently used and old models; the settings give the defaults."""
        return gc.run_gc(
            self.layout(),
            max_size=self.config.quota_bytes if max_size is None else max_size,
            max_age_s=self.config.max_age_s if max_age_s is None else max_age_s,
            family_quota=dict(self.config.family_quota_bytes),
            dry_run=dry_run,
        )


# --------------------------------------------------------------------------------- internals


def _known_total(var: VariantSpec) -> int | None:
    if var.files and all(f.size is not None for f in var.files):
        return sum(f.size or 0 for f in var.files if not f.optional)
    return None


def with_dev_mode(store: ModelStore, dev_mode: bool) -> ModelStore:
    if store.config.dev_mode == dev_mode:
        return store
    return ModelStore(replace(store.config, dev_mode=dev_mode), manifest=store._manifest)
