"""In-process Dagster runs of the CLI (`pipeline run`, `pipeline check`), and what the CLI reads from them.

Every run carries the process that runs it (`pipeline.orchestration.pools.RUN_PROCESS_TAG`: host, pid and start time),
so that a run waiting for a pool slot, or the next `pipeline run`, recognises a run whose process died. A run's checks
are read against its plan, not only from the evaluations it produced: Dagster skips a check step whose asset step
yielded no output, and counting only the evaluations would report such a run as "0/0 check(s) passed".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg

from pipeline.orchestration.pools import RUN_PROCESS_TAG
from pipeline.process import ProcessId

# What started a checks-only run: `pipeline check`, or `pipeline run` for the checks a phase's run did not evaluate.
TRIGGER_TAG = "pipeline/trigger"


# How a step that evaluated blocking checks itself (`pipeline.orchestration.assets.unskipped_checks`) says they failed:
# the checks are reported as failed checks, so the summaries leave this step failure out, as they leave out a failed
# check step.
BLOCKING_CHECKS_FAILED = "blocking check(s) failed: "


def check_label(key: dg.AssetCheckKey) -> str:
    """How the CLI names a check: `silver/fmp_price_eod key_unique`."""
    return f"{key.asset_key.to_user_string()} {key.name}"


@dataclass(frozen=True)
class CheckResult:
    """One asset check evaluation, as the run output and the summaries report it."""

    key: dg.AssetCheckKey
    passed: bool
    severity: str  # "ERROR" blocks what is downstream, "WARN" only reports
    description: str = ""

    @property
    def name(self) -> str:
        return check_label(self.key)

    def describe(self) -> str:
        """One line naming a failed check and what it found."""
        found = " ".join((self.description or "no description").split())
        return f"failed {self.severity} check {self.name}: {found[:300]}"


def materialize(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: Sequence[dg.AssetKey] | dg.AssetSelection,
    tags: Mapping[str, str],
    log_level: str = "INFO",
) -> dg.ExecuteInProcessResult:
    """One in-process Dagster run of the selection (assets with their checks, or checks alone)."""
    return dg.materialize(
        [*(defs.assets or []), *(defs.asset_checks or [])],
        instance=instance,
        resources=defs.resources,
        selection=selection,
        tags={**tags, RUN_PROCESS_TAG: str(ProcessId.current())},
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
    )


def run_checks(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: Sequence[dg.AssetCheckKey] | dg.AssetSelection,
    trigger: str,
    log_level: str = "INFO",
) -> dg.ExecuteInProcessResult:
    """A checks-only run: the selected checks against the current warehouse, nothing materialized.

    What `pipeline check` runs, and what `pipeline run` runs for the checks a phase's run did not evaluate.
    """
    if not isinstance(selection, dg.AssetSelection):
        selection = dg.AssetSelection.checks(*selection)
    return materialize(defs, instance, selection, {TRIGGER_TAG: trigger}, log_level)


def check_results(result: dg.ExecuteInProcessResult) -> list[CheckResult]:
    return [
        CheckResult(e.asset_check_key, e.passed, e.severity.value, e.description or "")
        for e in result.get_asset_check_evaluations()
    ]


def failure_reason(event: dg.DagsterEvent) -> str:
    """Why a step failed: the description of the `dg.Failure` it raised, else the user's own error under Dagster's
    wrappers ("RuntimeError: ..."), never "Execution of step ... failed"."""
    data = event.step_failure_data
    if data is not None and data.user_failure_data is not None and data.user_failure_data.description:
        return " ".join(str(data.user_failure_data.description).split())
    error = data.error if data is not None else None
    while error is not None and error.cause is not None:
        error = error.cause
    return " ".join(error.message.split()) if error else str(event.message)


def step_failure_text(event: dg.DagsterEvent) -> str:
    """`<step>: <why>`, as `pipeline run` reports a failed step."""
    return f"{event.step_key}: {failure_reason(event)}"


def crashed_steps(result: dg.ExecuteInProcessResult) -> list[str]:
    """Why steps failed, one line each, leaving out a blocking check that failed (it is reported as the check)."""
    out = []
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        if error is not None and error.cls_name == "DagsterAssetCheckFailedError":
            continue
        if failure_reason(event).startswith(BLOCKING_CHECKS_FAILED):
            continue
        out.append(f"step {event.step_key} failed: {failure_reason(event)}")
    return out


def checks_not_evaluated(
    result: dg.ExecuteInProcessResult, instance: dg.DagsterInstance, checks: Sequence[CheckResult]
) -> list[dg.AssetCheckKey]:
    """The checks the run planned (Dagster records a planned event for each when it creates the run) that it never
    evaluated."""
    records = instance.get_records_for_run(
        result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
    ).records
    planned = {r.event_log_entry.dagster_event.asset_check_planned_data.asset_check_key for r in records}
    return sorted(planned - {c.key for c in checks}, key=check_label)
