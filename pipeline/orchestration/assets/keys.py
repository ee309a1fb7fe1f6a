"""What names and describes each asset: keys, code versions, tags, descriptions, and how tables group into steps."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Sequence

import dagster as dg

from pipeline.keymap.model import Keymap, KeymapEntry


def bronze_key(entry: KeymapEntry) -> dg.AssetKey:
    return dg.AssetKey(["bronze", entry.domain, entry.asset_name])


def silver_key(table: str) -> dg.AssetKey:
    return dg.AssetKey(["silver", table])


def gold_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["gold", name])


# A day is enough to tell a stale daily asset; below that the UI would warn between two weekday refreshes.
DAILY_CADENCE_DAYS = 1


def layer_group(layer: str, domain: str) -> str:
    """The asset's group in the UI: one per layer and domain (`bronze_prices`, `silver_prices`, `gold`), so the
    graph shows the layer of a node whose key it shortens to the last part."""
    return layer if layer == "gold" else f"{layer}_{domain}"


def daily_freshness(entries: Sequence[KeymapEntry]) -> dg.FreshnessPolicy | None:
    """A freshness policy for an asset fed daily (every entry fetched every day), None otherwise. It fails after the
    keymap's freshness window (`recipe.freshness_days`, default min_age_days + 3: a weekend and a holiday), and
    warns a day before; Dagster's freshness daemon (part of `dg dev`) evaluates it and the UI shows the state."""
    if not entries or any(e.recipe.min_age_days != DAILY_CADENCE_DAYS for e in entries):
        return None
    days = min(e.recipe.effective_freshness_days for e in entries)
    return dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(days=days), warn_window=dt.timedelta(days=max(days - 1, 1)) if days > 1 else None
    )


def gold_freshness(keymap: Keymap, inputs: Sequence[str]) -> dg.FreshnessPolicy | None:
    """A Gold table reading a daily Silver table is rebuilt daily (gold_promotion_sensor): the daily inputs' policy."""
    daily = [e for t in inputs for e in keymap.entries_for_table(t) if e.recipe.min_age_days == DAILY_CADENCE_DAYS]
    return daily_freshness(daily)


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
