"""The VRAM planner: estimate peak memory before loading, then pick the cheapest strategy that fits.

Estimates come from facts known without loading a byte: parameter counts per component (from the
model folder's safetensors headers when it is on disk, else from the manifest), the dtype, the
transformer's width and depth, the latent and VAE geometry, and the job's size and frames. The
strategies, cheapest first (in speed), on a GPU:

    gpu                 everything on the GPU
    model_offload       one component at a time on the GPU (so one A14B expert at a time)
    group_offload       transformer blocks stream to the GPU as they run (weights in pinned RAM)
    fp8_model_offload   transformer weights stored in fp8 (layerwise casting) + model offload
    fp8_group_offload   fp8 storage + group offload
    sequential_offload  one layer at a time: the least VRAM, the slowest

and without a GPU: ``cpu``, then ``cpu_fp8``. VAE tiling is switched on above 256 px when the
untiled decode would not fit. The figures are estimates with stated constants (below), meant to
choose well and to warn early; an out-of-memory error still triggers a retry one strategy down.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from wan_desktop.models.manifest import DEV_VARIANT, ModelSpec, parse_resolution

from .hardware import HardwareProfile
from .model_facts import EXPERTS, ModelFacts, facts_for
from .params import FRAMES_MAX, STEPS_MAX, round_size

if TYPE_CHECKING:
    from wan_desktop.models import ModelStore

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float8_e4m3fn": 1, "int8": 1}

# --- constants of the estimate (why each value: see the comment next to it) -----------------
# Live hidden-state-sized tensors at the peak of a transformer block (input, fp32 norm, q, k, v,
# rotary copies, attention output); the FFN peak is 2 hidden + 2 ffn-sized tensors.
ACT_HIDDEN_TENSORS = 9
# Live full-resolution feature maps in the VAE decoder at its peak, per channel of its top level.
VAE_LIVE_MAPS = 6
VAE_TILE_PX = 256  # diffusers' default tile for the Wan VAE; tiling helps only above this
CUDA_CONTEXT_GIB = 0.75  # CUDA context, cuBLAS/cuDNN workspaces
FRAGMENTATION = 1.10  # the caching allocator never packs perfectly
PROCESS_RAM_GIB = 2.5  # Python, torch, diffusers and the CUDA libraries in RAM
VRAM_RESERVE = 0.05  # leave 5 % (at least 0.5 GiB) of the GPU to the desktop and other apps
RAM_USABLE = 0.85  # and 15 % of the RAM to the OS
# Effective bf16 throughput (FLOP/s) by compute capability: published dense tensor peaks scaled by
# the efficiency diffusers reaches on an H100 (9.77 s per step of a 14B Wan at 832x480, 81 frames,
# with CFG = 3.75e14 FLOP/s, 38 % of peak). Rough on purpose; the ETA during a run is measured.
THROUGHPUT_BY_CC: Mapping[tuple[int, int], float] = {
    (7, 0): 47e12,  # V100
    (7, 5): 22e12,  # RTX 20xx, T4 (fp16)
    (8, 0): 118e12,  # A100
    (8, 6): 27e12,  # RTX 30xx
    (8, 7): 10e12,  # Jetson Orin
    (8, 9): 63e12,  # RTX 40xx, L4/L40
    (9, 0): 375e12,  # H100/H200
    (10, 0): 850e12,  # B200
    (12, 0): 79e12,  # RTX 50xx
}
DEFAULT_GPU_THROUGHPUT = 63e12
MPS_THROUGHPUT = 8e12
CPU_FLOPS_PER_CORE = 15e9
VAE_THROUGHPUT_SHARE = 0.1  # the VAE runs in fp32 convolutions: about a tenth of the bf16 rate
PCIE_BYTES_PER_S = 20e9  # host→GPU copies (PCIe 4.0 x16 in practice)
STEP_OVERHEAD_S = {"gpu": 0.01, "cpu": 0.05}  # per forward: kernel launches, hooks, Python
PREDICTED = "predicted"  # the basis of an estimate no measurement replaced (engine/measurements)


@dataclass(frozen=True)
class Strategy:
    name: str
    offload: str  # none | model | group | sequential
    fp8: bool = False
    gpu: bool = True
    description: str = ""


GPU_LADDER = (
    Strategy("gpu", "none", description="everything on the GPU"),
    Strategy("model_offload", "model", description="one component on the GPU at a time"),
    Strategy("group_offload", "group", description="transformer blocks stream to the GPU"),
    Strategy("fp8_model_offload", "model", True, description="fp8 weight storage + model offload"),
    Strategy("fp8_group_offload", "group", True, description="fp8 weight storage + group offload"),
    Strategy("sequential_offload", "sequential", description="one layer on the GPU at a time"),
)
CPU_LADDER = (
    Strategy("cpu", "none", gpu=False, description="everything in RAM, computed on the CPU"),
    Strategy("cpu_fp8", "none", True, gpu=False, description="fp8 weight storage on the CPU"),
)
# Apple GPUs: no fp8 and no CUDA streams.
MPS_LADDER = tuple(s for s in GPU_LADDER if not s.fp8)
STRATEGIES = {s.name: s for s in (*GPU_LADDER, *CPU_LADDER)}


def ladder_for(profile: HardwareProfile) -> tuple[Strategy, ...]:
    if profile.device.startswith("cuda"):
        return GPU_LADDER
    if profile.device.startswith("mps"):
        return MPS_LADDER
    return CPU_LADDER


# ----------------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class JobShape:
    width: int
    height: int
    frames: int
    steps: int
    guidance: bool = True  # classifier-free guidance: two forwards per step
    image: bool = False  # I2V: the VAE also encodes the conditioning video


def tokens(facts: ModelFacts, job: JobShape) -> int:
    lat_f = (job.frames - 1) // facts.vae_scale_temporal + 1
    lat_h = job.height // facts.vae_scale_spatial // facts.patch_size[1]
    lat_w = job.width // facts.vae_scale_spatial // facts.patch_size[2]
    return max(1, lat_f * lat_h * lat_w)


# ------------------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class Candidate:
    strategy: str
    vae_tiling: bool
    vram_gb: float
    ram_gb: float
    fits: bool
    limit: str | None = None  # what does not fit: "vram" or "ram"


@dataclass(frozen=True)
class MemoryPlan:
    strategy: str
    vae_tiling: bool
    device: str
    compute_dtype: str
    vram_gb: float
    ram_gb: float
    minutes: float
    fits: bool
    vram_budget_gb: float
    ram_budget_gb: float
    facts_source: str
    candidates: tuple[Candidate, ...] = ()
    notes: tuple[str, ...] = ()
    ladder: tuple[str, ...] = ()
    basis: str = PREDICTED  # or "measured on this GPU": see engine/measurements.py

    @property
    def description(self) -> str:
        return STRATEGIES[self.strategy].description

    @property
    def summary(self) -> str:
        where = "VRAM" if STRATEGIES[self.strategy].gpu else "RAM"
        amount = self.vram_gb if STRATEGIES[self.strategy].gpu else self.ram_gb
        budget = self.vram_budget_gb if STRATEGIES[self.strategy].gpu else self.ram_budget_gb
        tiling = ", VAE tiling" if self.vae_tiling else ""
        return (
            f"{self.strategy} ({self.description}{tiling}): about {amount:.1f} GB {where} "
            f"of {budget:.1f} GB usable"
        )

    def estimate(self) -> dict[str, Any]:
        """The short form stored on the job at submit time (and refined when it runs).

        ``facts`` says where the figures came from: the model's files, or its manifest entry
        while it is not on disk yet (for a development variant not built yet, that describes
        the real weights: the figures shrink once it is built).
        """
        return {
            "vram_gb": self.vram_gb,
            "ram_gb": self.ram_gb,
            "minutes": self.minutes,
            "strategy": self.strategy,
            "facts": self.facts_source,
            "basis": self.basis,
        }

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["candidates"] = [asdict(c) for c in self.candidates]
        d["notes"] = list(self.notes)
        d["ladder"] = list(self.ladder)
        d["summary"] = self.summary
        return d

    def next_strategy(self) -> str | None:
        """The next more memory-frugal strategy (for a retry after running out of memory)."""
        if self.strategy not in self.ladder:
            return None
        i = self.ladder.index(self.strategy)
        return self.ladder[i + 1] if i + 1 < len(self.ladder) else None


def compute_dtype(variant_dtype: str, profile: HardwareProfile) -> tuple[str, tuple[str, ...]]:
    """The dtype the transformers compute in here, and a note when it differs from the variant."""
    if variant_dtype == "bfloat16" and not profile.bf16_supported:
        return "float16", (
            f"{profile.gpu_name or 'this GPU'} has no bfloat16: computing in float16 "
            "(may overflow on some prompts; a GPU with compute capability 8.0+ avoids it)",
        )
    if variant_dtype in ("float8_e4m3fn", "int8"):
        return "bfloat16" if profile.bf16_supported else "float16", ()
    return variant_dtype, ()


def plan(
    facts: ModelFacts,
    variant_dtype: str,
    job: JobShape,
    profile: HardwareProfile,
    *,
    keep: str | None = None,
    after: str | None = None,
) -> MemoryPlan:
    """Choose the cheapest strategy that fits ``profile``.

    ``keep``: a loaded model's strategy, kept when it fits (no reload) and gives the same numbers
    as the cheapest fitting one. ``after``: only consider
    strategies after this one in the ladder (the retry after an out-of-memory error).
    """
    ladder = ladder_for(profile)
    dtype, notes = compute_dtype(variant_dtype, profile)
    vram_budget = max(
        0.0, profile.vram_total_mb / 1024 - max(0.5, profile.vram_total_mb / 1024 * VRAM_RESERVE)
    )
    ram_budget = profile.ram_total_mb / 1024 * RAM_USABLE
    names = [s.name for s in ladder]
    allowed = ladder[names.index(after) + 1 :] if after in names else ladder
    candidates: list[Candidate] = []
    for strategy in allowed:
        for tiling in _tiling_options(job):
            vram, ram = _peak(facts, dtype, job, strategy, tiling)
            limit = None
            if strategy.gpu and vram > vram_budget:
                limit = "vram"
            elif ram > ram_budget:
                limit = "ram"
            candidates.append(
                Candidate(
                    strategy.name, tiling, round(vram, 2), round(ram, 2), limit is None, limit
                )
            )
    fitting = [c for c in candidates if c.fits]
    # A loaded model's strategy is kept when it fits and computes the same numbers (offloading
    # does not change results, fp8 storage does): a seed must give the same video either way.
    kept = [
        c
        for c in fitting
        if c.strategy == keep and STRATEGIES[c.strategy].fp8 == STRATEGIES[fitting[0].strategy].fp8
    ]
    if kept:
        chosen = kept[0]
    elif fitting:
        chosen = fitting[0]
    elif not candidates:
        raise ValueError(f"no strategy after {after!r}")
    else:
        # Nothing fits by the estimate: take the most frugal one and say so (estimates can be
        # pessimistic; if it really does not fit, the job fails with advice).
        frugal = [c for c in candidates if c.strategy == allowed[-1].name]
        chosen = min(frugal, key=lambda c: c.vram_gb if STRATEGIES[c.strategy].gpu else c.ram_gb)
        notes = (
            *notes,
            f"no strategy fits by the estimate (needs about {chosen.vram_gb:.1f} GB VRAM, "
            f"{chosen.ram_gb:.1f} GB RAM); trying {chosen.strategy}",
        )
    minutes = estimate_minutes(facts, dtype, job, profile, STRATEGIES[chosen.strategy])
    return MemoryPlan(
        strategy=chosen.strategy,
        vae_tiling=chosen.vae_tiling,
        device=profile.device,
        compute_dtype=dtype,
        vram_gb=chosen.vram_gb if STRATEGIES[chosen.strategy].gpu else 0.0,
        ram_gb=chosen.ram_gb,
        minutes=round(minutes, 2),
        fits=chosen.fits,
        vram_budget_gb=round(vram_budget, 2),
        ram_budget_gb=round(ram_budget, 2),
        facts_source=facts.source,
        candidates=tuple(candidates),
        notes=notes,
        ladder=tuple(names),
    )


def _tiling_options(job: JobShape) -> Sequence[bool]:
    return (False, True) if max(job.width, job.height) > VAE_TILE_PX else (False,)


def weights_gb(facts: ModelFacts, dtype: str, *, fp8: bool = False) -> dict[str, float]:
    """Bytes per component as loaded: transformers in the compute dtype (or fp8), VAE in fp32."""
    out = {}
    for comp, n in facts.params.items():
        if comp == "vae":
            size = 4
        elif comp in EXPERTS and fp8:
            size = 1
        else:
            size = DTYPE_BYTES[dtype]
        out[comp] = n * size / GIB
    return out


def activations_gb(facts: ModelFacts, dtype: str, job: JobShape) -> float:
    n = tokens(facts, job)
    per_token = max(
        ACT_HIDDEN_TENSORS * facts.hidden_size, 2 * facts.hidden_size + 2 * facts.ffn_dim
    )
    return n * per_token * DTYPE_BYTES[dtype] / GIB


def vae_gb(facts: ModelFacts, job: JobShape, *, tiling: bool) -> float:
    """Peak of the VAE decode (and of the I2V encode, which is about the same), plus the video."""
    h, w = job.height, job.width
    if tiling:
        h, w = min(h, VAE_TILE_PX), min(w, VAE_TILE_PX)
    # Wan VAEs downsample 8x in convolutions; a larger factor is a patchify step (Wan2.2: 2x2),
    # so the decoder's widest level runs at that fraction of the output size.
    patch = max(1, facts.vae_scale_spatial // 8)
    maps = facts.vae_scale_temporal * (h // patch) * (w // patch) * facts.vae_base_dim
    chunk = maps * VAE_LIVE_MAPS * 4
    video = job.frames * job.height * job.width * 3 * 4
    return (chunk + video) / GIB


def _peak(
    facts: ModelFacts, dtype: str, job: JobShape, strategy: Strategy, tiling: bool
) -> tuple[float, float]:
    """(VRAM, RAM) at the peak, in GiB."""
    w = weights_gb(facts, dtype, fp8=strategy.fp8)
    experts = [w[c] for c in facts.experts] or [0.0]
    text = w.get("text_encoder", 0.0) + w.get("image_encoder", 0.0)
    vae = w.get("vae", 0.0)
    total = sum(w.values())
    act = activations_gb(facts, dtype, job)
    dec = vae_gb(facts, job, tiling=tiling)
    base_ram = PROCESS_RAM_GIB
    if not strategy.gpu:
        # Everything lives in RAM; loading in fp8 passes each transformer through bf16 once.
        transient = max(experts) * (DTYPE_BYTES[dtype] - 1) if strategy.fp8 else 0.0
        return 0.0, base_ram + total + max(act, dec) + transient
    if strategy.offload == "none":
        vram = total + max(act, dec)
        ram = base_ram + max(w.values())  # each component passes through RAM while loading
    elif strategy.offload == "model":
        vram = max(text, max(experts) + act, vae + dec)
        ram = base_ram + total
    elif strategy.offload == "group":
        # Two blocks of the running expert (one computing, one prefetching) and its small
        # non-block layers; the text encoder's big embedding moves as one group; the VAE stays.
        blocks = max(experts) * (0.02 + 2 / facts.num_layers)
        vram = vae + max(text * 0.25, blocks + act, dec)
        ram = base_ram + total
    else:  # sequential: one layer at a time
        layer = max(experts) / max(1, facts.num_layers) / 4
        vram = layer + max(act, dec)
        ram = base_ram + total
    return (vram * FRAGMENTATION + CUDA_CONTEXT_GIB), ram


def estimate_minutes(
    facts: ModelFacts, dtype: str, job: JobShape, profile: HardwareProfile, strategy: Strategy
) -> float:
    n = tokens(facts, job)
    expert = max((facts.params[c] for c in facts.experts), default=0.0)
    forward = (
        2 * expert * n
        + 4 * n * n * facts.hidden_size * facts.num_layers
        + 4 * n * facts.text_len * facts.hidden_size * facts.num_layers
    )
    forwards = job.steps * (2 if job.guidance else 1)
    patch = max(1, facts.vae_scale_spatial // 8)
    pixels = job.frames * job.width * job.height / patch**2
    # About 20 full-width 3x3x3 convolutions per pixel, counting the narrower levels below.
    vae_flops = pixels * 2 * 27 * facts.vae_base_dim**2 * 20 * (2 if job.image else 1)
    text = 2 * facts.params.get("text_encoder", 0.0) * facts.text_len * 2
    if profile.device.startswith("cuda"):
        rate = THROUGHPUT_BY_CC.get(profile.compute_capability or (0, 0), DEFAULT_GPU_THROUGHPUT)
        overhead = STEP_OVERHEAD_S["gpu"]
    elif profile.device.startswith("mps"):
        rate, overhead = MPS_THROUGHPUT, STEP_OVERHEAD_S["gpu"]
    else:
        rate, overhead = profile.cpu_count * CPU_FLOPS_PER_CORE, STEP_OVERHEAD_S["cpu"]
    compute = forward / rate * (1.1 if strategy.fp8 else 1.0)
    expert_bytes = expert * (1 if strategy.fp8 else DTYPE_BYTES[dtype])
    transfer = expert_bytes / PCIE_BYTES_PER_S if strategy.gpu else 0.0
    if strategy.offload == "group":
        per_forward = max(compute, transfer)  # prefetch on a side stream overlaps the copies
    elif strategy.offload == "sequential":
        per_forward = compute + transfer
    else:
        per_forward = compute
    once = 0.0
    if strategy.offload == "model":
        once = sum(weights_gb(facts, dtype, fp8=strategy.fp8).values()) * GIB / PCIE_BYTES_PER_S
    seconds = (
        forwards * (per_forward + overhead)
        + vae_flops / (rate * VAE_THROUGHPUT_SHARE)
        + text / rate
        + once
    )
    return seconds / 60


# ------------------------------------------------------------------------- fit, for people


class FitKind(enum.StrEnum):
    gpu = "gpu"  # everything on the GPU
    offload = "offload"  # on the GPU, weights streamed from RAM
    fp8 = "fp8"  # on the GPU only with fp8 weight storage (and offloading)
    cpu = "cpu"  # no usable GPU: computed on the CPU, in RAM
    none = "none"  # does not fit this machine at these settings


@dataclass(frozen=True)
class FitVerdict:
    """Whether and how a model fits this machine at a job's size, for the model picker.

    Figures are None for a development variant that is not built yet (its files give them).
    """

    model_id: str
    variant: str
    kind: FitKind
    strategy: str | None
    vram_gb: float | None
    ram_gb: float | None
    minutes: float | None
    shape: JobShape
    text: str  # a few words for a badge
    detail: str  # what it means, in a sentence or three

    @property
    def fits(self) -> bool:
        return self.kind is not FitKind.none


def job_shape(spec: ModelSpec, variant: str, params: Mapping[str, Any]) -> JobShape:
    """The job's size as submit would normalise it; unreadable values fall back to defaults
    (the check is advisory while the user types: submit names bad fields)."""
    d = spec.defaults_for(variant)
    size = parse_resolution(d.resolution)
    raw = params.get("resolution") or (
        f"{params['width']}x{params['height']}" if params.get("width") else None
    )
    if raw:
        with contextlib.suppress(ValueError):
            size = parse_resolution(str(raw))
    w, h = round_size(*size, spec, variant)
    frames = min(FRAMES_MAX, max(1, int(_number(params.get("frames"), d.frames))))
    steps = min(STEPS_MAX, max(1, int(_number(params.get("steps"), d.steps))))
    guidance = _number(params.get("guidance_scale"), d.guidance_scale)
    image = bool(params.get("image")) or spec.requires_image
    return JobShape(w, h, (frames - 1) // 4 * 4 + 1, steps, guidance=guidance > 1.0, image=image)


def _number(value: Any, default: float) -> float:
    try:
        return default if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return default


def fit_verdict(
    store: ModelStore,
    profile: HardwareProfile,
    model: str,
    params: Mapping[str, Any] | None = None,
) -> FitVerdict:
    """The planner's verdict for ``model`` (the variant a job would run) at ``params``' size.

    Blocking but cheap (a status read and arithmetic); ``profile`` is the engine's hardware.
    """
    params = params or {}
    spec, var = store.resolve(model, params.get("variant") or None)
    shape = job_shape(spec, var.name, params)
    status = store.status(spec.id, var.name)
    where = "GPU" if profile.has_gpu else "CPU"
    if var.name == DEV_VARIANT and not status.complete:
        # Its memory facts come from its files; until it is built, the manifest's describe
        # the real weights. A tiny model fits anywhere. (The random variant is full size.)
        return FitVerdict(
            spec.id,
            var.name,
            FitKind.gpu if profile.has_gpu else FitKind.cpu,
            None,
            None,
            None,
            None,
            shape,
            f"tiny · fits ({where})",
            "Development variant: tiny random weights, built on first use in seconds; it fits "
            "any machine. The output is noise.",
        )
    facts = facts_for(spec, status.path if status.complete else None)
    mp = plan(facts, var.dtype, shape, profile)
    strategy = STRATEGIES[mp.strategy]
    if not mp.fits:
        kind = FitKind.none
    elif not strategy.gpu:
        kind = FitKind.cpu
    elif strategy.fp8:
        kind = FitKind.fp8
    elif strategy.offload != "none":
        kind = FitKind.offload
    else:
        kind = FitKind.gpu
    text, detail = _describe_fit(kind, mp, profile, var.development)
    return FitVerdict(
        spec.id, var.name, kind, mp.strategy, mp.vram_gb, mp.ram_gb, mp.minutes, shape, text, detail
    )


def _describe_fit(
    kind: FitKind, mp: MemoryPlan, profile: HardwareProfile, development: bool
) -> tuple[str, str]:
    gpu = profile.gpu_name or "the GPU"
    took = f"{_duration(mp.minutes)} per video at these settings"
    vram = f"about {mp.vram_gb:.0f} GB of {mp.vram_budget_gb:.0f} GB usable VRAM"
    ram = f"{mp.ram_gb:.0f} GB of {mp.ram_budget_gb:.0f} GB usable RAM"
    if kind is FitKind.gpu:
        return (
            f"fits on the GPU · {_duration(mp.minutes)}",
            f"Everything on {gpu}: {vram}; {took}.",
        )
    if kind is FitKind.offload:
        return (
            f"fits with offloading · {_duration(mp.minutes)}",
            f"Too big to keep whole on {gpu}: {mp.description} ({vram}, {ram}); slower than "
            f"all on the GPU, same output; {took}.",
        )
    if kind is FitKind.fp8:
        return (
            f"fits in fp8 · {_duration(mp.minutes)}",
            f"Fits {gpu} only with the experts stored in fp8: {mp.description} ({vram}, {ram}). "
            f"The output differs slightly from bf16; {took}.",
        )
    if kind is FitKind.cpu:
        fp8 = " with fp8 weights" if STRATEGIES[mp.strategy].fp8 else ""
        use = (
            "Fine for a development model."
            if development
            else "Usable only to try it: a real model wants an NVIDIA GPU with 24 GB or more."
        )
        return (
            f"CPU only · {_duration(mp.minutes)}",
            f"No GPU here: it would run on the CPU{fp8}, in RAM ({ram}), {took}. {use}",
        )
    frugal = next(
        c for c in mp.candidates if (c.strategy, c.vae_tiling) == (mp.strategy, mp.vae_tiling)
    )
    if not profile.has_gpu:
        return (
            "does not fit",
            f"No GPU here, and on the CPU it needs about {frugal.ram_gb:.0f} GB RAM "
            f"({mp.ram_budget_gb:.0f} GB usable). A real model wants an NVIDIA GPU with 24 GB or "
            "more; development mode runs tiny versions here.",
        )
    if frugal.limit == "vram":
        need = f"About {frugal.vram_gb:.0f} GB VRAM even one layer at a time ({gpu} has "
        need += f"{mp.vram_budget_gb:.0f} GB usable)"
    else:
        need = f"About {frugal.ram_gb:.0f} GB RAM to hold the weights ({mp.ram_budget_gb:.0f} GB "
        need += "usable)"
    return (
        "does not fit",
        f"{need}. Lower the resolution or frames, or use a machine with more memory.",
    )


def _duration(minutes: float) -> str:
    if minutes < 1:
        return "< 1 min"
    if minutes < 90:
        return f"≈ {minutes:.0f} min"
    if minutes < 48 * 60:
        return f"≈ {minutes / 60:.1f} h"
    return f"≈ {minutes / 1440:.0f} days"
