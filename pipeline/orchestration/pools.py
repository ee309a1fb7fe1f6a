"""Pool slots, claimed inside the step: a step waits for its slot by sleeping, and takes back the slots of dead runs.

Steps that fetch share the pool `fmp_api`, steps that write the DuckDB file the pool `duckdb_writer` (limit 1 each,
`dagster.yaml`). Dagster's own pool wait (`pool=` on an asset) never sleeps in Dagster 1.13: both executors poll
the claim in a busy loop (a waiting run burns a whole core), and the slot of a run whose process was killed stays
claimed until a daemon notices, which never happens for `pipeline run`. So each step names its pool in an op tag
(`POOL_TAG`), and `pool_slot` claims the slot through the instance's concurrency storage (the same tables, so the
UI's pools page shows the claims and the `dagster.yaml` limits apply):

- between attempts it sleeps (FIRST_SLEEP_S, growing to MAX_SLEEP_S);
- at every attempt it looks at the holders of the pool: a holder whose run has ended, or whose process on this
  host is dead (pid and start time are kept in a run tag, so a pid reused by a new process is not mistaken for
  it), loses its slot at once; a run whose own process died is marked failed;
- the slot is freed when the step ends, however it ends (a pending claim too, when the wait is interrupted).

A holder on another host is judged by its run only: Dagster's run monitoring (`dagster.yaml`) fails runs whose
worker died, and their slots are then freed here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg

from pipeline.process import ProcessId

POOL_TAG = "pipeline/pool"  # op tag: the pool whose slot the step holds while it runs
RUN_PROCESS_TAG = "pipeline/process"  # run tag of `pipeline run`: the process that executes the whole run
HOLDER_TAG = "pipeline/slot-holder/"  # + step key, run tag: the process of the step that claims a slot
LEGACY_PID_TAG, LEGACY_HOST_TAG = "pipeline/pid", "pipeline/host"  # runs started before RUN_PROCESS_TAG
FIRST_SLEEP_S = 0.25
MAX_SLEEP_S = 2.0
SLEEP_GROWTH = 1.5
PRIORITY_TAG = "dagster/priority"


def pool_tags(pool: str | None) -> dict[str, str]:
    """The op tags of a step that holds a slot of `pool` while it runs (none when `pool` is None)."""
    return {POOL_TAG: pool} if pool else {}


def run_process(run: dg.DagsterRun) -> ProcessId | None:
    """The process that executes `run` as a whole, when one process does (`pipeline run`), else None."""
    tags = run.tags
    if RUN_PROCESS_TAG in tags:
        return ProcessId.parse(tags[RUN_PROCESS_TAG])
    if tags.get(LEGACY_PID_TAG, "").isdigit() and LEGACY_HOST_TAG in tags:
        return ProcessId(tags[LEGACY_HOST_TAG], int(tags[LEGACY_PID_TAG]))
    return None


def close_if_dead(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Mark `run` failed and free all its slots when it is unfinished and the process executing it is dead;
    returns why, else None. Only runs executed by one known process (`pipeline run`) qualify: the daemon's run
    monitoring closes the runs it launched."""
    process = run_process(run)
    if run.is_finished or process is None or not process.is_dead():
        return None
    why = f"abandoned: the process that ran it (pid {process.pid} on {process.host}) died before the run finished"
    instance.report_run_failed(run, why)
    instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    return why


@dataclass
class Reclaimed:
    """What one look at a pool's holders took back: a message per freed slot, and the runs it marked failed."""

    messages: list[str] = field(default_factory=list)
    closed_runs: list[str] = field(default_factory=list)


def reclaim_dead_holders(instance: dg.DagsterInstance, pool: str) -> Reclaimed:
    """Free the slots of `pool` held (or assigned) to steps that can no longer use them.

    A slot is taken back when its run is gone or has ended, or when the process of its step is known dead. A
    holder whose process runs (or may run: another host, nothing recorded) keeps its slot.
    """
    storage = instance.event_log_storage
    info = storage.get_concurrency_info(pool)
    holders = {(s.run_id, s.step_key) for s in info.claimed_slots}
    holders |= {(p.run_id, p.step_key) for p in info.pending_steps if p.assigned_timestamp is not None}
    if not holders:
        return Reclaimed()
    runs = {r.run_id: r for r in instance.get_runs(filters=dg.RunsFilter(run_ids=sorted({r for r, _ in holders})))}
    out = Reclaimed()
    for run_id, step in sorted(holders):
        run = runs.get(run_id)
        why = _why_released(run, step)
        if why is None:
            continue
        storage.free_concurrency_slot_for_step(run_id, step)
        out.messages.append(f"pool {pool}: took back the slot of run {run_id[:8]} (step {step}): {why}")
        if run is not None and close_if_dead(instance, run):
            out.closed_runs.append(run_id)
            out.messages.append(f"run {run_id[:8]} marked failed: the process that ran it died before it finished")
    return out


def _why_released(run: dg.DagsterRun | None, step: str) -> str | None:
    """Why the slot of (`run`, `step`) can be taken back, or None while its holder may still use it."""
    if run is None:
        return "its run no longer exists"
    step_process = ProcessId.parse(run.tags.get(HOLDER_TAG + step))
    holder = step_process or run_process(run)
    if holder is not None and holder.is_dead():
        return f"its process (pid {holder.pid} on {holder.host}) died"
    if not run.is_finished:
        return None
    if step_process is not None and step_process.host == ProcessId.current().host:
        return None  # the step's process still runs, although its run was closed (its run worker was killed)
    return f"its run ended ({run.status.value})"


def _ensure_limit(storage, pool: str) -> bool:
    """Create the pool's limit from the instance default (as Dagster's executor does); whether it has one."""
    default = storage.get_pool_config().default_pool_limit
    limits = {p.name: p for p in storage.get_pool_limits()}
    known = limits.get(pool)
    if (known is None and default is not None) or (known is not None and known.from_default and known.limit != default):
        storage.initialize_concurrency_limit_to_default(pool)
        known = next((p for p in storage.get_pool_limits() if p.name == pool), None)
    return known is not None


@contextmanager
def pool_slot(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
    on_runs_closed: Callable[[list[str]], None] | None = None,
) -> Iterator[None]:
    """Hold a slot of the step's pool (its POOL_TAG op tag) for the block; without a pool, just run the block.

    `on_runs_closed` receives the ids of dead runs this wait marked failed, once the slot is held (the asset steps
    close their `ops.runs` rows with it)."""
    op = context.op_execution_context
    pool = op.op_def.tags.get(POOL_TAG)
    storage = context.instance.event_log_storage
    if not pool or not storage.supports_global_concurrency_limits or not _ensure_limit(storage, pool):
        yield
        return
    run, step = context.run, op.get_step_execution_context().step.key
    # A slot this step still holds is an earlier attempt's, whose process died: one step never runs twice at once.
    storage.free_concurrency_slot_for_step(run.run_id, step)
    context.instance.add_run_tags(run.run_id, {HOLDER_TAG + step: str(ProcessId.current())})
    try:
        closed = _wait_for_slot(context.instance, pool, run, step, op.log)
        if closed and on_runs_closed is not None:
            on_runs_closed(closed)
        yield
    finally:
        storage.free_concurrency_slot_for_step(run.run_id, step)


def _wait_for_slot(
    instance: dg.DagsterInstance, pool: str, run: dg.DagsterRun, step: str, log: dg.DagsterLogManager
) -> list[str]:
    """Claim the slot, sleeping between attempts and taking back dead holders' slots; returns the runs closed."""
    storage = instance.event_log_storage
    priority = _priority(run)
    sleep_s, waited_since, closed = FIRST_SLEEP_S, None, []
    while True:
        if storage.claim_concurrency_slot(pool, run.run_id, step, priority).is_claimed:
            if waited_since is not None:
                log.info(f"pool {pool}: slot claimed after {time.monotonic() - waited_since:.1f} s")
            return closed
        reclaimed = reclaim_dead_holders(instance, pool)
        for message in reclaimed.messages:
            log.warning(message)
        closed += reclaimed.closed_runs
        if reclaimed.messages:
            continue  # a slot was freed: claim again at once
        if waited_since is None:
            waited_since = time.monotonic()
            log.info(f"pool {pool}: waiting for a slot ({_holders(storage, pool)})")
        time.sleep(sleep_s)
        sleep_s = min(MAX_SLEEP_S, sleep_s * SLEEP_GROWTH)


def _priority(run: dg.DagsterRun) -> int:
    """The run's `dagster/priority` tag, as Dagster's executor reads it (0 when absent or not a number)."""
    try:
        return int(run.tags.get(PRIORITY_TAG, "0"))
    except ValueError:
        return 0


def _holders(storage, pool: str) -> str:
    info = storage.get_concurrency_info(pool)
    held = [f"run {s.run_id[:8]} step {s.step_key}" for s in info.claimed_slots]
    return f"limit {info.limit}, held by " + (", ".join(held) if held else "nobody yet")
