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
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from . import disk, gc, health, install, metrics, requests
from . import sources as _sources
from .config import OrchestratorConfig
from .errors import (
    AllSourcesFailedError,
    CancelledError,
    ErrorCode,
    InUseError,
    ModelError,
    ModelNotPresentError,
    NoSpaceError,
    QuotaExceededError,
    SourceAttempt,
)
from .folder_state import folder_status, verify_folder
from .logs import LOGGER_NAME, correlation, install_redaction, log_event
from .manifest import Manifest, ModelSpec, VariantSpec
from .manifest_load import load_manifest
from .marker import CompletionMarker, read_marker
from .paths import (
    ModelPaths,
    model_dir_name,
    storage_error,
)
from .planning import PlannedFile, plan_files
from .progress import ProgressCallback, Reporter
from .sources import CancelToken, Source, SourceContext
from .staging import (
    folder_bytes,
)
from .types import (
    ModelStatus,
    Phase,
    VerifyReport,
    WanPaths,
)

log = logging.getLogger(LOGGER_NAME)
install_redaction(log)


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
        return folder_status(self.paths, spec, var)

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
        return verify_folder(spec, var, final, marker)

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
        with install.model_lock(self.paths, self.config, name, reporter, cancel):
            install.recover_swap(self.paths, name, final)
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
        scratch = staging.with_name(staging.name + install.SCRATCH_SUFFIX)
        staging.mkdir(parents=True, exist_ok=True)
        scratch.mkdir(parents=True, exist_ok=True)
        source = self.open_source(spec, var, uri, scratch=scratch, cancel=cancel)
        reporter.source = source.describe()
        try:
            install.install_from(
                self.config,
                self.paths,
                self.layout,
                spec,
                var,
                name,
                final,
                source,
                reporter,
                cancel,
            )
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
        reporter = Reporter(spec.id, var.name, None)
        with install.model_lock(self.paths, self.config, name, reporter, CancelToken()):
            for folder in (
                final,
                staging,
                staging.with_name(staging.name + install.SCRATCH_SUFFIX),
            ):
                freed += self._remove_folder(folder)
        return freed

    def discard_partial(self, dir_name: str) -> int:
        """Remove the partial download in staging folder ``dir_name`` (a name from
        ``disk_usage()``, in the manifest or not), never an installed model; the bytes freed.
        A download of it that is running now is not touched: cancel it first."""
        staging = self.paths.staging_dir(dir_name)
        if staging.parent != self.paths.staging_root() or dir_name in ("", ".", ".."):
            raise ValueError(f"{dir_name!r} is not a folder name")
        scratch = staging.with_name(staging.name + install.SCRATCH_SUFFIX)
        try:
            present = staging.is_dir() or scratch.is_dir()
        except OSError:  # a name the file system cannot hold (too long, say): nothing there
            present = False
        if not present:
            return 0  # nothing left: nothing to free (and no lock file to make for it)
        if disk.download_running(self.paths, dir_name):
            raise InUseError(
                f"{dir_name} is downloading now",
                fix="cancel its download first, then discard what it left",
                details={"folder": dir_name},
            )
        reporter = Reporter(dir_name, "", None)
        with install.model_lock(self.paths, self.config, dir_name, reporter, CancelToken()):
            # Every byte counts here, as the disk usage counts it: partial files are hidden ones.
            measure = disk.folder_bytes
            return self._remove_folder(staging, measure) + self._remove_folder(scratch, measure)

    def _remove_folder(self, folder: Path, measure: Callable[[Path], int] = folder_bytes) -> int:
        """Move ``folder`` to the trash (atomic: nothing half-deleted stays in place), empty it;
        its size by ``measure``."""
        if not folder.exists():
            return 0
        size = measure(folder)
        trash = self.paths.trash_dir()
        trash.mkdir(parents=True, exist_ok=True)
        gone = trash / f"{folder.name}.{uuid.uuid4().hex[:8]}"
        folder.replace(gone)
        shutil.rmtree(gone, ignore_errors=True)
        return size

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
            packs = [pack.download for pack in self.manifest.loras.values()]
            for spec in (*self.manifest, *packs):
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


def with_dev_mode(store: ModelStore, dev_mode: bool) -> ModelStore:
    if store.config.dev_mode == dev_mode:
        return store
    return ModelStore(replace(store.config, dev_mode=dev_mode), manifest=store._manifest)
