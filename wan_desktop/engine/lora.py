"""Applying LoRAs to a loaded Wan pipeline: any number, each with a strength per expert.

On the two-expert A14B models a LoRA goes into the high-noise expert (``transformer``) with
``strength`` and into the low-noise expert (``transformer_2``, diffusers'
``load_into_transformer_2=True``) with ``strength_2`` (the same when not given). A strength of 0
leaves that expert untouched, so all-zero strengths give exactly the base output. Adapters stay
loaded in a warm model and are switched per job; a LoRA that cannot be loaded (not a LoRA file,
made for another model: "size mismatch") is reported and skipped, and the job goes on without it.

This module applies LoRAs; managing the LoRA folder (listing, uploads) is ``lora_library``'s.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .params import LoraSpec

log = logging.getLogger("wan_desktop.engine.lora")

MAX_CACHED_ADAPTERS = 8  # per expert; the least recently used unused ones are dropped


@dataclass(frozen=True)
class AppliedLora:
    path: str
    adapter: str
    strengths: dict[str, float]  # expert (component name) -> strength


@dataclass(frozen=True)
class LoraState:
    """What a loaded pipeline holds, read without touching it (for status views).

    ``loaded``: resolved file path -> the experts that hold its adapter in memory.
    ``applied``: the adapters switched on now (by the last job), with their strengths.
    """

    loaded: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    applied: tuple[AppliedLora, ...] = ()


@dataclass(frozen=True)
class SkippedLora:
    path: str
    reason: str  # plain words for the user
    detail: str  # the library's message, for the log


def expert_strengths(lora: LoraSpec, experts: Sequence[str]) -> dict[str, float]:
    out = {}
    for expert in experts:
        s = lora.strength_2 if expert == "transformer_2" and lora.strength_2 is not None else None
        out[expert] = float(lora.strength if s is None else s)
    return out


def adapter_name(path: Path) -> str:
    """Stable per file version: the same file reuses its adapter, an edited file loads anew."""
    st = path.stat()
    digest = hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    return f"lora_{digest[:16]}"


class LoraSet:
    """The adapters loaded into one pipeline, and which are active for the current job."""

    def __init__(self, pipe: Any, experts: Sequence[str], *, fp8_compute: Any = None) -> None:
        """``fp8_compute``: the compute dtype when the experts store their weights in fp8."""
        self.pipe = pipe
        self.experts = tuple(experts)
        self.fp8_compute = fp8_compute
        self._loaded: dict[str, list[str]] = {e: [] for e in self.experts}  # LRU order
        self._paths: dict[str, str] = {}  # adapter name -> resolved file path
        # Replaced whole at the end of each apply: readers on other threads see a consistent one.
        self._state = LoraState()

    def state(self) -> LoraState:
        return self._state

    def apply(self, loras: Sequence[LoraSpec]) -> tuple[list[AppliedLora], list[SkippedLora]]:
        """Load what is missing, then activate exactly these LoRAs at these strengths."""
        applied: list[AppliedLora] = []
        skipped: list[SkippedLora] = []
        active: dict[str, tuple[list[str], list[float]]] = {e: ([], []) for e in self.experts}
        for lora in loras:
            strengths = expert_strengths(lora, self.experts)
            wanted = [e for e, s in strengths.items() if s != 0.0]
            if not wanted:
                continue  # strength 0 everywhere: nothing to load, the base model runs
            path = Path(lora.path)
            try:
                name = adapter_name(path)
                self._paths[name] = str(path.resolve())
                for expert in wanted:
                    self._load(path, name, expert)
            except Exception as exc:
                skipped.append(_skip(path, exc))
                continue
            for expert in wanted:
                names, weights = active[expert]
                names.append(name)
                weights.append(strengths[expert])
            applied.append(AppliedLora(str(path), name, strengths))
        try:
            for expert in self.experts:
                self._activate(expert, *active[expert])
        finally:
            self._publish(applied)
        return applied, skipped

    def _publish(self, applied: Sequence[AppliedLora]) -> None:
        held: dict[str, list[str]] = {}
        for expert, names in self._loaded.items():
            for name in names:
                held.setdefault(self._paths.get(name, name), []).append(expert)
        in_memory = {name for names in self._loaded.values() for name in names}
        self._paths = {n: p for n, p in self._paths.items() if n in in_memory}
        self._state = LoraState(
            loaded={path: tuple(experts) for path, experts in held.items()},
            applied=tuple(
                AppliedLora(self._paths.get(a.adapter, a.path), a.adapter, a.strengths)
                for a in applied
            ),
        )

    def _load(self, path: Path, name: str, expert: str) -> None:
        loaded = self._loaded[expert]
        if name in loaded:
            loaded.remove(name)
            loaded.append(name)
            return
        module = getattr(self.pipe, expert)
        # diffusers re-enables model offload after loading on the default device (cuda:0, or an
        # error without a GPU); do it ourselves on the device the pipeline was offloaded to.
        offload_to = getattr(self.pipe, "_offload_device", None)
        if offload_to is not None and getattr(self.pipe, "_all_hooks", None):
            self.pipe.remove_all_hooks()
        else:
            offload_to = None
        try:
            with _quiet():
                self.pipe.load_lora_weights(
                    str(path), adapter_name=name, load_into_transformer_2=expert == "transformer_2"
                )
        except Exception:
            _drop_adapter(module, name)  # never leave half an adapter behind
            raise
        finally:
            if offload_to is not None:
                self.pipe.enable_model_cpu_offload(device=offload_to)
        if self.fp8_compute is not None:
            _restore_precision(self.pipe, module, path, name, self.fp8_compute)
        loaded.append(name)
        self._evict(expert)

    def _evict(self, expert: str) -> None:
        loaded = self._loaded[expert]
        while len(loaded) > MAX_CACHED_ADAPTERS:
            _drop_adapter(getattr(self.pipe, expert), loaded.pop(0))

    def _activate(self, expert: str, names: list[str], weights: list[float]) -> None:
        module = getattr(self.pipe, expert)
        if not getattr(module, "peft_config", None):
            return  # no adapter was ever loaded: nothing to switch
        if names:
            module.enable_lora()
            module.set_adapters(names, weights)
        else:
            module.disable_lora()


def _skip(path: Path, exc: Exception) -> SkippedLora:
    text = str(exc)
    if "size mismatch" in text:
        reason = "it was made for a different model (its layer sizes do not match)"
    elif isinstance(exc, FileNotFoundError):
        reason = "the file is gone"
    elif isinstance(exc, OSError) or "header" in text.lower() or "safetensors" in text.lower():
        reason = "it is not a readable LoRA file"
    elif "lora" in text.lower():
        reason = "it holds no LoRA weights this model can use"
    else:
        reason = f"it could not be loaded ({type(exc).__name__})"
    lines = text.strip().splitlines() or [type(exc).__name__]
    log.warning("LoRA %s skipped: %s", path, " ".join(lines[:2]))
    return SkippedLora(str(path), reason, " ".join(line.strip() for line in lines[:2])[:500])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """diffusers logs a failed load at length and peft warns about several adapters: we report
    a skipped LoRA ourselves, once."""
    from diffusers.utils import logging as dlogging

    level = dlogging.get_verbosity()
    dlogging.set_verbosity(dlogging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        dlogging.set_verbosity(level)


def _drop_adapter(module: Any, name: str) -> None:
    if name in (getattr(module, "peft_config", None) or {}):
        try:
            with _quiet():
                module.delete_adapters([name])
        except Exception:
            log.exception("could not remove adapter %s", name)


def _restore_precision(pipe: Any, module: Any, path: Path, name: str, compute: Any) -> None:
    """Keep LoRA weights in the compute dtype when the base weights are stored in fp8.

    PEFT creates adapter layers in the base layer's dtype, which under layerwise casting is the
    fp8 storage dtype: small LoRA weights would round to zero and fp8 cannot be multiplied. So the
    new layers are cast up and the file's values copied in again at full precision.
    """
    import torch
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft
    from peft import set_peft_model_state_dict

    for sub in module.modules():
        for attr in ("lora_A", "lora_B"):
            layers = getattr(sub, attr, None)
            if isinstance(layers, torch.nn.ModuleDict) and name in layers:
                layers[name].to(dtype=compute)
    state = pipe.lora_state_dict(str(path))
    prefix = "transformer."
    state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    if state and "lora_A" not in next(iter(state)):
        state = convert_unet_state_dict_to_peft(state)
    set_peft_model_state_dict(module, state, adapter_name=name)
    try:
        from diffusers.hooks.group_offloading import _maybe_remove_and_reapply_group_offloading
    except ImportError:  # an older or newer diffusers without it: nothing cached to refresh
        return
    _maybe_remove_and_reapply_group_offloading(module)
