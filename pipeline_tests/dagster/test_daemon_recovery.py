"""A run launched by a sensor under the Dagster daemon whose process is killed: the code server fails the run,
run monitoring frees the pool slot its step held, and run retries launch the work again, which then succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from dagster._core.instance.ref import InstanceRef

from pipeline.keymap import load_keymap
from pipeline.orchestration.assets import bronze_key
from pipeline.settings import PROJECT_ROOT, load_settings
from pipeline.warehouse.lake import DUCKDB_POOL
from pipeline_tests.dagster_dev import dagster_dev, process_tree, wait_for

pytestmark = pytest.mark.slow

PARENT_RUN_TAG = "dagster/parent_run_id"


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The run worker's pid: the first engine event of the run that names one (the process that started it)."""
    for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        pid = record.dagster_event.event_specific_data.metadata.get("pid")
        if pid is not None:
            return int(pid.value)
    return None


def test_a_killed_sensor_launched_run_frees_its_slot_and_is_launched_again(tmp_path: Path) -> None:
    data, home = tmp_path / "data", tmp_path / "dagster_home"
    env = {
        **os.environ,
        "PIPELINE_DATA_DIR": str(data),
        "DAGSTER_HOME": str(home),
        "PIPELINE_AS_OF": "2026-11-20",
        "PIPELINE_TICKERS": "AAPL",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    env.pop("FMP_API_KEY", None)
    keymap = load_keymap(load_settings(env).keymap_path)
    global_bronze = ",".join(bronze_key(e).to_user_string() for e in keymap.global_entries())
    # Bronze files waiting for Silver; this also installs the project's dagster.yaml in the home
    subprocess.run(
        [str(Path(sys.executable).parent / "pipeline"), "run", "--select", global_bronze],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    config = yaml.safe_load((home / "dagster.yaml").read_text())
    assert config == yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    assert config["run_monitoring"]["enabled"] and config["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    assert config["run_retries"]["enabled"] and config["run_retries"]["max_retries"] >= 1
    # the same settings with shorter waits, so the test does not sit through the production intervals
    config["run_monitoring"].update(poll_interval_seconds=3, free_slots_after_run_end_seconds=3)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))

    warehouse = data / "warehouse.duckdb"
    with dagster_dev(tmp_path, env), dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:

        def sensor_runs() -> list[dg.DagsterRun]:
            return [r for r in instance.get_runs() if "pipeline/trigger" in r.tags]

        wait_for(sensor_runs, 180, "no sensor launched a run within 180 s")
        # hold the warehouse's write lock: the first step to take the duckdb_writer slot then waits for the file
        lock = wait_for(lambda: _try_lock(warehouse), 60, "could not lock the warehouse")
        try:

            def slot_holder() -> str | None:
                claimed = instance.event_log_storage.get_concurrency_info(DUCKDB_POOL).claimed_slots
                return claimed[0].run_id if claimed else None

            run_id = wait_for(slot_holder, 180, "no sensor-launched step took the duckdb_writer slot")
            killed_step = instance.event_log_storage.get_concurrency_info(DUCKDB_POOL).claimed_slots[0].step_key
            run = instance.get_run_by_id(run_id)
            assert run.tags.get("pipeline/trigger") in ("silver_promotion_sensor", "gold_promotion_sensor")

            def holds_slot() -> bool:
                info = instance.event_log_storage.get_concurrency_info(DUCKDB_POOL)
                return any(c.run_id == run.run_id for c in info.claimed_slots)

            pid = wait_for(lambda: run_worker_pid(instance, run.run_id), 30, "no run worker pid in the event log")
            for p in reversed(process_tree(pid)):  # the run worker and its step processes, as an OOM kill would
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass

            wait_for(
                lambda: instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE,
                60,
                "the killed run was not marked failed",
            )
            # run monitoring frees the slot the dead run's step held
            wait_for(lambda: not holds_slot(), 90, "the killed run's duckdb_writer slot was never freed")
        finally:
            lock.close()

        def retry_succeeded() -> dg.DagsterRun | None:
            retries = instance.get_runs(filters=dg.RunsFilter(tags={PARENT_RUN_TAG: run.run_id}))
            return next((r for r in retries if r.status == dg.DagsterRunStatus.SUCCESS), None)

        retry = wait_for(retry_succeeded, 240, "the killed run was not re-executed to success", every_s=2)
        done = {r.step_key for r in instance.all_logs(retry.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)}
        assert killed_step in done  # the work the killed step was doing was done by the retry
        assert not holds_slot()


def _try_lock(path: Path) -> duckdb.DuckDBPyConnection | None:
    try:
        return duckdb.connect(str(path))
    except duckdb.IOException:
        return None
