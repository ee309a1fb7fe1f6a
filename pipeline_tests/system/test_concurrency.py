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

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipeline.bronze.store import BronzeStore
from pipeline.fmp.sample import SampleSource
from pipeline.keymap import load_keymap
from pipeline.orchestration.definitions import build_definitions
from pipeline.settings import load_settings
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.dagster_dev import wait_for
from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data
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


# ---- a run waiting for the pool slot of a run that was killed ------------------------------------------------------

SLOT_POOL = "fmp_api"
WAIT_WINDOW_S = 3.0  # how long the waiting run's CPU time is sampled while the slot's holder is still alive
WAIT_CPU_LIMIT_S = 0.5  # a run that sleeps between claims uses a small fraction of a core; a spinning one, all of it
RECLAIM_DEADLINE_S = 45.0  # from the kill to the survivor's exit (it still fetches and promotes after the reclaim)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
def test_a_run_waiting_for_the_slot_of_a_killed_run_sleeps_then_reclaims_it(tmp_path: Path) -> None:
    """Issue 18, item 1: `kill -9` of a run that holds the fmp_api slot must not block the run waiting for it.

    The first run holds the slot while its first request hangs on the server; the second waits for the slot (and
    must sleep while it waits, not spin); then the first is killed. The second reclaims the slot within seconds,
    finishes, and the killed run is closed: failed in Dagster and in ops.runs, no slot left claimed."""
    from pipeline.orchestration.assets import bronze_key
    from pipeline_tests.support import entry

    select = bronze_key(entry("historical-price-eod")).to_user_string()
    data_dir = tmp_path / "data"
    source = SampleSource(as_of=dt.date.fromisoformat(AS_OF))
    with FakeFmpServer(api_key=KEY, data=sample_data(source), latency_s=60.0) as server:  # the holder's request hangs
        env = cli_env(server.base_url, data_dir, TICKERS, AS_OF, FMP_MAX_CONCURRENCY="1")
        logs = [tmp_path / "holder.log", tmp_path / "waiter.log"]

        def start(log: Path) -> subprocess.Popen:
            with open(log, "wb") as out:
                return subprocess.Popen(
                    pipeline_cmd("run", "--select", select),
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

        holder = start(logs[0])
        procs = [holder]
        try:
            wait_for(lambda: "bronze_per_ticker - planned" in logs[0].read_text(errors="replace"), 90, "no plan")
            waiter = start(logs[1])
            procs.append(waiter)
            with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
                storage = instance.event_log_storage
                holder_run = storage.get_concurrency_info(SLOT_POOL).claimed_slots[0].run_id

                def waiting() -> bool:
                    pending = storage.get_concurrency_info(SLOT_POOL).pending_steps
                    return any(p.run_id != holder_run and p.assigned_timestamp is None for p in pending)

                wait_for(waiting, 90, "the second run never queued for the fmp_api slot")
                before = cpu_seconds(waiter.pid)
                time.sleep(WAIT_WINDOW_S)
                spent = cpu_seconds(waiter.pid) - before
                print(f"CPU of the waiting run over {WAIT_WINDOW_S:.0f} s: {spent:.2f} s")
                assert holder.poll() is None and waiter.poll() is None
                assert spent < WAIT_CPU_LIMIT_S, f"the waiting run spun: {spent:.2f} s CPU in {WAIT_WINDOW_S:.0f} s"

                os.killpg(holder.pid, signal.SIGKILL)
                holder.wait()
                server.latency_s = 0.0
                killed_at = time.monotonic()
                code = waiter.wait(timeout=RECLAIM_DEADLINE_S)
                print(f"the waiting run ended {time.monotonic() - killed_at:.1f} s after the kill")
                text = logs[1].read_text(errors="replace")
                assert code == 0, "\n".join(text.splitlines()[-30:])
                assert holder_run[:8] in text and "died" in text, "the reclaim is not reported in the run log"
                assert instance.get_run_by_id(holder_run).status == dg.DagsterRunStatus.FAILURE
                assert storage.get_concurrency_info(SLOT_POOL).claimed_slots == []
            with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
                status = conn.execute("SELECT status FROM ops.runs WHERE run_id = ?", [holder_run]).fetchall()
            assert status in ([], [("failed",)]), status
        finally:
            for proc in procs:  # nothing outlives the test
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
