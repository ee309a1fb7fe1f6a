"""Concurrency on one warehouse (DESIGN section 9): DuckDB lets one process write the file, and while it does,
other processes cannot even read it.

- Two `pipeline run` processes launched at the same moment on the same data folder and Dagster home both finish
  (the Dagster pools and the writers' bounded wait serialise them); neither dies of a lock error, and the ledger
  has no file twice.
- While another process holds the file read-write inside a long transaction, every sensor skips its tick with
  a reason that says the warehouse is busy, within seconds (they never wait for the lock).

`pipeline status` during a write (exit 3, at once) is covered by
`test_status_coverage.py::test_status_is_busy_while_another_process_writes`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipeline.bronze.store import BronzeStore
from pipeline.definitions import build_definitions
from pipeline.keymap import load_keymap
from pipeline.settings import load_settings
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.fakes.fmp_server import FakeFmpServer
from pipeline_tests.support import KEY, cli_env, pipeline_cmd, wait_all

AS_OF = "2025-06-27"
SERVER_LATENCY_S = 0.03  # the loopback server answers each request this late (sample_server fixture)
TICKERS = "AAPL,MSFT,NVDA"
# both phases (global and per ticker), Bronze and Silver writers
SELECT = (
    "bronze/market/treasury-rates,silver/fmp_treasury_rates,bronze/economics/economic-indicators__GDP,"
    "silver/fmp_economic_indicator,bronze/prices/historical-price-eod,silver/fmp_price_eod,"
    "bronze/company/profile,silver/fmp_company_profile"
)
LOCK_ERROR = re.compile(r"Could not set lock|Conflicting lock|WarehouseBusy|stayed locked", re.IGNORECASE)
RUN_TIMEOUT_S = 120
SENSOR_DEADLINE_S = 10.0


@pytest.mark.slow
def test_two_runs_launched_at_once_both_finish(sample_server: FakeFmpServer, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = cli_env(sample_server.base_url, data_dir, TICKERS, AS_OF)
    logs = [tmp_path / f"run{i}.log" for i in (1, 2)]
    procs = []
    for log in logs:
        with open(log, "wb") as out:
            procs.append(
                subprocess.Popen(
                    pipeline_cmd("run", "--select", SELECT),
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    codes = wait_all(procs, RUN_TIMEOUT_S)
    texts = [log.read_text(errors="replace") for log in logs]
    for code, text in zip(codes, texts):
        tail = "\n".join(text.splitlines()[-30:])
        assert code == 0, f"a run failed (exit {code}):\n{tail}"
        assert not LOCK_ERROR.search(text), f"a run hit a DuckDB lock error:\n{tail}"
        assert "Traceback" not in text, tail

    store = BronzeStore(data_dir / "bronze")
    on_disk = {Path(rel).stem for rel in store.iter_files()}
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT file_id FROM ops.file_ingestions").fetchall()]
        waiting = conn.execute(
            "SELECT count(*) FROM ops.file_ingestions WHERE can_promote AND coalesce(silver_status, '') <> 'promoted'"
        ).fetchone()[0]
        prices = conn.execute("SELECT count(DISTINCT ticker), count(*) FROM silver.fmp_price_eod").fetchone()
        runs = conn.execute("SELECT status, count(*) FROM ops.runs GROUP BY ALL").fetchall()
    assert len(ids) == len(set(ids)), "a Bronze file is registered twice"
    assert set(ids) == on_disk
    assert waiting == 0
    assert prices[0] == 3 and prices[1] > 1000
    assert {status for status, _ in runs} == {"success"}, runs
    assert store.journals() == []


# ---- sensors while another process writes ------------------------------------------------------------------------

HOLDER = """
import duckdb, sys, time
conn = duckdb.connect(sys.argv[1])
conn.execute("BEGIN TRANSACTION")
conn.execute("CREATE TABLE ops.long_write AS SELECT range AS i FROM range(100000)")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


@pytest.fixture
def busy_warehouse(tmp_path: Path) -> Iterator[Path]:
    """A migrated warehouse that another process holds read-write, inside a transaction, for 20 s."""
    path = tmp_path / "data" / "warehouse.duckdb"
    with Warehouse(path).connect():
        pass  # created and migrated, then closed: this process holds nothing
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), "20"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield path
    finally:
        holder.kill()
        holder.wait()


def test_sensors_skip_within_seconds_while_another_process_writes(busy_warehouse: Path, tmp_path: Path) -> None:
    # no PIPELINE_TICKERS and a key: the universe sensor must read the Silver stock list
    settings = load_settings(
        {
            "PIPELINE_DATA_DIR": str(busy_warehouse.parent),
            "PIPELINE_AS_OF": AS_OF,
            "FMP_API_KEY": KEY,
            "FMP_BASE_URL": "http://127.0.0.1:9/stable",
        }
    )
    defs = build_definitions(settings, load_keymap(settings.keymap_path))
    sensors = {s.name: s for s in defs.sensors}
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        for name in ("silver_promotion_sensor", "gold_promotion_sensor", "ticker_universe_sensor"):
            started = time.monotonic()
            tick = sensors[name].evaluate_tick(
                dg.build_sensor_context(
                    instance=instance,
                    definitions=defs,
                    resources={"warehouse": defs.resources["warehouse"]},
                    cursor="7",
                )
            )
            elapsed = time.monotonic() - started
            assert elapsed < SENSOR_DEADLINE_S, f"{name} took {elapsed:.1f} s"
            assert not tick.run_requests and not tick.dynamic_partitions_requests, name
            assert tick.skip_message and "busy" in tick.skip_message, f"{name}: {tick.skip_message!r}"
            assert tick.cursor in (None, "7"), f"{name} moved its cursor while skipping: {tick.cursor!r}"
        assert instance.get_dynamic_partitions("tickers") == []
