"""Smoke test of the real webserver: `dagster dev` headless on a free port answers GraphQL with the asset graph,
the three sensors and the schedule, and stops cleanly on SIGINT to its process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from pipeline.settings import PROJECT_ROOT

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dagster_dev_serves_the_asset_graph(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "PIPELINE_DATA_DIR": str(tmp_path / "data"),
           "DAGSTER_DISABLE_TELEMETRY": "1"}
    env.pop("FMP_API_KEY", None)
    dagster = str(Path(sys.executable).parent / "dagster")
    log = open(tmp_path / "dagster_dev.log", "wb")
    proc = subprocess.Popen([dagster, "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1",
                             "-p", str(port)], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)   # own process group: SIGINT reaches every child
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        data = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "dagster_dev.log").read_text()[-3000:]
            try:
                r = httpx.post(f"{base}/graphql", json={"query": QUERY}, timeout=10)
                body = r.json().get("data") if r.status_code == 200 else None
                if body and body.get("assetNodes"):
                    data = body
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert data is not None, "webserver did not serve the asset graph within 120 s"
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
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail("dagster dev did not stop within 60 s of SIGINT")
        log.close()
    assert proc.returncode is not None
