"""Smoke test of the real webserver: `dg dev` (what `make ui` runs) headless on a free port answers GraphQL with the
asset graph, the three sensors and the schedule, and stops cleanly on SIGINT to its process group."""

from __future__ import annotations

import os
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
    from pipeline.cli import sync_instance_config

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
