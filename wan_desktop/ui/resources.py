"""Files the app ships (icon, manifest copy in bundles): the one place that builds their paths."""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parents[1] / "resources"


def resource_path(name: str) -> Path:
    return RESOURCES / name
