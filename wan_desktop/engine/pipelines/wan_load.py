"""The torch side of Wan generation: load a model folder, place it by a memory strategy, free it.

Everything here imports torch and diffusers, so only the Wan pipeline imports this module, and
only when a job runs. The same code loads the tiny development variants and the real weights.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import heap, libraries
from ..planner import STRATEGIES, MemoryPlan

log = logging.getLogger("wan_desktop.engine.wan")

TORCH_DTYPES = ("float32", "bfloat16", "float16")


def torch_dtype(name: str) -> Any:
    import torch

    if name not in TORCH_DTYPES:
        raise ValueError(f"cannot compute in {name}; use one of {', '.join(TORCH_DTYPES)}")
    return getattr(torch, name)


def resolve_device(name: str) -> Any:
    """A torch device for a profile's device name; fails clearly when it is not usable here."""
    import torch

    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {name} was requested but this torch has no CUDA ({torch.__version__}); "
            "install a CUDA build of torch (scripts/setup.sh explains) or set WAN_DEVICE=cpu"
        )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"device {name} was requested but MPS is not available")
    return device


def quiet_diffusers() -> contextlib.AbstractContextManager[None]:
    """No library progress bars or notices in our logs: the engine reports progress itself."""
    from wan_desktop.models.tiny import quiet_libraries

    return quiet_libraries()


def load_pipeline(folder: Path, dtype: str, *, device: Any = None) -> Any:
    """The folder's diffusers pipeline (the class its model_index.json names), on the CPU.

    Transformers and text encoder in ``dtype``; the VAE in float32, as the Wan authors run it
    (its decode is sensitive to precision and it is small). A random-weight variant's folder
    holds only configs: its weights are made on ``device`` (see ``weights_device``), not read.
    """
    libraries.load()  # the first import happens once, in one place
    import torch
    from diffusers import DiffusionPipeline

    from wan_desktop.models import random_weights

    if random_weights.is_random(folder):
        return random_weights.load_pipeline(folder, torch_dtype(dtype), device or "cpu")
    with quiet_diffusers():
        pipe = DiffusionPipeline.from_pretrained(
            str(folder), dtype={"default": torch_dtype(dtype), "vae": torch.float32}
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def weights_device(plan: MemoryPlan, device: Any) -> Any:
    """Where weights that are made rather than read belong: on the compute device when the plan
    keeps everything there, else in RAM, from where the offload hooks stream them."""
    return device if STRATEGIES[plan.strategy].offload == "none" else "cpu"


def image_pipeline(pipe: Any) -> Any:
    """The image-to-video pipeline over the same components (TI2V-5B given an image)."""
    from diffusers import WanImageToVideoPipeline

    if isinstance(pipe, WanImageToVideoPipeline):
        return pipe
    with quiet_diffusers():
        i2v = WanImageToVideoPipeline.from_pipe(pipe)
    i2v.set_progress_bar_config(disable=True)
    return i2v


def experts(pipe: Any) -> list[tuple[str, Any]]:
    return [
        (name, module)
        for name in ("transformer", "transformer_2")
        if (module := getattr(pipe, name, None)) is not None
    ]


def apply_strategy(pipe: Any, plan: MemoryPlan, device: Any) -> None:
    """Place the pipeline's weights as the plan says. ``device`` is where computation runs.

    On a CPU-only machine the offload strategies still run with the CPU as their "GPU" (weights
    offloaded cpu→cpu): pointless for speed, but it exercises the same code in tests.
    """
    import torch

    strategy = STRATEGIES[plan.strategy]
    compute = torch_dtype(plan.compute_dtype)
    if strategy.fp8:
        for _, module in experts(pipe):
            module.enable_layerwise_casting(
                storage_dtype=torch.float8_e4m3fn, compute_dtype=compute
            )
    cuda = device.type == "cuda"
    cpu = torch.device("cpu")
    if strategy.offload == "none":
        pipe.to(device)
    elif strategy.offload == "model":
        # Moves one component at a time to the device; the A14B experts take turns.
        pipe.enable_model_cpu_offload(device=device)
    elif strategy.offload == "group":
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=cpu,
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=cuda,  # prefetch the next block while this one computes
            record_stream=cuda,
            non_blocking=cuda,
            exclude_modules=["vae"],
        )
    else:
        # Sequential offload as leaf-level group offload: one layer on the device at a time like
        # enable_sequential_cpu_offload, but with prefetch on a CUDA stream (and it also runs
        # where there is no accelerator, which accelerate's version refuses).
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=cpu,
            offload_type="leaf_level",
            use_stream=cuda,
            non_blocking=cuda,
            low_cpu_mem_usage=True,  # pin on the fly: this is the strategy for short RAM too
        )
    if plan.vae_tiling:
        pipe.vae.enable_tiling()
    else:
        pipe.vae.disable_tiling()


def settle_heap() -> None:
    """After a load: collect once, then exempt everything alive from future collections.

    torch, transformers and diffusers leave hundreds of thousands of long-lived objects; each
    full collection scans them all (0.1–0.3 s here), at random moments of the next jobs. Frozen,
    they are never scanned again. ``free_memory`` unfreezes, so an unloaded model's reference
    cycles are collected.
    """
    heap.collect()
    gc.freeze()


def free_memory() -> None:
    """Return what the allocator caches to the device; after a failure, an OOM or an unload."""
    gc.unfreeze()
    heap.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
        with contextlib.suppress(Exception):
            torch.cuda.ipc_collect()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        with contextlib.suppress(Exception):
            mps.empty_cache()


@dataclass
class PeakMemory:
    """Peak device memory of a job (CUDA's allocator), and the process's peak RSS."""

    device: Any
    cuda: bool = field(init=False)

    def __post_init__(self) -> None:
        import torch

        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def report(self) -> dict[str, Any]:
        import torch

        out: dict[str, Any] = {
            "peak_rss_gb": round(_max_rss_bytes() / 1024**3, 3),
        }
        if self.cuda:
            out["peak_vram_allocated_gb"] = round(
                torch.cuda.max_memory_allocated(self.device) / 1024**3, 3
            )
            out["peak_vram_reserved_gb"] = round(
                torch.cuda.max_memory_reserved(self.device) / 1024**3, 3
            )
        return out


def _max_rss_bytes() -> int:
    try:
        import resource
    except ImportError:  # Windows: the peak working set
        import psutil

        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB
