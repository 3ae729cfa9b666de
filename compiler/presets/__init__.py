"""Bundled model configs that `hf:NAME` names: one directory per preset holding a `config.json`.

A preset is any subdirectory of this package with a `config.json` in it (shipped as package data by
pyproject's `compiler = ["presets/*/config.json"]`); adding a model is adding a directory. The configs
hold published shapes only, never weights, so models built from them compile size-only.

Requires nothing beyond the standard library (so listing presets never imports torch).
Ensures: names are the directory names, matched case-insensitively; an unknown name gives None.
"""
from __future__ import annotations

from pathlib import Path

PRESETS_DIR = Path(__file__).resolve().parent
CONFIG_FILE = "config.json"


def preset_names() -> list[str]:
    """Every bundled preset, sorted."""
    return sorted(config.parent.name for config in PRESETS_DIR.glob(f"*/{CONFIG_FILE}"))


def preset_dir(name: str) -> Path | None:
    """The directory of preset `name` (any letter case), or None if there is no such preset."""
    # Matching against the listed names (not joining `name` onto the path) keeps `../x` out.
    wanted = name.strip().lower()
    for preset in preset_names():
        if preset.lower() == wanted:
            return PRESETS_DIR / preset
    return None
