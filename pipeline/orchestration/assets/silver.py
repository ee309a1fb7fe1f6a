"""Silver assets: one per table (`silver/<table>`), in two multi-assets (per-ticker tables partitioned by
`tickers`, global tables unpartitioned). The promotion is `pipeline.silver.promote.promote_waiting`."""

# no `from __future__ import annotations`: Dagster reads the step's parameter annotations at runtime
from collections.abc import Sequence

import dagster as dg
from dagster import AssetExecutionContext

from pipeline.keymap.model import Keymap
from pipeline.ops.runs import record_step
from pipeline.orchestration.assets.keys import (
    bronze_keys_by_table,
    code_version,
    daily_freshness,
    entry_fingerprint,
    entry_tags,
    layer_group,
    silver_groups,
    silver_key,
    silver_table_description,
)
from pipeline.orchestration.assets.metadata import silver_column_schema, silver_metadata, table_preview
from pipeline.orchestration.assets.steps import (
    close_abandoned,
    interrupts_end_the_step,
    materialize_partitions,
    partition_tickers,
    record_failure,
)
from pipeline.orchestration.assets.unskipped_checks import evaluate_skipped_checks, fail_on_blocking
from pipeline.orchestration.partitions import TICKER_BACKFILL_POLICY, tickers_partitions
from pipeline.orchestration.pools import pool_slot, pool_tags
from pipeline.orchestration.warehouse_resource import WarehouseResource
from pipeline.settings import Settings
from pipeline.silver.promote import TICKER_COUNTS, promote_waiting
from pipeline.silver.schema import qualified, row_count
from pipeline.warehouse.lake import writer_pool


def build_silver_asset(
    name: str, keymap: Keymap, tables: Sequence[str], settings: Settings, per_ticker: bool
) -> dg.AssetsDefinition:
    deps = bronze_keys_by_table(keymap)
    specs = []
    for table in tables:
        entries = keymap.entries_for_table(table)
        spec = keymap.tables()[table]
        domains = sorted({e.domain for e in entries})
        specs.append(
            dg.AssetSpec(
                silver_key(table),
                deps=deps[table],
                group_name=layer_group("silver", domains[0]),
                freshness_policy=daily_freshness(entries),
                description=silver_table_description(keymap, table),
                kinds={"duckdb"},
                tags={"layer": "silver", **entry_tags(entries[0])},
                skippable=True,
                code_version=code_version(spec, *[entry_fingerprint(e) for e in entries]),
                metadata={
                    "dagster/table_name": f"warehouse.silver.{table}",
                    "dagster/column_schema": silver_column_schema(spec, entries),
                    "key": dg.MetadataValue.json(list(spec.key)),
                    "docs_url": dg.MetadataValue.url(entries[0].docs_url),
                },
            )
        )
    by_key = {silver_key(t): t for t in tables}

    def _promote(context: AssetExecutionContext, warehouse: WarehouseResource):
        """Promote the selected tables, as the step does once it holds its pool slot."""
        from pipeline.orchestration.checks import (
            silver_check_defs,  # pipeline.orchestration.checks imports this package
        )

        tickers = partition_tickers(context)
        failed_checks: list[str] = []
        for key in sorted(context.selected_asset_keys, key=str):
            table = by_key.get(key)
            if table is None:
                continue
            try:
                totals = promote_waiting(
                    warehouse, keymap, table, tickers, settings.bronze_location, context.run_id, context.log.info
                )
            except Exception as exc:
                record_failure(warehouse, context, f"silver.{table}: {type(exc).__name__}: {exc}")
                raise
            with warehouse.connect() as conn:
                record_step(
                    conn,
                    context.run_id,
                    job=context.job_name,
                    files=totals["files"],
                    rows=totals["inserted"] + totals["updated"],
                    errors=totals["failed_files"],
                )
                if totals["drift_fields"]:
                    context.log.warning(
                        f"silver.{table}: the API sends fields the keymap does not map: "
                        f"{', '.join(totals['drift_fields'][:20])}"
                    )
                if totals["future_dated"]:
                    context.log.warning(
                        f"silver.{table}: rejected {totals['future_dated']} row(s) dated after the New York day of "
                        "their fetch (counted per file in ops.file_ingestions.silver_future_rows)"
                    )
                if tickers is None:
                    rows = row_count(conn, table)
                    preview = table_preview(conn, qualified(table), "fetched_at DESC")
                    yield dg.MaterializeResult(
                        asset_key=key,
                        metadata=silver_metadata(
                            table, keymap.tables()[table], totals, rows, preview, keymap.entries_for_table(table)
                        ),
                    )
                    continue
            by_ticker = totals["by_ticker"]
            counts = {t: by_ticker.get(t) or dict.fromkeys(TICKER_COUNTS, 0) for t in tickers}
            changed = {t for t, c in by_ticker.items() if c["files"]}  # promote_waiting read only these tickers
            result = materialize_partitions(context, key, counts, changed)
            if result is not None:
                yield result
            else:  # Dagster skips the checks of an output left out: the step evaluates the run's checks on it
                defs = silver_check_defs(keymap, table, settings.today)
                failed_checks += evaluate_skipped_checks(context, warehouse, key, defs)
        fail_on_blocking(failed_checks)

    @dg.multi_asset(
        name=name,
        specs=specs,
        can_subset=True,
        op_tags=pool_tags(writer_pool(settings.uses_lake)),
        partitions_def=tickers_partitions if per_ticker else None,
        backfill_policy=TICKER_BACKFILL_POLICY if per_ticker else None,
    )
    def _silver(context: AssetExecutionContext, warehouse: WarehouseResource):
        with interrupts_end_the_step(), pool_slot(context, lambda dead: close_abandoned(warehouse, dead)):
            yield from _promote(context, warehouse)

    return _silver


def build_silver_assets(keymap: Keymap, settings: Settings) -> list[dg.AssetsDefinition]:
    return [
        build_silver_asset(name, keymap, tables, settings, per_ticker=name == "silver_per_ticker")
        for name, tables in silver_groups(keymap).items()
    ]
