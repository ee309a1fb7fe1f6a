"""What every asset step shares: the tickers of its partitions, their materializations, and the failure it leaves
in ops.runs."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager

import dagster as dg
from dagster import AssetExecutionContext
from dagster._core.execution.context.metadata_logging import AssetMetadataHandle, OutputMetadataAccumulator

from pipeline import stopping
from pipeline.ops.runs import fail_abandoned, record_failed_step
from pipeline.orchestration.warehouse_resource import WarehouseResource
from pipeline.warehouse.connection import Warehouse

BACKFILL_TAG = "dagster/backfill"
log = logging.getLogger("pipeline.assets")


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


@contextmanager
def interrupts_end_the_step() -> Iterator[None]:
    """A step interrupted (SIGTERM or SIGINT, a run terminated from the UI) fails for good: with a retry policy,
    Dagster would otherwise start it again after the policy's delay, long after the run was asked to stop. A step
    that starts after the signal fails at once: Dagster's in-process executor goes on with the run's other steps
    after one was interrupted."""
    why = stopping.reason()
    if why is not None:
        raise dg.Failure(description=f"{why}; the step is not started", allow_retries=False)
    try:
        yield
    except (dg.DagsterExecutionInterruptedError, stopping.Stopped, KeyboardInterrupt) as exc:
        why = stopping.reason() or "interrupted: the run was asked to stop"
        raise dg.Failure(description=f"{why}; the step is not retried", allow_retries=False) from exc


def close_abandoned(warehouse: WarehouseResource | Warehouse, run_ids: list[str]) -> None:
    """Mark failed in ops.runs the runs a step found dead while it waited for its pool slot
    (`pipeline.orchestration.pools`). Bookkeeping only: when the warehouse cannot be written, the step goes on and says
    so."""
    try:
        with warehouse.transaction() as conn:
            fail_abandoned(conn, run_ids)
    except Exception as exc:  # noqa: BLE001 - the step's own work matters more than this row
        log.warning("could not mark the dead run(s) %s failed in ops.runs: %s", ", ".join(run_ids), exc)


def materialize_partitions(
    context: AssetExecutionContext,
    key: dg.AssetKey,
    counts: Mapping[str, Mapping[str, int]],
    changed: Collection[str],
    metadata: Mapping[str, object] | None = None,
) -> dg.MaterializeResult | None:
    """Materialize `key` for the tickers of this step with their own counts; the result to yield, if any.

    `counts` holds every ticker of the step's range (zeros where nothing happened); `changed` those for which
    something was due or written. `metadata` is about the asset as a whole, the same for every ticker.

    Dagster materializes a step's output for every partition of the run's range. That is what happens (each
    partition carrying its own counts) when every ticker changed, when the run belongs to a backfill (Dagster
    counts a requested partition left unmaterialized as failed) or when the run also materializes assets
    downstream of `key` (Dagster would skip them). Otherwise the output is skipped, and only the changed
    tickers are materialized, one event each: a daily run where a few of 500 tickers were due records a few.
    """
    tickers = list(context.partition_keys)
    graph = context.job_def.asset_layer
    downstream_in_run = graph.asset_graph.get(key).child_keys & graph.selected_asset_keys
    if len(changed) == len(tickers) or BACKFILL_TAG in context.run.tags or downstream_in_run:
        _add_partition_metadata(context, key, {t: counts.get(t, {}) for t in tickers})
        return dg.MaterializeResult(asset_key=key, metadata=dict(metadata or {}))
    for ticker in tickers:
        if ticker in changed:
            own = {**(metadata or {}), **counts.get(ticker, {})}
            context.log_event(dg.AssetMaterialization(key, partition=ticker, metadata=own))
    return None


def _add_partition_metadata(
    context: AssetExecutionContext, key: dg.AssetKey, by_partition: Mapping[str, Mapping[str, object]]
) -> None:
    """`context.add_asset_metadata(metadata, asset_key=key, partition_key=p)` for every partition, at once.

    The public call, once per partition, costs 12 s for the 2,500 partitions of a 500-ticker step: each call
    re-reads the dynamic partitions from the instance to validate its key, and copies (and type-checks) the
    metadata of every earlier call. The keys here are the step's own partition keys, so this adds them to the
    step's metadata accumulator in one copy; what Dagster then does with them is unchanged.
    """
    step = context.get_step_execution_context()
    accumulator = step._metadata_accumulator  # noqa: SLF001 - see the docstring
    merged = dict(accumulator.per_output_metadata)
    for partition, metadata in by_partition.items():
        handle = AssetMetadataHandle(asset_key=key, partition_key=partition)
        merged[handle] = {**merged.get(handle, {}), **metadata}
    step._metadata_accumulator = OutputMetadataAccumulator(per_output_metadata=merged)  # noqa: SLF001
