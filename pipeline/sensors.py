"""Sensors (names are a contract): ticker universe, Silver promotion, Gold promotion.

All three read the warehouse through a fail-fast read-only connection: while a run writes the file they
skip the tick with a reason (keeping their cursor) instead of hanging past the sensor timeout, and they
never migrate.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

import dagster as dg

from pipeline.assets import gold_key, silver_key
from pipeline.keymap.model import Keymap
from pipeline.ops import file_ingestions
from pipeline.partitions import tickers_partitions
from pipeline.settings import Settings
from pipeline.universe import configured_tickers, universe_from_silver
from pipeline.warehouse.connection import Warehouse, WarehouseBusy, WarehouseMissing

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
SENSOR_INTERVAL_S = 30


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """Tags that make one run cover a range of `tickers` partitions (what the UI and CLI set for a range)."""
    return {RANGE_START: first, RANGE_END: last}


def ordered_range(keys: list[str], wanted: set[str]) -> tuple[str, str] | None:
    """The smallest [first, last] range, in partition order, that contains every wanted key."""
    positions = [i for i, k in enumerate(keys) if k in wanted]
    if not positions:
        return None
    return keys[min(positions)], keys[max(positions)]


WORK_TAG = "pipeline/work"
FAILED_STATUSES = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def work_run_key(instance: dg.DagsterInstance, work: str) -> str | None:
    """The run key for a piece of work, or None when a run for it is queued, running or succeeded.

    Dagster never reuses a run key, even after a failed run, so a retry of failed work needs a new key: when
    every earlier run for this work failed or was canceled, the key gets a `:retry-N` suffix.
    """
    runs = instance.get_runs(filters=dg.RunsFilter(tags={WORK_TAG: work}), limit=50)
    if not runs:
        return work
    if any(r.status not in FAILED_STATUSES for r in runs):
        return None
    return f"{work}:retry-{len(runs)}"


def build_ticker_universe_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(name="ticker_universe_sensor", minimum_interval_seconds=300,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Adds tickers to the `tickers` partitions from PIPELINE_TICKERS, the sample source, or the "
                           "Silver stock list filtered by the universe settings.")
    def ticker_universe_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        fixed = configured_tickers(settings)
        if fixed is not None:
            wanted, why = fixed
        else:
            try:
                with Warehouse(settings.warehouse_path).reader() as conn:
                    wanted = universe_from_silver(conn, settings.universe)
            except (WarehouseBusy, WarehouseMissing) as exc:
                return dg.SkipReason(f"universe not read: {exc}")
            why = "Silver stock list filtered by the universe settings"
        have = set(context.instance.get_dynamic_partitions(tickers_partitions.name))
        new = [t for t in wanted if t not in have]
        if not new:
            return dg.SkipReason(f"all {len(wanted)} ticker(s) from {why} are already partitions")
        context.log.info(f"adding {len(new)} ticker(s) from {why}: {', '.join(new[:20])}")
        return dg.SensorResult(dynamic_partitions_requests=[tickers_partitions.build_add_request(new)])

    return ticker_universe_sensor


def build_silver_promotion_sensor(keymap: Keymap, settings: Settings) -> dg.SensorDefinition:
    per_ticker_tables = {e.silver.table for e in keymap.per_ticker_entries()}
    targets = [silver_key(t) for t in keymap.tables()]

    @dg.sensor(name="silver_promotion_sensor", minimum_interval_seconds=SENSOR_INTERVAL_S, target=targets,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Launches Silver promotion for exactly the tables and tickers that have promotable, "
                           "not yet promoted Bronze files in ops.file_ingestions, batched into few runs.")
    def silver_promotion_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        cursor = int(context.cursor or 0)
        try:
            with Warehouse(settings.warehouse_path).reader() as conn:
                files = file_ingestions.promotable_files(conn, tables=list(keymap.tables()))
        except (WarehouseBusy, WarehouseMissing) as exc:
            return dg.SkipReason(f"ledger not read, will retry next tick: {exc}")
        if not files:
            return dg.SkipReason("no promotable Bronze files waiting for Silver")
        newest = max(f.ingestion_id for f in files)
        tables_global: set[str] = set()
        tables_ticker: dict[str, set[str]] = defaultdict(set)
        for f in files:
            if f.silver_table in per_ticker_tables:
                tables_ticker[f.silver_table].add(f.ticker)
            else:
                tables_global.add(f.silver_table)
        requests: list[dg.RunRequest] = []
        waiting: list[str] = []
        if tables_global:
            work = f"silver:global:{newest}"
            key = work_run_key(context.instance, work)
            if key:
                requests.append(dg.RunRequest(
                    run_key=key, asset_selection=[silver_key(t) for t in sorted(tables_global)],
                    tags={WORK_TAG: work, "pipeline/trigger": "silver_promotion_sensor"}))
            else:
                waiting.append(f"global tables up to file #{newest} are being promoted")
        if tables_ticker:
            keys = context.instance.get_dynamic_partitions(tickers_partitions.name)
            wanted = set().union(*tables_ticker.values())
            span = ordered_range(keys, wanted)
            work = f"silver:per_ticker:{newest}"
            key = work_run_key(context.instance, work) if span else None
            if span is None:
                waiting.append(f"files wait for tickers that are not partitions yet: {', '.join(sorted(wanted)[:10])}")
            elif key:
                requests.append(dg.RunRequest(
                    run_key=key, asset_selection=[silver_key(t) for t in sorted(tables_ticker)],
                    tags={**partition_range_tags(*span), WORK_TAG: work, "pipeline/trigger": "silver_promotion_sensor"}))
            else:
                waiting.append(f"per-ticker tables up to file #{newest} are being promoted")
        if not requests:
            return dg.SkipReason("; ".join(waiting) or "nothing to promote")
        return dg.SensorResult(run_requests=requests, cursor=str(max(newest, cursor)))

    return silver_promotion_sensor


def build_gold_promotion_sensor(settings: Settings) -> dg.SensorDefinition:
    from pipeline.gold.build import GOLD_ASSETS, moved_inputs

    @dg.sensor(name="gold_promotion_sensor", minimum_interval_seconds=SENSOR_INTERVAL_S,
               target=[gold_key(n) for n in GOLD_ASSETS], default_status=dg.DefaultSensorStatus.RUNNING,
               description="Launches exactly the Gold assets whose Silver input watermarks moved since their last "
                           "successful build (ops.gold_builds).")
    def gold_promotion_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        try:
            with Warehouse(settings.warehouse_path).reader() as conn:
                moved = moved_inputs(conn)
        except (WarehouseBusy, WarehouseMissing) as exc:
            return dg.SkipReason(f"watermarks not read, will retry next tick: {exc}")
        if not moved:
            return dg.SkipReason("no Gold input watermark moved since the last successful builds")
        names = sorted(moved)
        digest = hashlib.sha256("\n".join(f"{n}:{moved[n]}" for n in names).encode()).hexdigest()[:16]
        work = f"gold:{digest}"
        key = work_run_key(context.instance, work)
        if key is None:
            return dg.SkipReason(f"a run for the moved Gold inputs ({', '.join(names)}) is queued, running or done")
        for name in names:
            context.log.info(f"gold/{name}: {moved[name]}")
        return dg.SensorResult(run_requests=[dg.RunRequest(
            run_key=key, asset_selection=[gold_key(n) for n in names],
            tags={WORK_TAG: work, "pipeline/trigger": "gold_promotion_sensor"})])

    return gold_promotion_sensor
