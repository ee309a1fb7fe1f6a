"""Gold assets: one per Gold table (`gold/<name>`), each depending on the Silver tables its model reads.
The build is `pipeline.gold.build.build`; the models, with their descriptions, are `pipeline.gold.models`."""

# no `from __future__ import annotations`: Dagster reads the step's parameter annotations at runtime
from collections.abc import Sequence

import dagster as dg
from dagster import AssetExecutionContext

from pipeline.assets.keys import code_version, gold_freshness, gold_key, silver_key
from pipeline.assets.metadata import gold_column_schema, gold_metadata
from pipeline.assets.steps import close_abandoned, interrupts_end_the_step, record_failure
from pipeline.gold.build import GOLD_ASSETS, build
from pipeline.gold.chart import chart
from pipeline.gold.models import MODELS, resolve
from pipeline.keymap.model import Keymap
from pipeline.ops.runs import record_step
from pipeline.pools import pool_slot, pool_tags
from pipeline.settings import Settings
from pipeline.silver.schema import ensure_table
from pipeline.warehouse.lake import writer_pool
from pipeline.warehouse.resource import WarehouseResource


def build_gold_asset(name: str, inputs: Sequence[str], keymap: Keymap, settings: Settings) -> dg.AssetsDefinition:
    model = MODELS[name]

    @dg.asset(
        key=gold_key(name),
        deps=[silver_key(t) for t in inputs],
        group_name="gold",
        freshness_policy=gold_freshness(keymap, inputs),
        kinds={"duckdb"},
        tags={"layer": "gold", "grain": "ticker" if model.per_ticker else "global"},
        op_tags=pool_tags(writer_pool(settings.uses_lake)),
        code_version=code_version(model),
        description=(model.description or name) + f"\n\nReads: {', '.join('silver.' + t for t in inputs)}.",
        metadata={
            "dagster/table_name": f"warehouse.gold.{name}",
            "dagster/column_schema": gold_column_schema(model),
            "key": dg.MetadataValue.json(list(model.key)),
        },
    )
    def _gold(context: AssetExecutionContext, warehouse: WarehouseResource):
        with (
            interrupts_end_the_step(),
            pool_slot(context, lambda dead: close_abandoned(warehouse, dead)),
            warehouse.connect() as conn,
        ):
            for table in inputs:  # a Silver input that was never promoted reads as empty, not as an error
                ensure_table(conn, keymap.tables()[table])
            try:
                result = build(conn, name, context.run_id)
            except Exception as exc:
                record_failure(warehouse, context, f"gold.{name}: {type(exc).__name__}: {exc}")
                raise
            record_step(conn, context.run_id, job=context.job_name, rows=result.rows_written)
            context.log.info(
                f"gold.{name}: {result.mode} build, {result.rows_written} row(s) written ({result.reason})"
            )
            derived = result.report.get("bars_derived_from_full", 0)
            if derived:
                context.log.warning(
                    f"gold.{name}: {derived} bar(s) derived from /full and the splits (no as-traded "
                    "row from /non-split-adjusted: the plan lacks it or the day is missing there)"
                )
            yield dg.MaterializeResult(metadata=gold_metadata(result, resolve(conn, name), chart(conn, name)))

    return _gold


def build_gold_assets(keymap: Keymap, settings: Settings) -> list[dg.AssetsDefinition]:
    return [build_gold_asset(name, inputs, keymap, settings) for name, inputs in GOLD_ASSETS.items()]
