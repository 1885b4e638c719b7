"""``/prompt``: enhance, preview, validate, styles."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from .. import prompt as rules
from ..context import ApiContext, Ctx

router = APIRouter(tags=["prompt"])


class Options(BaseModel):
    apply_vace: bool = True
    apply_cinematic: bool = True
    apply_style: bool = True


class EnhanceRequest(BaseModel):
    prompt: str = Field(..., min_length=1, max_length=rules.PROMPT_MAX)
    options: Options = Field(default_factory=Options)


class ValidateRequest(BaseModel):
    prompt: str = Field(..., max_length=100_000)


def _enhance(ctx: ApiContext, body: EnhanceRequest) -> dict[str, Any]:
    o = body.options
    options = rules.EnhanceOptions(o.apply_vace, o.apply_cinematic, o.apply_style)
    return ctx.enhancer.enhance(body.prompt, options).to_dict()


@router.post("/prompt/enhance", summary="Add cinematic, style and VACE terms (offline rules)")
def enhance(body: EnhanceRequest, ctx: Ctx) -> dict[str, Any]:
    return _enhance(ctx, body)


@router.post("/prompt/preview", summary="What enhance would do, with advice")
def preview(body: EnhanceRequest, ctx: Ctx) -> dict[str, Any]:
    result = _enhance(ctx, body)
    preview_text = result["enhanced_prompt"]
    return {
        **result,
        "preview_enhanced": preview_text,
        # What enhance would add, then advice only the writer can follow.
        "suggested_enhancements": [*result["enhancements_applied"], *result["suggestions"]],
        "character_count": {**result["character_count"], "preview": len(preview_text)},
        "quality_score": rules.quality_score(body.prompt),
        "would_change": preview_text != result["original_prompt"],
    }


@router.post("/prompt/validate", summary="Is this prompt acceptable (3–500 characters)?")
def validate(body: ValidateRequest) -> dict[str, Any]:
    return rules.validate(body.prompt)


@router.get("/prompt/styles", summary="The styles the enhancer knows")
def styles() -> dict[str, Any]:
    return rules.styles()
