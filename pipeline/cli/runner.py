"""Run the graph through Dagster in a few runs: global datasets, the ticker universe, per-ticker datasets, Gold.

Partitioned (per-ticker) and unpartitioned assets go in separate runs, because a run that carries a partition
range applies it to every asset in it. Per-ticker assets run as one run per chunk of tickers (a partition
range with the single-run backfill policy), never one run per ticker.

Bronze and Silver go in separate runs so that a phase with nothing to do is not launched at all: Silver runs
only when the ledger holds files waiting for the selected tables (and tickers), Gold only when a Silver input
moved since its last build. A quiet day (nothing due, nothing fetched) then costs the Bronze planning alone.
A phase skipped for lack of work is a success and says why; a phase blocked by a failure upstream is not.

Checks never skip silently: a phase's outcome compares the checks its run was to evaluate with those it did.
Dagster skips a Silver check step when the Silver step promoted nothing new (another run promoted the files
first, or only some of the run's tickers changed); those checks then run on their own against the warehouse,
and Gold waits until every check ran and the ERROR ones passed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from pipeline import stopping
from pipeline.keymap import load_keymap
from pipeline.ops import runs
from pipeline.ops.file_ingestions import PROMOTABLE
from pipeline.ops.quarantine import QuarantinedFile, quarantined_files
from pipeline.ops.reader import NoLedger, ledger_reader
from pipeline.orchestration.assets.bronze import UNREACHABLE_FAILURE
from pipeline.orchestration.definitions import build_definitions
from pipeline.orchestration.partitions import contiguous_ranges, partition_range_tags, tickers_partitions
from pipeline.orchestration.pools import close_if_dead
from pipeline.orchestration.runs import (
    CheckResult,
    check_label,
    check_results,
    checks_not_evaluated,
    crashed_steps,
    materialize,
    run_checks,
    step_failure_text,
)
from pipeline.settings import Settings
from pipeline.universe import SILVER_UNIVERSE, resolve_universe
from pipeline.warehouse.connection import Warehouse, WarehouseBusy, WarehouseMissing

# The trigger tag of the checks-only run of the checks a phase's run did not evaluate.
CHECKS_NOT_RUN_TRIGGER = "pipeline run: checks that did not run"
_UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dataclass
class PhaseResult:
    name: str
    run_id: str
    success: bool
    materialized: int
    checks: list[CheckResult]  # evaluated in the phase's run, or in its checks-only run
    failure: str | None = None
    checks_not_run: list[str] = field(default_factory=list)  # checks the run was to evaluate, never evaluated
    unreachable: bool = False  # a Bronze step found the FMP API unreachable: nothing more is worth fetching


@dataclass
class RunOutcome:
    phases: list[PhaseResult] = field(default_factory=list)
    tickers: list[str] = field(default_factory=list)
    universe_reason: str = ""
    skipped: list[str] = field(default_factory=list)  # phases not run because something upstream failed
    not_needed: list[tuple[str, str]] = field(default_factory=list)  # (phase, why) not run: nothing to do
    deferred: int = 0  # requests the request budget deferred to the next run (pipeline.bronze.budget)

    @property
    def success(self) -> bool:
        return (
            all(p.success for p in self.phases)
            and not self.failed_error_checks
            and not self.checks_not_run
            and not self.skipped
        )

    @property
    def checks(self) -> list[CheckResult]:
        return [c for p in self.phases for c in p.checks]

    @property
    def failed_error_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed and c.severity == "ERROR"]

    @property
    def checks_not_run(self) -> list[str]:
        return [name for p in self.phases for name in p.checks_not_run]

    @property
    def failure_summary(self) -> str:
        """What failed, in one paragraph: failed phases with their first failure, ERROR checks, skipped phases."""
        parts = [f"{p.name} (run {p.run_id[:8]}): {p.failure or 'failed'}" for p in self.phases if not p.success]
        parts += [f"ERROR check {c.name} failed" for c in self.failed_error_checks]
        parts += [f"check {name} did not run" for name in self.checks_not_run]
        parts += [f"{name} skipped, blocked by the failures above" for name in self.skipped]
        return "; ".join(parts) or "nothing failed"


def _execute(
    name: str,
    defs: dg.Definitions,
    keys: list[dg.AssetKey],
    instance: dg.DagsterInstance,
    tags: dict[str, str] | None,
    echo: Callable[[str], None],
) -> PhaseResult:
    """One run of the phase's assets and their checks; the checks it did not evaluate then run on their own.

    Dagster skips a check step when the asset step it follows yields no output, which a Silver step does when
    it finds nothing new for its tickers (another run promoted the files first, or only some tickers changed).
    The phase's outcome counts the checks its run was to evaluate, not only those it got.
    """
    stopping.raise_if_requested()  # no new phase once SIGTERM/SIGINT came
    echo(f"==> {name}: {len(keys)} asset(s)")
    result = materialize(defs, instance, keys, tags or {})
    checks = check_results(result)
    failure, unreachable = None, False
    if not result.success:
        failed = [ev for ev in result.all_events if ev.is_step_failure]
        failure = "; ".join(step_failure_text(ev) for ev in failed)[:2000] or "run failed"
        unreachable = any(_user_failure_metadata(ev).get("stopped") == UNREACHABLE_FAILURE["stopped"] for ev in failed)
    mats = len(result.get_asset_materialization_events())
    missing = checks_not_evaluated(result, instance, checks)
    skipped_steps = sorted(ev.step_key for ev in result.get_step_skipped_events() if ev.step_key)
    why = f"Dagster skipped step {', '.join(skipped_steps)}" if skipped_steps else "their step did not evaluate them"
    echo(
        f"    {'ok' if result.success else 'FAILED'}: run {result.run_id[:8]}, {mats} materialization(s), "
        f"{_passed(checks)} check(s) passed" + (f"; {len(missing)} check(s) did not run ({why})" if missing else "")
    )
    if failure:
        echo(f"    {failure}")
    for check in checks:
        if not check.passed:
            echo(f"    {check.describe()}")
    stopping.raise_if_requested()  # the signal came while Dagster ran the phase: its step was interrupted
    phase = PhaseResult(name, result.run_id, result.success, mats, checks, failure, unreachable=unreachable)
    if missing:
        _run_missing_checks(phase, defs, instance, missing, echo)
    return phase


def _run_missing_checks(
    phase: PhaseResult,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    missing: list[dg.AssetCheckKey],
    echo: Callable[[str], None],
) -> None:
    """Run the checks a phase's run skipped on their own; those that still do not run stay in `checks_not_run`
    (the outcome fails and Gold waits for them)."""
    echo(f"    running those {len(missing)} check(s) on their own, against the warehouse")
    result = run_checks(defs, instance, missing, CHECKS_NOT_RUN_TRIGGER)
    checks = check_results(result)
    echo(
        f"    {'ok' if result.success else 'FAILED'}: checks-only run {result.run_id[:8]}, "
        f"{_passed(checks)} check(s) passed"
    )
    for message in crashed_steps(result):
        echo(f"    {message[:500]}")
    for check in checks:
        if not check.passed:
            echo(f"    {check.describe()}")
    phase.checks.extend(checks)
    got = {c.key for c in checks}
    phase.checks_not_run = [check_label(k) for k in missing if k not in got]
    if phase.checks_not_run:
        echo(f"    NOT RUN: {len(phase.checks_not_run)} check(s): {', '.join(phase.checks_not_run[:5])}")


def _passed(checks: list[CheckResult]) -> str:
    return f"{sum(1 for c in checks if c.passed)}/{len(checks)}"


def _user_failure_metadata(event: dg.DagsterEvent) -> dict[str, object]:
    """The metadata of the dg.Failure a step raised (plain values), {} for any other failure."""
    data = event.step_failure_data.user_failure_data if event.step_failure_data else None
    return {k: getattr(v, "value", v) for k, v in (data.metadata if data else {}).items()}


def reclaim_abandoned_runs(settings: Settings, instance: dg.DagsterInstance, echo: Callable[[str], None]) -> list[str]:
    """Close out runs of `pipeline run` whose process died (kill -9, OOM); returns their run ids.

    A run waiting for a pool slot takes back the slots of such runs itself (`pipeline.orchestration.pools`); this closes
    the ones nobody waited for, so that they do not stay STARTED in the instance (with their slots) and 'running' in
    `ops.runs`.
    """
    dead = [
        record.dagster_run
        for record in instance.get_run_records(filters=dg.RunsFilter(statuses=_UNFINISHED))
        if close_if_dead(instance, record.dagster_run)
    ]
    if dead and Warehouse.from_settings(settings).exists():
        with Warehouse.from_settings(settings).transaction() as conn:
            runs.fail_abandoned(conn, [r.run_id for r in dead])
    if dead:
        echo(
            f"closed {len(dead)} run(s) left unfinished by a process that died: {', '.join(r.run_id[:8] for r in dead)}"
        )
    return [r.run_id for r in dead]


def refuse_other_source(settings: Settings) -> None:
    """Raise `runs.SourceMismatch` before anything runs when the warehouse holds the other source's data.

    The Bronze step checks again where it writes (every launch path passes there); this early check gives
    `pipeline run` and `pipeline demo` one clear line instead of a failed run. A warehouse that does not exist
    yet, has no ledger or is busy is left to that check."""
    try:
        with ledger_reader(settings) as conn:
            runs.check_source(conn, settings.source_mode, settings.warehouse_label)
    except (WarehouseBusy, WarehouseMissing, NoLedger):
        return


def universe_for_run(settings: Settings) -> tuple[list[str], str]:
    """The run's tickers; this process is the writer, so it waits for the warehouse when it is busy."""
    try:
        return resolve_universe(settings, Warehouse.from_settings(settings).connect)
    except WarehouseBusy as exc:
        return [], f"{SILVER_UNIVERSE}, which could not be read ({exc})"


def run_pipeline(
    settings: Settings,
    *,
    select: str | None = None,
    echo: Callable[[str], None] = print,
    instance: dg.DagsterInstance | None = None,
) -> RunOutcome:
    keymap = load_keymap(settings.keymap_path)
    defs = build_definitions(settings, keymap)
    graph = defs.resolve_asset_graph()
    instance = instance or dg.DagsterInstance.get()
    all_keys = graph.get_all_asset_keys()
    wanted = dg.AssetSelection.from_coercible(select.split(",")).resolve(graph) if select else set(all_keys)
    wanted = {k for k in wanted if k in all_keys}
    if not wanted:
        raise SystemExit(f"pipeline: --select {select!r} matches no asset")

    def partitioned(key: dg.AssetKey) -> bool:
        return graph.get(key).partitions_def is not None

    global_keys = sorted((k for k in wanted if k.path[0] != "gold" and not partitioned(k)), key=str)
    ticker_keys = sorted((k for k in wanted if partitioned(k)), key=str)
    gold_keys = sorted((k for k in wanted if k.path[0] == "gold"), key=str)

    reclaim_abandoned_runs(settings, instance, echo)
    outcome = RunOutcome()
    echo(f"pipeline run: source {settings.source_label}; as of {settings.today()}; data in {settings.data_dir}")
    if global_keys:
        _run_fetch_then_promote(settings, defs, instance, outcome, "global datasets", global_keys, None, echo)

    if ticker_keys and _unreachable(outcome):
        echo("==> per-ticker datasets: skipped, the FMP API is unreachable (see above)")
        outcome.skipped.append("per-ticker datasets")
    elif ticker_keys:
        tickers, why = universe_for_run(settings)
        outcome.tickers, outcome.universe_reason = tickers, why
        if not tickers:
            echo(
                "==> per-ticker datasets: skipped, the universe is empty (set PIPELINE_TICKERS or load the stock list)"
            )
        else:
            have = set(instance.get_dynamic_partitions(tickers_partitions.name))
            new = [t for t in tickers if t not in have]
            if new:
                instance.add_dynamic_partitions(tickers_partitions.name, new)
            echo(f"    universe: {len(tickers)} ticker(s) from {why}" + (f", {len(new)} new" if new else ""))
            _run_fetch_then_promote(
                settings, defs, instance, outcome, "per-ticker datasets", ticker_keys, tickers, echo
            )

    if gold_keys:
        # Gold reads Silver: a failed step, a failed ERROR check or a check that did not run upstream blocks it.
        blocked = [p.name for p in outcome.phases if not p.success]
        blocked += [c.name for c in outcome.failed_error_checks]
        if outcome.checks_not_run:
            names = outcome.checks_not_run
            blocked.append(
                f"{len(names)} check(s) that did not run ({', '.join(names[:3])}{', ...' * (len(names) > 3)})"
            )
        if blocked:
            echo(f"==> gold: skipped, blocked by failures upstream: {'; '.join(blocked[:5])}")
            outcome.skipped.append("gold")
        else:
            moved = gold_inputs_moved(settings, [k.path[-1] for k in gold_keys])
            if moved:
                echo(f"    gold inputs moved: {_describe_moved(moved)}")
                outcome.phases.append(_execute("gold", defs, gold_keys, instance, None, echo))
            else:
                _not_needed(outcome, "gold", "no Silver input moved since the last successful build", echo)
    return outcome


def _run_fetch_then_promote(
    settings: Settings,
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    outcome: RunOutcome,
    name: str,
    keys: list[dg.AssetKey],
    tickers: list[str] | None,
    echo: Callable[[str], None],
) -> None:
    """The Bronze run(s) of one scope, then its Silver run(s) if the ledger holds files waiting for them.

    `tickers` is None for the global (unpartitioned) scope; otherwise the runs go per chunk of tickers.
    Silver runs after a failed Bronze run too: the files the other Bronze steps wrote are promoted, and the
    failed Bronze run already makes the outcome a failure.
    """
    bronze = [k for k in keys if k.path[0] == "bronze"]
    silver = [k for k in keys if k.path[0] != "bronze"]
    if bronze:
        first_phase = len(outcome.phases)
        _execute_chunks(defs, instance, outcome, f"{name}: bronze", bronze, tickers, echo)
        _report_deferred(settings, outcome, [p.run_id for p in outcome.phases[first_phase:]], echo)
    if not silver:
        return
    tables = [k.path[-1] for k in silver]
    waiting = silver_files_waiting(settings, tables, tickers)
    if not waiting:
        _not_needed(outcome, f"{name}: silver", f"no Bronze file is waiting for {_table_list(tables)}", echo)
        return
    echo(f"    waiting for Silver: {', '.join(f'{n} file(s) for {t}' for t, n in sorted(waiting.items()))}")
    # only the tables with work; a table without waiting files would promote nothing
    chosen = [k for k in silver if k.path[-1] in waiting]
    first_phase = len(outcome.phases)
    _execute_chunks(defs, instance, outcome, f"{name}: silver", chosen, tickers, echo)
    for q in quarantined_by(settings, [p.run_id for p in outcome.phases[first_phase:]]):
        echo(
            f"    quarantined {q.bronze_path}: {q.reason} (kept on disk, never promoted; its window is due for a "
            "refetch: see `pipeline status`)"
        )


def _execute_chunks(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    outcome: RunOutcome,
    label: str,
    keys: list[dg.AssetKey],
    tickers: list[str] | None,
    echo: Callable[[str], None],
) -> None:
    """One run for an unpartitioned scope; one run per contiguous chunk of wanted tickers otherwise."""
    if tickers is None:
        outcome.phases.append(_execute(label, defs, keys, instance, None, echo))
        return
    # A range spans partitions in their stored order: only ranges made of wanted tickers are sent.
    chunks = contiguous_ranges(instance.get_dynamic_partitions(tickers_partitions.name), set(tickers))
    for i, (first, last) in enumerate(chunks, 1):
        name = f"{label} ({first}..{last})" + (f" [{i}/{len(chunks)}]" if len(chunks) > 1 else "")
        outcome.phases.append(_execute(name, defs, keys, instance, partition_range_tags(first, last), echo))


def _report_deferred(settings: Settings, outcome: RunOutcome, run_ids: list[str], echo: Callable[[str], None]) -> None:
    """Say what the request budget deferred in these Bronze runs (each run's line names the datasets and why)."""
    warehouse = Warehouse.from_settings(settings)
    if not warehouse.exists():
        return
    with warehouse.connect() as conn:  # this process is the writer; wait if busy
        for _run_id, count, message in runs.deferred_runs(conn, run_ids):
            outcome.deferred += count
            echo(f"    {message}")


def _unreachable(outcome: RunOutcome) -> bool:
    return any(p.unreachable for p in outcome.phases)


def _not_needed(outcome: RunOutcome, phase: str, why: str, echo: Callable[[str], None]) -> None:
    echo(f"==> {phase}: skipped, nothing to do: {why}")
    outcome.not_needed.append((phase, why))


def _table_list(tables: list[str]) -> str:
    shown = ", ".join(f"silver.{t}" for t in tables[:4])
    return shown + (f" and {len(tables) - 4} more table(s)" if len(tables) > 4 else "")


WAITING_SQL = f"""
    SELECT silver_table, count(*) AS files
    FROM ops.file_ingestions
    WHERE {PROMOTABLE}
      AND silver_table IN (SELECT unnest($tables)) AND ($all_tickers OR ticker IN (SELECT unnest($tickers)))
    GROUP BY ALL
"""
"""Files `promotable_files` would offer for these tables and tickers (failed promotions are retried, so they
count; quarantined files never do), per table."""


def silver_files_waiting(settings: Settings, tables: list[str], tickers: list[str] | None) -> dict[str, int]:
    """Silver table -> number of Bronze files waiting to be promoted into it (for these tickers)."""
    warehouse = Warehouse.from_settings(settings)
    if not tables or not warehouse.exists():
        return {}
    with warehouse.connect() as conn:  # this process is the writer; wait if busy
        rows = conn.execute(
            WAITING_SQL, {"tables": tables, "all_tickers": tickers is None, "tickers": list(tickers or [])}
        ).fetchall()
    return dict(rows)


def quarantined_by(settings: Settings, run_ids: list[str]) -> list[QuarantinedFile]:
    """The Bronze files the Silver runs `run_ids` quarantined (to name them in the run's output)."""
    if not run_ids:
        return []
    with Warehouse.from_settings(settings).connect() as conn:  # this process is the writer; wait if busy
        return quarantined_files(conn, run_ids=run_ids, unresolved_only=False)


def gold_inputs_moved(settings: Settings, names: list[str]) -> dict[str, str]:
    """Gold asset -> why it needs a build (never built, or which Silver inputs moved), for the chosen assets."""
    from pipeline.gold.build import moved_inputs

    warehouse = Warehouse.from_settings(settings)
    if not warehouse.exists():
        return {n: "never built successfully" for n in names}
    with warehouse.connect() as conn:
        moved = moved_inputs(conn)
    return {n: moved[n] for n in names if n in moved}


def _describe_moved(moved: dict[str, str]) -> str:
    items = [f"{name} ({why})" for name, why in sorted(moved.items())]
    text = "; ".join(items[:3]) + (f"; and {len(items) - 3} more" if len(items) > 3 else "")
    return text[:400]
