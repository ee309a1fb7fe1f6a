"""Checks that Dagster would skip: evaluated in the Silver step itself, so no check of a run is skipped silently.

Why: a Silver step materializes only the tickers whose data changed, and yields no output at all when none did (a
`dg launch` of a Silver asset on a day with nothing new, most sensor runs). Dagster then skips the check step of that
asset ("skipped dependencies") and the run succeeds: the checks the user launched never ran, and a blocking check's
latest evaluation stays whatever it was. So when the step leaves an asset's output out while the run plans checks on
it, the step evaluates those checks itself (the same functions as the check step, on the current warehouse) and logs
their evaluations, which the UI shows as the run's check results. A blocking (ERROR) check that fails fails the step,
as it fails the check step in a run that materialized something.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import dagster as dg

from pipeline.orchestration.runs import BLOCKING_CHECKS_FAILED
from pipeline.orchestration.warehouse_resource import WarehouseResource
from pipeline.stopping import Stopped

if TYPE_CHECKING:
    from pipeline.orchestration.checks import CheckDef


def planned_checks(context: dg.AssetExecutionContext, key: dg.AssetKey) -> set[dg.AssetCheckKey]:
    """The checks on `key` this run planned (Dagster records a planned event for each when it creates the run)."""
    records = context.instance.get_records_for_run(
        context.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
    ).records
    planned = {r.event_log_entry.dagster_event.asset_check_planned_data.asset_check_key for r in records}
    return {k for k in planned if k.asset_key == key}


def evaluate_skipped_checks(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, key: dg.AssetKey, defs: Sequence[CheckDef]
) -> list[str]:
    """Evaluate the checks on `key` this run planned, in the step whose output for `key` Dagster sees as skipped.

    Logs one evaluation per check; returns a line per failed blocking check (the caller fails the step with them).
    """
    from pipeline.orchestration.checks import evaluate  # pipeline.orchestration.checks imports this package

    selected = planned_checks(context, key)
    if not selected:
        return []
    context.log.info(
        f"{key.to_user_string()}: nothing new to materialize, so Dagster skips its check step; the step evaluates "
        f"the {len(selected)} planned check(s) itself"
    )
    failed = []
    try:
        with warehouse.reader() as conn:
            results = list(evaluate(conn, key, list(defs), selected))
    except (Stopped, dg.DagsterExecutionInterruptedError):
        raise
    except Exception as exc:  # noqa: BLE001 - the promotion is committed; the checks stay planned, with a reason
        context.log.warning(
            f"{key.to_user_string()}: the {len(selected)} planned check(s) were not evaluated: "
            f"{type(exc).__name__}: {exc}; run them on their own (`pipeline check`, or the asset's Checks tab)"
        )
        return []
    for result in results:
        context.log_event(
            dg.AssetCheckEvaluation(
                asset_key=key,
                check_name=result.check_name,
                passed=result.passed,
                metadata=result.metadata,
                severity=result.severity,
                description=result.description,
            )
        )
        if not result.passed and result.severity == dg.AssetCheckSeverity.ERROR:
            failed.append(f"{key.to_user_string()} {result.check_name}: {result.description}")
    return failed


def fail_on_blocking(failed: Sequence[str]) -> None:
    """Fail the step when a blocking check it evaluated failed, naming the checks (a retry reads the same data)."""
    if failed:
        shown = "; ".join(" ".join(f.split())[:300] for f in failed[:5])
        raise dg.Failure(description=f"{BLOCKING_CHECKS_FAILED}{shown}", allow_retries=False)
