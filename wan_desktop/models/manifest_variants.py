"""A variant of a model in ``models.toml`` and its files: dtype, sources in priority order, the
files with their sizes and hashes, and the few defaults a variant may override.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .errors import ManifestError, PathInvalidError
from .manifest import (
    DEV_VARIANT,
    DTYPES,
    RESOLUTION_RE,
    SHA256_RE,
    SOURCE_SCHEMES,
    VARIANT_RE,
    FileSpec,
    VariantSpec,
)
from .manifest_fields import FieldReader
from .paths import check_no_case_collisions, check_relative_path

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


def parse_variant(c: FieldReader, name: str, body: Any, components: tuple[str, ...]) -> VariantSpec:
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


def _parse_variant_defaults(c: FieldReader, prefix: str, d: Any) -> Mapping[str, Any]:
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


def _parse_file(c: FieldReader, where: str, body: Any, components: tuple[str, ...]) -> FileSpec:
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
