"""Loading ``models.toml``: the schema version, each model's table checked field by field, and the
lookup of ids, names and aliases.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ManifestError, SchemaVersionError
from .manifest import (
    COMPONENTS,
    DEV_VARIANT,
    RESOLUTION_RE,
    SCHEMA_VERSION,
    TASKS,
    Defaults,
    LoraPackSpec,
    Manifest,
    MemoryFacts,
    ModelSpec,
)
from .manifest_fields import FieldReader, open_table
from .manifest_loras import parse_lora_pack
from .manifest_variants import parse_variant


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
    unknown_top = set(data) - {"schema_version", "models", "loras"}
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

    specs = [_parse_model(model_id, body) for model_id, body in models_raw.items()]
    loras_raw = data.get("loras") or {}
    if not isinstance(loras_raw, Mapping):
        raise ManifestError(
            "models.toml: 'loras' is not a table", fix='write LoRA packs as [loras."name@X.Y.Z"]'
        )
    by_id = {spec.id: spec for spec in specs}
    loras = {pack_id: parse_lora_pack(pack_id, body, by_id) for pack_id, body in loras_raw.items()}
    return manifest_of(specs, path=path, loras=loras)


def manifest_of(
    specs: Iterable[ModelSpec],
    *,
    path: Path | None = None,
    loras: Mapping[str, LoraPackSpec] | None = None,
) -> Manifest:
    """A manifest of these models, every id, alias and bare name looked up as in a file's
    (also for models that came from elsewhere, a server's list say)."""
    models: dict[str, ModelSpec] = {}
    lookup: dict[str, str] = {}
    for spec in specs:
        model_id = spec.id
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
    for name, same in by_name.items():
        newest = max(same, key=lambda s: tuple(int(p) for p in s.version.split(".")))
        lookup.setdefault(name, newest.id)
    for pack_id in loras or {}:
        if pack_id in models or pack_id.casefold() in lookup:
            raise ManifestError(
                f"LoRA pack {pack_id} has the id of a model",
                fix="give every model and LoRA pack a distinct id",
            )
    return Manifest(
        schema_version=SCHEMA_VERSION,
        models=MappingProxyType(models),
        path=path,
        _lookup=MappingProxyType(lookup),
        loras=MappingProxyType(dict(loras or {})),
    )


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
    m, c = open_table("models", model_id, body, _MODEL_KEYS, what="model", example="t2v-A14B@2.2.0")
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
        name: parse_variant(c, name, vbody, all_components) for name, vbody in variants_raw.items()
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


def _parse_defaults(c: FieldReader, d: Mapping[str, Any]) -> Defaults:
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


def _parse_memory(c: FieldReader, d: Mapping[str, Any], components: tuple[str, ...]) -> MemoryFacts:
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
