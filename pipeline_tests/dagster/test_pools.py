"""Pool slots claimed in the step (`pipeline.orchestration.pools`): a waiting step sleeps, takes back the slot of a
holder that can no longer use it (its process died, its pid was reused, its run ended), and leaves a live holder alone.

Real Dagster runs on a real instance with the project's pool limit (1); the holders are runs written into the
instance with the run tags a real holder leaves, and slots claimed through the instance's concurrency storage.
The killed `pipeline run` itself is `system/test_concurrency.py::test_a_run_waiting_for_the_slot_of_a_killed_run_
sleeps_then_reclaims_it`.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from pipeline.orchestration.pools import HOLDER_TAG, RUN_PROCESS_TAG, pool_slot, pool_tags, reclaim_dead_holders
from pipeline.process import ProcessId, start_ticks

POOL = "test_pool"
STEP = "holder_step"
RELEASE_AFTER_S = 2.0
WAIT_CPU_LIMIT_S = 0.5  # CPU of the waiting step's thread over RELEASE_AFTER_S: sleeping (a spin burns all of it)
RECLAIM_DEADLINE_S = 3.0


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    overrides = {"concurrency": {"pools": {"default_limit": 1, "granularity": "op"}}}
    with dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path)) as inst:
        inst.event_log_storage.initialize_concurrency_limit_to_default(POOL)  # as the first claim of a pool does
        yield inst


def dead_process() -> ProcessId:
    """The identity of a process that ran on this host and has exited (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    identity = ProcessId(socket.gethostname(), proc.pid, start_ticks(proc.pid))
    proc.kill()
    proc.wait()
    return identity


def add_holder(
    instance: dg.DagsterInstance,
    tags: dict[str, str],
    status: dg.DagsterRunStatus = dg.DagsterRunStatus.STARTED,
) -> str:
    """A run in the instance whose step STEP holds the pool's slot."""
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name="holder_job", run_id=run_id, status=status, tags=tags))
    assert instance.event_log_storage.claim_concurrency_slot(POOL, run_id, STEP).is_claimed
    return run_id


def waiting_asset(seen: dict, closed: list[str]) -> dg.AssetsDefinition:
    @dg.asset(op_tags=pool_tags(POOL))
    def waits(context) -> None:  # no annotation: this module has postponed annotations
        started, cpu = time.monotonic(), time.thread_time()
        with pool_slot(context, closed.extend):
            seen["claimed_at"] = time.monotonic()
            seen["waited_s"] = seen["claimed_at"] - started
            seen["cpu_s"] = time.thread_time() - cpu
            info = context.instance.event_log_storage.get_concurrency_info(POOL)
            seen["holders"] = [(s.run_id, s.step_key) for s in info.claimed_slots]
            seen["run_id"] = context.run_id

    return waits


def claimed(instance: dg.DagsterInstance) -> list[tuple[str, str]]:
    return [(s.run_id, s.step_key) for s in instance.event_log_storage.get_concurrency_info(POOL).claimed_slots]


def test_a_waiting_step_sleeps_until_a_live_holder_frees_its_slot(instance: dg.DagsterInstance) -> None:
    holder = add_holder(instance, {HOLDER_TAG + STEP: str(ProcessId.current())})  # alive: this very process
    released: list[float] = []

    def let_go() -> None:
        released.append(time.monotonic())
        instance.event_log_storage.free_concurrency_slot_for_step(holder, STEP)

    release = threading.Timer(RELEASE_AFTER_S, let_go)
    release.start()
    seen: dict = {}
    try:
        assert dg.materialize([waiting_asset(seen, [])], instance=instance).success
    finally:
        release.cancel()
    print(f"waited {seen['waited_s']:.2f} s, {seen['cpu_s']:.3f} s CPU")
    assert seen["claimed_at"] >= released[0]  # the live holder kept its slot until it let go
    assert seen["cpu_s"] < WAIT_CPU_LIMIT_S
    assert seen["holders"] == [(seen["run_id"], "waits")]  # the UI's pools page shows the claim
    assert claimed(instance) == []  # freed when the step ended
    assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.STARTED


def test_the_slot_of_a_dead_pipeline_run_is_taken_back_and_the_run_closed(instance: dg.DagsterInstance) -> None:
    gone = dead_process()
    holder = add_holder(instance, {RUN_PROCESS_TAG: str(gone), HOLDER_TAG + STEP: str(gone)})
    seen: dict = {}
    closed: list[str] = []
    started = time.monotonic()
    assert dg.materialize([waiting_asset(seen, closed)], instance=instance).success
    assert time.monotonic() - started < RECLAIM_DEADLINE_S + 5  # the whole in-process run, Dagster's cost included
    assert seen["waited_s"] < RECLAIM_DEADLINE_S
    run = instance.get_run_by_id(holder)
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert closed == [holder]  # handed to the step, which closes the run's ops.runs row
    assert claimed(instance) == []


def test_a_pid_reused_by_another_process_is_not_taken_for_the_holder(instance: dg.DagsterInstance) -> None:
    me = ProcessId.current()
    assert me.started, "this test needs /proc"
    reused = ProcessId(me.host, me.pid, str(int(me.started) - 1))  # same pid, started at another time
    holder = add_holder(instance, {HOLDER_TAG + STEP: str(reused)})
    reclaimed = reclaim_dead_holders(instance, POOL)
    assert claimed(instance) == []
    assert f"pid {me.pid}" in reclaimed.messages[0] and "died" in reclaimed.messages[0]
    # a run executed by the daemon (no process of its own recorded) is left to Dagster's run monitoring
    assert instance.get_run_by_id(holder).status == dg.DagsterRunStatus.STARTED


def test_which_holders_keep_their_slot(instance: dg.DagsterInstance) -> None:
    storage = instance.event_log_storage
    storage.set_concurrency_slots(POOL, 4)
    me = ProcessId.current()
    alive = add_holder(instance, {HOLDER_TAG + STEP: str(me)})
    elsewhere = add_holder(instance, {HOLDER_TAG + STEP: str(ProcessId("another-host", 1, "5"))})
    unknown = add_holder(instance, {})  # nothing recorded: a step of an older version, or a lost tag
    ended = add_holder(instance, {}, status=dg.DagsterRunStatus.SUCCESS)
    reclaimed = reclaim_dead_holders(instance, POOL)
    assert sorted(claimed(instance)) == sorted([(alive, STEP), (elsewhere, STEP), (unknown, STEP)])
    assert reclaimed.closed_runs == []
    assert reclaimed.messages == [
        f"pool {POOL}: took back the slot of run {ended[:8]} (step {STEP}): its run ended (SUCCESS)"
    ]
