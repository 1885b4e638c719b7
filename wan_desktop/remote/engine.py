"""``RemoteEngine``: the engine interface (``engine.face.EngineFace``) over a ``wan serve``.

Commands and queries go over HTTP (``http.py``) as the engine's own types (``engine.wire``);
events come over one WebSocket (``stream.py``) and are published on a local ``EventBus``, so
``subscribe`` behaves as the local engine's. Images and LoRAs named in a job are uploaded once
by content (``files.Uploads``); finished jobs' files are downloaded into a local cache
(``files.ResultCache``) and the jobs the app sees point at those copies.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from wan_desktop.engine.estimate import FitVerdict
from wan_desktop.engine.events import (
    Event,
    EventBus,
    JobStateChanged,
    Listener,
    MemorySample,
    ModelDownload,
    ModelDownloadFinished,
    ModelLoaded,
    ModelUnloaded,
    QueueChanged,
    Subscription,
)
from wan_desktop.engine.face import EngineInfo, Lifecycle, LinkChanged
from wan_desktop.engine.hardware import HardwareProfile, host_sample
from wan_desktop.engine.jobs import Job, JobKind, JobOutput, JobSpec, JobState
from wan_desktop.engine.params import validate_wan_params
from wan_desktop.engine.pipelines.base import LoadedModel
from wan_desktop.engine.wire import WIRE_VERSION, from_wire, to_wire

from .errors import IncompatibleServerError, NotWanServeError, RemoteCommandError
from .files import DEFAULT_CACHE_BYTES, ResultCache, Uploads
from .http import Http
from .models import RemoteModels
from .stream import EventStream

log = logging.getLogger("wan_desktop.remote")

FILES = ("video", "thumbnail", "subtitles", "sidecar")
UPLOADED_PARAMS = ("image", "end_image")


def cache_folder(data_dir: Path, url: str) -> Path:
    """This server's result cache under the app's data folder (one folder per server)."""
    name = url.split("://", 1)[-1].replace(":", "_").replace("/", "_")
    return data_dir / "remote" / name


def say_hello(http: Http) -> Mapping[str, Any]:
    """The server's hello, checked: a ``RemoteError`` saying what to do when it is not a
    ``wan serve`` this app can use."""
    try:
        hello = http.get("/hello")
    except RemoteCommandError as exc:
        raise NotWanServeError(http.url, f"HTTP {exc.status} for the engine's hello") from None
    except ValueError:
        raise NotWanServeError(http.url, "its answer to the engine's hello is not JSON") from None
    if not isinstance(hello, Mapping) or hello.get("server") != "wan-desktop":
        raise NotWanServeError(http.url, "its answer to the engine's hello is not Wan Desktop's")
    if hello.get("wire") != WIRE_VERSION or "hardware" not in hello:
        raise IncompatibleServerError(
            http.url, str(hello.get("version")), hello.get("wire"), WIRE_VERSION
        )
    return hello


def probe(url: str, token: str | None) -> str:
    """Check a server the way connecting does (blocking): what it is, in a few words, or a
    ``RemoteError`` that says what to do."""
    http = Http(url, token)
    try:
        hello = say_hello(http)
    finally:
        http.close()
    hardware: HardwareProfile = from_wire(HardwareProfile, hello["hardware"])
    mode = "  ·  development mode" if hello.get("dev_mode") else ""
    return f"Wan Desktop {hello.get('version')} at {http.url}  ·  {hardware.summary}{mode}"


class RemoteEngine(Lifecycle):
    """A client of the engine of a ``wan serve`` at ``url``; raises a ``RemoteError`` (with what
    to do) when the server cannot be reached, refuses the token or is not a ``wan serve``."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        data_dir: Path,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        start: bool = True,
    ) -> None:
        self.http = Http(url, token)
        self.url = self.http.url
        try:
            hello = say_hello(self.http)
        except Exception:
            self.http.close()
            raise
        self.server_version = str(hello.get("version"))
        settings = hello.get("settings") or {}
        self._hardware: HardwareProfile = from_wire(HardwareProfile, hello["hardware"])
        self._info = EngineInfo(
            data_dir=Path(settings.get("data_dir", "")),
            outputs_dir=Path(settings.get("outputs_dir", "")),
            loras_dir=data_dir / "loras",  # LoRAs are picked on this computer and uploaded
            models_root=Path(settings.get("models_root", "")),
            memory_sample_s=float(settings.get("memory_sample_s", 0.5)),
            preview_every=int(settings.get("preview_every", 0)),
            idle_unload_s=float(settings.get("idle_unload_s", 600.0)),
            dev_mode=bool(settings.get("dev_mode", hello.get("dev_mode", False))),
            mock=bool(settings.get("mock", False)),
            location=self.url,
            # The explainer runs on the server, with the settings of the server's environment.
            extra={"explainer_resolved": settings["explainer"]} if "explainer" in settings else {},
        )
        self._gpus_per_machine = int(hello.get("gpus_per_machine") or 1)
        self.bus = EventBus()
        self.cache = ResultCache(cache_folder(data_dir, self.url), self.http, max_bytes=cache_bytes)
        self.uploads = Uploads(self.http)
        self._models = RemoteModels(self.http, lambda: self._info.dev_mode)
        self._lock = threading.Lock()
        self._paused = False
        self._running: str | None = None
        self._recovered: list[Job] = []
        self._loaded: list[LoadedModel] = []
        self._busy_downloads: list[tuple[str, str]] = []
        self._sent_ahead: set[tuple[str, int, int]] = set()
        self._downloads: dict[tuple[str, str], Future[Any]] = {}
        self._inbox: queue.Queue[Event | None] = queue.Queue()
        self._fetcher = ThreadPoolExecutor(max_workers=2, thread_name_prefix="wan-remote-files")
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="wan-remote-dispatch", daemon=True
        )
        self.stream = EventStream(
            self.url,
            self.http.auth_headers(),
            on_event=self._inbox.put,
            on_resync=self._resync,
            on_link=self._on_link,
        )
        self._closed = False
        self._read_state(recovered=True)
        if start:
            self.start()

    def _begin(self) -> None:
        self._dispatcher.start()
        self.stream.start()

    def shutdown(self, *, timeout: float = 30.0) -> None:
        if self._closed:
            return
        self._closed = True
        self.stream.close(timeout)
        self._inbox.put(None)
        if self._dispatcher.is_alive():
            self._dispatcher.join(timeout)
        self._fetcher.shutdown(wait=True, cancel_futures=True)
        for future in self._downloads.values():
            if not future.done():
                future.cancel()
        self.bus.close()
        self.http.close()

    # ---------------------------------------------------------------------------- state

    @property
    def info(self) -> EngineInfo:
        return self._info

    @property
    def hardware(self) -> HardwareProfile:
        return self._hardware

    @property
    def models_view(self) -> RemoteModels:
        return self._models

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def running_job_id(self) -> str | None:
        return self._running

    @property
    def recovered(self) -> Sequence[Job]:
        return self._recovered

    @property
    def link(self) -> str:
        """up, reconnecting, down, or connecting (before the first hello)."""
        return self.stream.state

    def subscribe(self, listener: Listener, *, name: str = "listener") -> Subscription:
        return self.bus.subscribe(listener, name=name)

    def _read_state(self, *, recovered: bool = False) -> dict[str, Any]:
        state = self.http.get("/state")
        loaded = [from_wire(LoadedModel, m) for m in state.get("loaded") or ()]
        with self._lock:
            self._paused = bool(state.get("paused"))
            self._running = state.get("running_job_id")
            self._loaded = loaded
            self._busy_downloads = [(str(m), str(v)) for m, v in state.get("downloads") or ()]
        if recovered:
            ids = [str(i) for i in state.get("recovered") or ()]
            self._recovered = [self.get(i) for i in ids[:100]]
        return dict(state)

    # ---------------------------------------------------------------------------- queries

    def get(self, job_id: str) -> Job:
        return self._local(from_wire(Job, self.http.get(f"/jobs/{quote(job_id)}")))

    def jobs(
        self,
        *,
        states: Iterable[JobState] | None = None,
        kinds: Iterable[JobKind] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Job]:
        params: list[tuple[str, str | int]] = [("state", str(s)) for s in states or ()]
        params += [("kind", str(k)) for k in kinds or ()]
        if limit is not None:
            params.append(("limit", limit))
        if offset:
            params.append(("offset", offset))
        data = self.http.get("/jobs", params=params)
        return [self._local(from_wire(Job, j)) for j in data]

    def queue(self) -> list[Job]:
        return [self._local(from_wire(Job, j)) for j in self.http.get("/queue")]

    def loaded_models(self) -> list[LoadedModel]:
        """As the server last said (reread when a model loads or unloads, and on reconnect):
        the pages ask on the GUI thread, which must not wait for, or fail with, the link."""
        with self._lock:
            return list(self._loaded)

    def gpus_per_machine(self) -> int:
        """As the server's hello said (more than one on a pool of one machine's GPUs)."""
        return self._gpus_per_machine

    def downloads(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._busy_downloads)

    def this_computer_load(self) -> MemorySample:
        """The server's samples are of the server: this computer's RAM and CPU, read here."""
        return host_sample()

    def validate(self, kind: JobKind, params: Mapping[str, Any]) -> None:
        """A video job is checked here, by the server's own rules against its manifest (the
        form asks at every change: no round trip, and its images are files of this computer);
        other kinds by the server. Submitting checks again on the server."""
        if kind is JobKind.wan:
            self._send_ahead(params)
            validate_wan_params(params, self._models.manifest, dev_mode=self._info.dev_mode)
            return
        self.http.post("/validate", {"kind": str(kind), "params": self._upload(params)})

    def fit(self, model_id: str, params: Mapping[str, Any]) -> FitVerdict:
        body = {"kind": str(JobKind.wan), "params": {**_shape_only(params), "model": model_id}}
        answer = self.http.post("/estimate", body)
        verdict: FitVerdict = from_wire(FitVerdict, (answer or {}).get("fit"))
        return verdict

    # --------------------------------------------------------------------------- commands

    def submit(self, spec: JobSpec) -> Job:
        spec = replace(spec, params=self._upload(spec.params))
        return self._local(from_wire(Job, self.http.post("/jobs", to_wire(spec))))

    def cancel(self, job_id: str) -> Job:
        return self._local(from_wire(Job, self.http.post(f"/jobs/{quote(job_id)}/cancel")))

    def retry(self, job_id: str) -> Job:
        return self._local(from_wire(Job, self.http.post(f"/jobs/{quote(job_id)}/retry")))

    def delete(self, job_id: str, *, delete_outputs: bool = False) -> None:
        self.http.delete(
            f"/jobs/{quote(job_id)}", params={"outputs": "true" if delete_outputs else "false"}
        )

    def delete_output(self, job_id: str) -> int:
        body = self.http.delete(f"/jobs/{quote(job_id)}/output")
        return int((body or {}).get("freed") or 0)

    def reorder(self, job_ids: Sequence[str]) -> list[Job]:
        data = self.http.post("/queue/reorder", {"job_ids": list(job_ids)})
        return [self._local(from_wire(Job, j)) for j in data]

    def clear_finished(self, states: Iterable[JobState] = (JobState.completed,)) -> int:
        body = self.http.post("/queue/clear", {"states": [str(s) for s in states]})
        return int((body or {}).get("removed") or 0)

    def pause(self) -> None:
        self.http.post("/queue/pause")
        self._paused = True

    def resume(self) -> None:
        self.http.post("/queue/resume")
        self._paused = False

    def unload(self) -> None:
        self.http.post("/unload")

    def set_dev_mode(self, on: bool) -> None:
        self.http.post("/dev-mode", {"on": on})
        self._info = replace(self._info, dev_mode=on)

    def tune(self, *, idle_unload_s: float | None = None, preview_every: int | None = None) -> None:
        """The server's own settings rule its engine: nothing to change from here."""

    def ensure_model(self, model_id: str, variant: str | None = None) -> Future[Any]:
        spec, var = self._models.resolve(model_id, variant)
        key = (spec.id, var.name)
        with self._lock:
            existing = self._downloads.get(key)
            if existing is not None and not existing.done():
                return existing
            future: Future[Any] = Future()
            self._downloads[key] = future
        try:
            self.http.post(f"/models/{quote(spec.id)}/ensure", {"variant": var.name})
        except Exception as exc:
            future.set_exception(exc)
        return future

    def cancel_download(self, model_id: str, variant: str | None = None) -> bool:
        spec, var = self._models.resolve(model_id, variant)
        body = self.http.post(f"/models/{quote(spec.id)}/cancel", {"variant": var.name})
        return bool(body.get("cancelled", True)) if isinstance(body, Mapping) else True

    # ---------------------------------------------------------------------------- files

    def _upload(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The job's params with every local image and LoRA replaced by the server's ref."""
        out = dict(params)
        for key in UPLOADED_PARAMS:
            path = _local_file(out.get(key))
            if path is not None:
                out[key] = self.uploads.ref(path)
        loras = out.get("loras")
        if isinstance(loras, list | tuple):
            sent = []
            for item in loras:
                if isinstance(item, Mapping) and _local_file(item.get("path")):
                    sent.append({**item, "path": self.uploads.ref(str(item["path"]))})
                else:
                    sent.append(item)
            out["loras"] = sent
        return out

    def _send_ahead(self, params: Mapping[str, Any]) -> None:
        """Start uploading a form's files in the background (each once), so that submitting,
        which the app does on its GUI thread, finds them on the server already."""
        files = [params.get(key) for key in UPLOADED_PARAMS]
        loras = params.get("loras")
        if isinstance(loras, list | tuple):
            files += [item.get("path") for item in loras if isinstance(item, Mapping)]
        for value in files:
            path = _local_file(value)
            if path is None:
                continue
            st = path.stat()
            key = (str(path), st.st_size, st.st_mtime_ns)
            with self._lock:
                if key in self._sent_ahead:
                    continue
                self._sent_ahead.add(key)
            self._fetcher.submit(self._send_one, path)

    def _send_one(self, path: Path) -> None:
        try:
            self.uploads.ref(path)
        except Exception as exc:  # submitting tries again, and says what went wrong
            log.info("%s was not uploaded ahead: %s", path.name, exc)

    def _local(self, job: Job) -> Job:
        """The job with its result files pointing at the local cache. A listed job's thumbnail
        is fetched in the background (an update follows); its video when the app shows it
        (``fetch_output``): a history of long videos is not downloaded all at once."""
        out = job.output
        if out is None or job.state is not JobState.completed:
            return job
        if out.thumbnail and not self.cache.has(job.id, "thumbnail", out.thumbnail):
            self._fetcher.submit(self._fetch_later, job, ("thumbnail",))
        return replace(job, output=self._cached_output(job.id, out))

    def _cached_output(self, job_id: str, out: JobOutput) -> JobOutput:
        def local(what: str) -> str | None:
            remote = getattr(out, what)
            return str(self.cache.path(job_id, what, remote)) if remote else None

        video = local("video")
        assert video is not None
        return replace(
            out,
            video=video,
            thumbnail=local("thumbnail"),
            subtitles=local("subtitles"),
            sidecar=local("sidecar"),
        )

    def fetch_output(self, job: Job, files: Sequence[str] = FILES) -> Job:
        """The job with its result files in the local cache (downloaded if not there, resumed
        after a drop; blocking)."""
        out = job.output
        if out is None:
            return job
        for what in files:
            name = getattr(out, what)
            if name:  # a cached path names the same file: only the job and suffix count
                self.cache.fetch(job.id, what, name)
        return replace(job, output=self._cached_output(job.id, out))

    def _fetch_later(self, job: Job, files: Sequence[str]) -> None:
        try:
            local = self.fetch_output(job, files)
        except Exception as exc:
            log.warning("could not download the result of job %s: %s", job.id, exc)
            return
        self.bus.publish(JobStateChanged(job=local, previous=job.state))

    # --------------------------------------------------------------------------- events

    def _dispatch(self) -> None:
        """Events in the server's order, with finished jobs' files in the cache first."""
        while True:
            event = self._inbox.get()
            if event is None:
                return
            try:
                self._apply(event)
            except Exception:
                log.exception("a remote event could not be applied")

    def _apply(self, event: Event) -> None:
        if isinstance(event, JobStateChanged):
            job = event.job
            with self._lock:
                if job.state.active:
                    self._running = job.id
                elif self._running == job.id:
                    self._running = None
            out = job.output
            if job.state is JobState.completed and out is not None:
                try:
                    job = self.fetch_output(job)
                except Exception as exc:
                    log.warning("could not download the result of job %s: %s", job.id, exc)
                    job = replace(job, output=self._cached_output(job.id, out))
            event = replace(event, job=job)
        elif isinstance(event, QueueChanged):
            self._paused = event.paused
        elif isinstance(event, ModelLoaded | ModelUnloaded | ModelDownload):
            if not isinstance(event, ModelDownload) or event.progress.model_id not in dict(
                self.downloads()
            ):
                self._resync()  # the server's loaded models and downloads, before the app asks
        elif isinstance(event, ModelDownloadFinished):
            with self._lock:
                future = self._downloads.pop((event.model_id, event.variant), None)
            if future is not None and not future.done():
                if event.ok:
                    future.set_result(None)
                else:
                    future.set_exception(RemoteCommandError(event.error or "", status=0))
        self.bus.publish(event)

    def _resync(self) -> None:
        """The server could not replay what was missed: reread its state (the app reloads its
        job lists when the link comes up). A download the server no longer runs has ended
        (its finished event was lost with the gap): its waiter is told."""
        try:
            state = self._read_state()
        except Exception as exc:
            log.info("state not reread after a gap: %s", exc)
            return
        running = {(str(m), str(v)) for m, v in state.get("downloads") or ()}
        with self._lock:
            ended = [k for k in self._downloads if k not in running]
            futures = [self._downloads.pop(k) for k in ended]
        for future in futures:
            if not future.done():
                future.set_result(None)  # the catalog, reread, says how it ended

    def _on_link(self, state: str, reason: str, what_to_do: str) -> None:
        self._inbox.put(LinkChanged(state=state, reason=reason, what_to_do=what_to_do))


def _local_file(value: Any) -> Path | None:
    """``value`` as a file of this computer, if it names one."""
    if isinstance(value, str | Path) and value and Path(value).is_file():
        return Path(value)
    return None


def _shape_only(params: Mapping[str, Any]) -> dict[str, Any]:
    """What of a form decides memory and time (an image only as "there is one")."""
    out = {k: v for k, v in params.items() if k not in ("image", "end_image", "loras")}
    if params.get("image"):
        out["image"] = "given"
    return out


__all__ = ["RemoteEngine"]
