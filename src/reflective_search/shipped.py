"""Models shipped inside the package, found by name (no download)."""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).parent / "shipped_models"


def shipped_model_names() -> list[str]:
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if p.is_dir()) if SHIPPED_DIR.is_dir() else []


def shipped_model_path(name: str) -> Path | None:
    """The folder of the shipped model ``name``, or None if no such model ships."""
    path = SHIPPED_DIR / name
    return path if path.is_dir() else None
