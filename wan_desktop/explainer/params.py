"""Parameters of an explainer job, validated and normalised once, at submit time.

The normalised dict is stored on the job, so a retry validates its own output again.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from wan_desktop.engine.errors import InvalidInputError

from .settings import QUALITIES, ExplainerSettings, StorageMode

TOPIC_MAX = 500
CONTEXT_MAX = 2000
SCENES_RANGE = (3, 7)
OUTPUT_FORMATS = ("mp4",)
# A job's ``model`` may name the offline planner explicitly.
OFFLINE_MODEL_NAMES = frozenset({"template", "offline"})


@dataclass(frozen=True)
class QualityPreset:
    name: str
    manim_quality: str  # manim's config.quality
    width: int
    height: int
    fps: int


QUALITY_PRESETS = {
    "low": QualityPreset("low", "low_quality", 854, 480, 15),
    "medium": QualityPreset("medium", "medium_quality", 1280, 720, 30),
    "high": QualityPreset("high", "high_quality", 1920, 1080, 60),
    "ultra": QualityPreset("ultra", "fourk_quality", 3840, 2160, 60),
}


@dataclass(frozen=True)
class ExplainerParams:
    topic: str
    context: str
    quality: str = "medium"
    use_rag: bool = False
    model: str | None = None  # None: the configured language model, else the offline planner
    enable_subtitles: bool = True
    burn_subtitles: bool = False  # draw the subtitles into the picture as well
    enable_thumbnails: bool = True
    output_format: str = "mp4"
    storage_mode: str = StorageMode.local_only.value
    scene_count: int | None = None  # 3–7; None lets the planner choose

    @property
    def preset(self) -> QualityPreset:
        return QUALITY_PRESETS[self.quality]

    @property
    def offline(self) -> bool:
        return self.model is not None and self.model.lower() in OFFLINE_MODEL_NAMES

    @property
    def storage(self) -> StorageMode:
        return StorageMode(self.storage_mode)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExplainerParams:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


FIELDS = tuple(ExplainerParams.__dataclass_fields__)


def validate_explainer_params(
    raw: Mapping[str, Any], settings: ExplainerSettings
) -> ExplainerParams:
    """Check and normalise a request; raise InvalidInputError naming every bad field."""
    errors: dict[str, str] = {}
    unknown = sorted(set(raw) - set(FIELDS))
    for name in unknown:
        errors[name] = f"is not a setting of an explainer video; known: {', '.join(FIELDS)}"

    topic = _text(raw.get("topic"), "topic", TOPIC_MAX, errors)
    context = _text(raw.get("context"), "context", CONTEXT_MAX, errors)

    quality = str(raw.get("quality") or settings.default_quality).strip().lower()
    if quality not in QUALITIES:
        errors["quality"] = f"is {raw.get('quality')!r}; use one of {', '.join(QUALITIES)}"

    flags = {
        name: _flag(raw.get(name), name, default, errors)
        for name, default in (
            ("use_rag", settings.use_rag),
            ("enable_subtitles", True),
            ("burn_subtitles", False),
            ("enable_thumbnails", True),
        )
    }

    model = raw.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        errors["model"] = "give a model name, or leave it out to use the configured one"
        model = None
    model = model.strip() if isinstance(model, str) else None
    if model and model.lower() not in OFFLINE_MODEL_NAMES and not settings.llm.base_url:
        errors["model"] = (
            f"{model!r} needs a language model endpoint: set LLM_BASE_URL (an OpenAI-compatible "
            "server), or use model 'template' for the offline planner"
        )

    fmt = str(raw.get("output_format") or "mp4").strip().lower()
    if fmt not in OUTPUT_FORMATS:
        errors["output_format"] = f"is {fmt!r}; only mp4 is supported"

    storage = str(raw.get("storage_mode") or settings.storage_mode).strip().lower()
    try:
        mode = StorageMode(storage)
    except ValueError:
        errors["storage_mode"] = f"is {storage!r}; use one of {', '.join(StorageMode)}"
    else:
        if mode.uses_s3 and not settings.s3.configured:
            errors["storage_mode"] = (
                f"{mode} needs a bucket: set OUTPUT_S3_BUCKET (and OUTPUT_S3_ENDPOINT_URL for "
                "a non-AWS server), or use local_only"
            )

    scene_count: int | None = None
    raw_count = raw.get("scene_count")
    if raw_count not in (None, ""):
        lo, hi = SCENES_RANGE
        try:
            scene_count = int(raw_count)
            if isinstance(raw_count, bool) or (isinstance(raw_count, float) and raw_count % 1):
                raise ValueError
        except (TypeError, ValueError):
            errors["scene_count"] = f"must be a whole number of scenes, {lo}–{hi}"
        else:
            if not lo <= scene_count <= hi:
                errors["scene_count"] = f"is {scene_count}; an explainer has {lo}–{hi} scenes"

    if errors:
        raise InvalidInputError(errors)
    return ExplainerParams(
        topic=topic,
        context=context,
        quality=quality,
        model=model,
        output_format=fmt,
        storage_mode=storage,
        scene_count=scene_count,
        **flags,
    )


def _text(value: Any, name: str, limit: int, errors: dict[str, str]) -> str:
    if value is not None and not isinstance(value, str):
        errors[name] = f"must be text (1–{limit} characters)"
        return ""
    text = unicodedata.normalize("NFC", (value or "").replace("\r\n", "\n")).strip()
    if not text:
        errors[name] = f"write the {name} (1–{limit} characters)"
    elif len(text) > limit:
        errors[name] = f"is {len(text)} characters; shorten it to {limit} or fewer"
    elif any(unicodedata.category(c) in ("Cc", "Cs", "Co") and c not in "\n\t" for c in text):
        errors[name] = "contains control characters; remove them"
    return text


def _flag(value: Any, name: str, default: bool, errors: dict[str, str]) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    errors[name] = f"is {value!r}; use true or false"
    return default
