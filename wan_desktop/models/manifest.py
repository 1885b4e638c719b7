"""``models.toml``: the single list of models, parsed into small immutable types.

Reading and checking the file is ``manifest_load.py``: every validation error names the model,
the field and the fix. Lookups accept a full id
(``t2v-A14B@2.2.0``), a name (``t2v-A14B``: the newest version) or an alias (``T2V-A14B``, the API's
model type).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import (
    InvalidModelIdError,
    ModelNotFoundError,
    VariantNotFoundError,
)

SCHEMA_VERSION = 1
DEV_VARIANT = "tiny"
DEV_LABEL = "development variant: random weights, output is noise"
LORA_PIPELINE = "lora"  # the pipeline of a LoRA pack's download view: no diffusers folder

COMPONENTS = (
    "transformer",
    "transformer_2",
    "text_encoder",
    "tokenizer",
    "vae",
    "scheduler",
    "image_encoder",
    "image_processor",
)
TASKS = ("t2v", "i2v", "ti2v")
SOURCE_SCHEMES = ("local", "builtin", "s3", "hf", "https", "http")
DTYPES = ("float32", "bfloat16", "float16", "float8_e4m3fn", "int8")

_NAME = r"[a-z0-9][A-Za-z0-9._-]{0,62}"
_VERSION = r"\d+\.\d+\.\d+"
MODEL_ID_RE = re.compile(rf"^(?P<name>{_NAME})@(?P<version>{_VERSION})$")
NAME_RE = re.compile(rf"^{_NAME}$")
VARIANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
RESOLUTION_RE = re.compile(r"^(\d{2,5})x(\d{2,5})$")


@dataclass(frozen=True)
class FileSpec:
    path: str
    size: int | None = None
    sha256: str | None = None
    component: str | None = None
    optional: bool = False
    shard_index: str | None = None  # the *.index.json this file is a shard of
    part: int | None = None  # 1-based shard number


@dataclass(frozen=True)
class VariantSpec:
    name: str
    dtype: str
    sources: tuple[str, ...]
    files: tuple[FileSpec, ...] = ()
    description: str = ""
    development: bool = False
    approx_size_bytes: int | None = None
    # Overrides of the model's defaults for this variant (e.g. small sizes for the tiny one).
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def files_known(self) -> bool:
        """True when the manifest gives every file with size and hash (no source metadata)."""
        return bool(self.files) and all(f.size is not None and f.sha256 for f in self.files)

    @property
    def label(self) -> str:
        return DEV_LABEL if self.development else self.description


@dataclass(frozen=True)
class Defaults:
    steps: int
    fps: int
    frames: int
    resolution: str
    max_resolution: str
    flow_shift: float
    guidance_scale: float
    guidance_scale_2: float | None = None
    boundary_ratio: float | None = None
    expand_timesteps: bool = False
    negative_prompt: str = ""

    @property
    def max_size(self) -> tuple[int, int]:
        return parse_resolution(self.max_resolution)


@dataclass(frozen=True)
class MemoryFacts:
    """What the VRAM planner needs, known without loading a byte."""

    params: Mapping[str, float]  # parameter count per component
    hidden_size: int
    num_layers: int
    num_heads: int
    in_channels: int
    latent_channels: int
    vae_scale_spatial: int
    vae_scale_temporal: int
    patch_size: tuple[int, int, int] = (1, 2, 2)
    text_len: int = 512

    @property
    def total_params(self) -> float:
        return float(sum(self.params.values()))


@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    version: str
    title: str
    family: str
    task: str
    pipeline: str
    description: str
    components: tuple[str, ...]
    optional_components: tuple[str, ...]
    allow_patterns: tuple[str, ...]
    default_variant: str
    variants: Mapping[str, VariantSpec]
    defaults: Defaults
    memory: MemoryFacts
    aliases: tuple[str, ...] = ()
    requires_image: bool = False
    accepts_image: bool = False
    supports_end_image: bool = False

    def variant(self, name: str | None) -> VariantSpec:
        key = name or self.default_variant
        try:
            return self.variants[key]
        except KeyError:
            raise VariantNotFoundError(
                f"model {self.id} has no variant {key!r}",
                fix=f"choose one of: {', '.join(sorted(self.variants))}",
                details={"model": self.id, "variant": key, "available": sorted(self.variants)},
            ) from None

    def defaults_for(self, variant: str | None) -> Defaults:
        """The model's defaults with the variant's overrides applied."""
        overrides = self.variant(variant).defaults
        return replace(self.defaults, **overrides) if overrides else self.defaults

    @property
    def model_type(self) -> str:
        """The API's name for the model (``T2V-A14B``)."""
        return self.aliases[0] if self.aliases else self.name


@dataclass(frozen=True)
class LoraExpert:
    """One file of a LoRA pack: the file name (found anywhere in the pack's folder) and the
    strength it is applied at on its expert."""

    file: str
    strength: float = 1.0


@dataclass(frozen=True)
class LoraPackSpec:
    """LoRAs made for one model, one file per expert, with the job settings they were made for
    (e.g. the step-distilled 4-step LoRAs: 4 steps, guidance 1).

    The orchestrator fetches and verifies a pack like a model: ``download`` is that view of it
    (the pack's sources and files under the base model's facts, which a pack never uses).
    """

    id: str
    title: str
    base: str  # the model id it is for
    preset: str  # the job preset it makes ("fast")
    experts: Mapping[str, LoraExpert]  # "transformer" (high noise), "transformer_2" (low noise)
    settings: Mapping[str, Any]  # steps, guidance_scale, guidance_scale_2
    download: ModelSpec
    description: str = ""


@dataclass(frozen=True)
class Manifest:
    schema_version: int
    models: Mapping[str, ModelSpec]
    path: Path | None = None
    _lookup: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    # LoRA packs: not models (listings iterate ``models``), but ensured, verified and deleted by
    # id like one.
    loras: Mapping[str, LoraPackSpec] = field(default_factory=dict)

    def lora_pack(self, model_id: str, preset: str) -> LoraPackSpec | None:
        """The pack that makes ``preset`` for a model, if the manifest lists one."""
        for pack in self.loras.values():
            if pack.base == model_id and pack.preset == preset:
                return pack
        return None

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def get(self, ref: str) -> ModelSpec:
        ref = ref.strip()
        if ref in self.models:
            return self.models[ref]
        if ref in self.loras:
            return self.loras[ref].download
        if ref.casefold() in self._lookup:
            return self.models[self._lookup[ref.casefold()]]
        if "@" in ref and not MODEL_ID_RE.match(ref):
            raise InvalidModelIdError(
                f"{ref!r} is not a valid model id",
                fix="write it as name@X.Y.Z, for example t2v-A14B@2.2.0",
                details={"model": ref},
            )
        raise ModelNotFoundError(
            f"unknown model {ref!r}",
            fix=f"choose one of: {', '.join(self.models)}",
            details={"model": ref, "available": list(self.models)},
        )

    def resolve(
        self, ref: str, variant: str | None = None, *, dev_mode: bool = False
    ) -> tuple[ModelSpec, VariantSpec]:
        """The model and the variant a request means.

        In development mode every request resolves to the ``tiny`` variant, whatever it asked for;
        otherwise no variant means the model's default (full precision).
        """
        spec = self.get(ref)
        if dev_mode:
            return spec, spec.variant(DEV_VARIANT)
        return spec, spec.variant(variant)


def parse_resolution(text: str) -> tuple[int, int]:
    m = RESOLUTION_RE.match(text.strip())
    if not m:
        raise ValueError(f"resolution {text!r} is not WIDTHxHEIGHT, for example 1280x720")
    return int(m.group(1)), int(m.group(2))
