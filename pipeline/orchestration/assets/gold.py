"""Gold assets: one per Gold table (`gold/<name>`), each depending on the Silver tables its model reads.
The build is `pipeline.gold.build.build`; the models, with their descriptions, are `pipeline.gold.models`."""

# no `from __future__ import annotations`: Dagster reads the step's parameter annotations at runtime
import logging
from collections.abc import Sequence

import dagster as dg
from dagster import AssetExecutionContext

from pipeline.gold.build import GOLD_ASSETS, build
from pipeline.gold.chart import chart
from pipeline.gold.completeness import SHOWN, describe
from pipeline.gold.inputs import GoldInputError, check_sql, missing_inputs
from pipeline.gold.models import MODELS, resolve
from pipeline.keymap.model import Keymap
from pipeline.ops.runs import record_step
from pipeline.orchestration.assets.gate import blocking_input_checks, refuse_if_blocked
from pipeline.orchestration.assets.keys import code_version, gold_freshness, gold_key, silver_key
from pipeline.orchestration.assets.metadata import gold_column_schema, gold_metadata
from pipeline.orchestration.assets.steps import close_abandoned, interrupts_end_the_step, record_failure
from pipeline.orchestration.pools import pool_slot, pool_tags
from pipeline.orchestration.warehouse_resource import WarehouseResource
from pipeline.settings import Settings
from pipeline.silver.schema import ensure_table
from pipeline.warehouse.lake import gold_pool

log = logging.getLogger("pipeline.assets")


def build_gold_asset(name: str, inputs: Sequence[str], keymap: Keymap, settings: Settings) -> dg.AssetsDefinition:
    model = MODELS[name]
    gate = blocking_input_checks(keymap, settings, inputs)

    @dg.asset(
        key=gold_key(name),
        deps=[silver_key(t) for t in inputs],
        group_name="gold",
        freshness_policy=gold_freshness(keymap, inputs),
        kinds={"duckdb"},
        tags={"layer": "gold", "grain": "ticker" if model.per_ticker else "global"},
        # one Gold build at a time, whoever launched it: the DuckDB writer's slot, or on a lake the `gold` pool's
        op_tags=pool_tags(gold_pool(settings.uses_lake)),
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
        ):
            try:  # once the slot is held: no check can fail between the look and the build
                refuse_if_blocked(context, gate)
            except dg.Failure as exc:
                record_failure(warehouse, context, exc.description or "refused")
                raise
            yield from _build(context, warehouse, name, inputs, keymap)

    return _gold


def _build(context: AssetExecutionContext, warehouse: WarehouseResource, name: str, inputs, keymap: Keymap):
    """Build the table (the step holds its slot and passed the gate) and yield its materialization."""
    lacking = missing_inputs(MODELS[name], keymap.tables())
    if lacking:
        raise GoldInputError(lacking)
    with warehouse.connect() as conn:
        for table in inputs:  # a Silver input that was never promoted reads as empty, not as an error
            ensure_table(conn, keymap.tables()[table])
        try:
            result = build(conn, name, context.run_id)
        except Exception as exc:
            record_failure(warehouse, context, f"gold.{name}: {type(exc).__name__}: {exc}")
            raise
        record_step(conn, context.run_id, job=context.job_name, rows=result.rows_written)
        context.log.info(f"gold.{name}: {result.mode} build, {result.rows_written} row(s) written ({result.reason})")
        if result.incomplete:
            context.log.warning(f"gold.{name}: built the complete tickers only; {describe(result.incomplete)}")
        derived = result.report.get("bars_derived_from_full", 0)
        if derived:
            context.log.warning(
                f"gold.{name}: {derived} bar(s) derived from /full and the splits (no as-traded "
                "row from /non-split-adjusted: the plan lacks it or the day is missing there)"
            )
        metadata = gold_metadata(result, resolve(conn, name), chart(conn, name))
        yield dg.MaterializeResult(metadata={**metadata, **_incomplete_metadata(result.incomplete)})


def _incomplete_metadata(incomplete: dict[str, str]) -> dict[str, object]:
    """The tickers a build left out because their inputs are incomplete (the first SHOWN of them, and how many)."""
    shown = dict(sorted(incomplete.items())[:SHOWN])
    return {"incomplete_tickers": len(incomplete), "incomplete": dg.MetadataValue.json(shown)}


def build_gold_assets(keymap: Keymap, settings: Settings) -> list[dg.AssetsDefinition]:
    check_sql(MODELS.values())  # a model whose SQL reads other tables than it declares fails loading
    for model in MODELS.values():
        lacking = missing_inputs(model, keymap.tables())
        if lacking:
            log.warning(f"{lacking}: its Gold step will refuse to build")
    return [build_gold_asset(name, inputs, keymap, settings) for name, inputs in GOLD_ASSETS.items()]
