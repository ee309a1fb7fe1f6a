"""The Dagster instance on PostgreSQL (deploy/dagster-postgres.yaml): the sample graph end to end, driven by the
sensors as the daemon drives them, with runs, events, sensor state and dynamic partitions in PostgreSQL.

The server comes from PIPELINE_TEST_POSTGRES_URL (see pipeline_tests/postgres_server.py); each test gets a
fresh database. Without a server these tests skip with the reason, unless PIPELINE_REQUIRE_POSTGRES=1 (CI).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipeline.keymap import load_keymap
from pipeline.orchestration.assets import bronze_key, gold_key, silver_key
from pipeline.orchestration.dagster_env import EVENT_LOG_ENV
from pipeline.orchestration.definitions import build_definitions
from pipeline.settings import PROJECT_ROOT, load_settings
from pipeline_tests import postgres_server
from pipeline_tests.dagster.test_dagster_instance import PARTITIONS, run_range
from pipeline_tests.support import E2E_TICKERS as TICKERS
from pipeline_tests.support import make_env, range_tags

DEPLOY_CONFIG = PROJECT_ROOT / "deploy" / "dagster-postgres.yaml"
DISTRIBUTED_CONFIG = PROJECT_ROOT / "deploy" / "dagster-distributed.yaml"
URL_VARIABLE = "DAGSTER_POSTGRES_URL"  # what deploy/dagster-postgres.yaml reads


@pytest.fixture()
def pg_database():
    reason = postgres_server.unavailable_reason()
    if reason:
        if postgres_server.required():
            pytest.fail(f"{reason}; {postgres_server.REQUIRE_VARIABLE}=1 requires it")
        pytest.skip(reason)
    with postgres_server.fresh_database() as url:
        yield url


def pg_home(tmp_path: Path, config: Path = DEPLOY_CONFIG) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is a shipped PostgreSQL configuration, unchanged."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(config, home / "dagster.yaml")
    return home


@pytest.fixture()
def pg_setup(tmp_path, pg_database, monkeypatch):
    monkeypatch.setenv(URL_VARIABLE, postgres_server.sqlalchemy_url(pg_database))
    settings = load_settings(make_env(tmp_path))
    keymap = load_keymap(settings.keymap_path)
    defs = build_definitions(settings, keymap)
    with dg.DagsterInstance.from_config(str(pg_home(tmp_path))) as instance:
        yield settings, keymap, defs, instance, pg_database


def pg_rows(url: str, sql: str) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
    conn.close()
    return rows


def launch(defs, instance, sensor_name: str, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """What the sensor daemon does with a RunRequest: skip it when a run with the same sensor and run key exists
    (in any status but NOT_STARTED), else create the run with the sensor's tags and execute it."""
    tags = {**request.tags, "dagster/sensor_name": sensor_name}
    if request.run_key:
        tags["dagster/run_key"] = request.run_key
        existing = instance.get_runs(
            dg.RunsFilter(tags={"dagster/run_key": request.run_key, "dagster/sensor_name": sensor_name})
        )
        assert not existing, f"run key {request.run_key} was launched before"
    return dg.materialize(
        list(defs.assets),
        instance=instance,
        resources=defs.resources,
        selection=list(request.asset_selection),
        tags=tags,
        raise_on_error=False,
    )


def tick(defs, instance, name: str, cursor: str | None = None):
    sensor = next(s for s in defs.sensors if s.name == name)
    return sensor.evaluate_tick(
        dg.build_sensor_context(
            instance=instance,
            instance_ref=instance.get_ref(),
            definitions=defs,
            cursor=cursor,
            resources={"warehouse": defs.resources["warehouse"]},
        )
    )


def test_the_shipped_config_puts_every_dagster_store_in_postgres(pg_setup):
    settings, keymap, defs, instance, url = pg_setup
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    # the project's pool limit travels with the configuration: one DuckDB writer at a time
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
    tables = {r[0] for r in pg_rows(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"runs", "event_logs", "dynamic_partitions", "instigators"} <= tables


def test_the_distributed_config_is_the_project_instance_on_postgres(tmp_path, pg_database, monkeypatch):
    """deploy/dagster-distributed.yaml as the webserver, daemon and run workers load it: every store in PostgreSQL,
    runs queued, and with the environment of deploy/pipeline.env.example the partition events of a step reach
    PostgreSQL in batches (one multi-row insert each) as the benchmarks measured them, not one insert per event."""
    monkeypatch.setenv(URL_VARIABLE, postgres_server.sqlalchemy_url(pg_database))
    for name, value in EVENT_LOG_ENV.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.from_config(str(pg_home(tmp_path, DISTRIBUTED_CONFIG))) as instance:
        assert type(instance) is dg.DagsterInstance
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        batches: list[int] = []
        store_batch = instance.event_log_storage.store_event_batch

        def counted(events):
            batches.append(len(events))
            store_batch(events)

        monkeypatch.setattr(instance.event_log_storage, "store_event_batch", counted)
        run_id = run_range(instance).run_id
        materialized = instance.get_materialized_partitions(dg.AssetKey("prices"))
    assert sorted(materialized) == PARTITIONS
    assert max(batches, default=0) >= len(PARTITIONS), (run_id, batches)


def test_sample_graph_end_to_end_driven_by_sensors_on_postgres(pg_setup):
    settings, keymap, defs, instance, url = pg_setup

    # the universe sensor adds the tickers; the daemon applies its partition requests to the instance
    universe = tick(defs, instance, "ticker_universe_sensor")
    for req in universe.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    assert sorted(k for (k,) in pg_rows(url, "SELECT partition FROM dynamic_partitions")) == sorted(TICKERS)
    assert not tick(defs, instance, "ticker_universe_sensor").dynamic_partitions_requests

    # Bronze, as the daily schedule asks for it
    global_bronze = [bronze_key(e) for e in keymap.global_entries()]
    ticker_bronze = [bronze_key(e) for e in keymap.per_ticker_entries()]
    assert dg.materialize(
        list(defs.assets), instance=instance, resources=defs.resources, selection=global_bronze
    ).success
    assert dg.materialize(
        list(defs.assets),
        instance=instance,
        resources=defs.resources,
        selection=ticker_bronze,
        tags=range_tags("AAPL", "NVDA"),
    ).success

    # Silver: the promotion sensor batches the waiting files into two runs, each launched as the daemon would
    silver = tick(defs, instance, "silver_promotion_sensor")
    assert len(silver.run_requests) == 2
    for req in silver.run_requests:
        result = launch(defs, instance, "silver_promotion_sensor", req)
        assert result.success
        failed = [
            e.check_name
            for e in result.get_asset_check_evaluations()
            if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
        ]
        assert failed == []
    # the same files on the next tick: the same run keys, which the daemon finds in PostgreSQL and skips
    again = tick(defs, instance, "silver_promotion_sensor", cursor=silver.cursor)
    for req in again.run_requests:
        assert instance.get_runs(dg.RunsFilter(tags={"dagster/run_key": req.run_key}))

    # Gold: every Gold asset's inputs moved; one run builds them, then nothing is due
    gold = tick(defs, instance, "gold_promotion_sensor")
    assert len(gold.run_requests) == 1 and gold_key("fact_price_daily") in gold.run_requests[0].asset_selection
    result = launch(defs, instance, "gold_promotion_sensor", gold.run_requests[0])
    assert result.success
    assert [e.check_name for e in result.get_asset_check_evaluations() if not e.passed] == []
    after = tick(defs, instance, "gold_promotion_sensor")
    assert not after.run_requests and "no Gold input watermark moved" in (after.skip_message or "")

    # the orchestration record is in PostgreSQL: 2 Bronze + 2 Silver + 1 Gold runs, all successful, with events
    runs = pg_rows(url, "SELECT status, count(*) FROM runs GROUP BY status")
    assert runs == [("SUCCESS", 5)]
    materialized = {
        r[0]
        for r in pg_rows(
            url, "SELECT DISTINCT asset_key FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
        )
    }
    assert silver_key("fmp_price_eod").to_string() in materialized
    assert gold_key("fact_price_daily").to_string() in materialized
    # and the warehouse is what a SQLite-backed run produces: every Bronze file promoted, Gold built
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        waiting = con.execute(
            "SELECT count(*) FROM ops.file_ingestions WHERE can_promote AND silver_status IS DISTINCT FROM 'promoted'"
        ).fetchone()[0]
        prices = con.execute("SELECT count(DISTINCT ticker) FROM gold.fact_price_daily").fetchone()[0]
    finally:
        con.close()
    assert waiting == 0 and prices == len(TICKERS)


@pytest.mark.slow
def test_pipeline_run_cli_on_postgres_storage(tmp_path, pg_database):
    """`pipeline run` in a fresh process honours a DAGSTER_HOME holding the PostgreSQL configuration."""
    home = pg_home(tmp_path)
    env = {
        **os.environ,
        **make_env(tmp_path),
        "DAGSTER_HOME": str(home),
        URL_VARIABLE: postgres_server.sqlalchemy_url(pg_database),
    }
    env.pop("FMP_API_KEY", None)
    exe = Path(sys.executable).parent / "pipeline"
    proc = subprocess.run(
        [str(exe), "run", "--select", "bronze/prices/historical-price-eod,silver/fmp_price_eod"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert not list(home.rglob("*.db"))  # no SQLite storage was made (compute logs stay local files)
    statuses = pg_rows(pg_database, "SELECT DISTINCT status FROM runs")
    assert statuses == [("SUCCESS",)]
    partitions = {k for (k,) in pg_rows(pg_database, "SELECT partition FROM dynamic_partitions")}
    assert partitions == set(TICKERS)
