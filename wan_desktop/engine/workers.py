"""Who runs jobs: one entry per worker, for the System page, the API and ``wan pool status``.

The local engine has one worker (its own thread on this machine); a pool has one per Ray actor.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any


class WorkerState(enum.StrEnum):
    idle = "idle"
    busy = "busy"
    starting = "starting"
    restarting = "restarting"  # its process or node died; Ray is starting it again
    dead = "dead"  # it will not come back (restarts used up, or its node is gone)


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    node: str  # host name (and Ray node id in a pool)
    device: str  # "cuda:0", "cpu"…
    gpu_name: str | None
    vram_total_mb: float
    state: WorkerState
    loaded_model: str | None = None  # "T2V-A14B@2.2.0 (tiny)"
    current_job: str | None = None
    restarts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "state": str(self.state)}
