"""The project's Dagster instance: stock Dagster (no instance class, no storage of its own), with the environment
of pipeline/orchestration/dagster_env.py that plans each asset of a ticker range once."""

# no `from __future__ import annotations`: Dagster reads the step's parameter annotations at runtime
import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml

from pipeline.cli import ui
from pipeline.orchestration.dagster_env import EVENT_LOG_ENV, apply_event_log_env
from pipeline.settings import PROJECT_ROOT

PARTITIONS = [f"T{i:02d}" for i in range(1, 21)]
parts = dg.DynamicPartitionsDefinition(name="tickers")


@dg.multi_asset(
    specs=[dg.AssetSpec("prices", skippable=True), dg.AssetSpec("profile", skippable=True)],
    partitions_def=parts,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
)
def both(context: dg.AssetExecutionContext):
    for key in sorted(context.selected_asset_keys, key=str):
        for ticker in context.partition_keys:
            context.add_asset_metadata({"rows": int(ticker[1:])}, asset_key=key, partition_key=ticker)
        yield dg.MaterializeResult(asset_key=key)


@dg.asset_check(asset="prices", blocking=True)
def prices_ok() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


def open_instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home))


def run_range(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("tickers", PARTITIONS)
    tags = {"dagster/asset_partition_range_start": PARTITIONS[0], "dagster/asset_partition_range_end": PARTITIONS[-1]}
    result = dg.materialize([both, prices_ok], instance=instance, tags=tags)
    assert result.success
    return result


def planned_events(instance: dg.DagsterInstance, run_id: str) -> int:
    return sum(
        1
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    )


@pytest.fixture()
def home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def test_the_project_instance_is_stock_dagster(home):
    """No instance class and no storage of the project's own: any Dagster reads the instance, any upgrade keeps it."""
    for config in (home / "dagster.yaml", *(PROJECT_ROOT / "deploy").glob("dagster-*.yaml")):
        assert "instance_class" not in yaml.safe_load(config.read_text()), config
    with open_instance(home) as instance:
        assert type(instance) is dg.DagsterInstance
        assert sorted(run_range(instance).get_asset_materialization_events()[0].asset_key.path) == ["prices"]


def test_with_the_projects_environment_a_range_run_plans_each_asset_once(home, monkeypatch):
    """What `pipeline run` and `pipeline ui` (so the daemon's backfills and sensor runs) set: 2 planned events for
    2 assets x 20 partitions instead of 40; the materializations are still one per partition."""
    for name in EVENT_LOG_ENV:
        monkeypatch.delenv(name, raising=False)
    with open_instance(home) as instance:
        per_partition = run_range(instance)
        assert planned_events(instance, per_partition.run_id) == 2 * len(PARTITIONS)
        apply_event_log_env()  # restored by monkeypatch after the test
        for name in EVENT_LOG_ENV:
            monkeypatch.setenv(name, os.environ[name])
        aggregated = run_range(instance)
        assert planned_events(instance, aggregated.run_id) == 2
        assert len(aggregated.get_asset_materialization_events()) == 2 * len(PARTITIONS)
        assert sorted(instance.get_materialized_partitions(dg.AssetKey("profile"))) == PARTITIONS


def test_every_process_the_project_starts_gets_the_event_log_environment(monkeypatch):
    """`pipeline run` sets it for itself, `pipeline ui` for `dg dev` (its webserver and daemon create the UI's,
    the sensors' and the backfills' runs); a value set by hand wins."""
    from pipeline.cli import commands as cli

    assert apply_event_log_env({"DAGSTER_EVENT_BATCH_SIZE": "5"}) == {**EVENT_LOG_ENV, "DAGSTER_EVENT_BATCH_SIZE": "5"}
    for name in EVENT_LOG_ENV:
        monkeypatch.delenv(name, raising=False)
    cli._quiet_dagster()
    assert {name: os.environ[name] for name in EVENT_LOG_ENV} == EVENT_LOG_ENV
    for name in EVENT_LOG_ENV:
        monkeypatch.delenv(name)

    started = {}

    class FakePopen:
        pid = 0

        def __init__(self, command, **kwargs):
            started.update(kwargs)

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(ui.subprocess, "Popen", FakePopen)
    assert ui.serve("127.0.0.1", 0) == 0
    assert {name: started["env"][name] for name in EVENT_LOG_ENV} == EVENT_LOG_ENV
