"""The real webserver: `dg dev` (what `make ui` runs) headless on a free port answers GraphQL with the asset graph,
the three sensors and the schedule, and stops cleanly on SIGINT to its process group; an asset backfill launched
through it, as the UI launches one, completes through the backfill daemon."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from pipeline_tests.dagster_dev import dagster_dev, wait_for

pytestmark = pytest.mark.slow

QUERY = """
{
  assetNodes { assetKey { path } }
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes { name sensors { name sensorState { status } } schedules { name scheduleState { status } } }
    }
  }
  instance { poolConfig { defaultPoolLimit } }
}
"""


def test_dagster_dev_serves_the_asset_graph(tmp_path: Path) -> None:
    """`make ui` runs `dg dev` with the project's dagster.yaml installed in DAGSTER_HOME."""
    from pipeline.cli.commands import sync_instance_config

    home = tmp_path / "dagster_home"
    home.mkdir()
    assert sync_instance_config(home)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "PIPELINE_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    env.pop("FMP_API_KEY", None)
    with dagster_dev(tmp_path, env) as base:

        def graph() -> dict | None:
            try:
                r = httpx.post(f"{base}/graphql", json={"query": QUERY}, timeout=10)
            except httpx.HTTPError:
                return None
            body = r.json().get("data") if r.status_code == 200 else None
            return body if body and body.get("assetNodes") else None

        data = wait_for(graph, 120, "webserver did not serve the asset graph within 120 s", every_s=1)
    keys = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
    assert "bronze/prices/historical-price-eod" in keys
    assert "silver/fmp_price_eod" in keys
    assert "gold/fact_valuation_daily" in keys
    repo = data["repositoriesOrError"]["nodes"][0]
    sensors = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
    assert {"ticker_universe_sensor", "silver_promotion_sensor", "gold_promotion_sensor"} <= set(sensors)
    assert sensors["silver_promotion_sensor"] == "RUNNING"
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repo["schedules"]}
    assert schedules == {"daily_refresh": "STOPPED"}
    assert data["instance"]["poolConfig"]["defaultPoolLimit"] == 1


LAUNCH_BACKFILL = """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status } } }"""


def test_a_ui_backfill_of_tickers_with_nothing_due_completes(tmp_path: Path) -> None:
    """A backfill launched as the UI launches it, through the backfill daemon, over tickers for which nothing is
    due: every requested partition has data, so it is materialized again (with `range_tickers_changed` 0) and Dagster
    marks the backfill a success instead of failing the partitions the step had no reason to touch. The daemon plans
    the asset once for the run's range, not once per ticker (pipeline/orchestration/dagster_env.py, set by `pipeline
    ui`)."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from pipeline_tests.support import E2E_AS_OF, pipeline_cmd

    home = tmp_path / "dagster_home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "FMP_", "DAGSTER_"))},
        "DAGSTER_HOME": str(home),
        "PIPELINE_DATA_DIR": str(tmp_path / "data"),
        "PIPELINE_AS_OF": E2E_AS_OF,
        "PIPELINE_TICKERS": "AAPL,MSFT",
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    # everything is loaded and up to date, so the sensors stay idle and nothing is due for the backfill
    subprocess.run(pipeline_cmd("run"), env=env, check=True, capture_output=True, timeout=300)
    eod = ["bronze", "prices", "historical-price-eod"]
    with dagster_dev(tmp_path, env) as base:

        def graphql(query: str, variables: dict) -> dict | None:
            try:
                r = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=30)
            except httpx.HTTPError:
                return None
            return r.json().get("data") if r.status_code == 200 else None

        params = {"p": {"partitionNames": ["AAPL", "MSFT"], "assetSelection": [{"path": eod}]}}
        launched = wait_for(lambda: graphql(LAUNCH_BACKFILL, params), 60, "the backfill was not accepted", every_s=1)
        answer = launched["launchPartitionBackfill"]
        assert answer["__typename"] == "LaunchBackfillSuccess", answer

        def finished() -> str | None:
            data = graphql(BACKFILL_STATUS, {"id": answer["backfillId"]})
            status = (data or {}).get("partitionBackfillOrError", {}).get("status")
            return status if status and status.startswith(("COMPLETED", "FAILED", "CANCELED")) else None

        # the backfill daemon looks every 30 s: one tick to submit the run, one more to see it done
        assert wait_for(finished, 150, "the backfill did not finish within 150 s", every_s=2) == "COMPLETED_SUCCESS"
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        [run] = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": answer["backfillId"]}))
        mats = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        planned = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    own = {m.dagster_event.partition: m.asset_materialization.metadata for m in mats}
    assert set(own) == {"AAPL", "MSFT"}
    assert {(meta["range_tickers_changed"].value, meta["range_requests"].value) for meta in own.values()} == {(0, 0)}
    assert len(planned) == 1  # one planned event for the asset over the range
