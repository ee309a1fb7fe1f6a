"""What every asset step shares: the tickers of its partitions, their materializations, and the failure it leaves
in ops.runs."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager

import dagster as dg
from dagster import AssetExecutionContext

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


# A step that must materialize its whole range may still give each partition its own counts when only a few
# partitions changed: `context.add_asset_metadata` per partition is public but costs about 5 ms a call (it
# validates the key against the instance's dynamic partitions and copies the metadata of every earlier call),
# 12 s for the 2,500 partitions of a 500-ticker step; a range with more changed partitions carries its totals.
PER_PARTITION_METADATA_MAX = 50


def materialize_partitions(
    context: AssetExecutionContext,
    key: dg.AssetKey,
    counts: Mapping[str, Mapping[str, int]],
    changed: Collection[str],
    metadata: Mapping[str, object] | None = None,
) -> dg.MaterializeResult | None:
    """Materialize `key` for the partitions of this step whose data changed; the result to yield, if any.

    `counts` holds every ticker of the step's range (zeros where nothing happened); `changed` those for which
    something was due or written. `metadata` is about the asset as a whole, the same for every ticker.

    A partition's status in the UI means "has data": it is materialized when its data changed, and is otherwise
    left as it was (no event: the step's log line counts the unchanged ones), so the event log of a quiet day
    grows with what changed. Each changed partition gets its own event with its own counts.

    Dagster materializes a step's output for every partition of the run's range, all or none. The output is
    needed when the run belongs to a backfill (Dagster counts a requested partition left unmaterialized as
    failed) or materializes assets downstream of `key` (Dagster skips them when the output is missing). Then the
    whole range is materialized, provided every partition in it has data: it changed now or was materialized
    before (a quiet backfill re-materializes, with `range_tickers_changed` 0, and does not fail). A partition that never
    had data is not marked materialized: only the changed partitions are, the others are named in the log, the
    backfill shows them failed and steps downstream in the run are skipped.
    """
    tickers = list(context.partition_keys)
    changed = [t for t in tickers if t in set(changed)]
    # named for the range, so that a partition without counts of its own does not show the range's as its own
    totals = {f"range_{name}": sum(c.get(name, 0) for c in counts.values()) for name in _count_names(counts)}
    summary = {**(metadata or {}), "range_tickers": len(tickers), "range_tickers_changed": len(changed)}
    if len(changed) == len(tickers):
        return _materialize_range(context, key, counts, changed, {**summary, **totals})
    if _range_needed(context, key):
        unchanged = [t for t in tickers if t not in set(changed)]
        had_data = context.instance.get_materialized_partitions(key) if unchanged else set()
        never = [t for t in unchanged if t not in had_data]
        if not never:
            return _materialize_range(context, key, counts, changed, {**summary, **totals})
        context.log.warning(
            f"{key.to_user_string()}: {len(never)} partition(s) never had data and nothing came for them now, so "
            f"they are not marked materialized ({', '.join(never[:10])}{', ...' if len(never) > 10 else ''}); "
            f"{len(changed)} changed partition(s) are"
        )
    for ticker in changed:
        own = {**(metadata or {}), **counts.get(ticker, {})}
        context.log_event(dg.AssetMaterialization(key, partition=ticker, metadata=own))
    return None


def _range_needed(context: AssetExecutionContext, key: dg.AssetKey) -> bool:
    """Whether Dagster needs this step's output for the whole range: a backfill run, or assets downstream of `key`
    in the same run."""
    if BACKFILL_TAG in context.run.tags:
        return True
    graph = context.job_def.asset_layer
    return bool(graph.asset_graph.get(key).child_keys & graph.selected_asset_keys)


def _materialize_range(
    context: AssetExecutionContext,
    key: dg.AssetKey,
    counts: Mapping[str, Mapping[str, int]],
    changed: list[str],
    metadata: Mapping[str, object],
) -> dg.MaterializeResult:
    """The output for every partition of the range, with the step's totals; each changed partition its own counts
    when there are few of them (see PER_PARTITION_METADATA_MAX)."""
    if len(changed) <= PER_PARTITION_METADATA_MAX:
        for ticker in changed:
            context.add_asset_metadata(dict(counts.get(ticker, {})), asset_key=key, partition_key=ticker)
    return dg.MaterializeResult(asset_key=key, metadata=dict(metadata))


def _count_names(counts: Mapping[str, Mapping[str, int]]) -> list[str]:
    names: dict[str, None] = {}
    for c in counts.values():
        names.update(dict.fromkeys(k for k, v in c.items() if isinstance(v, int)))
    return list(names)
