"""The resources Dagster users see: a DuckDBResource that migrates on its first write connection (never when a step
or a sensor sets it up: a step touches the file only once it holds its pool slot), and an
FMP resource whose configuration shows in the UI with the key only as an environment variable's name."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from pipeline.orchestration.resources import FmpResource, build_resources
from pipeline.orchestration.warehouse_resource import WarehouseResource
from pipeline.settings import load_settings

SECRET = "k3y-that-must-not-show"


def test_the_warehouse_resource_is_duckdb_and_migrates_on_first_write_use(tmp_path: Path) -> None:
    path = tmp_path / "data" / "warehouse.duckdb"
    resource = WarehouseResource(database=str(path))
    assert isinstance(resource, DuckDBResource)
    with dg.build_resources({"warehouse": resource}):  # what a sensor tick does: no run, no write
        pass
    assert not path.exists()

    @dg.asset
    def waits(warehouse: WarehouseResource) -> None:
        assert not path.exists()  # setting the step up did not touch the file (it may not hold its slot yet)
        resource.migrate()  # what a check step does once it holds its slot: a missing warehouse stays missing
        assert not path.exists()
        with warehouse.connect():  # the first write connection migrates
            pass
        with warehouse.reader() as conn:
            assert conn.execute("SELECT count(*) FROM ops.schema_migrations").fetchone()[0] > 0

    assert dg.materialize([waits], resources={"warehouse": resource}).success
    with resource.transaction() as conn:
        conn.execute("CREATE TABLE ops.t AS SELECT 1 AS x")
    with pytest.raises(RuntimeError, match="boom"), resource.transaction() as conn:
        conn.execute("INSERT INTO ops.t VALUES (2)")
        raise RuntimeError("boom")
    con = duckdb.connect(str(path))  # the failed block's connection was closed, not leaked
    try:
        assert con.execute("SELECT list(x) FROM ops.t").fetchone()[0] == [1]
    finally:
        con.close()


def test_the_fmp_resource_shows_its_configuration_but_not_the_key(monkeypatch) -> None:
    monkeypatch.setenv("FMP_API_KEY", SECRET)
    settings = load_settings(
        {
            "FMP_API_KEY": SECRET,
            "FMP_PLAN": "starter",
            "FMP_CALLS_PER_MINUTE": "120",
            "FMP_MAX_CONCURRENCY": "3",
            "FMP_BASE_URL": "http://127.0.0.1:9/stable",
        }
    )
    fmp = build_resources(settings)["fmp"]
    assert isinstance(fmp.api_key, dg.EnvVar) and fmp.api_key.env_var_name == "FMP_API_KEY"
    assert (fmp.plan, fmp.calls_per_minute, fmp.max_concurrency) == ("starter", 120, 3)
    assert SECRET not in repr(fmp) and SECRET not in repr(fmp.get_resource_definition().config_schema)
    with dg.build_resources({"fmp": fmp}) as resources:  # resolved at run time from the environment
        assert resources.fmp.key == SECRET and not resources.fmp.uses_sample_source
        with resources.fmp.client(settings) as client:
            assert client.base_url == "http://127.0.0.1:9/stable" and SECRET not in repr(client)


def test_no_key_means_the_sample_source_decided_by_the_resource() -> None:
    settings = load_settings({"PIPELINE_AS_OF": "2026-11-20"})
    fmp = build_resources(settings)["fmp"]
    assert fmp.api_key is None and fmp.uses_sample_source and fmp.source_mode == "sample"
    with FmpResource().client(settings) as client:
        assert client.fetch("profile", {"symbol": "AAPL"}).ok
