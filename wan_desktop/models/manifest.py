"""``models.toml``: the single list of models, parsed into small immutable types.

Every validation error names the model, the field and the fix. Lookups accept a full id
(``t2v-A14B@2.2.0``), a name (``t2v-A14B``: the newest version) or an alias (``T2V-A14B``, the API's
model type).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import (
    InvalidModelIdError,
    ManifestError,
    ModelNotFoundError,
    PathInvalidError,
    SchemaVersionError,
    VariantNotFoundError,
)
from .paths import check_no_case_collisions, check_relative_path

SCHEMA_VERSION = 1
DEV_VARIANT = "tiny"
DEV_LABEL = "development variant: random weights, output is noise"

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
class Manifest:
    schema_version: int
    models: Mapping[str, ModelSpec]
    path: Path | None = None
    _lookup: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)

    def get(self, ref: str) -> ModelSpec:
        ref = ref.strip()
        if ref in self.models:
            return self.models[ref]
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


# --------------------------------------------------------------------------------------- loading


def load_manifest(path: Path) -> Manifest:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(
            f"manifest {path} does not exist",
            fix="set WAN_MODELS_MANIFEST to a models.toml, or unset it to use the bundled one",
            details={"path": str(path)},
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(
            f"manifest {path} is not valid TOML: {exc}",
            fix="fix the syntax at the position shown",
            details={"path": str(path)},
        ) from None
    return parse_manifest(data, path=path)


def parse_manifest(data: Mapping[str, Any], *, path: Path | None = None) -> Manifest:
    version = data.get("schema_version")
    if version is None:
        raise SchemaVersionError(
            "models.toml has no schema_version",
            fix=f"add 'schema_version = {SCHEMA_VERSION}' at the top of the file",
        )
    if not isinstance(version, int) or version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        raise SchemaVersionError(
            f"models.toml has schema_version {version!r}; this Wan Desktop reads {SCHEMA_VERSION}",
            fix=(
                "update Wan Desktop, or use the models.toml that shipped with this version"
                if newer
                else f"migrate the file to schema {SCHEMA_VERSION}: models are tables "
                '[models."name@X.Y.Z"] with variants, sources and files as documented in '
                "docs/models-manifest.md, then set schema_version"
            ),
            details={"found": version, "supported": SCHEMA_VERSION},
        )
    unknown_top = set(data) - {"schema_version", "models"}
    if unknown_top:
        raise ManifestError(
            f"models.toml has unknown top-level keys: {', '.join(sorted(unknown_top))}",
            fix='models go under [models."name@X.Y.Z"]; remove or move these keys',
        )
    models_raw = data.get("models")
    if not isinstance(models_raw, Mapping) or not models_raw:
        raise ManifestError(
            "models.toml defines no models", fix='add a [models."name@X.Y.Z"] table'
        )

    models: dict[str, ModelSpec] = {}
    lookup: dict[str, str] = {}
    for model_id, body in models_raw.items():
        spec = _parse_model(model_id, body)
        models[model_id] = spec
        keys = [model_id, *spec.aliases]
        for key in keys:
            folded = key.casefold()
            if folded in lookup and lookup[folded] != model_id:
                raise ManifestError(
                    f"model {model_id}: id or alias {key!r} is already used by {lookup[folded]}",
                    fix="give every model a distinct id and distinct aliases (case-insensitive)",
                )
            lookup[folded] = model_id
    # A bare name points at its newest version, unless it is also an alias of something else.
    by_name: dict[str, list[ModelSpec]] = {}
    for spec in models.values():
        by_name.setdefault(spec.name.casefold(), []).append(spec)
    for name, specs in by_name.items():
        newest = max(specs, key=lambda s: tuple(int(p) for p in s.version.split(".")))
        lookup.setdefault(name, newest.id)
    return Manifest(
        schema_version=SCHEMA_VERSION,
        models=MappingProxyType(models),
        path=path,
        _lookup=MappingProxyType(lookup),
    )


class _Ctx:
    """Builds errors that name the model and the field."""

    def __init__(self, model: str) -> None:
        self.model = model

    def err(self, fieldname: str, problem: str, fix: str) -> ManifestError:
        return ManifestError(
            f"model {self.model}: field '{fieldname}' {problem}",
            fix=fix,
            details={"model": self.model, "field": fieldname},
        )

    def table(
        self, body: Mapping[str, Any], key: str, *, required: bool = True
    ) -> Mapping[str, Any]:
        value = body.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, Mapping):
            raise self.err(key, "is missing or not a table", f"add a [..{key}] table")
        return value

    def str_(
        self, body: Mapping[str, Any], key: str, *, required: bool = True, default: str = ""
    ) -> str:
        value = body.get(key, None)
        if value is None:
            if required:
                raise self.err(key, "is missing", f'add {key} = "..."')
            return default
        if not isinstance(value, str):
            raise self.err(
                key, f"must be a string, not {type(value).__name__}", f'write {key} = "..."'
            )
        return value

    def num(
        self,
        body: Mapping[str, Any],
        key: str,
        *,
        required: bool = True,
        integer: bool = False,
        minimum: float | None = None,
        maximum: float | None = None,
        prefix: str = "",
    ) -> Any:
        name = f"{prefix}{key}"
        value = body.get(key)
        if value is None:
            if required:
                raise self.err(name, "is missing", f"add {key} = <number>")
            return None
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            kind = "an integer" if integer else "a number"
            raise self.err(name, f"must be {kind}, not {value!r}", f"write {key} = <{kind}>")
        if minimum is not None and value < minimum:
            raise self.err(
                name, f"is {value}, below the minimum {minimum}", f"use at least {minimum}"
            )
        if maximum is not None and value > maximum:
            raise self.err(
                name, f"is {value}, above the maximum {maximum}", f"use at most {maximum}"
            )
        return value

    def strlist(
        self, body: Mapping[str, Any], key: str, *, required: bool = False, prefix: str = ""
    ) -> tuple[str, ...]:
        value = body.get(key)
        if value is None:
            if required:
                raise self.err(f"{prefix}{key}", "is missing", f'add {key} = ["..."]')
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.err(
                f"{prefix}{key}", "must be a list of strings", f'write {key} = ["...", "..."]'
            )
        return tuple(value)

    def bool_(
        self, body: Mapping[str, Any], key: str, default: bool = False, prefix: str = ""
    ) -> bool:
        value = body.get(key, default)
        if not isinstance(value, bool):
            raise self.err(
                f"{prefix}{key}", "must be true or false", f"write {key} = true or false"
            )
        return value


_MODEL_KEYS = {
    "title",
    "family",
    "task",
    "pipeline",
    "description",
    "components",
    "optional_components",
    "allow_patterns",
    "default_variant",
    "variants",
    "defaults",
    "memory",
    "aliases",
    "requires_image",
    "accepts_image",
    "supports_end_image",
}


def _parse_model(model_id: str, body: Any) -> ModelSpec:
    m = MODEL_ID_RE.match(model_id)
    if not m:
        raise InvalidModelIdError(
            f"model id {model_id!r} in models.toml is not name@X.Y.Z",
            fix="name the table like [models.\"t2v-A14B@2.2.0\"]: a lowercase-first name, '@', "
            "and a three-part version",
            details={"model": model_id},
        )
    c = _Ctx(model_id)
    if not isinstance(body, Mapping):
        raise c.err("(table)", "is not a table", f'write [models."{model_id}"] with its fields')
    unknown = set(body) - _MODEL_KEYS
    if unknown:
        raise c.err(
            ", ".join(sorted(unknown)),
            "is not a known field",
            f"remove it or use one of: {', '.join(sorted(_MODEL_KEYS))}",
        )
    task = c.str_(body, "task")
    if task not in TASKS:
        raise c.err("task", f"is {task!r}", f"use one of: {', '.join(TASKS)}")
    components = c.strlist(body, "components", required=True)
    optional_components = c.strlist(body, "optional_components")
    for comp in (*components, *optional_components):
        if comp not in COMPONENTS:
            raise c.err(
                "components", f"lists unknown component {comp!r}", f"use: {', '.join(COMPONENTS)}"
            )
    if "transformer" not in components:
        raise c.err(
            "components", "does not list 'transformer'", "every Wan model has a transformer"
        )
    aliases = c.strlist(body, "aliases")
    for alias in aliases:
        if not alias.strip() or "@" in alias:
            raise c.err("aliases", f"has invalid alias {alias!r}", "aliases are names without '@'")

    defaults = _parse_defaults(c, c.table(body, "defaults"))
    if ("transformer_2" in components) != (defaults.boundary_ratio is not None):
        raise c.err(
            "defaults.boundary_ratio",
            "must be set exactly when the model has transformer_2 (two experts)",
            "set boundary_ratio for two-expert models and omit it for one-transformer models",
        )
    memory = _parse_memory(c, c.table(body, "memory"), components)

    variants_raw = c.table(body, "variants")
    if not variants_raw:
        raise c.err("variants", "is empty", "add at least one [..variants.<name>] table")
    all_components = (*components, *optional_components)
    variants = {
        name: _parse_variant(c, name, vbody, all_components) for name, vbody in variants_raw.items()
    }
    default_variant = c.str_(body, "default_variant")
    if default_variant not in variants:
        raise c.err(
            "default_variant",
            f"names {default_variant!r}, which is not among the variants",
            f"use one of: {', '.join(variants)}",
        )
    if variants[default_variant].development:
        raise c.err(
            "default_variant",
            "is a development variant",
            "production must resolve to real weights; make the full-precision variant the default",
        )
    if DEV_VARIANT not in variants:
        raise c.err(
            "variants",
            f"has no '{DEV_VARIANT}' development variant",
            f"add [..variants.{DEV_VARIANT}] with a builtin:// source so development mode works",
        )
    return ModelSpec(
        id=model_id,
        name=m.group("name"),
        version=m.group("version"),
        title=c.str_(body, "title"),
        family=c.str_(body, "family", required=False, default="wan22"),
        task=task,
        pipeline=c.str_(body, "pipeline"),
        description=c.str_(body, "description", required=False),
        components=components,
        optional_components=optional_components,
        allow_patterns=c.strlist(body, "allow_patterns"),
        default_variant=default_variant,
        variants=MappingProxyType(variants),
        defaults=defaults,
        memory=memory,
        aliases=aliases,
        requires_image=c.bool_(body, "requires_image"),
        accepts_image=c.bool_(body, "accepts_image", default=c.bool_(body, "requires_image")),
        supports_end_image=c.bool_(body, "supports_end_image"),
    )


def _parse_defaults(c: _Ctx, d: Mapping[str, Any]) -> Defaults:
    p = "defaults."
    for key in ("resolution", "max_resolution"):
        value = c.str_(d, key)
        if not RESOLUTION_RE.match(value):
            raise c.err(p + key, f"is {value!r}", "write WIDTHxHEIGHT, for example 1280x720")
    frames = c.num(d, "frames", integer=True, minimum=1, prefix=p)
    if (frames - 1) % 4:
        raise c.err(p + "frames", f"is {frames}", "Wan needs 4k+1 frames (e.g. 81 or 121)")
    boundary = c.num(d, "boundary_ratio", required=False, minimum=0.0, maximum=1.0, prefix=p)
    return Defaults(
        steps=c.num(d, "steps", integer=True, minimum=1, maximum=200, prefix=p),
        fps=c.num(d, "fps", integer=True, minimum=1, maximum=120, prefix=p),
        frames=frames,
        resolution=c.str_(d, "resolution"),
        max_resolution=c.str_(d, "max_resolution"),
        flow_shift=float(c.num(d, "flow_shift", minimum=0.0, prefix=p)),
        guidance_scale=float(c.num(d, "guidance_scale", minimum=0.0, prefix=p)),
        guidance_scale_2=c.num(d, "guidance_scale_2", required=False, minimum=0.0, prefix=p),
        boundary_ratio=None if boundary is None else float(boundary),
        expand_timesteps=c.bool_(d, "expand_timesteps", prefix=p),
        negative_prompt=c.str_(d, "negative_prompt", required=False),
    )


def _parse_memory(c: _Ctx, d: Mapping[str, Any], components: tuple[str, ...]) -> MemoryFacts:
    p = "memory."
    params_raw = c.table(d, "params")
    params: dict[str, float] = {}
    for comp in params_raw:
        if comp not in components:
            raise c.err(p + "params", f"counts {comp!r}, which is not a component", "remove it")
        params[comp] = float(c.num(params_raw, comp, minimum=1, prefix=p + "params."))
    if "transformer" not in params:
        raise c.err(
            p + "params.transformer", "is missing", "give the transformer's parameter count"
        )
    patch = d.get("patch_size", [1, 2, 2])
    if not (isinstance(patch, list) and len(patch) == 3 and all(isinstance(x, int) for x in patch)):
        raise c.err(p + "patch_size", "must be three integers", "write patch_size = [1, 2, 2]")
    return MemoryFacts(
        params=MappingProxyType(params),
        hidden_size=c.num(d, "hidden_size", integer=True, minimum=1, prefix=p),
        num_layers=c.num(d, "num_layers", integer=True, minimum=1, prefix=p),
        num_heads=c.num(d, "num_heads", integer=True, minimum=1, prefix=p),
        in_channels=c.num(d, "in_channels", integer=True, minimum=1, prefix=p),
        latent_channels=c.num(d, "latent_channels", integer=True, minimum=1, prefix=p),
        vae_scale_spatial=c.num(d, "vae_scale_spatial", integer=True, minimum=1, prefix=p),
        vae_scale_temporal=c.num(d, "vae_scale_temporal", integer=True, minimum=1, prefix=p),
        patch_size=(patch[0], patch[1], patch[2]),
        text_len=c.num(d, "text_len", required=False, integer=True, minimum=1, prefix=p) or 512,
    )


_VARIANT_KEYS = {
    "dtype",
    "sources",
    "files",
    "description",
    "development",
    "approx_size_bytes",
    "defaults",
}
# Defaults a variant may override: sizes and step counts, not the model's architecture.
_VARIANT_DEFAULT_KEYS = ("steps", "fps", "frames", "resolution", "max_resolution")
_FILE_KEYS = {"path", "size", "sha256", "component", "optional", "shard_index", "part"}


def _parse_variant(c: _Ctx, name: str, body: Any, components: tuple[str, ...]) -> VariantSpec:
    p = f"variants.{name}."
    if not VARIANT_RE.match(name):
        raise c.err(
            f"variants.{name}",
            "is not a valid variant name",
            "use lowercase letters, digits, - or _",
        )
    if not isinstance(body, Mapping):
        raise c.err(
            f"variants.{name}", "is not a table", f"write [..variants.{name}] with its fields"
        )
    unknown = set(body) - _VARIANT_KEYS
    if unknown:
        raise c.err(
            p + ", ".join(sorted(unknown)),
            "is not a known field",
            f"use one of: {', '.join(sorted(_VARIANT_KEYS))}",
        )
    dtype = c.str_(body, "dtype")
    if dtype not in DTYPES:
        raise c.err(p + "dtype", f"is {dtype!r}", f"use one of: {', '.join(DTYPES)}")
    sources = c.strlist(body, "sources", required=True, prefix=p)
    if not sources:
        raise c.err(p + "sources", "is empty", "list at least one source, in priority order")
    for i, uri in enumerate(sources):
        scheme, sep, rest = uri.partition("://")
        if not sep or scheme not in SOURCE_SCHEMES:
            raise c.err(
                f"{p}sources[{i}]",
                f"is {uri!r}, which has no known scheme",
                f"start it with one of: {', '.join(s + '://' for s in SOURCE_SCHEMES)}",
            )
        if scheme in ("s3", "hf", "builtin") and not rest.strip("/"):
            raise c.err(
                f"{p}sources[{i}]", f"is {uri!r}, which names nothing", f"write {scheme}://<where>"
            )
    development = c.bool_(body, "development", prefix=p)
    if name == DEV_VARIANT and not development:
        raise c.err(
            p + "development", "must be true for the tiny variant", "set development = true"
        )
    files_raw = body.get("files", [])
    if not isinstance(files_raw, list):
        raise c.err(
            p + "files", "must be an array of tables", f"write [[..variants.{name}.files]] entries"
        )
    files = tuple(_parse_file(c, f"{p}files[{i}]", f, components) for i, f in enumerate(files_raw))
    try:
        check_no_case_collisions([f.path for f in files])
    except PathInvalidError as exc:
        raise c.err(p + "files", f"is invalid: {exc.message}", exc.fix or "") from None
    listed = {f.path for f in files}
    for f in files:
        if f.shard_index is not None and files and f.shard_index not in listed:
            raise c.err(
                p + "files",
                f"shard {f.path!r} points at unlisted index {f.shard_index!r}",
                "list the index file too",
            )
    return VariantSpec(
        name=name,
        dtype=dtype,
        sources=sources,
        files=files,
        description=c.str_(body, "description", required=False),
        development=development,
        approx_size_bytes=c.num(
            body, "approx_size_bytes", required=False, integer=True, minimum=0, prefix=p
        ),
        defaults=_parse_variant_defaults(c, p, body.get("defaults", {})),
    )


def _parse_variant_defaults(c: _Ctx, prefix: str, d: Any) -> Mapping[str, Any]:
    p = f"{prefix}defaults."
    if not isinstance(d, Mapping):
        raise c.err(p.rstrip("."), "is not a table", "write [..variants.<name>.defaults]")
    unknown = set(d) - set(_VARIANT_DEFAULT_KEYS)
    if unknown:
        raise c.err(
            p + ", ".join(sorted(unknown)),
            "cannot be overridden per variant",
            f"a variant may override only: {', '.join(_VARIANT_DEFAULT_KEYS)}",
        )
    out: dict[str, Any] = {}
    for key in ("resolution", "max_resolution"):
        if key in d:
            value = d[key]
            if not isinstance(value, str) or not RESOLUTION_RE.match(value):
                raise c.err(p + key, f"is {value!r}", "write WIDTHxHEIGHT, for example 480x272")
            out[key] = value
    if "frames" in d:
        frames = c.num(d, "frames", integer=True, minimum=1, prefix=p)
        if (frames - 1) % 4:
            raise c.err(p + "frames", f"is {frames}", "Wan needs 4k+1 frames (e.g. 17 or 81)")
        out["frames"] = frames
    if "steps" in d:
        out["steps"] = c.num(d, "steps", integer=True, minimum=1, maximum=200, prefix=p)
    if "fps" in d:
        out["fps"] = c.num(d, "fps", integer=True, minimum=1, maximum=120, prefix=p)
    return MappingProxyType(out)


def _parse_file(c: _Ctx, where: str, body: Any, components: tuple[str, ...]) -> FileSpec:
    if not isinstance(body, Mapping):
        raise c.err(
            where, "is not a table", "write each file as { path = ..., size = ..., sha256 = ... }"
        )
    unknown = set(body) - _FILE_KEYS
    if unknown:
        raise c.err(
            f"{where}.{', '.join(sorted(unknown))}",
            "is not a known field",
            f"use one of: {', '.join(sorted(_FILE_KEYS))}",
        )
    path = c.str_(body, "path")
    try:
        check_relative_path(path)
    except PathInvalidError as exc:
        raise ManifestError(
            f"model {c.model}: field '{where}.path' {exc.message.removeprefix('file path ')}",
            fix=exc.fix,
            details={"model": c.model, "field": f"{where}.path", "path": path},
        ) from None
    sha = body.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not SHA256_RE.match(sha)):
        raise c.err(f"{where}.sha256", f"is {sha!r}", "give 64 lowercase hex digits, or omit it")
    component = body.get("component")
    if component is not None and component not in components:
        raise c.err(
            f"{where}.component",
            f"is {component!r}, not a component of this model",
            f"use one of: {', '.join(components)}",
        )
    shard_index = body.get("shard_index")
    if shard_index is not None:
        if not isinstance(shard_index, str):
            raise c.err(f"{where}.shard_index", "must be a path", "name the *.index.json file")
        check_relative_path(shard_index)
    return FileSpec(
        path=path,
        size=c.num(body, "size", required=False, integer=True, minimum=0, prefix=f"{where}."),
        sha256=sha,
        component=component,
        optional=c.bool_(body, "optional", prefix=f"{where}."),
        shard_index=shard_index,
        part=c.num(body, "part", required=False, integer=True, minimum=1, prefix=f"{where}."),
    )
