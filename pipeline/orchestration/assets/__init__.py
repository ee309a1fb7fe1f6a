"""Dagster assets built from the keymap: thin wiring around pipeline.bronze, silver and gold.

`bronze` (one asset per keymap entry), `silver` (one per table) and `gold` (one per Gold model) each build their
layer's assets; `keys` names and describes them, `metadata` turns what the domain functions return into Dagster
metadata, and `steps` holds what every step shares. The data-quality checks are standalone asset checks
(pipeline.orchestration.checks).
"""

from pipeline.orchestration.assets.bronze import build_bronze_assets
from pipeline.orchestration.assets.gold import build_gold_assets
from pipeline.orchestration.assets.keys import (
    bronze_key,
    code_version,
    entry_fingerprint,
    gold_key,
    silver_groups,
    silver_key,
)
from pipeline.orchestration.assets.silver import build_silver_assets

__all__ = [
    "bronze_key",
    "build_bronze_assets",
    "build_gold_assets",
    "build_silver_assets",
    "code_version",
    "entry_fingerprint",
    "gold_key",
    "silver_groups",
    "silver_key",
]
