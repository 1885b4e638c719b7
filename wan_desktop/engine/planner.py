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

A job of ``gpus`` N > 1 (Ulysses context parallelism on a pool, ``pipelines/context_parallel.py``)
is planned per GPU: every rank holds a full copy of the weights (Ulysses buys speed, not memory)
and runs the whole VAE decode, while the transformer's activations, split along the sequence of
video tokens, are an N-th on each; the denoising compute is split N ways too. The N ranks share
one machine's RAM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .hardware import HardwareProfile
from .model_facts import EXPERTS, ModelFacts

if TYPE_CHECKING:
    pass

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
    gpus: int = 1  # Ulysses degree: the video tokens are split across this many GPUs


def tokens(facts: ModelFacts, job: JobShape) -> int:
    lat_f = (job.frames - 1) // facts.vae_scale_temporal + 1
    lat_h = job.height // facts.vae_scale_spatial // facts.patch_size[1]
    lat_w = job.width // facts.vae_scale_spatial // facts.patch_size[2]
    return max(1, lat_f * lat_h * lat_w)


def tokens_per_gpu(facts: ModelFacts, job: JobShape) -> int:
    """The tokens each GPU's transformer holds: an N-th of the sequence under Ulysses."""
    return -(-tokens(facts, job) // max(1, job.gpus))


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
    gpus: int = 1  # > 1: the figures are per GPU, on each of this many (Ulysses)

    @property
    def description(self) -> str:
        return STRATEGIES[self.strategy].description

    @property
    def summary(self) -> str:
        where = "VRAM" if STRATEGIES[self.strategy].gpu else "RAM"
        amount = self.vram_gb if STRATEGIES[self.strategy].gpu else self.ram_gb
        budget = self.vram_budget_gb if STRATEGIES[self.strategy].gpu else self.ram_budget_gb
        tiling = ", VAE tiling" if self.vae_tiling else ""
        each = (
            f" per GPU, on each of {self.gpus} GPUs (full weights on every GPU, activations "
            f"split {self.gpus} ways)"
            if self.gpus > 1
            else ""
        )
        return (
            f"{self.strategy} ({self.description}{tiling}): about {amount:.1f} GiB {where} "
            f"of {budget:.1f} GiB usable{each}"
        )

    def estimate(self) -> dict[str, Any]:
        """The short form stored on the job at submit time (and refined when it runs).

        ``facts`` says where the figures came from: the model's files, its manifest entry while
        it is not on disk yet, or the tiny architecture for a development variant not built
        yet. ``minutes`` is the planner's throughput model, a guess (``guess``, ``basis``)
        until a run or ``wan bench`` on this machine measures it (``engine/measurements.py``).
        """
        return {
            "vram_gb": self.vram_gb,
            "ram_gb": self.ram_gb,
            "minutes": self.minutes,
            "strategy": self.strategy,
            "facts": self.facts_source,
            "fits": self.fits,
            "gpus": self.gpus,  # vram_gb and ram_gb are per GPU (and its process) when > 1
            "guess": self.basis == PREDICTED,
            "basis": (
                f"a guess from the planner's model of this {self.device.split(':')[0]} "
                f"({FACTS_WORDS.get(self.facts_source, self.facts_source)}), not yet measured here"
                if self.basis == PREDICTED
                else self.basis
            ),
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


FACTS_WORDS = {
    "files": "the model's files",
    "manifest": "the manifest's figures",
    "tiny": "the tiny development architecture",
}


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
            elif ram * job.gpus > ram_budget:  # the ranks of a split job share one machine
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
        # Nothing fits by the estimate: take the one closest to fitting and say plainly that it
        # will not fit (estimates can be pessimistic; if it really does not fit, the job fails
        # with advice).
        chosen, limit = _closest(candidates, allowed[-1].name)
        notes = (*notes, _wont_fit(chosen, limit, vram_budget, ram_budget))
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
        gpus=job.gpus,
    )


def _closest(candidates: Sequence[Candidate], most_frugal: str) -> tuple[Candidate, str]:
    """When nothing fits: the candidate to try, and what limits it ("ram" or "vram").

    If some strategies fit the GPU and only RAM is short, RAM is the limit: the one needing the
    least RAM (fp8 storage with group offload, 40 GB for an A14B model, rather than sequential
    offload's 67 GB). Otherwise VRAM is: the most frugal strategy, at its least VRAM.
    """
    ram_short = [c for c in candidates if c.limit == "ram"]
    if ram_short:
        return min(ram_short, key=lambda c: (c.ram_gb, c.vram_gb)), "ram"
    frugal = [c for c in candidates if c.strategy == most_frugal]
    return min(frugal, key=lambda c: c.vram_gb if STRATEGIES[c.strategy].gpu else c.ram_gb), "vram"


def _wont_fit(chosen: Candidate, limit: str, vram_budget: float, ram_budget: float) -> str:
    gpu = STRATEGIES[chosen.strategy].gpu
    if limit == "ram":
        need = f"about {chosen.ram_gb:.1f} GiB of {ram_budget:.1f} GiB usable RAM"
        where = "RAM is the limit"
        fix = "close other programs, lower the resolution or frames, or use a machine with more RAM"
    else:
        need = f"about {chosen.vram_gb:.1f} GiB of {vram_budget:.1f} GiB usable VRAM"
        where = "GPU memory is the limit"
        fix = "lower the resolution or frames, or use a GPU with more memory"
    least = "least RAM" if limit == "ram" or not gpu else "least VRAM"
    return (
        f"no strategy fits by the estimate: this job will not fit this machine. {where}: "
        f"even {chosen.strategy}, the strategy needing the {least}, needs {need}; trying it "
        f"anyway will likely run out of memory. To make it fit: {fix}"
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
    """Of one GPU's transformer (its share of the tokens when the job is split)."""
    n = tokens_per_gpu(facts, job)
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
    # Split N ways by Ulysses (the all-to-all exchanges are not counted: an ideal split).
    compute = forward / rate * (1.1 if strategy.fp8 else 1.0) / max(1, job.gpus)
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
