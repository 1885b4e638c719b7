"""Measure each memory strategy of one model at one size, beside the planner's prediction.

For each strategy the planner says could fit this machine (or the ones asked for): load the
model and place it by the strategy, encode the prompt, run K denoising steps (both guidance
passes), decode the video, and report load time, seconds per step per expert, VAE decode time,
peak VRAM (the torch allocator's and, where NVML answers, the whole device's) and peak RAM.
Every figure sits beside the planner's prediction and their ratio, and the measurements are
recorded for the planner (engine/measurements.py).

The same loading and placing code as a generation job (pipelines/wan_load.py) runs here; the
``random`` variants make the real sizes measurable without a download, the ``tiny`` ones let it
all run on a CPU.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wan_desktop.models.manifest import ModelSpec, VariantSpec, parse_resolution

from ..hardware import HardwareProfile
from ..measurements import Measurement, MeasurementKey, MeasurementStore
from ..model_facts import ModelFacts, facts_for
from ..params import round_size
from ..planner import GIB, STRATEGIES, Candidate, JobShape, MemoryPlan, estimate_minutes, plan

if TYPE_CHECKING:
    from wan_desktop.models import ModelStore

SCHEMA = "wan.bench/1"
DEFAULT_STEPS = 4
DEFAULT_PROMPT = "a red fox running through fresh snow at dawn"
ALL, BEST = "all", "best"
SAMPLE_S = 0.05  # how often the peak-memory sampler looks (NVML, RSS)
HIGH_NOISE, LOW_NOISE, SINGLE = "high_noise", "low_noise", "transformer"


class BenchError(Exception):
    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


@dataclass(frozen=True)
class BenchRequest:
    model: str
    variant: str | None = None  # default: the full-size random weights
    resolution: str | None = None  # WxH; default: the variant's
    frames: int | None = None
    steps: int = DEFAULT_STEPS
    strategies: tuple[str, ...] = (ALL,)  # "all", "best" (the planner's choice) or names
    decode_each: bool = True  # False: decode only after the first strategy (saves time)
    prompt: str = DEFAULT_PROMPT
    record: bool = True
    # Start no strategy after the first once this many seconds have passed (the slowest come
    # last in the ladder).
    time_budget_s: float | None = None
    # diffusers' accelerators on the loaded transformers (None and False: plain diffusers, the
    # speed the planner learns; runs with either are reported but not recorded).
    attention_backend: str | None = None
    compile: bool = False

    @property
    def accelerated(self) -> bool:
        return self.attention_backend is not None or self.compile


@dataclass(frozen=True)
class Setup:
    spec: ModelSpec
    var: VariantSpec
    folder: Path
    facts: ModelFacts
    job: JobShape
    plan: MemoryPlan


def run_bench(
    req: BenchRequest,
    store: ModelStore,
    profile: HardwareProfile,
    data_dir: Path,
    *,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the bench and return its JSON document (``wan.bench/1``)."""
    from ..pipelines import wan_load

    if profile.simulated:
        raise BenchError(
            "the hardware profile is simulated (WAN_HARDWARE_PROFILE is set): a bench measures "
            "the real machine",
            "unset WAN_HARDWARE_PROFILE",
        )
    setup = prepare(req, store, profile)
    chosen, skipped = select(setup.plan, req.strategies)
    _import_pipelines()  # the first load's time is then the load's, not the imports'
    device = wan_load.resolve_device(profile.device)
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    for cand in chosen:
        spent = time.monotonic() - started
        if req.time_budget_s is not None and results and spent >= req.time_budget_s:
            reason = f"time budget spent ({spent:.0f} s of {req.time_budget_s:.0f} s)"
            skipped.append({"strategy": cand.strategy, "reason": reason})
            continue
        mp = replace(
            setup.plan,
            strategy=cand.strategy,
            vae_tiling=cand.vae_tiling,
            vram_gb=cand.vram_gb,
            ram_gb=cand.ram_gb,
            fits=cand.fits,
        )
        decode = req.decode_each or not results
        result: dict[str, Any] = {
            "strategy": cand.strategy,
            "vae_tiling": cand.vae_tiling,
            "predicted": predicted(setup, mp, profile),
        }
        try:
            measured = measure(setup, mp, device, profile, req, decode=decode)
            result.update(ok=True, error=None, measured=measured)
            result["ratio"] = ratios(result["predicted"], measured)
            if req.record and not req.accelerated:
                record(data_dir, setup, mp, profile, measured)
        except Exception as exc:  # an out-of-memory on one strategy must not end the bench
            from ..failures import is_out_of_memory

            kind = "out_of_memory" if is_out_of_memory(exc) else type(exc).__name__
            result.update(ok=False, error=f"{kind}: {exc}"[:500], measured=None)
        finally:
            wan_load.free_memory()
        results.append(result)
        if on_result is not None:
            on_result(result)
    return {
        "schema": SCHEMA,
        "model": setup.spec.id,
        "variant": setup.var.name,
        "label": setup.var.label,
        "development": setup.var.development,
        "device": profile.device,
        "device_name": profile.gpu_name or "CPU",
        "hardware": profile.to_dict(),
        "job": {
            "width": setup.job.width,
            "height": setup.job.height,
            "frames": setup.job.frames,
            "steps": setup.job.steps,
            "guidance": setup.job.guidance,
        },
        "planner_choice": setup.plan.strategy,
        "results": results,
        "skipped": skipped,
        "accelerators": {
            "attention_backend": req.attention_backend,  # None: diffusers' default
            "compile": req.compile,
        },
        "recorded": bool(req.record) and not req.accelerated and any(r["ok"] for r in results),
        "wall_s": round(time.monotonic() - started, 1),
    }


def prepare(req: BenchRequest, store: ModelStore, profile: HardwareProfile) -> Setup:
    spec, var = store.resolve(req.model, req.variant or "random")
    defaults = spec.defaults_for(var.name)
    try:
        w, h = parse_resolution(req.resolution or defaults.resolution)
    except ValueError as exc:
        raise BenchError(
            f"--resolution {req.resolution}: {exc}", "write it as WIDTHxHEIGHT"
        ) from exc
    w, h = round_size(w, h, spec, var.name)
    frames = req.frames or defaults.frames
    if frames < 1 or req.steps < 1:
        raise BenchError("frames and steps must be at least 1", "e.g. --frames 81 --steps 4")
    frames = (frames - 1) // spec.memory.vae_scale_temporal * spec.memory.vae_scale_temporal + 1
    folder = store.ensure(spec.id, var.name)
    facts = facts_for(spec, folder)
    guidance = defaults.guidance_scale > 1.0
    job = JobShape(w, h, frames, req.steps, guidance=guidance, image=spec.requires_image)
    return Setup(spec, var, folder, facts, job, plan(facts, var.dtype, job, profile))


def select(mp: MemoryPlan, asked: Sequence[str]) -> tuple[list[Candidate], list[dict[str, str]]]:
    """The strategies to run (one candidate each: untiled VAE when that fits) and the ones
    skipped with the reason."""
    by_strategy: dict[str, list[Candidate]] = {}
    for c in mp.candidates:
        by_strategy.setdefault(c.strategy, []).append(c)
    best = {name: next((c for c in cs if c.fits), cs[-1]) for name, cs in by_strategy.items()}
    unknown = [a for a in asked if a not in (ALL, BEST) and a not in STRATEGIES]
    if unknown:
        raise BenchError(
            f"no strategy named {', '.join(unknown)}",
            f"use all, best or one of: {', '.join(mp.ladder)}",
        )
    foreign = [a for a in asked if a in STRATEGIES and a not in mp.ladder]
    if foreign:
        raise BenchError(
            f"{', '.join(foreign)} does not run on this device ({mp.device})",
            f"use all, best or one of: {', '.join(mp.ladder)}",
        )
    chosen: list[Candidate] = []
    skipped: list[dict[str, str]] = []
    for name in mp.ladder:
        cand = best[name]
        wanted = (
            ALL in asked
            or name in asked
            or (BEST in asked and (cand.strategy, cand.vae_tiling) == (mp.strategy, mp.vae_tiling))
        )
        if not wanted:
            continue
        if cand.fits or name in asked:
            chosen.append(cand)  # a strategy asked for by name runs even against the estimate
        else:
            need = cand.vram_gb if cand.limit == "vram" else cand.ram_gb
            budget = mp.vram_budget_gb if cand.limit == "vram" else mp.ram_budget_gb
            skipped.append(
                {
                    "strategy": name,
                    "reason": f"does not fit by the planner: about {need:.1f} GiB "
                    f"{(cand.limit or '').upper()} of {budget:.1f} GiB usable",
                }
            )
    return chosen, skipped


def predicted(setup: Setup, mp: MemoryPlan, profile: HardwareProfile) -> dict[str, Any]:
    strategy = STRATEGIES[mp.strategy]
    minutes = estimate_minutes(setup.facts, mp.compute_dtype, setup.job, profile, strategy)
    # The estimate is linear in the steps: one more step costs exactly one step's time.
    one_more = estimate_minutes(
        setup.facts,
        mp.compute_dtype,
        replace(setup.job, steps=setup.job.steps + 1),
        profile,
        strategy,
    )
    # The VAE's share is the only part that grows with the frames (and none of it at zero
    # frames): the decode alone, without an I2V encode.
    decode_only = replace(setup.job, steps=0, image=False)
    vae = estimate_minutes(setup.facts, mp.compute_dtype, decode_only, profile, strategy)
    none = estimate_minutes(
        setup.facts, mp.compute_dtype, replace(decode_only, frames=0), profile, strategy
    )
    return {
        "s_per_step": round((one_more - minutes) * 60, 4),
        "vae_decode_s": round((vae - none) * 60, 3),
        "vram_gb": mp.vram_gb if strategy.gpu else None,
        "ram_gb": mp.ram_gb,
        "total_s": round(minutes * 60, 2),
    }


def ratios(pred: dict[str, Any], meas: dict[str, Any]) -> dict[str, float | None]:
    """predicted ÷ measured: above 1 the planner is pessimistic, below 1 optimistic."""
    vram = meas.get("peak_vram_nvml_gb") or meas.get("peak_vram_reserved_gb")
    pairs = {
        "s_per_step": (pred["s_per_step"], meas["s_per_step_mean"]),
        "vae_decode": (pred["vae_decode_s"], meas["vae_decode_s"]),
        "vram": (pred["vram_gb"], vram),
        "ram": (pred["ram_gb"], meas["peak_ram_gb"]),
    }
    return {k: round(p / m, 3) if p and m else None for k, (p, m) in pairs.items()}


# --------------------------------------------------------------------------- measuring


def measure(
    setup: Setup,
    mp: MemoryPlan,
    device: Any,
    profile: HardwareProfile,
    req: BenchRequest,
    *,
    decode: bool,
) -> dict[str, Any]:
    import torch

    from ..pipelines import accelerate, wan_load

    prompt = req.prompt

    spec, job = setup.spec, setup.job
    defaults = spec.defaults_for(setup.var.name)
    with PeakSampler(profile) as sampler:
        allocator = wan_load.PeakMemory(device)
        t0 = time.perf_counter()
        pipe = wan_load.load_pipeline(
            setup.folder, mp.compute_dtype, device=wan_load.weights_device(mp, device)
        )
        wan_load.apply_strategy(pipe, mp, device)
        backend = None
        if req.attention_backend is not None:
            backend = accelerate.attention_backend(req.attention_backend, device)
            accelerate.set_attention_backend(wan_load.experts(pipe), backend)
        if req.compile:
            accelerate.compile_blocks(wan_load.experts(pipe))
        load_s = _since(t0, device)
        compiled_before = accelerate.compile_seconds()

        t0 = time.perf_counter()
        with torch.no_grad():
            positive, negative = pipe.encode_prompt(
                prompt=prompt,
                negative_prompt=defaults.negative_prompt or None,
                do_classifier_free_guidance=job.guidance,
                num_videos_per_prompt=1,
                max_sequence_length=spec.memory.text_len,
                device=pipe._execution_device,
            )
        text_s = _since(t0, device)

        names = {"transformer": SINGLE}
        if getattr(pipe, "transformer_2", None) is not None:
            names = {"transformer": HIGH_NOISE, "transformer_2": LOW_NOISE}
        steps: list[tuple[str, float]] = []
        current: dict[str, Any] = {}

        def before_forward(name: str) -> Callable[..., None]:
            def hook(module: Any, args: Any) -> None:
                if not current:  # the step's first pass (the second is the guidance pass)
                    current.update(expert=name, start=time.perf_counter())

            return hook

        def on_step(pipeline: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            steps.append((current["expert"], _since(current["start"], device)))
            current.clear()
            return kwargs

        decode_s: list[float] = []
        vae_decode = pipe.vae.decode

        def timed_decode(*args: Any, **kwargs: Any) -> Any:
            _sync(device)
            t = time.perf_counter()
            out = vae_decode(*args, **kwargs)
            decode_s.append(_since(t, device))
            return out

        hooks = [
            getattr(pipe, comp).register_forward_pre_hook(before_forward(name))
            for comp, name in names.items()
        ]
        pipe.vae.decode = timed_decode
        kwargs: dict[str, Any] = {
            "prompt_embeds": positive,
            "negative_prompt_embeds": negative if job.guidance else None,
            "height": job.height,
            "width": job.width,
            "num_frames": job.frames,
            "num_inference_steps": job.steps,
            "guidance_scale": defaults.guidance_scale,
            "generator": torch.Generator(device="cpu").manual_seed(0),
            "output_type": "np" if decode else "latent",
            "callback_on_step_end": on_step,
        }
        if spec.requires_image:
            from PIL import Image

            kwargs["image"] = Image.new("RGB", (job.width, job.height), (128, 128, 128))
        if pipe.config.boundary_ratio is not None and defaults.guidance_scale_2 is not None:
            kwargs["guidance_scale_2"] = defaults.guidance_scale_2
        t0 = time.perf_counter()
        try:
            with wan_load.quiet_diffusers():
                pipe(**kwargs)
        finally:
            for h in hooks:
                h.remove()
            del pipe.vae.decode
        run_s = _since(t0, device)
        pipe.maybe_free_model_hooks()
        vram = allocator.report()
        del pipe
    compile_s = round(accelerate.compile_seconds() - compiled_before, 3) if req.compile else None
    per_expert: dict[str, list[float]] = {}
    warmup = set()
    for i, (expert, seconds) in enumerate(steps):
        # The first step warms up (kernel choice, allocator growth): left out where the same
        # expert has later steps. Compiled, each expert's first step may compile: left out too.
        later = any(e == expert for e, _ in steps[i + 1 :])
        first = i == 0 or (req.compile and all(e != expert for e, _ in steps[:i]))
        if first and later:
            warmup.add(i)
        else:
            per_expert.setdefault(expert, []).append(seconds)
    steady = [s for i, (_, s) in enumerate(steps) if i not in warmup and (i > 0 or len(steps) == 1)]
    return {
        "attention_backend": backend,
        "compile_s": compile_s,
        "load_s": round(load_s, 3),
        "text_encode_s": round(text_s, 3),
        "s_per_step": {e: round(statistics.median(v), 4) for e, v in per_expert.items()},
        "s_per_step_mean": round(statistics.fmean(steady), 4) if steady else None,
        "step_times_s": [round(s, 4) for _, s in steps],
        "experts": [e for e, _ in steps],
        "vae_decode_s": round(sum(decode_s), 3) if decode_s else None,
        "run_s": round(run_s, 3),
        "peak_vram_allocated_gb": vram.get("peak_vram_allocated_gb"),
        "peak_vram_reserved_gb": vram.get("peak_vram_reserved_gb"),
        "peak_vram_nvml_gb": sampler.peak_vram_gb,
        "peak_ram_gb": round(sampler.peak_rss / GIB, 3),
    }


def record(
    data_dir: Path,
    setup: Setup,
    mp: MemoryPlan,
    profile: HardwareProfile,
    measured: dict[str, Any],
) -> None:
    if not measured.get("s_per_step_mean"):
        return
    key = MeasurementKey.of(setup.spec.id, setup.var.name, mp.strategy, setup.job, profile)
    MeasurementStore(data_dir).record(
        key,
        Measurement(
            s_per_step=measured["s_per_step_mean"],
            steps=setup.job.steps,
            source="bench",
            peak_vram_gb=measured["peak_vram_nvml_gb"] or measured["peak_vram_reserved_gb"],
            peak_ram_gb=measured["peak_ram_gb"],
            per_expert=measured["s_per_step"],
        ),
    )


def _import_pipelines() -> None:
    import diffusers
    import transformers

    for name in ("WanPipeline", "WanImageToVideoPipeline", "WanTransformer3DModel"):
        getattr(diffusers, name)  # lazy modules: the attribute imports them
    for name in ("UMT5EncoderModel", "T5TokenizerFast"):
        getattr(transformers, name)


def _sync(device: Any) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _since(t0: float, device: Any) -> float:
    _sync(device)  # CUDA work is asynchronous: wait for it before reading the clock
    return time.perf_counter() - t0


class PeakSampler:
    """The process's peak RSS and the device's peak used memory (NVML, where it answers) while
    the block runs, sampled on a thread: ``ru_maxrss`` never goes down between strategies."""

    def __init__(self, profile: HardwareProfile) -> None:
        import psutil

        from ..hardware import _nvml

        self._process = psutil.Process()
        self._nvml = _nvml() if profile.device.startswith("cuda") else None
        self._handle: Any = None
        if self._nvml is not None:
            try:
                index = int(profile.device.split(":")[1]) if ":" in profile.device else 0
                self._handle = self._nvml.nvmlDeviceGetHandleByIndex(index)
            except Exception:
                self._handle = None
        self.peak_rss = 0
        self._peak_vram = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    @property
    def peak_vram_gb(self) -> float | None:
        return round(self._peak_vram / GIB, 3) if self._handle is not None else None

    def _sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self._process.memory_info().rss)
        if self._handle is not None:
            try:
                used = self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used  # type: ignore[union-attr]
            except Exception:
                return
            self._peak_vram = max(self._peak_vram, int(used))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    def __enter__(self) -> PeakSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
