"""Prompt help: a deterministic, offline enhancer (cinematic, style and VACE rules), validation
and the style list. ``PromptEnhancer`` is the hook for a language-model enhancer later: anything
with the same ``enhance`` method can be passed to ``create_app``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from wan_desktop.engine.params import PROMPT_MAX

PROMPT_MIN = 3  # what the prompt checker calls too short to describe a video (advice only)


@dataclass(frozen=True)
class Style:
    name: str
    display_name: str
    description: str
    keywords: tuple[str, ...]  # words that reveal the style in a prompt
    terms: tuple[str, ...]  # what the enhancer adds for it


STYLES = (
    Style(
        "cinematic",
        "Cinematic",
        "film look: composed shots, dramatic light",
        ("cinematic", "film", "movie", "dramatic", "epic", "shot"),
        ("cinematic lighting", "film grain", "dramatic composition"),
    ),
    Style(
        "photorealistic",
        "Photorealistic",
        "true-to-life detail and natural light",
        ("realistic", "photo", "photorealistic", "real", "natural", "documentary"),
        ("photorealistic", "natural lighting", "sharp focus", "high detail"),
    ),
    Style(
        "anime",
        "Anime",
        "Japanese animation: clean lines, vivid colour",
        ("anime", "manga", "cartoon", "animated", "ghibli"),
        ("anime style", "clean line art", "vibrant colors"),
    ),
    Style(
        "artistic",
        "Artistic",
        "painterly, expressive",
        ("painting", "painted", "watercolor", "oil", "artistic", "impressionist", "sketch"),
        ("painterly style", "expressive brushstrokes", "rich textures"),
    ),
    Style(
        "fantasy",
        "Fantasy",
        "magical worlds and creatures",
        ("fantasy", "magic", "magical", "dragon", "wizard", "fairy", "enchanted", "castle"),
        ("magical atmosphere", "ethereal glow", "fantastical detail"),
    ),
    Style(
        "sci-fi",
        "Sci-fi",
        "futuristic technology and space",
        ("sci-fi", "futuristic", "space", "robot", "cyberpunk", "spaceship", "alien", "neon"),
        ("futuristic design", "neon accents", "high-tech detail"),
    ),
)
CINEMATIC_TERMS = ("cinematic composition", "smooth camera movement", "professional lighting")
CAMERA_WORDS = ("camera", "pan", "tracking", "dolly", "zoom", "close-up", "aerial", "shot")
QUALITY_TERMS = ("high quality", "detailed")
VACE_WORDS = ("vace", "aesthetic", "artistic", "stylized", "creative", "experimental", "visual")
VACE_TERMS = ("VACE aesthetic enhancement", "refined visual composition", "harmonious colors")


@dataclass(frozen=True)
class EnhanceOptions:
    apply_vace: bool = True
    apply_cinematic: bool = True
    apply_style: bool = True


@dataclass(frozen=True)
class Enhancement:
    original: str
    enhanced: str
    applied: tuple[str, ...]
    vace_detected: bool
    detected_style: str | None
    confidence: float
    suggestions: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "original_prompt": self.original,
            "enhanced_prompt": self.enhanced,
            "enhancements_applied": list(self.applied),
            "character_count": {
                "original": len(self.original),
                "enhanced": len(self.enhanced),
                "difference": len(self.enhanced) - len(self.original),
            },
            "vace_detected": self.vace_detected,
            "detected_style": self.detected_style,
            "confidence": self.confidence,
            "suggestions": list(self.suggestions),
        }


class PromptEnhancer(Protocol):
    def enhance(self, prompt: str, options: EnhanceOptions) -> Enhancement: ...


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z][a-z-]*", text.lower()))


def detect_style(prompt: str) -> tuple[str | None, float]:
    words = _words(prompt)
    best, score = None, 0
    for style in STYLES:
        hits = sum(1 for k in style.keywords if k in words)
        if hits > score:
            best, score = style.name, hits
    return best, (round(min(1.0, 0.5 + 0.2 * score), 2) if best else 0.0)


def detect_vace(prompt: str) -> bool:
    return bool(_words(prompt) & set(VACE_WORDS))


def suggestions(prompt: str) -> list[str]:
    out = []
    words = _words(prompt)
    if len(prompt) < 30:
        out.append("describe the subject, the setting and the motion in a full sentence")
    if not words & set(CAMERA_WORDS):
        out.append("say how the camera moves (slow pan, tracking shot, close-up…)")
    if not words & {"light", "lighting", "sunset", "sunrise", "night", "glow", "shadows"}:
        out.append("name the light (golden hour, soft studio light, neon at night…)")
    if len(prompt) > PROMPT_MAX - 50:
        out.append(f"keep room under the {PROMPT_MAX}-character limit")
    return out


def quality_score(prompt: str) -> float:
    """0–100: how much of what a good video prompt says this one says (the same checks as
    ``suggestions``: a full sentence, the camera, the light, room under the limit)."""
    text = prompt.strip()
    if not text:
        return 0.0
    checks = 4
    return round(100.0 * (checks - len(suggestions(text))) / checks, 1)


class RuleEnhancer:
    """Adds terms by fixed rules; never goes over the prompt limit, never repeats a term."""

    def enhance(self, prompt: str, options: EnhanceOptions) -> Enhancement:
        text = prompt.strip()
        lower = text.lower()
        style, confidence = detect_style(text)
        vace = detect_vace(text)
        applied: list[str] = []
        additions: list[str] = []

        def add(name: str, terms: tuple[str, ...]) -> None:
            new = [t for t in terms if t.lower() not in lower and t not in additions]
            if new:
                additions.extend(new)
                applied.append(name)

        if options.apply_cinematic and not _words(text) & set(CAMERA_WORDS):
            add("cinematic camera and lighting", CINEMATIC_TERMS)
        if options.apply_style and style is not None:
            spec = next(s for s in STYLES if s.name == style)
            add(f"{spec.display_name} style terms", spec.terms)
        if options.apply_vace and vace:
            add("VACE aesthetic enhancement", VACE_TERMS)
        if additions:
            add("quality terms", QUALITY_TERMS)
        enhanced = text
        for term in additions:
            candidate = f"{enhanced}, {term}" if enhanced else term
            if len(candidate) > PROMPT_MAX:
                break
            enhanced = candidate
        return Enhancement(
            original=prompt,
            enhanced=enhanced,
            applied=tuple(applied) if enhanced != text else (),
            vace_detected=vace,
            detected_style=style,
            confidence=confidence,
            suggestions=tuple(suggestions(text)),
        )


def validate(prompt: str) -> dict[str, Any]:
    text = prompt.strip()
    n = len(text)
    if n == 0:
        ok, message = False, "the prompt is empty: describe the video you want"
    elif n < PROMPT_MIN:
        ok, message = False, f"the prompt is {n} characters; write at least {PROMPT_MIN}"
    elif n > PROMPT_MAX:
        ok, message = False, f"the prompt is {n} characters; shorten it to {PROMPT_MAX}"
    else:
        ok, message = True, "the prompt is valid"
    return {
        "is_valid": ok,
        "message": message,
        "character_count": n,
        "max_length": PROMPT_MAX,
        "suggestions": suggestions(text) if text else ["describe the subject, setting and motion"],
    }


def styles() -> dict[str, Any]:
    items = [
        {
            "name": s.name,
            "display_name": s.display_name,
            "description": s.description,
            "keywords": list(s.keywords),
            "terms": list(s.terms),
        }
        for s in STYLES
    ]
    return {"styles": items, "total_count": len(items)}
