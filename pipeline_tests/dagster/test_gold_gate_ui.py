"""Gold under the real webserver and daemon (issue 20): UI asset backfills (`launchPartitionBackfill`, as the UI
sends it) and `gold_promotion_sensor` together build each Gold table once, one build at a time, from complete inputs
only; and a backfill over Silver and Gold with a failing blocking check builds no Gold and reports the failure."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import time
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest
from dagster._core.instance.ref import InstanceRef

from pipeline.gold.build import GOLD_ASSETS
from pipeline.keymap import load_keymap
from pipeline.orchestration.assets import bronze_key, silver_key
from pipeline.orchestration.sensors import ACTIVE_STATUSES
from pipeline.settings import load_settings
from pipeline_tests.dagster.test_webserver import BACKFILL_STATUS, LAUNCH_BACKFILL
from pipeline_tests.dagster_dev import dagster_dev, wait_for
from pipeline_tests.support import E2E_AS_OF, pipeline_cmd

# about 3 min on an idle machine (two asset backfills, each waiting for the backfill daemon's fixed 30 s loop)
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

TICKERS = ["AAPL", "MSFT"]
SELECTION = [{"path": ["silver", "fmp_price_eod"]}, {"path": ["gold", "fact_price_daily"]}]


def write(path: Path, *statements: str) -> None:
    """Write the warehouse from the test while no run holds it (a sensor may hold a read-only connection briefly)."""
    for _ in range(60):
        try:
            with duckdb.connect(str(path)) as con:
                for sql in statements:
                    con.execute(sql)
            return
        except duckdb.IOException:
            time.sleep(0.5)
    pytest.fail(f"the warehouse stayed locked: {statements[0]}")


def read(path: Path, sql: str) -> list[tuple]:
    for _ in range(60):
        try:
            with duckdb.connect(str(path), read_only=True) as con:
                return con.execute(sql).fetchall()
        except duckdb.IOException:
            time.sleep(0.5)
    pytest.fail(f"the warehouse stayed locked: {sql}")


def test_ui_backfills_and_the_gold_sensor_build_gold_once_from_complete_inputs_and_never_past_a_failed_check(
    tmp_path: Path,
) -> None:
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE_", "FMP_", "DAGSTER_"))},
        "DAGSTER_HOME": str(home),
        "PIPELINE_DATA_DIR": str(data),
        "PIPELINE_AS_OF": E2E_AS_OF,
        "PIPELINE_TICKERS": ",".join(TICKERS),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    keymap = load_keymap(load_settings(env).keymap_path)
    bronze_and_silver = [bronze_key(e) for e in keymap] + [silver_key(t) for t in keymap.tables()]
    select = ",".join(k.to_user_string() for k in bronze_and_silver)
    subprocess.run(pipeline_cmd("run", "--select", select), env=env, check=True, capture_output=True, timeout=900)
    warehouse = data / "warehouse.duckdb"
    write(
        warehouse,
        # Gold never built: the Gold sensor launches every Gold table at its first tick
        "DELETE FROM ops.gold_builds",
        "DROP SCHEMA IF EXISTS gold CASCADE",
        # MSFT has prices but is not in the dimension's inputs: Gold builds AAPL and names MSFT
        "DELETE FROM silver.fmp_stock_list WHERE symbol = 'MSFT'",
        "DELETE FROM silver.fmp_company_profile WHERE ticker = 'MSFT'",
        "DELETE FROM ops.file_ingestions WHERE silver_table = 'fmp_company_profile' AND ticker = 'MSFT'",
    )
    with dagster_dev(tmp_path, env) as base:

        def graphql(query: str, variables: dict) -> dict | None:
            try:
                r = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables}, timeout=30)
            except httpx.HTTPError:
                return None
            return r.json().get("data") if r.status_code == 200 else None

        def backfill() -> str:
            params = {"p": {"partitionNames": TICKERS, "assetSelection": SELECTION}}
            launched = wait_for(lambda: graphql(LAUNCH_BACKFILL, params), 60, "backfill not accepted", every_s=1)
            answer = launched["launchPartitionBackfill"]
            assert answer["__typename"] == "LaunchBackfillSuccess", answer
            return answer["backfillId"]

        def finished(backfill_id: str) -> str:
            def status() -> str | None:
                found = (graphql(BACKFILL_STATUS, {"id": backfill_id}) or {}).get("partitionBackfillOrError", {})
                value = found.get("status")
                return value if value and value.startswith(("COMPLETED", "FAILED", "CANCELED")) else None

            return wait_for(status, 300, f"backfill {backfill_id} did not finish within 300 s", every_s=2)

        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:

            def idle() -> bool:
                return not instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE_STATUSES))

            def every_gold_table_built() -> bool:
                built = {r[0] for r in read(warehouse, "SELECT asset FROM ops.gold_builds WHERE status = 'success'")}
                return built >= set(GOLD_ASSETS) and idle()

            # 1. the sensor's Gold run and a UI backfill of Silver + Gold, launched together
            first = backfill()
            assert finished(first) == "COMPLETED_SUCCESS"
            wait_for(every_gold_table_built, 300, "the Gold sensor did not build every Gold table", every_s=2)
            builds = read(
                warehouse,
                "SELECT asset, mode, status, started_at, finished_at, run_id FROM ops.gold_builds ORDER BY started_at",
            )
            assert {status for _, _, status, *_ in builds} == {"success"}
            writes = {}
            for asset, mode, *_ in builds:
                writes[asset] = writes.get(asset, 0) + (mode != "noop")
            assert writes == dict.fromkeys(GOLD_ASSETS, 1), builds  # each table built once; a second look is a noop
            for before, after in zip(builds, builds[1:]):  # one Gold build at a time, whoever launched it
                assert before[4] <= after[3], f"overlapping Gold builds: {before} and {after}"
            launchers = {instance.get_run_by_id(b[5]).tags.get("dagster/backfill", "sensor") for b in builds}
            assert launchers >= {"sensor"}, launchers

            # Gold built from complete inputs: AAPL; MSFT named, and no blocking Gold check failed
            assert read(warehouse, "SELECT DISTINCT ticker FROM gold.fact_price_daily") == [("AAPL",)]
            event = instance.get_latest_materialization_event(dg.AssetKey(["gold", "fact_price_daily"]))
            assert "MSFT" in event.asset_materialization.metadata["incomplete"].value
            failed = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
            assert failed == [], [r.run_id for r in failed]

            # 2. a blocking check on a Silver input fails: the backfill builds no Gold and reports the failure
            gold_builds = len(builds)
            write(
                warehouse,
                "INSERT INTO silver.fmp_price_eod SELECT * REPLACE (DATE '1990-01-02' AS date) "
                "FROM silver.fmp_price_eod WHERE ticker = 'AAPL' LIMIT 1",
            )
            second = backfill()
            assert finished(second) in ("COMPLETED_FAILED", "FAILED")
            wait_for(idle, 120, "runs still active after the backfill", every_s=1)
            assert len(read(warehouse, "SELECT * FROM ops.gold_builds")) == gold_builds
            runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": second}))
            gold_runs = [r for r in runs if dg.AssetKey(["gold", "fact_price_daily"]) in (r.asset_selection or ())]
            # the daemon launches Gold after the Silver run (its asset step succeeded, its check step failed): the
            # Gold step refuses, naming the check
            assert gold_runs, [r.asset_selection for r in runs]
            for run in gold_runs:
                assert run.status == dg.DagsterRunStatus.FAILURE
                failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
                text = " ".join(str(f.dagster_event.step_failure_data.user_failure_data.description) for f in failures)
                assert "gold/fact_price_daily not built" in text and "silver/fmp_price_eod reconciliation" in text
    print(f"gold gate under the daemon: {len(gold_runs)} Gold run(s) refused, at {dt.datetime.now():%H:%M:%S}")
