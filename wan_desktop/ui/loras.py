"""LoRA files the user can apply: the files in the engine's LoRA folder.

A small interface on purpose: the engine's LoRA library (names, upload, validation) plugs in here
when it is installed; until then the folder is listed by file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LORA_EXTENSIONS = (".safetensors", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class LoraFile:
    name: str
    path: Path
    size_bytes: int


def list_loras(folder: Path) -> list[LoraFile]:
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if p.is_file() and p.suffix.lower() in LORA_EXTENSIONS and not p.name.startswith("."):
            out.append(LoraFile(p.stem, p, p.stat().st_size))
    return out
