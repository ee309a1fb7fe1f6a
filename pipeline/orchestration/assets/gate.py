"""The gate of every Gold build: no Gold table is built while a blocking check on one of its Silver inputs failed.

Why in the step: a Gold table is launched from many places (a UI asset backfill, `gold_promotion_sensor`, the
schedule, `pipeline run`, `dg launch`, a re-execution). Dagster skips a Gold step only when the failed check ran in
the same run; an asset backfill runs Silver and Gold in separate runs, so there the Gold run would start and build
on the data the check had just refused. The step itself reads the latest evaluation of each blocking (ERROR) check on
its inputs through the instance's public API and fails, naming the check and the asset, before it touches the
warehouse. A refused step fails its run, so the run and the backfill show a failure, never "Succeeded".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from pipeline.keymap.model import Keymap
from pipeline.settings import Settings

from .keys import silver_key


@dataclass(frozen=True)
class FailedCheck:
    """A blocking check whose latest evaluation failed: which, in which run, and what it found."""

    key: dg.AssetCheckKey
    run_id: str
    description: str

    def describe(self) -> str:
        found = " ".join((self.description or "no description").split())[:200]
        return f"{self.key.asset_key.to_user_string()} {self.key.name} (run {self.run_id[:8]}: {found})"


def blocking_input_checks(keymap: Keymap, settings: Settings, inputs: Sequence[str]) -> list[dg.AssetCheckKey]:
    """The blocking (ERROR) checks on the Silver tables `inputs`, as `pipeline.orchestration.checks` declares them."""
    from pipeline.orchestration.checks import silver_check_defs  # pipeline.orchestration.checks imports this package

    return [
        dg.AssetCheckKey(silver_key(table), d.name)
        for table in inputs
        if table in keymap.tables()  # an input the keymap lacks has no checks (its Gold step refuses, gold/inputs.py)
        for d in silver_check_defs(keymap, table, settings.today)
        if d.blocking
    ]


def latest_failures(instance: dg.DagsterInstance, keys: Sequence[dg.AssetCheckKey]) -> list[FailedCheck]:
    """The checks among `keys` whose latest evaluation failed, read through the public
    `DagsterInstance.get_latest_asset_check_evaluation_record`.

    A check that is only planned in its latest record (its run has not evaluated it yet, or skipped it) neither
    blocks nor clears: the evaluation before it decides. A check never evaluated does not block."""
    out = []
    for key in keys:
        record = instance.get_latest_asset_check_evaluation_record(key)
        if record is not None and _evaluation(record) is None:
            record = _latest_evaluated(instance, key)
        evaluation = _evaluation(record)
        if evaluation is None or evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        out.append(FailedCheck(key, record.run_id, evaluation.description or ""))
    return out


def _latest_evaluated(instance: dg.DagsterInstance, key: dg.AssetCheckKey, look_back: int = 20):
    """The newest of the check's last `look_back` records that holds an evaluation, or None."""
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=look_back)
    return next((r for r in history if _evaluation(r) is not None), None)


def _evaluation(record) -> dg.AssetCheckEvaluation | None:
    """The evaluation a check record holds; None for a record that is only planned (its event is the plan)."""
    evaluation = record.evaluation if record is not None else None
    return evaluation if isinstance(evaluation, dg.AssetCheckEvaluation) else None


def refusal(asset: dg.AssetKey, failed: Sequence[FailedCheck]) -> str:
    """Why the Gold step refuses to build: the checks and assets, and what to do."""
    listed = "; ".join(f.describe() for f in failed[:5])
    more = f" (+{len(failed) - 5} more)" if len(failed) > 5 else ""
    return (
        f"{asset.to_user_string()} not built: blocking check(s) on its Silver inputs failed in their latest "
        f"evaluation: {listed}{more}. Fix the data, run the checks again (UI: the asset's Checks tab, or "
        "`pipeline check`), then launch Gold again"
    )


def refuse_if_blocked(context: dg.AssetExecutionContext, keys: Sequence[dg.AssetCheckKey]) -> None:
    """Fail the step (for good: a retry would read the same evaluations) when a blocking input check failed."""
    failed = latest_failures(context.instance, keys)
    if failed:
        raise dg.Failure(description=refusal(context.asset_key, failed), allow_retries=False)
