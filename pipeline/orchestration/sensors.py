"""Sensors (names are a contract): ticker universe, Silver promotion, Gold promotion.

All three read the warehouse through a fail-fast read-only connection: while a run writes the file they skip
the tick with a reason instead of hanging past the sensor timeout, and they never migrate. They keep no cursor:
the ledger says what waits, and the tags of earlier runs (`pipeline/scope`) say whether a run for that scope is
queued or running, how many failed in a row, and so how long to wait before the next attempt (or that a person
must look first).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import dagster as dg

from pipeline.keymap.model import Keymap
from pipeline.ops import file_ingestions
from pipeline.orchestration.assets import gold_key, silver_key
from pipeline.orchestration.partitions import (
    RANGE_END,
    RANGE_START,
    covering_range,
    partition_range_tags,
    tickers_partitions,
)
from pipeline.orchestration.warehouse_resource import WarehouseResource
from pipeline.settings import Settings
from pipeline.silver.waiting import waiting_work
from pipeline.universe import resolve_universe, universe_change
from pipeline.warehouse.connection import WarehouseBusy, WarehouseMissing

SENSOR_INTERVAL_S = 30


WORK_TAG = "pipeline/work"  # the work a run does: its scope and the newest Bronze file (or Gold inputs) it covers
SCOPE_TAG = "pipeline/scope"  # what a sensor launches one run at a time: silver:global, silver:per_ticker, gold
FAILED_STATUSES = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)
ACTIVE_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
RETRY_BASE_S = 60  # wait after the first failed run of a scope; doubles with every further failure
RETRY_CAP_S = 30 * 60  # never wait longer than this between attempts
MAX_FAILURES = 5  # failed runs in a row after which the scope waits for a person ("parked")


def now() -> float:
    """The sensors' clock (tests move it instead of sleeping)."""
    return time.time()


@dataclass(frozen=True)
class ScopeState:
    """What the runs of one scope say about launching another: one at a time, backoff after failures, parking."""

    scope: str
    active_run: str | None = None  # a queued or running run of the scope
    failures: int = 0  # failed or canceled runs in a row since the scope's last success
    last_failed_run: str | None = None
    last_failure_at: float | None = None

    @property
    def parked(self) -> bool:
        return self.failures >= MAX_FAILURES

    @property
    def retry_delay_s(self) -> float:
        return 0.0 if not self.failures else min(RETRY_BASE_S * 2 ** (self.failures - 1), RETRY_CAP_S)

    def wait_s(self, at: float) -> float:
        if not self.failures or self.last_failure_at is None:
            return 0.0
        return max(0.0, self.last_failure_at + self.retry_delay_s - at)

    def run_key(self, work: str) -> str:
        """Dagster never reuses a run key, even after a failed run: a retry of failed work gets a new one."""
        return work if not self.failures else f"{work}:retry-{self.failures}"

    def blocker(self, at: float) -> str | None:
        """Why no run may be launched for this scope now, or None."""
        if self.active_run:
            return f"{self.scope}: run {self.active_run[:8]} is queued or running"
        if self.parked:
            return (
                f"{self.scope}: parked after {self.failures} failed runs in a row (last {self.last_failed_run[:8]}); "
                "fix the cause, then re-execute that run (UI: Runs -> Re-execute); its success resumes the sensor"
            )
        wait = self.wait_s(at)
        if wait > 0:
            return (
                f"{self.scope}: {self.failures} failed run(s) in a row (last {self.last_failed_run[:8]}); "
                f"retry {self.failures + 1} of {MAX_FAILURES} in {wait / 60:.1f} min"
            )
        return None


def scope_state(instance: dg.DagsterInstance, scope: str) -> ScopeState:
    records = instance.get_run_records(filters=dg.RunsFilter(tags={SCOPE_TAG: scope}), limit=MAX_FAILURES + 50)
    active = next((r.dagster_run.run_id for r in records if r.dagster_run.status in ACTIVE_STATUSES), None)
    failures, last_run, last_at = 0, None, None
    for record in records:  # newest first
        status = record.dagster_run.status
        if status in ACTIVE_STATUSES:
            continue
        if status not in FAILED_STATUSES:
            break
        failures += 1
        if last_run is None:
            last_run = record.dagster_run.run_id
            last_at = record.end_time or record.update_timestamp.timestamp()
    return ScopeState(scope, active, failures, last_run, last_at)


def scope_tags(scope: str, work: str, trigger: str) -> dict[str, str]:
    return {SCOPE_TAG: scope, WORK_TAG: work, "pipeline/trigger": trigger}


SCOPES = ("silver:global", "silver:per_ticker", "gold")


def automation_report(instance: dg.DagsterInstance) -> list[str]:
    """One line per scope that waits: a queued or running run, a backoff after failures, or parked."""
    at = now()
    return [reason for scope in SCOPES if (reason := scope_state(instance, scope).blocker(at))]


def build_ticker_universe_sensor(settings: Settings) -> dg.SensorDefinition:
    @dg.sensor(
        name="ticker_universe_sensor",
        minimum_interval_seconds=300,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Keeps the `tickers` partitions equal to the universe (PIPELINE_TICKERS, the sample "
        "source, or the Silver stock list filtered by the universe settings): adds new tickers, "
        "removes tickers that left (their data and history stay; they are no longer fetched).",
    )
    def ticker_universe_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        try:
            wanted, why = resolve_universe(settings, warehouse.reader)
        except (WarehouseBusy, WarehouseMissing) as exc:
            return dg.SkipReason(f"universe not read: {exc}")
        if not wanted:
            return dg.SkipReason(f"the universe from {why} is empty: no partition added or removed")
        change = universe_change(wanted, context.instance.get_dynamic_partitions(tickers_partitions.name))
        new, gone = change.added, change.removed
        if change.refused:
            context.log.warning(change.refused)
        if not new and not gone:
            return dg.SkipReason(change.refused or f"the {len(wanted)} ticker(s) from {why} are the partitions")
        requests = []
        done: list[str] = []  # what the tick did, as its status line in the UI (not "returned an empty result")
        if new:
            done.append(f"added {len(new)} ticker partition(s) from {why} ({_some(new)})")
            context.log.info(f"adding {len(new)} ticker(s) from {why}: {', '.join(new[:20])}")
            requests.append(tickers_partitions.build_add_request(new))
        if gone:
            # the schedule and the sensors only launch work for partitions: a removed ticker is no longer fetched
            # or promoted. Its Bronze files, Silver and Gold rows and its run history stay; if it comes back, its
            # watermarks resume where they were.
            context.log.info(
                f"removing {len(gone)} ticker(s) that left the universe (their data stays): {', '.join(gone[:20])}"
            )
            done.append(f"removed {len(gone)} ticker partition(s) that left the universe ({_some(gone)})")
            requests.append(tickers_partitions.build_delete_request(gone))
        # No run is requested: Dagster shows the tick as skipped, with this text as what it did.
        return dg.SensorResult(dynamic_partitions_requests=requests, skip_reason="; ".join(done) + "; no run requested")

    return ticker_universe_sensor


def _some(names: list[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def build_silver_promotion_sensor(keymap: Keymap, settings: Settings) -> dg.SensorDefinition:
    per_ticker_tables = {e.silver.table for e in keymap.per_ticker_entries()}
    targets = [silver_key(t) for t in keymap.tables()]

    @dg.sensor(
        name="silver_promotion_sensor",
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        target=targets,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches Silver promotion for exactly the tables and tickers that have promotable, "
        "not yet promoted Bronze files in ops.file_ingestions, in at most one run per scope "
        "(global tables, per-ticker tables) at a time; failed runs are retried after a growing "
        f"pause (from {RETRY_BASE_S} s, at most {RETRY_CAP_S // 60} min) and after "
        f"{MAX_FAILURES} failures in a row the scope waits for a person.",
    )
    def silver_promotion_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        try:
            with warehouse.reader() as conn:
                files = file_ingestions.promotable_files(conn, tables=list(keymap.tables()))
        except (WarehouseBusy, WarehouseMissing) as exc:
            return dg.SkipReason(f"ledger not read, will retry next tick: {exc}")
        if not files:
            return dg.SkipReason("no promotable Bronze files waiting for Silver")
        at = now()
        waiting_files = waiting_work(files, per_ticker_tables)
        tables_global, tables_ticker = waiting_files.global_tables, waiting_files.ticker_tables
        requests: list[dg.RunRequest] = []
        waiting: list[str] = []
        if tables_global:
            state = scope_state(context.instance, "silver:global")
            work = f"silver:global:{max(tables_global.values())}"
            if reason := state.blocker(at):
                waiting.append(reason)
            else:
                requests.append(
                    dg.RunRequest(
                        run_key=state.run_key(work),
                        asset_selection=[silver_key(t) for t in sorted(tables_global)],
                        tags=scope_tags("silver:global", work, "silver_promotion_sensor"),
                    )
                )
        if tables_ticker:
            keys = context.instance.get_dynamic_partitions(tickers_partitions.name)
            wanted = waiting_files.tickers
            span = covering_range(keys, wanted)
            state = scope_state(context.instance, "silver:per_ticker")
            work = f"silver:per_ticker:{waiting_files.newest_ticker_file}"
            if span is None:
                waiting.append(f"files wait for tickers that are not partitions yet: {', '.join(sorted(wanted)[:10])}")
            elif reason := state.blocker(at):
                waiting.append(reason)
            else:
                requests.append(
                    dg.RunRequest(
                        run_key=state.run_key(work),
                        asset_selection=[silver_key(t) for t in sorted(tables_ticker)],
                        tags={
                            **partition_range_tags(*span),
                            **scope_tags("silver:per_ticker", work, "silver_promotion_sensor"),
                        },
                    )
                )
        for reason in waiting:
            context.log.info(f"not launched: {reason}")
        if not requests:
            return dg.SkipReason("; ".join(waiting) or "nothing to promote")
        for request in requests:  # the tick's log says what each run is for
            tables = ", ".join(k.path[-1] for k in request.asset_selection or [])
            span = request.tags.get(RANGE_START)
            scope = f" for tickers {span}..{request.tags[RANGE_END]}" if span else ""
            context.log.info(f"requested run {request.run_key}: promote {tables}{scope}")
        return dg.SensorResult(run_requests=requests)

    return silver_promotion_sensor


def gold_run_in_progress(instance: dg.DagsterInstance, names: list[str]) -> str | None:
    """Why not to launch Gold now: a queued or running run, whoever launched it (a backfill, `dg launch`, the UI),
    materializes one of these Gold tables; it builds on the same inputs. This only saves a run that would find
    nothing to do: two builds never overlap anyway, each Gold step holds the one Gold slot
    (`pipeline.orchestration.pools`)."""
    wanted = {gold_key(n) for n in names}
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE_STATUSES), limit=200):
        building = sorted(k.to_user_string() for k in (run.asset_selection or ()) if k in wanted)
        if building:
            return f"run {run.run_id[:8]} is queued or running and builds {', '.join(building[:3])}"
    return None


def build_gold_promotion_sensor(
    settings: Settings,
    blocking_checks: dict[dg.AssetKey, list[dg.AssetCheckKey]] | None = None,
) -> dg.SensorDefinition:
    """`blocking_checks`: Silver asset -> its blocking checks; Gold waits while one of them last failed."""
    from pipeline.gold.build import GOLD_ASSETS, moved_inputs
    from pipeline.orchestration.checks import failed_blocking_checks

    blocking_checks = blocking_checks or {}

    @dg.sensor(
        name="gold_promotion_sensor",
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        target=[gold_key(n) for n in GOLD_ASSETS],
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Launches exactly the Gold assets whose Silver input watermarks moved since their last "
        "successful build (ops.gold_builds), unless the latest evaluation of a blocking check "
        "on one of their Silver inputs failed.",
    )
    def gold_promotion_sensor(
        context: dg.SensorEvaluationContext, warehouse: WarehouseResource
    ) -> dg.SensorResult | dg.SkipReason:
        try:
            with warehouse.reader() as conn:
                moved = moved_inputs(conn)
        except (WarehouseBusy, WarehouseMissing) as exc:
            return dg.SkipReason(f"watermarks not read, will retry next tick: {exc}")
        if not moved:
            return dg.SkipReason("no Gold input watermark moved since the last successful builds")
        blocked: dict[str, list[str]] = {}
        for name in sorted(moved):
            keys = [k for t in GOLD_ASSETS[name] for k in blocking_checks.get(silver_key(t), [])]
            failed = failed_blocking_checks(context.instance, keys)
            if failed:
                blocked[name] = [k.to_user_string() for k in failed]
        for name, failed in blocked.items():
            context.log.warning(
                f"gold/{name} waits: blocking check(s) failed in their latest evaluation: {', '.join(failed)}"
            )
        names = sorted(n for n in moved if n not in blocked)
        if not names:
            shown = "; ".join(f"gold/{n}: {', '.join(f[:3])}" for n, f in blocked.items())
            return dg.SkipReason(
                "Gold inputs moved, but blocking checks on them failed in their latest evaluation "
                f"(fix the data, then re-run the checks): {shown}"
            )
        state = scope_state(context.instance, "gold")
        if reason := state.blocker(now()) or gold_run_in_progress(context.instance, names):
            return dg.SkipReason(f"Gold inputs moved ({', '.join(names)}), not launched: {reason}")
        promoting = [s for s in ("silver:global", "silver:per_ticker") if scope_state(context.instance, s).active_run]
        if promoting:  # build once on the promoted data, not now and again right after
            return dg.SkipReason(
                f"Gold inputs moved ({', '.join(names)}); waiting for the Silver promotion in "
                f"progress ({', '.join(promoting)})"
            )
        digest = hashlib.sha256("\n".join(f"{n}:{moved[n]}" for n in names).encode()).hexdigest()[:16]
        work = f"gold:{digest}"
        for name in names:
            context.log.info(f"gold/{name}: {moved[name]}")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=state.run_key(work),
                    asset_selection=[gold_key(n) for n in names],
                    tags=scope_tags("gold", work, "gold_promotion_sensor"),
                )
            ]
        )

    return gold_promotion_sensor
