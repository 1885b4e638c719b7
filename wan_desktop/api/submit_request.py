"""The body of ``POST /generation/submit``: one pydantic model, generated from the engine's limits.

Every bound is the engine's (``engine/params``: ``LIMITS``, ``TEXT_MAX``); this module only maps
the contract's field names onto the engine's. The same model checks a JSON body and a multipart
form, whose fields are text: ``"2"`` is a whole number, and an empty field means "not given", as
``null`` does. Its JSON schema is the route's OpenAPI request body, and the 422's words are read
from that schema (``errors.in_words``), so the documented bounds and the checked ones are one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, cast

from fastapi import UploadFile
from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError

from wan_desktop.engine.params import CHOICES, CONTRACT_RESOLUTIONS, LIMITS, TEXT_MAX

from .errors import FIELD_NAMES, in_words

MODEL_TYPES = ("T2V-A14B", "I2V-A14B", "TI2V-5B")
PRIORITIES = ("low", "normal", "high")
DEFAULT_RESOLUTION = "1280x720"
DEFAULT_STEPS = 50
DEFAULT_LORA_STRENGTH = 1.0
ALIASES = {"modelType": "model_type", "loraPath": "lora_path", "loraStrength": "lora_strength"}
FILES = ("image", "end_image")  # file parts of a multipart form
# The contract's names for the engine's parameters, where they differ (FIELD_NAMES, reversed).
ENGINE_NAMES = {contract: engine for engine, contract in FIELD_NAMES.items()}
# The fields the engine takes as parameters of a Wan job (the others the route resolves).
ENGINE_FIELDS = (
    "model_type",
    "prompt",
    "resolution",
    "steps",
    "seed",
    "num_frames",
    "fps",
    "guidance_scale",
    "negative_prompt",
    "gpus",
    *CHOICES,  # the engine's named choices: step caching, preset
)


def _absent_is(default: Any) -> BeforeValidator:
    """``null`` and ``""`` (an empty form field) mean the field was not given."""
    return BeforeValidator(lambda v: default if v is None or v == "" else v)


def _no_bool(value: Any) -> Any:
    # Lax mode reads true as 1; a yes/no is never a number here.
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "a yes/no value is not a number")
    return value


def _alias(name: str) -> dict[str, Any]:
    """The field's camelCase alias, if it has one, beside its own name."""
    aliases = [a for a, n in ALIASES.items() if n == name]
    return {"validation_alias": AliasChoices(name, *aliases)} if aliases else {}


def _choice(name: str, values: tuple[str, ...], default: str | None = None) -> Any:
    """One of ``values``, exact case; required when there is no default."""
    one_of = cast(Any, Literal)[values]
    if default is None:
        return (one_of, Field(**_alias(name)))
    return (Annotated[one_of, _absent_is(default)], Field(default, **_alias(name)))


def _bounded(name: str, kind: type[int] | type[float], default: float | None = None) -> Any:
    """A number within the engine's limits for ``name`` (a contract name)."""
    lo, hi = LIMITS[ENGINE_NAMES.get(name, name)]
    typ: Any = kind if default is not None else kind | None
    extra = {**_alias(name), **({"allow_inf_nan": False} if kind is float else {})}
    return (
        Annotated[typ, _absent_is(default), BeforeValidator(_no_bool)],
        Field(default, ge=kind(lo), le=kind(hi), **extra),
    )


def _text(name: str, *, required: bool = False, description: str | None = None) -> Any:
    """Text checked after trimming, at most the engine's ``TEXT_MAX`` characters."""
    trimmed = Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1 if required else None, max_length=TEXT_MAX[name]
        ),
    ]
    if required:
        return (trimmed, Field(description=description))
    return (trimmed | None, Field(None, description=description))


_FILE: Any = (
    Annotated[
        UploadFile | None,
        _absent_is(None),
        WithJsonSchema({"type": "string", "format": "binary"}),
    ],
    None,
)

# The contract's fields in its order, then the engine's extras, then the file parts.
_DEFINITIONS: dict[str, Any] = {
    "model_type": _choice("model_type", MODEL_TYPES),
    "prompt": _text("prompt", required=True, description="describe the video"),
    "resolution": _choice("resolution", CONTRACT_RESOLUTIONS, DEFAULT_RESOLUTION),
    "steps": _bounded("steps", int, DEFAULT_STEPS),
    "lora_path": (
        Annotated[str, _absent_is(""), StringConstraints(strip_whitespace=True)],
        Field(
            "",
            description="a LoRA from /lora/list (loras/<file>); '' = none",
            **_alias("lora_path"),
        ),
    ),
    "lora_strength": _bounded("lora_strength", float, DEFAULT_LORA_STRENGTH),
    "negative_prompt": _text("negative_prompt"),
    "seed": _bounded("seed", int),
    "num_frames": _bounded("num_frames", int),
    "fps": _bounded("fps", int),
    "guidance_scale": _bounded("guidance_scale", float),
    "priority": _choice("priority", PRIORITIES, "normal"),
    "gpus": _bounded("gpus", int),  # a pool splits one job across this many GPUs
    # The engine's named choices (params.CHOICES), the first of each is the default.
    **{name: _choice(name, values, values[0]) for name, values in CHOICES.items()},
    "image": _FILE,
    "end_image": _FILE,
}
SubmitRequest: type[BaseModel] = create_model(
    "GenerationSubmit", __config__=ConfigDict(extra="forbid"), **_DEFINITIONS
)
SCHEMA = SubmitRequest.model_json_schema()
FIELDS = tuple(SCHEMA["properties"])


def read_submit(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The request's fields by their contract names, and what is wrong with each bad one.

    Every error is collected. When a field is bad, the others are returned as sent (the route
    still checks the model's image and the LoRA, to name every problem in one answer).
    """
    try:
        return SubmitRequest.model_validate(raw).model_dump(), {}
    except ValidationError as exc:
        errors = in_words(exc.errors(), SCHEMA, ALIASES)
    sent = {ALIASES.get(k, k): v for k, v in raw.items()}
    return {k: v for k, v in sent.items() if k in FIELDS and k not in errors}, errors


def openapi_body() -> dict[str, Any]:
    """The OpenAPI request body: the model's schema, without the file parts for JSON."""
    json_schema = {
        **SCHEMA,
        "properties": {k: v for k, v in SCHEMA["properties"].items() if k not in FILES},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": json_schema},
                "multipart/form-data": {"schema": SCHEMA},
            },
        }
    }
