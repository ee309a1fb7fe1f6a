"""What every asset step shares: the tickers of its partitions, and the failure it leaves in ops.runs."""

from __future__ import annotations

from dagster import AssetExecutionContext

from pipeline.ops.runs import record_failed_step
from pipeline.warehouse.resource import WarehouseResource


def partition_tickers(context: AssetExecutionContext) -> list[str] | None:
    """The tickers of this run, or None for an unpartitioned asset (guards against the partition-tag leak)."""
    if context.assets_def.partitions_def is None:
        return None
    return list(context.partition_keys)


def record_failure(warehouse: WarehouseResource, context: AssetExecutionContext, message: str) -> None:
    """Leave a failed step in ops.runs (what `pipeline status` shows), without hiding the original error."""
    try:
        with warehouse.connect() as conn:
            record_failed_step(conn, context.run_id, job=context.job_name, message=message)
    except Exception as exc:  # noqa: BLE001 - the step's own error is the one to raise
        context.log.warning(f"could not record the failure in ops.runs: {exc}")
