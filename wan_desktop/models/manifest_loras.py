"""LoRA packs in ``models.toml`` (``[loras."name@X.Y.Z"]``): LoRAs made for one model, one file
per expert, with the job settings they were made for, fetched and verified like a model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from .manifest import (
    DEV_VARIANT,
    LORA_PIPELINE,
    LoraExpert,
    LoraPackSpec,
    ModelSpec,
)
from .manifest_fields import open_table
from .manifest_variants import parse_variant

EXPERTS = ("transformer", "transformer_2")  # high-noise, low-noise
_PRESET_RE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_PACK_KEYS = {
    "title",
    "description",
    "base",
    "preset",
    "allow_patterns",
    "default_variant",
    "experts",
    "settings",
    "variants",
}
_SETTINGS = {"steps": True, "guidance_scale": False, "guidance_scale_2": False}


def parse_lora_pack(pack_id: str, body: Any, models: Mapping[str, ModelSpec]) -> LoraPackSpec:
    m, c = open_table(
        "loras", pack_id, body, _PACK_KEYS, what="LoRA pack", example="lightning-t2v-A14B@1.1.0"
    )
    base_id = c.str_(body, "base")
    base = models.get(base_id)
    if base is None:
        raise c.err("base", f"names {base_id!r}, which is not a model", "use a model's full id")
    preset = c.str_(body, "preset")
    if not _PRESET_RE.match(preset):
        raise c.err("preset", f"is {preset!r}", "use a short lowercase name, e.g. fast")
    experts_raw = c.table(body, "experts")
    experts: dict[str, LoraExpert] = {}
    for name, entry in experts_raw.items():
        if name not in EXPERTS or name not in base.components:
            raise c.err(
                f"experts.{name}",
                f"is not a transformer of {base_id}",
                f"use {', '.join(e for e in EXPERTS if e in base.components)}",
            )
        if not isinstance(entry, Mapping):
            raise c.err(f"experts.{name}", "is not a table", 'write { file = "…", strength = 1.0 }')
        file = c.str_(entry, "file")
        if not file or "/" in file or "\\" in file:
            raise c.err(f"experts.{name}.file", f"is {file!r}", "give the file's name, no folder")
        strength = c.num(entry, "strength", minimum=0.0, maximum=2.0, prefix=f"experts.{name}.")
        experts[name] = LoraExpert(file, float(strength))
    if not experts:
        raise c.err("experts", "is empty", "give the LoRA file of each expert")
    settings_raw = c.table(body, "settings")
    settings: dict[str, Any] = {}
    for key, integer in _SETTINGS.items():
        value = c.num(
            settings_raw, key, required=False, integer=integer, minimum=0, prefix="settings."
        )
        if value is not None:
            settings[key] = value
    if "steps" not in settings:
        raise c.err("settings.steps", "is missing", "give the steps the LoRAs were made for")
    extra = set(settings_raw) - set(_SETTINGS)
    if extra:
        raise c.err(
            "settings." + ", ".join(sorted(extra)),
            "is not a known setting",
            f"use: {', '.join(_SETTINGS)}",
        )
    variants_raw = c.table(body, "variants")
    variants = {
        name: parse_variant(c, name, vbody, tuple(experts)) for name, vbody in variants_raw.items()
    }
    default_variant = c.str_(body, "default_variant")
    if default_variant not in variants or variants[default_variant].development:
        raise c.err(
            "default_variant",
            f"is {default_variant!r}",
            "name the variant with the real files (not the development one)",
        )
    if DEV_VARIANT not in variants:
        raise c.err(
            "variants",
            f"has no '{DEV_VARIANT}' development variant",
            f"add [..variants.{DEV_VARIANT}] with a builtin:// source so development mode works",
        )
    title = c.str_(body, "title")
    description = c.str_(body, "description", required=False)
    download = replace(
        base,
        id=pack_id,
        name=m.group("name"),
        version=m.group("version"),
        title=title,
        pipeline=LORA_PIPELINE,
        description=description,
        components=tuple(experts),
        optional_components=(),
        allow_patterns=c.strlist(body, "allow_patterns"),
        default_variant=default_variant,
        variants=MappingProxyType(variants),
        aliases=(),
    )
    return LoraPackSpec(
        id=pack_id,
        title=title,
        base=base_id,
        preset=preset,
        experts=MappingProxyType(experts),
        settings=MappingProxyType(settings),
        download=download,
        description=description,
    )
