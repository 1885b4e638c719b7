"""The machine: a hardware profile read once, and memory samples read often.

NVML (nvidia-ml-py) gives device-wide figures without loading torch; torch.cuda adds what this
process holds. With no NVIDIA driver, ``nvmlInit`` fails and we fall back to torch or to "no GPU".
A profile can be overridden (``WAN_HARDWARE_PROFILE`` = JSON, or the constructor) to plan for
other machines in tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import threading
from dataclasses import asdict, dataclass
from typing import Any

from .events import MemorySample

ENV_PROFILE = "WAN_HARDWARE_PROFILE"
MB = 1024 * 1024


@dataclass(frozen=True)
class HardwareProfile:
    device: str  # "cuda:0", "mps" or "cpu"
    gpu_name: str | None
    vram_total_mb: float
    ram_total_mb: float
    cpu_count: int
    compute_capability: tuple[int, int] | None = None
    cuda_version: str | None = None
    driver_version: str | None = None
    torch_version: str | None = None
    platform: str = sys.platform
    simulated: bool = False

    @property
    def has_gpu(self) -> bool:
        return self.device.startswith(("cuda", "mps"))

    @property
    def bf16_supported(self) -> bool:
        if self.device.startswith("cuda"):
            return self.compute_capability is not None and self.compute_capability >= (8, 0)
        return True  # CPU and recent Apple GPUs compute bf16 (slowly on CPU)

    @property
    def fp8_supported(self) -> bool:
        """Native fp8 matmuls (Ada, Hopper and newer); storage in fp8 works everywhere."""
        return self.compute_capability is not None and self.compute_capability >= (8, 9)

    @property
    def summary(self) -> str:
        if not self.has_gpu:
            return (
                f"no GPU: running on the CPU ({self.cpu_count} cores, "
                f"{self.ram_total_mb / 1024:.0f} GiB RAM)"
            )
        return (
            f"{self.gpu_name} ({self.vram_total_mb / 1024:.0f} GiB VRAM), "
            f"{self.ram_total_mb / 1024:.0f} GiB RAM"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["has_gpu"] = self.has_gpu
        d["summary"] = self.summary
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HardwareProfile:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if known.get("compute_capability") is not None:
            known["compute_capability"] = tuple(known["compute_capability"])
        known.setdefault("cpu_count", os.cpu_count() or 1)
        known.setdefault("simulated", True)
        return cls(**known)


def simulated_profile(
    vram_gb: float,
    ram_gb: float = 64.0,
    *,
    name: str | None = None,
    compute_capability: tuple[int, int] = (8, 9),
) -> HardwareProfile:
    """A hypothetical machine, for the planner's tests and estimates."""
    if vram_gb <= 0:
        return HardwareProfile(
            device="cpu",
            gpu_name=None,
            vram_total_mb=0.0,
            ram_total_mb=ram_gb * 1024,
            cpu_count=8,
            simulated=True,
        )
    return HardwareProfile(
        device="cuda:0",
        gpu_name=name or f"simulated {vram_gb:g} GB GPU",
        vram_total_mb=vram_gb * 1024,
        ram_total_mb=ram_gb * 1024,
        cpu_count=16,
        compute_capability=compute_capability,
        simulated=True,
    )


def _nvml() -> Any | None:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # library missing or no driver (NVMLError_LibraryNotFound)
        return None
    return pynvml


def read_profile(device: str | None = None) -> HardwareProfile:
    """The real machine, read once at start (imports torch: call it off the GUI thread)."""
    override = os.environ.get(ENV_PROFILE)
    if override:
        return HardwareProfile.from_dict(json.loads(override))
    import psutil

    ram = psutil.virtual_memory().total / MB
    cpus = os.cpu_count() or 1
    torch_version = cuda_version = None
    try:
        import torch

        torch_version = torch.__version__
        cuda_version = torch.version.cuda
        want = device or ("cuda:0" if torch.cuda.is_available() else None)
        if want and want.startswith("cuda") and torch.cuda.is_available():
            idx = torch.device(want).index or 0
            props = torch.cuda.get_device_properties(idx)
            driver = None
            nv = _nvml()
            if nv is not None:
                with contextlib.suppress(Exception):
                    driver = nv.nvmlSystemGetDriverVersion()
            return HardwareProfile(
                device=f"cuda:{idx}",
                gpu_name=props.name,
                vram_total_mb=props.total_memory / MB,
                ram_total_mb=ram,
                cpu_count=cpus,
                compute_capability=(props.major, props.minor),
                cuda_version=cuda_version,
                driver_version=driver,
                torch_version=torch_version,
            )
        mps = getattr(torch.backends, "mps", None)
        if (device in (None, "mps")) and mps is not None and mps.is_available():
            return HardwareProfile(
                device="mps",
                gpu_name=f"Apple GPU ({platform.machine()})",
                vram_total_mb=ram,
                ram_total_mb=ram,
                cpu_count=cpus,
                torch_version=torch_version,
            )
    except ImportError:
        pass
    return HardwareProfile(
        device="cpu",
        gpu_name=None,
        vram_total_mb=0.0,
        ram_total_mb=ram,
        cpu_count=cpus,
        cuda_version=cuda_version,
        torch_version=torch_version,
    )


def host_sample(device_name: str = "CPU", *, has_gpu: bool = False) -> MemorySample:
    """The RAM and CPU load of the computer this process runs on, with no GPU figures."""
    import psutil

    vm = psutil.virtual_memory()
    return MemorySample(
        device_name=device_name,
        has_gpu=has_gpu,
        vram_allocated_mb=0.0,
        vram_reserved_mb=0.0,
        vram_free_mb=0.0,
        vram_total_mb=0.0,
        gpu_percent=None,
        ram_used_mb=(vm.total - vm.available) / MB,
        ram_total_mb=vm.total / MB,
        cpu_percent=psutil.cpu_percent(interval=None),
    )


class MemoryMonitor:
    """Memory samples for the gauge: device-wide VRAM, this process's share, RAM, load."""

    def __init__(self, profile: HardwareProfile) -> None:
        self.profile = profile
        self._nvml = _nvml() if profile.device.startswith("cuda") else None
        self._handle: Any = None
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                index = int(profile.device.split(":")[1]) if ":" in profile.device else 0
                self._handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
        self._lock = threading.Lock()
        self.peak_allocated_mb = 0.0

    def sample(self) -> MemorySample:
        p = self.profile
        host = host_sample(p.gpu_name or "CPU", has_gpu=p.has_gpu and not p.simulated)
        ram_used, ram_total, cpu = host.ram_used_mb, host.ram_total_mb, host.cpu_percent
        if self.profile.simulated or not p.has_gpu:
            return host
        allocated = reserved = 0.0
        torch = sys.modules.get("torch")  # only if something already loaded it
        if torch is not None and p.device.startswith("cuda") and torch.cuda.is_initialized():
            allocated = torch.cuda.memory_allocated(p.device) / MB
            reserved = torch.cuda.memory_reserved(p.device) / MB
        total, free, util = p.vram_total_mb, p.vram_total_mb - reserved, None
        with self._lock:
            if self._handle is not None:
                with contextlib.suppress(Exception):
                    info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)  # type: ignore[union-attr]
                    total, free = info.total / MB, info.free / MB
                    util = float(
                        self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu  # type: ignore[union-attr]
                    )
        self.peak_allocated_mb = max(self.peak_allocated_mb, allocated)
        return MemorySample(
            device_name=p.gpu_name or p.device,
            has_gpu=True,
            vram_allocated_mb=allocated,
            vram_reserved_mb=reserved,
            vram_free_mb=free,
            vram_total_mb=total,
            gpu_percent=util,
            ram_used_mb=ram_used,
            ram_total_mb=ram_total,
            cpu_percent=cpu,
        )
