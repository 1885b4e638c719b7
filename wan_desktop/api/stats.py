"""System figures for ``/system/stats``, its history and the 500 ms WebSocket push."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from wan_desktop.engine import Engine, MemorySample
from wan_desktop.models import ModelError

from .mapping import iso, now_iso
from .settings import ApiSettings

MODEL_STATUS_TTL_S = 5.0


class SystemStats:
    def __init__(self, engine: Engine, settings: ApiSettings) -> None:
        self.engine = engine
        self._every = settings.history_every_s
        self._history: deque[dict[str, Any]] = deque(
            maxlen=max(1, int(settings.history_hours * 3600 / max(0.1, self._every)))
        )
        self._last_recorded = 0.0
        self._lock = threading.Lock()
        self._models: tuple[float, dict[str, str]] = (0.0, {})
        self._info: dict[str, Any] | None = None
        self.latest: MemorySample | None = None

    # ------------------------------------------------------------------------- samples

    def record(self, sample: MemorySample) -> None:
        """Keep a sample (from the engine's sampler) for the history, one per interval."""
        self.latest = sample
        with self._lock:
            if sample.at - self._last_recorded >= self._every:
                self._last_recorded = sample.at
                self._history.append(self._figures(sample))

    def sample(self) -> MemorySample:
        sample = self.engine.memory_sample()
        self.record(sample)
        return sample

    def history(self, hours: float) -> list[dict[str, Any]]:
        since = time.time() - hours * 3600
        with self._lock:
            return [s for s in self._history if s["at"] >= since]

    # -------------------------------------------------------------------------- shapes

    @staticmethod
    def _figures(s: MemorySample) -> dict[str, Any]:
        ram_total_gb = s.ram_total_mb / 1024
        used_vram = max(0.0, s.vram_total_mb - s.vram_free_mb) if s.vram_total_mb else 0.0
        return {
            "at": s.at,
            "timestamp": iso(s.at),
            "cpu_percent": round(s.cpu_percent or 0.0, 1),
            "ram_used_gb": round(s.ram_used_mb / 1024, 2),
            "ram_total_gb": round(ram_total_gb, 2),
            "ram_percent": round(100 * s.ram_used_mb / s.ram_total_mb, 1)
            if s.ram_total_mb
            else 0.0,
            "gpu_percent": round(s.gpu_percent or 0.0, 1),
            "vram_used_mb": round(used_vram, 1),
            "vram_total_mb": round(s.vram_total_mb, 1),
            "vram_percent": round(s.vram_percent, 1),
        }

    def system_info(self) -> dict[str, Any]:
        if self._info is None:
            hw = self.engine.hardware
            self._info = {
                **hw.to_dict(),
                "gpu_available": hw.has_gpu,
                "note": hw.summary
                if hw.has_gpu
                else "no GPU: VRAM figures are 0; generation runs on the CPU (slow)",
                "development_mode": self.engine.settings.dev_mode,
                "mock_mode": self.engine.settings.mock,
            }
        return self._info

    def model_states(self) -> dict[str, str]:
        at, cached = self._models
        if time.monotonic() - at < MODEL_STATUS_TTL_S:
            return cached
        out = {}
        for spec in self.engine.models.manifest:
            try:
                out[spec.model_type] = str(self.engine.models.status(spec.id).state)
            except ModelError as exc:
                out[spec.model_type] = f"error: {exc.message}"
        self._models = (time.monotonic(), out)
        return out

    def service_status(self) -> str:
        if self.engine.paused:
            return "paused"
        return "generating" if self.engine.running_job_id else "ready"

    def stats(self, sample: MemorySample) -> dict[str, Any]:
        d = self._figures(sample)
        d.pop("at")
        d["timestamp"] = now_iso()
        info = self.system_info()
        d["system_info"] = info
        d["real_ai_integration"] = {
            "enabled": not self.engine.settings.mock,
            "generation_service_status": self.service_status(),
            "hardware_optimized": bool(info["has_gpu"]),
            "model_status": self.model_states(),
            "development_mode": self.engine.settings.dev_mode,
        }
        return d

    @staticmethod
    def vram(sample: MemorySample) -> dict[str, Any]:
        total = sample.vram_total_mb
        return {
            "allocated_mb": round(sample.vram_allocated_mb, 1),
            "reserved_mb": round(sample.vram_reserved_mb, 1),
            "free_mb": round(sample.vram_free_mb, 1),
            "total_mb": round(total, 1),
            "allocated_percent": round(100 * sample.vram_allocated_mb / total, 1) if total else 0.0,
            "warning_level": sample.warning_level,
            "device_name": sample.device_name,
            "timestamp": now_iso(),
        }
