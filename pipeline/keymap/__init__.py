"""The dataset keymap: what every dataset is, where it lands, and how to fetch it."""

from __future__ import annotations

import functools

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
    "COLUMN_TYPES", "GLOBAL", "PER_TICKER", "Column", "DatasetIdentity", "DatasetWatermark", "Keymap", "KeymapEntry",
    "KeymapError", "Pagination", "Recipe", "SilverSpec", "get_keymap", "load_keymap", "parse_keymap", "snake_to_camel",
]


@functools.lru_cache(maxsize=1)
def get_keymap() -> Keymap:
    """The keymap named by the settings, loaded once per process."""
    from pipeline.settings import get_settings

    return load_keymap(get_settings().keymap_path)
