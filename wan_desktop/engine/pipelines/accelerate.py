"""diffusers' own accelerators on a loaded Wan pipeline: step caching, attention backend, regional
compilation.

Step caching belongs to one job: it is enabled on every transformer (both A14B experts) around
one generation and removed afterwards, so a job with the cache off runs the pipeline untouched.
The attention backend and regional compilation belong to the loaded model: set once after the
load and kept while it stays warm.

Like ``wan_load``, this module imports torch and diffusers; only the Wan pipeline imports it, and
only when a job runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from diffusers.hooks import HookRegistry, ModelHook

from ..params import CACHE_OFF, CHOICES
from ..settings import ATTENTION_AUTO

# FirstBlockCache (diffusers' ``FirstBlockCacheConfig``) at each level: a transformer call runs
# its first block, and skips the others (reusing the last full call's residual) while the first
# block's output changed by less than the threshold since then. Adaptive, per CFG branch and per
# expert, and needs no calibration. 0.05 is diffusers' default. Not offered: MagCache (needs
# ratios calibrated per checkpoint; none are published for Wan2.2 in diffusers), TaylorSeer (its
# full mode keeps a Taylor factor of every attention output, gigabytes at 720p on a 14B model;
# its lite mode extrapolates the whole output on a fixed cadence, blind to the content).
CACHE_THRESHOLDS: dict[str, float] = {"light": 0.05, "medium": 0.10, "strong": 0.20}
_FULL_CALLS = "wan_desktop_full_calls"


def cache_config(level: str) -> Any:
    from diffusers import FirstBlockCacheConfig

    if level not in CACHE_THRESHOLDS:
        raise ValueError(f"cache level {level!r} is not one of {', '.join(CHOICES['cache'])}")
    return FirstBlockCacheConfig(threshold=CACHE_THRESHOLDS[level])


class _FullCalls(ModelHook):
    """Counts the calls that reach the last transformer block's own forward.

    Registered before the cache's hooks, so it sits beneath them: a call the cache skips never
    reaches it. Calls minus full calls is what the cache skipped, as counted, not assumed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def new_forward(self, module: Any, *args: Any, **kwargs: Any) -> Any:
        self.count += 1
        return self.fn_ref.original_forward(*args, **kwargs)


@dataclass
class CacheStats:
    """Transformer calls of one generation, per expert (component name), and how many ran full."""

    level: str
    calls: dict[str, int] = field(default_factory=dict)
    full: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return sum(self.calls.values()) - sum(self.full.values())

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"level": self.level}
        if self.level == CACHE_OFF:
            return out
        out["method"] = "first_block_cache"
        out["threshold"] = CACHE_THRESHOLDS[self.level]
        out["transformer_calls"] = sum(self.calls.values())
        out["skipped_calls"] = self.skipped
        out["per_expert"] = {
            name: {"calls": n, "skipped": n - self.full.get(name, 0)}
            for name, n in self.calls.items()
        }
        return out


@contextlib.contextmanager
def step_cache(experts: list[tuple[str, Any]], level: str) -> Iterator[CacheStats]:
    """Step caching at ``level`` on every expert for the duration of one generation."""
    stats = CacheStats(level)
    if level == CACHE_OFF:
        yield stats
        return
    config = cache_config(level)  # refuses an unknown level before anything is touched
    counters: dict[str, _FullCalls] = {}
    handles = []
    enabled = []

    def counting(name: str) -> Any:
        def pre_hook(module: Any, args: Any) -> None:
            stats.calls[name] = stats.calls.get(name, 0) + 1

        return pre_hook

    try:
        for name, module in experts:
            stats.calls[name] = 0
            counter = _FullCalls()
            HookRegistry.check_if_exists_or_initialize(module.blocks[-1]).register_hook(
                counter, _FULL_CALLS
            )
            counters[name] = counter
            handles.append(module.register_forward_pre_hook(counting(name)))
            module.enable_cache(config)
            enabled.append(module)
        yield stats
    finally:
        for module in enabled:
            module.disable_cache()
        for name, module in experts:
            if name in counters:
                registry = HookRegistry.check_if_exists_or_initialize(module.blocks[-1])
                registry.remove_hook(_FULL_CALLS, recurse=False)
                stats.full[name] = counters[name].count
        for handle in handles:
            handle.remove()


# ----------------------------------------------------------------------------- per loaded model


def attention_backend(setting: str, device: Any) -> str:
    """The backend a setting names; "auto" is the fastest one installed for ``device``.

    Never a ``*_hub`` backend: those download kernels at run time.
    """
    if setting != ATTENTION_AUTO:
        return setting
    if getattr(device, "type", str(device)) != "cuda":
        return "native"
    from diffusers.models import attention_dispatch as dispatch

    for name, usable in (("sage", "_CAN_USE_SAGE_ATTN"), ("flash", "_CAN_USE_FLASH_ATTN")):
        if getattr(dispatch, usable, False):
            return name
    import torch

    # cuDNN's fused attention needs Ampere or newer; older cards keep PyTorch's own choice.
    major, _ = torch.cuda.get_device_capability(device)
    return "_native_cudnn" if major >= 8 else "native"


def set_attention_backend(experts: list[tuple[str, Any]], name: str) -> None:
    """``set_attention_backend`` on every transformer; a backend whose package is missing is a
    RuntimeError that names what to install (diffusers' own check)."""
    from .wan_load import quiet_diffusers

    with quiet_diffusers():  # "experimental feature" notice, once per model
        for _, module in experts:
            module.set_attention_backend(name)


def compile_blocks(experts: list[tuple[str, Any]]) -> None:
    """Regional compilation: ``torch.compile`` on each repeated transformer block.

    Compiling happens lazily, in the first call that reaches each block; ``compile_seconds``
    measures what it cost.
    """
    for _, module in experts:
        module.compile_repeated_blocks()


def compile_seconds() -> float:
    """Seconds torch has spent compiling in this process so far (its own accounting)."""
    try:
        from torch._dynamo.utils import compilation_time_metrics
    except ImportError:
        return 0.0
    return float(sum(compilation_time_metrics.get("_compile.compile_inner", ())))
