"""The dataset keymap: what every dataset is, where it lands, and how to fetch it."""

from __future__ import annotations

from pipeline.keymap.loader import KeymapError, load_keymap, parse_keymap, snake_to_camel
from pipeline.keymap.model import (
    COLUMN_TYPES,
    GLOBAL,
    PER_TICKER,
    Column,
    DatasetIdentity,
    DatasetWatermark,
    Keymap,
    KeymapEntry,
    Pagination,
    Recipe,
    SilverSpec,
)

__all__ = [
    "COLUMN_TYPES",
    "GLOBAL",
    "PER_TICKER",
    "Column",
    "DatasetIdentity",
    "DatasetWatermark",
    "Keymap",
    "KeymapEntry",
    "KeymapError",
    "Pagination",
    "Recipe",
    "SilverSpec",
    "load_keymap",
    "parse_keymap",
    "snake_to_camel",
]
