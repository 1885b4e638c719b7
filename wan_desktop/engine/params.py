"""Parameters of a Wan generation job: validated and normalised once, at submit time.

The normalised form is stored on the job, so a job is reproducible from its row alone: the model
id is canonical, the size is rounded the way the model needs, and a random seed is drawn and
recorded when none was given.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wan_desktop.models.errors import ModelError
from wan_desktop.models.manifest import DEV_VARIANT, Manifest, ModelSpec, parse_resolution

from .errors import InvalidInputError
from .model_facts import facts_for

# Every limit on a Wan job's input, declared here once: the engine checks them, the API's
# routes and schema map their field names onto them, and the desktop app's fields and counters
# show them.
TEXT_MAX = {"prompt": 500, "negative_prompt": 2000}  # characters, after trimming
LIMITS: dict[str, tuple[float, float]] = {
    "steps": (1, 100),
    "frames": (1, 241),
    "fps": (1, 60),
    "seed": (0, 2**32 - 1),
    "guidance_scale": (0.0, 30.0),
    "guidance_scale_2": (0.0, 30.0),
    "flow_shift": (0.0, 50.0),
    "lora_strength": (0.0, 2.0),
    "gpus": (1, 8),  # one job across this many GPUs of one machine (context parallelism)
}
# Parameters that take one of a few named values; the first is the default.
CHOICES: dict[str, tuple[str, ...]] = {
    # Step caching, speed against quality: "off" runs every transformer call; the stronger the
    # level, the more calls are skipped (pipelines/accelerate.py maps each to a diffusers cache).
    "cache": ("off", "light", "medium", "strong"),
    # A job preset made by a LoRA pack of models.toml: "fast" adds the model's step-distilled
    # LoRAs (one per expert, at their strengths) and sets the steps and guidance they were
    # made for (4 steps, guidance 1), over whatever the request said.
    "preset": ("none", "fast"),
}
CACHE_OFF = CHOICES["cache"][0]
PRESET_NONE = CHOICES["preset"][0]
PROMPT_MAX = TEXT_MAX["prompt"]
NEGATIVE_PROMPT_MAX = TEXT_MAX["negative_prompt"]
STEPS_MAX = int(LIMITS["steps"][1])
FRAMES_MAX = int(LIMITS["frames"][1])
SEED_MAX = int(LIMITS["seed"][1])
MAX_GPUS = int(LIMITS["gpus"][1])
CONTRACT_RESOLUTIONS = ("854x480", "1024x576", "1280x720", "1920x1080")
SIDE_MIN, SIDE_MAX = 64, 4096  # of a requested resolution, before it is fitted to the model
# A smaller start or end image would be stretched into a blur: refused.
IMAGE_SIDE_MIN = 32


@dataclass(frozen=True)
class LoraSpec:
    path: str
    strength: float = 1.0
    strength_2: float | None = None  # the low-noise expert on A14B models; None = same


@dataclass(frozen=True)
class WanParams:
    model: str  # canonical id, e.g. t2v-A14B@2.2.0
    prompt: str
    width: int
    height: int
    steps: int
    frames: int
    fps: int
    seed: int
    guidance_scale: float
    guidance_scale_2: float | None = None
    negative_prompt: str = ""
    flow_shift: float | None = None
    image: str | None = None
    end_image: str | None = None
    loras: tuple[LoraSpec, ...] = ()
    variant: str | None = None  # asked-for variant; development mode runs tiny regardless
    requested_resolution: str | None = None
    gpus: int = 1  # > 1: one job across that many GPUs of a pool (context parallelism)
    cache: str = CACHE_OFF
    preset: str = PRESET_NONE
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def resolution(self) -> str:
        return f"{self.width}x{self.height}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["loras"] = [asdict(lora) for lora in self.loras]
        d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WanParams:
        loras = tuple(LoraSpec(**lora) for lora in d.get("loras") or ())
        return cls(**{**d, "loras": loras, "extra": dict(d.get("extra") or {})})


def size_multiple(spec: ModelSpec) -> int:
    """Width and height must be multiples of this: VAE compression times transformer patch."""
    return spec.memory.vae_scale_spatial * spec.memory.patch_size[1]


def round_size(
    width: int, height: int, spec: ModelSpec, variant: str | None = None
) -> tuple[int, int]:
    """Fit a requested size to the model: at most its maximum area, multiples of its block size.

    The aspect ratio is kept (within a block). 854x480 becomes 848x480 on the A14B models and
    832x480 on TI2V-5B; 1920x1080 becomes 1280x720 on a 720p model. A variant may lower the
    maximum (the tiny development variants do).
    """
    mult = size_multiple(spec)
    max_w, max_h = spec.defaults_for(variant).max_size
    scale = min(1.0, math.sqrt((max_w * max_h) / (width * height)))
    w = max(mult, int(width * scale) // mult * mult)
    h = max(mult, int(height * scale) // mult * mult)
    return w, h


def validate_wan_params(
    raw: Mapping[str, Any], manifest: Manifest, *, dev_mode: bool = False
) -> WanParams:
    """Check and normalise a request; raise InvalidInputError naming every bad field.

    Defaults come from the variant the job will run (in development mode, the tiny one). The
    result validates to itself, so a stored job can be validated again (retry).
    """
    errors: dict[str, str] = {}
    spec: ModelSpec | None = None
    try:
        spec = manifest.get(str(raw.get("model") or raw.get("model_type") or ""))
    except ModelError as exc:
        errors["model"] = f"{exc.message}; {exc.fix}" if exc.fix else exc.message

    prompt = str(raw.get("prompt") or "").strip()
    if not prompt:
        errors["prompt"] = f"write a prompt (1–{PROMPT_MAX} characters)"
    elif len(prompt) > PROMPT_MAX:
        errors["prompt"] = f"is {len(prompt)} characters; shorten it to {PROMPT_MAX} or fewer"
    negative = str(raw.get("negative_prompt") or "").strip()
    if len(negative) > NEGATIVE_PROMPT_MAX:
        errors["negative_prompt"] = (
            f"is {len(negative)} characters; shorten it to {NEGATIVE_PROMPT_MAX} or fewer"
        )

    def integer(name: str) -> int | None:
        lo, hi = (int(b) for b in LIMITS[name])
        value = raw.get(name)
        if value is None or value == "":
            return None
        try:
            number = int(value)
            if isinstance(value, float) and value != number:
                raise ValueError
        except (TypeError, ValueError):
            errors[name] = f"must be a whole number between {lo} and {hi}"
            return None
        if not lo <= number <= hi:
            errors[name] = f"is {number}; use {lo}–{hi}"
            return None
        return number

    def number(name: str) -> float | None:
        lo, hi = LIMITS[name]
        value = raw.get(name)
        if value is None or value == "":
            return None
        try:
            f = float(value)
        except (TypeError, ValueError):
            errors[name] = f"must be a number between {lo} and {hi}"
            return None
        if not (lo <= f <= hi) or math.isnan(f):
            errors[name] = f"is {value}; use {lo}–{hi}"
            return None
        return f

    steps = integer("steps")
    frames = integer("frames")
    if frames is not None and (frames - 1) % 4:
        errors["frames"] = f"is {frames}; Wan needs 4k+1 frames, e.g. {(frames - 1) // 4 * 4 + 1}"
    fps = integer("fps")
    seed = integer("seed")
    guidance = number("guidance_scale")
    guidance_2 = number("guidance_scale_2")
    flow_shift = number("flow_shift")
    gpus = integer("gpus")

    def choice(name: str) -> str:
        allowed = CHOICES[name]
        value = raw.get(name)
        if value is None or value == "":
            return allowed[0]
        text = str(value).strip().lower()
        if text not in allowed:
            errors[name] = f"{value!r} is not one of {', '.join(allowed)}"
            return allowed[0]
        return text

    cache = choice("cache")
    preset = choice("preset")
    if cache != CACHE_OFF and gpus is not None and gpus > 1:
        # Each GPU would decide from its own share of the tokens which calls to skip.
        errors["cache"] = (
            f"step caching runs on one GPU; use cache off for a {gpus}-GPU job, "
            "or run it on one GPU"
        )

    # "resolution" from a request, or width/height from already normalised parameters (retry).
    resolution = raw.get("resolution")
    if not resolution and raw.get("width") and raw.get("height"):
        resolution = f"{raw['width']}x{raw['height']}"
    size: tuple[int, int] | None = None
    if resolution:
        size, problem = _resolution(str(resolution))
        if problem:
            errors["resolution"] = problem

    image = _optional_path(raw.get("image"), "image", errors)
    end_image = _optional_path(raw.get("end_image"), "end_image", errors)
    loras = _loras(raw.get("loras"), errors)

    if spec is not None:
        if spec.requires_image and not image and "image" not in errors:
            errors["image"] = f"{spec.model_type} turns an image into a video: add an image"
        if image and not spec.accepts_image:
            errors["image"] = (
                f"{spec.model_type} makes video from text only; remove the image "
                "or choose I2V-A14B or TI2V-5B"
            )
        if end_image and not spec.supports_end_image:
            errors["end_image"] = f"{spec.model_type} does not take an end image; use I2V-A14B"
        two_experts = "transformer_2" in spec.components
        if guidance_2 is not None and not two_experts:
            errors["guidance_scale_2"] = (
                f"{spec.model_type} has one transformer; guidance_scale_2 is for the "
                "second expert of the A14B models: remove it"
            )
        for i, lora in enumerate(loras):
            if lora.strength_2 is not None and not two_experts:
                errors[f"loras[{i}]"] = (
                    f"strength_2 is for the second expert of the A14B models; "
                    f"{spec.model_type} has one transformer: remove it"
                )
        if preset != PRESET_NONE:
            pack = manifest.lora_pack(spec.id, preset)
            if pack is None:
                errors["preset"] = (
                    f"{spec.model_type} has no {preset} preset (models.toml lists no LoRA pack "
                    f"for it); use preset {PRESET_NONE}"
                )
            else:
                # What the LoRAs were made for, over the request's own values.
                steps = int(pack.settings["steps"])
                guidance = pack.settings.get("guidance_scale", guidance)
                if two_experts:
                    guidance_2 = pack.settings.get("guidance_scale_2", guidance_2)
        variant = raw.get("variant")
        if variant is not None:
            try:
                spec.variant(str(variant))
            except ModelError as exc:
                errors["variant"] = f"{exc.message}; {exc.fix}"
    if errors or spec is None:
        raise InvalidInputError(errors)

    asked = str(raw["variant"]) if raw.get("variant") else None
    runs = manifest.resolve(spec.id, asked, dev_mode=dev_mode)[1].name
    d = spec.defaults_for(runs)
    w, h = round_size(*(size or parse_resolution(d.resolution)), spec, runs)
    n_frames = frames or d.frames
    if gpus is not None and gpus > 1:
        # The heads of the variant that runs: the tiny development architecture has its own.
        heads = facts_for(spec, None, tiny=runs == DEV_VARIANT).num_heads
        problem = degree_problem(heads, w, h, n_frames, spec, gpus)
        if problem:
            raise InvalidInputError({"gpus": problem})
    return WanParams(
        model=spec.id,
        prompt=prompt,
        width=w,
        height=h,
        steps=steps or d.steps,
        frames=n_frames,
        fps=fps or d.fps,
        seed=secrets.randbelow(SEED_MAX + 1) if seed is None else seed,
        guidance_scale=d.guidance_scale if guidance is None else guidance,
        guidance_scale_2=guidance_2 if guidance_2 is not None else d.guidance_scale_2,
        negative_prompt=str(raw.get("negative_prompt") or d.negative_prompt).strip(),
        flow_shift=d.flow_shift if flow_shift is None else flow_shift,
        image=image,
        end_image=end_image,
        loras=loras,
        variant=asked,
        requested_resolution=raw.get("requested_resolution")
        or (str(raw["resolution"]) if raw.get("resolution") else None),
        gpus=gpus or 1,
        cache=cache,
        preset=preset,
    )


def token_count(width: int, height: int, frames: int, vae_spatial: int, vae_temporal: int) -> int:
    """Video tokens the transformer sees: latent frames x (latent h / 2) x (latent w / 2)."""
    latent_frames = (frames - 1) // vae_temporal + 1
    return latent_frames * (height // vae_spatial // 2) * (width // vae_spatial // 2)


def allowed_degrees(heads: int, tokens: int, most: int = MAX_GPUS) -> list[int]:
    """Degrees that split both the attention heads and the tokens evenly (1 always)."""
    return [d for d in range(1, most + 1) if heads % d == 0 and tokens % d == 0]


def degree_problem(heads: int, w: int, h: int, frames: int, spec: ModelSpec, gpus: int) -> str:
    """Why ``gpus`` cannot split this job (empty: it can). Ulysses splits heads and tokens."""
    m = spec.memory
    tokens = token_count(w, h, frames, m.vae_scale_spatial, m.vae_scale_temporal)
    allowed = allowed_degrees(heads, tokens)
    if gpus in allowed:
        return ""
    return (
        f"{gpus} GPUs cannot share this job ({heads} attention heads, {tokens} video tokens); "
        f"use one of {', '.join(map(str, allowed))}"
    )


def _resolution(text: str) -> tuple[tuple[int, int] | None, str | None]:
    """(width, height) and None, or None and what is wrong, with the limits."""
    m = re.match(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$", text)
    if not m:
        return None, f"resolution {text!r} is not WIDTHxHEIGHT, for example 1280x720"
    w, h = int(m.group(1)), int(m.group(2))
    if not (SIDE_MIN <= w <= SIDE_MAX and SIDE_MIN <= h <= SIDE_MAX):
        return None, (
            f"{w}x{h} is outside the limit: each side must be {SIDE_MIN}–{SIDE_MAX} pixels "
            "(larger sizes are scaled down to the model's maximum, e.g. 1280x720)"
        )
    return (w, h), None


def _optional_path(value: Any, name: str, errors: dict[str, str]) -> str | None:
    if value in (None, ""):
        return None
    path = Path(str(value)).expanduser()
    if path.is_dir():
        errors[name] = f"{value} is a folder; give an image file (JPEG, PNG or WebP)"
        return None
    if not path.is_file():
        errors[name] = f"file {value} does not exist"
        return None
    size = _image_size(path)
    if size is not None and min(size) < IMAGE_SIDE_MIN:
        errors[name] = (
            f"{path.name} is {size[0]}x{size[1]} pixels; use an image at least "
            f"{IMAGE_SIDE_MIN}x{IMAGE_SIDE_MIN} (it is scaled to the video's size)"
        )
        return None
    return str(path.resolve())


def _image_size(path: Path) -> tuple[int, int] | None:
    """The picture's size from its header, or None when it is not a readable image (the job
    then fails with the decoder's own message, where the image is opened)."""
    try:
        from PIL import Image

        with Image.open(path) as img:
            w, h = img.size
            return int(w), int(h)
    except Exception:
        return None


def _loras(value: Any, errors: dict[str, str]) -> tuple[LoraSpec, ...]:
    if not value:
        return ()
    lo, hi = LIMITS["lora_strength"]
    out = []
    for i, item in enumerate(value):
        try:
            spec = LoraSpec(**item) if isinstance(item, Mapping) else LoraSpec(str(item))
            strength = float(spec.strength)
            strength_2 = None if spec.strength_2 is None else float(spec.strength_2)
        except (TypeError, ValueError):
            errors[f"loras[{i}]"] = f"give a path and a strength between {lo:g} and {hi:g}"
            continue
        for s in (strength, strength_2):
            if s is not None and not lo <= s <= hi:
                errors[f"loras[{i}]"] = f"strength {s} is outside {lo:g}–{hi:g}"
        if not Path(spec.path).is_file():
            errors[f"loras[{i}]"] = f"LoRA file {spec.path} does not exist"
        out.append(LoraSpec(str(Path(spec.path).resolve()), strength, strength_2))
    return tuple(out)
