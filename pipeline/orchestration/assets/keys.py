"""What names and describes each asset: keys, code versions, tags, descriptions, and how tables group into steps."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import dagster as dg

from pipeline.keymap.model import Keymap, KeymapEntry


def bronze_key(entry: KeymapEntry) -> dg.AssetKey:
    return dg.AssetKey(["bronze", entry.domain, entry.asset_name])


def silver_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["silver", table])


def gold_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["gold", name])


def code_version(*parts: object) -> str:
    """A short hash of what defines an asset (its keymap entries, its Gold SQL): Dagster shows an asset whose
    definition changed since its last materialization as changed, and reports the version on each run."""
    text = json.dumps(
        [dataclasses.asdict(p) if dataclasses.is_dataclass(p) else p for p in parts], sort_keys=True, default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def entry_fingerprint(entry: KeymapEntry) -> dict:
    """The keymap entry without its position in the file (reordering the YAML changes nothing)."""
    return {k: v for k, v in dataclasses.asdict(entry).items() if k != "index"}


def entry_tags(entry: KeymapEntry) -> dict[str, str]:
    return {
        "domain": entry.domain,
        "source": entry.source,
        "ticker_scope": entry.ticker_scope,
        "min_plan": entry.recipe.min_plan,
    }


def entry_description(entry: KeymapEntry) -> str:
    recipe = entry.recipe
    cadence = f"every {recipe.min_age_days} day(s)" if recipe.min_age_days else "every run"
    window = f", windows of at most {recipe.max_window_days} days" if recipe.max_window_days else ""
    return (
        f"{entry.description}\n\nFMP `{recipe.path}` ({entry.ticker_scope}; {cadence}{window}; "
        f"plan {recipe.min_plan}+). Docs: {entry.docs_url}\n\nSilver table: `silver.{entry.silver.table}`."
    )


def silver_table_description(keymap: Keymap, table: str) -> str:
    entries = keymap.entries_for_table(table)
    spec = keymap.tables()[table]
    return (
        f"Typed Silver table `silver.{table}` (key {', '.join(spec.key)}), merged from "
        f"{len(entries)} keymap entr{'y' if len(entries) == 1 else 'ies'}: "
        + "; ".join(f"{e.description} Docs: {e.docs_url}" for e in entries[:3])
        + f"\n\nHistory of every changed version: `silver.{table}__history`."
    )


def bronze_keys_by_table(keymap: Keymap) -> dict[str, list[dg.AssetKey]]:
    out: dict[str, list[dg.AssetKey]] = {}
    for entry in keymap:
        out.setdefault(entry.silver.table, []).append(bronze_key(entry))
    return out


def silver_groups(keymap: Keymap) -> dict[str, list[str]]:
    """Silver multi-asset name -> its tables (per-ticker tables are partitioned, global ones are not)."""
    groups = {
        "silver_per_ticker": sorted({e.silver.table for e in keymap.per_ticker_entries()}),
        "silver_global": sorted({e.silver.table for e in keymap.global_entries()}),
    }
    return {name: tables for name, tables in groups.items() if tables}
