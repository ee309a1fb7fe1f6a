"""Asset checks: generated from the keymap for every Silver table, plus the Gold checks.

Checks are declared as check specs on the Silver and Gold assets and evaluated in the same step that
materializes them (a check per step would cost a process launch each under the multiprocess executor).
ERROR checks are blocking: a failure fails the step and stops downstream assets; WARN checks only report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg
import duckdb

from pipeline.gold.quality import GOLD_CHECKS
from pipeline.silver.quality import CheckOutcome
from pipeline.keymap.model import Keymap
from pipeline.silver import quality as silver_quality

ERROR = dg.AssetCheckSeverity.ERROR
WARN = dg.AssetCheckSeverity.WARN


@dataclass(frozen=True)
class CheckDef:
    name: str
    severity: dg.AssetCheckSeverity
    description: str
    run: Callable[[duckdb.DuckDBPyConnection], CheckOutcome]

    @property
    def blocking(self) -> bool:
        return self.severity == ERROR


def silver_check_defs(keymap: Keymap, table: str, today: Callable[[], dt.date]) -> list[CheckDef]:
    spec = keymap.tables()[table]
    key = ", ".join(spec.key)
    return [
        CheckDef("key_unique", ERROR, f"No two rows share the key ({key}).",
                 lambda conn: silver_quality.key_unique(conn, spec)),
        CheckDef("key_not_null", ERROR, f"No key column ({key}) is NULL.",
                 lambda conn: silver_quality.key_not_null(conn, spec)),
        CheckDef("column_types", ERROR, "Warehouse column types equal the keymap's declared types.",
                 lambda conn: silver_quality.column_types_match(conn, spec)),
        CheckDef("reconciliation", ERROR,
                 "Rows read from promoted Bronze files = inserted + updated + unchanged + rejected + duplicates.",
                 lambda conn: silver_quality.reconciliation(conn, table)),
        CheckDef("freshness", WARN, "The newest data of every series is within its cadence plus a grace.",
                 lambda conn: silver_quality.freshness(conn, keymap, table, today())),
        CheckDef("schema_drift", WARN, "The API sends no fields the keymap does not map (new fields are reported).",
                 lambda conn: silver_quality.schema_drift(conn, keymap, table)),
    ]


def gold_check_defs(name: str) -> list[CheckDef]:
    out = []
    for fn in GOLD_CHECKS.get(name, ()):
        check_name = fn.__name__.removeprefix("check_").split("__")[0]
        doc = (fn.__doc__ or check_name).strip().splitlines()[0]
        severity = WARN if getattr(fn, "severity", "ERROR") == "WARN" else ERROR
        out.append(CheckDef(check_name, severity, doc, fn))
    return out


def check_specs(asset_key: dg.AssetKey, defs: list[CheckDef]) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(d.name, asset=asset_key, description=d.description, blocking=d.blocking) for d in defs]


def evaluate(conn: duckdb.DuckDBPyConnection, asset_key: dg.AssetKey, defs: list[CheckDef],
             selected: set[dg.AssetCheckKey]) -> Iterator[dg.AssetCheckResult]:
    """Run the selected checks of one asset and yield their results."""
    for d in defs:
        if dg.AssetCheckKey(asset_key, d.name) not in selected:
            continue
        try:
            outcome = d.run(conn)
        except duckdb.Error as exc:
            outcome = CheckOutcome(False, f"check could not run: {exc}", {})
        yield dg.AssetCheckResult(
            asset_key=asset_key, check_name=d.name, passed=outcome.passed, severity=d.severity,
            description=outcome.description,
            metadata={k: _metadata_value(v) for k, v in outcome.metadata.items()},
        )


def _metadata_value(value):
    if isinstance(value, (list, dict, tuple)):
        import json

        return dg.MetadataValue.json(json.loads(json.dumps(value, default=str)))
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value if value is not None else "None"
    return str(value)
