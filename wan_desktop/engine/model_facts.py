"""What the VRAM planner knows about a model without loading it.

From the model folder when it is on disk: parameter counts per component read from the
safetensors headers (exact for any variant, tied weights counted once), width and depth from the
configs. Before a download: the manifest's memory facts.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wan_desktop.models.manifest import ModelSpec

log = logging.getLogger("wan_desktop.engine.planner")

EXPERTS = ("transformer", "transformer_2")


@dataclass(frozen=True)
class ModelFacts:
    """What the estimate needs about a model, from its files or its manifest entry."""

    params: Mapping[str, float]
    hidden_size: int
    num_layers: int
    ffn_dim: int
    latent_channels: int
    vae_scale_spatial: int
    vae_scale_temporal: int
    patch_size: tuple[int, int, int]
    text_len: int
    vae_base_dim: int
    source: str  # "files", "manifest" or "tiny" (a development variant not built yet)
    num_heads: int = 1  # attention heads: a job's GPU count (Ulysses degree) must divide them

    @property
    def experts(self) -> tuple[str, ...]:
        return tuple(c for c in EXPERTS if c in self.params)


def facts_from_manifest(spec: ModelSpec) -> ModelFacts:
    m = spec.memory
    vae = m.params.get("vae", 0.127e9)
    return ModelFacts(
        params=dict(m.params),
        hidden_size=m.hidden_size,
        num_layers=m.num_layers,
        ffn_dim=4 * m.hidden_size,  # not in the manifest; Wan's are 2.7x (A14B) and 4.7x (5B)
        latent_channels=m.latent_channels,
        vae_scale_spatial=m.vae_scale_spatial,
        vae_scale_temporal=m.vae_scale_temporal,
        patch_size=m.patch_size,
        text_len=m.text_len,
        # Wan2.1's VAE (0.127 B parameters) is 96 channels wide; width grows as sqrt(params)
        # (an over-estimate for Wan2.2's, which is 160 wide; the folder's config has the truth).
        vae_base_dim=max(8, round(96 * math.sqrt(vae / 0.127e9))),
        source="manifest",
        num_heads=m.num_heads,
    )


# The development ("tiny") variants as ``models/tiny.py`` builds them: two blocks 24 wide, a VAE
# 3 channels wide, tens of thousands of parameters per component. Known before the first build,
# so a first development job is not estimated with the real model's billions of parameters
# (once built, its files give the exact figures; a test keeps the two in step).
TINY_ARCH = {"hidden_size": 24, "num_layers": 2, "ffn_dim": 32, "vae_base_dim": 3, "num_heads": 2}
TINY_PARAMS = 35_000.0  # per component


def tiny_facts(spec: ModelSpec) -> ModelFacts:
    base = facts_from_manifest(spec)
    return replace(
        base,
        params={c: TINY_PARAMS for c in base.params if c != "image_encoder"},
        hidden_size=TINY_ARCH["hidden_size"],
        num_layers=TINY_ARCH["num_layers"],
        ffn_dim=TINY_ARCH["ffn_dim"],
        vae_base_dim=TINY_ARCH["vae_base_dim"],
        source="tiny",
        num_heads=TINY_ARCH["num_heads"],
    )


_FACTS_CACHE: dict[tuple[str, float], ModelFacts] = {}


def facts_for(spec: ModelSpec, folder: Path | None, *, tiny: bool = False) -> ModelFacts:
    """Facts from the model folder when it is on disk (exact, any variant), else the manifest's
    (for the tiny variant not built yet: the tiny architecture's; the random variant is the real
    architecture, so the manifest's figures are its own)."""
    if folder is None or not (folder / "model_index.json").is_file():
        return tiny_facts(spec) if tiny else facts_from_manifest(spec)
    key = (str(folder), (folder / "model_index.json").stat().st_mtime)
    if key not in _FACTS_CACHE:
        _FACTS_CACHE[key] = _facts_from_folder(spec, folder)
    return _FACTS_CACHE[key]


def _facts_from_folder(spec: ModelSpec, folder: Path) -> ModelFacts:
    base = facts_from_manifest(spec)
    params: dict[str, float] = {}
    for comp in (*spec.components, "image_encoder"):
        try:
            n = count_parameters(folder / comp)
        except (OSError, ValueError) as exc:
            # The manifest's figures stand in; loading the model will say what is wrong.
            log.warning("parameter count of %s: %s", comp, exc)
            return base
        if n:
            params[comp] = float(n)
    tcfg = _read_json(folder / "transformer" / "config.json")
    vcfg = _read_json(folder / "vae" / "config.json")
    heads, head_dim = tcfg.get("num_attention_heads"), tcfg.get("attention_head_dim")
    hidden = int(heads * head_dim) if heads and head_dim else base.hidden_size
    return replace(
        base,
        params=params or base.params,
        hidden_size=hidden,
        num_layers=int(tcfg.get("num_layers") or base.num_layers),
        ffn_dim=int(tcfg.get("ffn_dim") or base.ffn_dim),
        latent_channels=int(vcfg.get("z_dim") or base.latent_channels),
        vae_base_dim=int(vcfg.get("base_dim") or base.vae_base_dim),
        source="files",
        num_heads=int(heads or base.num_heads),
    )


# The safetensors format caps its JSON header at 100 MB.
MAX_HEADER_BYTES = 100_000_000


def count_parameters(component_dir: Path) -> int:
    """Parameters stored in a component's safetensors files, read from their headers only.

    Raises ``ValueError`` for a file that is not safetensors (damaged, or something else under
    that name) instead of trusting its first eight bytes as a length to read.
    """
    total = 0
    for path in sorted(component_dir.glob("*.safetensors")):
        with path.open("rb") as fh:
            prefix = fh.read(8)
            (length,) = struct.unpack("<Q", prefix) if len(prefix) == 8 else (0,)
            if not 2 <= length <= min(MAX_HEADER_BYTES, path.stat().st_size - 8):
                raise ValueError(f"{path} is not a safetensors file (header length {length})")
            try:
                header = json.loads(fh.read(length))
                total += sum(
                    math.prod(info["shape"])
                    for name, info in header.items()
                    if name != "__metadata__"
                )
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise ValueError(f"{path} has an unreadable safetensors header: {exc}") from None
    return total


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
