"""Asset checks: generated from the keymap for every Silver table, plus the Gold checks.

The checks are standalone Dagster asset checks, so they run on their own against the current warehouse
(select them in the UI, `dg launch`, `pipeline check`) as well as after the assets they guard in the same
run. One check step per Silver multi-asset and one for Gold (not one per table: each step costs a process
launch under the multiprocess executor). ERROR checks are blocking: a failure fails the check step, and
Dagster skips the assets downstream of that step in the same run; in any other run the Gold step itself refuses
to build while the latest evaluation of a blocking check on one of its inputs failed
(`pipeline.orchestration.assets.gate`), and the Gold sensor does not launch it. WARN checks only report.

The checks read through the warehouse's fail-fast reader: while another process writes the file the step
raises and its retry policy tries again later, instead of reporting a failed check.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
import duckdb

from pipeline.gold.quality import GOLD_CHECKS
from pipeline.keymap.model import Keymap
from pipeline.orchestration.assets.steps import interrupts_end_the_step
from pipeline.orchestration.pools import pool_slot, pool_tags
from pipeline.orchestration.warehouse_resource import WarehouseResource
from pipeline.silver import quality as silver_quality
from pipeline.silver.quality import CheckOutcome
from pipeline.warehouse.connection import WarehouseMissing

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
        CheckDef(
            "key_unique",
            ERROR,
            f"No two rows share the key ({key}).",
            lambda conn: silver_quality.key_unique(conn, spec),
        ),
        CheckDef(
            "key_not_null",
            ERROR,
            f"No key column ({key}) is NULL.",
            lambda conn: silver_quality.key_not_null(conn, spec),
        ),
        CheckDef(
            "column_types",
            ERROR,
            "Warehouse column types equal the keymap's declared types.",
            lambda conn: silver_quality.column_types_match(conn, spec),
        ),
        CheckDef(
            "reconciliation",
            ERROR,
            "Rows read from promoted Bronze files = inserted + updated + unchanged + rejected + duplicates.",
            lambda conn: silver_quality.reconciliation(conn, table),
        ),
        CheckDef(
            "freshness",
            WARN,
            "The newest data of every series is within its cadence plus a grace.",
            lambda conn: silver_quality.freshness(conn, keymap, table, today()),
        ),
        CheckDef(
            "schema_drift",
            WARN,
            "The API sends no fields the keymap does not map (new fields are reported).",
            lambda conn: silver_quality.schema_drift(conn, keymap, table),
        ),
    ]


def gold_check_defs(name: str) -> list[CheckDef]:
    """The Gold checks of one table; a callable may carry `severity = "WARN"` (default ERROR)."""
    out = []
    for fn in GOLD_CHECKS.get(name, ()):
        check_name = fn.__name__.removeprefix("check_").split("__")[0]
        doc = (fn.__doc__ or check_name).strip().splitlines()[0]
        severity = str(getattr(fn, "severity", "ERROR")).upper()
        if severity not in ("ERROR", "WARN"):
            raise ValueError(
                f"Gold check {fn.__name__} on {name}: severity must be 'ERROR' or 'WARN', not {severity!r}"
            )
        out.append(CheckDef(check_name, dg.AssetCheckSeverity(severity), doc, fn))
    return out


def check_specs(asset_key: dg.AssetKey, defs: list[CheckDef]) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(d.name, asset=asset_key, description=d.description, blocking=d.blocking) for d in defs]


def evaluate(
    conn: duckdb.DuckDBPyConnection, asset_key: dg.AssetKey, defs: list[CheckDef], selected: set[dg.AssetCheckKey]
) -> Iterator[dg.AssetCheckResult]:
    """Run the selected checks of one asset and yield their results."""
    for d in defs:
        if dg.AssetCheckKey(asset_key, d.name) not in selected:
            continue
        try:
            absent = silver_quality.never_created(conn, asset_key.path[-1]) if asset_key.path[0] == "silver" else None
            outcome = absent or d.run(conn)
        except duckdb.Error as exc:  # e.g. a Gold table never built: the check cannot vouch for it
            outcome = CheckOutcome(False, f"check could not run: {exc}", {})
        yield dg.AssetCheckResult(
            asset_key=asset_key,
            check_name=d.name,
            passed=outcome.passed,
            severity=d.severity,
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


# ---- Dagster asset checks, one step per group of assets ------------------------------------------------

CHECK_RETRY = dg.RetryPolicy(max_retries=4, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def build_check_group(
    name: str, defs_by_asset: Mapping[dg.AssetKey, Sequence[CheckDef]], pool: str | None = None
) -> dg.AssetChecksDefinition:
    """One standalone, subsettable check step evaluating the selected checks of several assets.

    Reads through the warehouse's fail-fast reader; a busy warehouse raises (the retry policy backs off and
    tries again) rather than reporting a failed check.
    """
    specs = [s for key, defs in defs_by_asset.items() for s in check_specs(key, list(defs))]

    @dg.multi_asset_check(
        name=name,
        specs=specs,
        can_subset=True,
        op_tags=pool_tags(pool),
        retry_policy=CHECK_RETRY,
        description=f"Data-quality checks of {len(defs_by_asset)} asset(s), on the current warehouse.",
    )
    def _checks(context, warehouse: WarehouseResource) -> Iterator[dg.AssetCheckResult]:
        selected = set(context.selected_asset_check_keys)
        try:
            with interrupts_end_the_step(), pool_slot(context):
                warehouse.migrate()
                with warehouse.reader() as conn:
                    for key, defs in defs_by_asset.items():
                        yield from evaluate(conn, key, list(defs), selected)
        except WarehouseMissing as exc:
            for ck in sorted(selected, key=str):
                d = next(d for d in defs_by_asset[ck.asset_key] if d.name == ck.name)
                yield dg.AssetCheckResult(
                    asset_key=ck.asset_key, check_name=ck.name, passed=False, severity=d.severity, description=str(exc)
                )

    return _checks


def build_asset_checks(
    keymap: Keymap, today: Callable[[], dt.date], pool: str | None = "duckdb_writer"
) -> list[dg.AssetChecksDefinition]:
    """Every Silver and Gold check, grouped like the multi-assets that materialize the tables (in the writers'
    pool on the DuckDB file, where a reader cannot open the file while a writer holds it)."""
    from pipeline.gold.build import GOLD_ASSETS
    from pipeline.orchestration.assets import gold_key, silver_groups, silver_key

    out = []
    for group, tables in silver_groups(keymap).items():
        out.append(
            build_check_group(
                f"{group}_checks", {silver_key(t): silver_check_defs(keymap, t, today) for t in tables}, pool=pool
            )
        )
    gold = {gold_key(n): gold_check_defs(n) for n in GOLD_ASSETS}
    gold = {k: v for k, v in gold.items() if v}
    if gold:
        out.append(build_check_group("gold_checks", gold, pool=pool))
    return out


def blocking_check_keys(checks: Sequence[dg.AssetChecksDefinition]) -> dict[dg.AssetKey, list[dg.AssetCheckKey]]:
    """asset -> the keys of its blocking checks (what gates the assets downstream of it)."""
    out: dict[dg.AssetKey, list[dg.AssetCheckKey]] = {}
    for checks_def in checks:
        for spec in checks_def.check_specs:
            if spec.blocking:
                out.setdefault(spec.asset_key, []).append(spec.key)
    return out


def failed_blocking_checks(instance: dg.DagsterInstance, keys: Sequence[dg.AssetCheckKey]) -> list[dg.AssetCheckKey]:
    """The blocking checks among `keys` whose latest evaluation failed (from the instance's event log)."""
    if not keys:
        return []
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(keys))
    failed = []
    for key, record in latest.items():
        evaluation = record.event.asset_check_evaluation if record.event else None
        if evaluation is not None and not evaluation.passed and evaluation.severity == ERROR:
            failed.append(key)
    return sorted(failed, key=str)
