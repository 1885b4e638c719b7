"""Installing one variant from one source: the folder lock, the staging folder, each file fetched
and verified, the completion marker, and the rename into place.

``ModelStore.ensure`` chooses the source; this module makes what one source serves into a complete
model folder, so that a partial or corrupt download is never where the model belongs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from . import disk, gc, metrics, partials, requests, transfer
from .atomic import fsync_dir
from .config import OrchestratorConfig
from .errors import (
    CancelledError,
    IntegrityError,
    LockTimeoutError,
    NoSpaceError,
    PathInvalidError,
)
from .integrity import sha256_file
from .logs import LOGGER_NAME, install_redaction, log_event
from .manifest import ModelSpec, VariantSpec
from .marker import CompletionMarker, MarkedFile, write_marker
from .paths import COMPLETE_MARKER, ModelPaths, path_guidance, safe_join
from .planning import PlannedFile, integrity_problem, plan_files
from .progress import Reporter
from .settings import format_size
from .sources import CancelToken, FileSink, RangedSource, Source
from .staging import PLAN_FILE, PlanState, utc_now
from .types import Phase

log = logging.getLogger(LOGGER_NAME)
install_redaction(log)

SCRATCH_SUFFIX = ".scratch"
MAX_FILE_ATTEMPTS = (
    3  # a file whose bytes fail verification is fetched again, this many times in all
)
LOCK_POLL_S = 0.25


@contextlib.contextmanager
def model_lock(
    paths: ModelPaths,
    config: OrchestratorConfig,
    name: str,
    reporter: Reporter,
    cancel: CancelToken,
) -> Iterator[None]:
    """Hold the cross-process lock on model folder ``name``; waiting shows as a phase."""
    from filelock import FileLock, Timeout

    lock_path = paths.lock_file(name)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    deadline = time.monotonic() + config.lock_timeout_s
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
                    f"{config.lock_timeout_s:.0f} s",
                    fix="wait for the other download to finish, or stop it; a lock of a "
                    f"killed process frees itself ({lock_path})",
                    details={"lock": str(lock_path)},
                ) from None
    try:
        yield
    finally:
        lock.release()


def recover_swap(paths: ModelPaths, name: str, final: Path) -> None:
    """Finish a rename that a crash interrupted: a complete staging folder and no final one."""
    staging = paths.staging_dir(name)
    if not final.exists() and (staging / COMPLETE_MARKER).is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        (staging / PLAN_FILE).unlink(missing_ok=True)
        staging.replace(final)
        log.info("finished an interrupted install of %s", name)


def install_from(
    config: OrchestratorConfig,
    paths: ModelPaths,
    layout: Callable[[], disk.Layout],
    spec: ModelSpec,
    var: VariantSpec,
    name: str,
    final: Path,
    source: Source,
    reporter: Reporter,
    cancel: CancelToken,
) -> None:
    """Fetch and verify every file ``source`` serves into the staging folder; swap it into place."""
    staging = paths.staging_dir(name)
    reporter.phase(Phase.planning)
    planned = plan_files(spec, var, source)
    problems = path_guidance(staging, [p.path for p in planned])
    if problems:
        raise PathInvalidError(
            "; ".join(problems), fix="follow the advice above, then run ensure again"
        )
    state = PlanState.open(staging, source.describe(), planned)
    _reuse_final_files(final, staging, planned, state)
    _preflight(config, layout, planned, state, staging, name)
    _fetch_all(config, source, planned, staging, state, reporter, cancel)
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
    _swap_into_place(paths, staging, final)


def _reuse_final_files(
    final: Path, staging: Path, planned: list[PlannedFile], state: PlanState
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
    config: OrchestratorConfig,
    layout: Callable[[], disk.Layout],
    planned: list[PlannedFile],
    state: PlanState,
    staging: Path,
    name: str,
) -> None:
    needed = 0
    for p in planned:
        if p.path in state.done or p.size is None:
            continue
        needed += max(0, p.size - partials.staged_bytes(staging / p.path))
    gc.enforce_quota(layout(), name, needed)
    free = shutil.disk_usage(config.models_root).free
    if needed + config.free_space_reserve_bytes > free:
        # Garbage collection when space is short; the free bytes afterwards.
        free = gc.make_room(layout(), needed + config.free_space_reserve_bytes, name)
    if needed + config.free_space_reserve_bytes > free:
        raise NoSpaceError(
            f"not enough disk space: the download needs {format_size(needed)} more (plus "
            f"{format_size(config.free_space_reserve_bytes)} kept free) and "
            f"{config.models_root} has {format_size(free)} free",
            fix="free some space, run 'wan models gc', or set MODELS_ROOT to a larger disk",
            details={
                "bytes_needed": needed,
                "bytes_free": free,
                "reserve": config.free_space_reserve_bytes,
            },
        )


def _fetch_all(
    config: OrchestratorConfig,
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
            lambda p: _fetch_one(config, source, p, staging, state, reporter, batch),
            todo,
            workers=config.max_concurrent_downloads,
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
    config: OrchestratorConfig,
    source: Source,
    p: PlannedFile,
    staging: Path,
    state: PlanState,
    reporter: Reporter,
    cancel: CancelToken,
) -> None:
    dest = safe_join(staging, p.path)
    last_error: IntegrityError | None = None
    hashing = config.verify_sha256
    for attempt in range(1, MAX_FILE_ATTEMPTS + 1):
        cancel.raise_if_cancelled()
        file_progress = reporter.file_started(p.path, p.size)
        digest: str | None
        if p.data is not None and attempt == 1:
            # Read while planning (a shard index): its bytes are here already.
            digest = partials.write_known(dest, p.data)
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
                settings=requests.transfer_settings(config),
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
        partials.discard(dest)
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


def _swap_into_place(paths: ModelPaths, staging: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if final.exists():
        trash = paths.trash_dir()
        trash.mkdir(parents=True, exist_ok=True)
        old = trash / f"{final.name}.{uuid.uuid4().hex[:8]}"
        final.replace(old)
    staging.replace(final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
