"""The project's Dagster instance (pipeline/orchestration/instance.py, named by dagster.yaml): the same event log a
stock instance keeps, written in a transaction per batch of partition events instead of two per event."""

# no `from __future__ import annotations`: Dagster reads the step's parameter annotations at runtime
import shutil
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from pipeline.orchestration.instance import BatchingSqliteEventLogStorage, ProjectInstance
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
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))


def run_range(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("tickers", PARTITIONS)
    tags = {"dagster/asset_partition_range_start": PARTITIONS[0], "dagster/asset_partition_range_end": PARTITIONS[-1]}
    result = dg.materialize([both, prices_ok], instance=instance, tags=tags)
    assert result.success
    return result


def what_was_stored(instance: dg.DagsterInstance, run_id: str) -> dict:
    """What users see of a run in the UI and what sensors and backfills read, independent of record ids."""
    events = sorted(
        (e.dagster_event_type.value, e.dagster_event.asset_key.to_user_string(), e.dagster_event.partition or "")
        for e in instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.asset_key
    )
    out = {"events": events}
    for key in (dg.AssetKey("prices"), dg.AssetKey("profile")):
        latest = instance.get_latest_materialization_event(key)
        out[key.to_user_string()] = {
            "materialized": sorted(instance.get_materialized_partitions(key)),
            "latest_partition": latest.dagster_event.partition,
            "latest_rows": latest.asset_materialization.metadata["rows"].value,
            "last_run": instance.get_asset_records([key])[0].asset_entry.last_run_id,
        }
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("prices"), "prices_ok")]
    )
    out["check"] = [r.status.value for r in check.values()]
    return out


@pytest.fixture()
def homes(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")  # both instances get the batches; only one writes them whole
    # one planned event per partition (a CLI test run earlier in the same process may have set it)
    monkeypatch.delenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", raising=False)
    project, stock = tmp_path / "project", tmp_path / "stock"
    for home in (project, stock):
        home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", project / "dagster.yaml")
    (stock / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return project, stock


def test_the_batching_event_log_stores_what_the_stock_one_stores(homes, monkeypatch):
    project, stock = homes
    stored = {}
    connects = {}
    for name, home in (("project", project), ("stock", stock)):
        with open_instance(home) as instance:
            opened = []
            original = type(instance.event_log_storage)._connect

            def counting(self, shard, _original=original, _opened=opened):
                _opened.append(shard)
                return _original(self, shard)

            with monkeypatch.context() as patch:
                patch.setattr(type(instance.event_log_storage), "_connect", counting)
                result = run_range(instance)
            stored[name] = what_was_stored(instance, result.run_id)
            connects[name] = len(opened)
            for key in ("prices", "profile"):
                assert stored[name][key]["last_run"] == result.run_id
                stored[name][key]["last_run"] = "same run"
    assert stored["project"] == stored["stock"]
    assert stored["project"]["prices"]["materialized"] == PARTITIONS
    latest = stored["project"]["prices"]
    assert latest["latest_rows"] == int(latest["latest_partition"][1:])  # that partition's own metadata
    assert stored["project"]["check"] == ["SUCCEEDED"]
    # 2 assets x 20 partitions, each planned and then materialized: 80 events that the stock event log writes with
    # two connections each (run file, index file), and this one with two per batch (a handful of batches)
    assert connects["stock"] - connects["project"] >= 2 * 80 - 2 * 8, connects


def test_the_project_instance_keeps_its_files_where_the_stock_one_does(homes, monkeypatch):
    """The storage follows the instance's own folder (not the environment): `InstanceRef.from_dir(home)` with another
    DAGSTER_HOME still reads and writes `home`, and stock Dagster reads what it wrote."""
    project, stock = homes
    monkeypatch.setenv("DAGSTER_HOME", str(stock))
    with open_instance(project) as instance:
        assert isinstance(instance, ProjectInstance)
        assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
        run_id = run_range(instance).run_id
    assert (project / "history" / "runs" / f"{run_id}.db").exists()
    assert not (stock / "history").exists()
    (project / "dagster.yaml").write_text("")  # the stock instance on the same folder
    with open_instance(project) as plain:
        assert type(plain) is dg.DagsterInstance
        assert sorted(plain.get_materialized_partitions(dg.AssetKey("prices"))) == PARTITIONS
