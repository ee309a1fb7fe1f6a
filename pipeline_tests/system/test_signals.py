"""SIGTERM and SIGINT stop `pipeline` commands within seconds, cleanly (issue 18, item 7).

Real processes: the signal goes to the command's own process (as `timeout`, `kill` or systemd send it), never to a
whole group. A stopped `pipeline run` ends with exit code 128 + the signal, starts no further phase, and leaves every
Bronze file it wrote registered in `ops.file_ingestions`, no run 'running' and no pool slot claimed. `pipeline
replay` and `pipeline check`, stopped while they wait for a warehouse another process writes, end the same way.
`make ui` is `test_make_ui.py`.
"""

from __future__ import annotations

import os
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
from pipeline.stopping import STOP_GRACE_S
from pipeline_tests.dagster_dev import wait_for
from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data
from pipeline_tests.support import KEY, cli_env, pipeline_cmd

pytestmark = pytest.mark.slow

AS_OF = "2025-06-27"
TICKERS = "AAPL,MSFT,NVDA,JPM,XOM,JNJ,KO,PG"
SELECT = (
    "bronze/market/treasury-rates,silver/fmp_treasury_rates,bronze/prices/historical-price-eod,"
    "bronze/company/profile,bronze/company/dividends,silver/fmp_price_eod,silver/fmp_company_profile,"
    "silver/fmp_dividends"
)
LATENCY_S = 0.3  # per request, with 2 connections: the per-ticker fetch takes several seconds
STOP_DEADLINE_S = 8.0  # from the signal to the exit, on the clean path (the forced exit comes at STOP_GRACE_S)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeFmpServer]:
    source = SampleSource(as_of=__import__("datetime").date.fromisoformat(AS_OF))
    with FakeFmpServer(api_key=KEY, data=sample_data(source), latency_s=LATENCY_S) as fake:
        yield fake


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, signum: int, log: Path) -> tuple[int, float]:
    """Send `signum` to the process alone; its exit code and how long it took to end."""
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        code = proc.wait(timeout=STOP_GRACE_S + 20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"still running {STOP_GRACE_S + 20:.0f} s after {signal.Signals(signum).name}:\n{tail(log)}")
    return code, time.monotonic() - sent


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_pipeline_run_and_keeps_what_it_wrote(server: FakeFmpServer, tmp_path: Path, signum) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "run.log"
    env = cli_env(server.base_url, data_dir, TICKERS, AS_OF, FMP_MAX_CONCURRENCY="2")
    proc = start(pipeline_cmd("run", "--select", SELECT), env, log)
    store = BronzeStore(data_dir / "bronze")
    try:
        wait_for(lambda: "bronze_per_ticker - planned" in log.read_text(errors="replace"), 120, "no per-ticker plan")
        wait_for(lambda: sum(1 for r in store.iter_files() if "/_global/" not in r) >= 2, 30, "no per-ticker file")
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    code, took = stop(proc, signum, log)
    text = log.read_text(errors="replace")
    name = signal.Signals(signum).name
    print(f"{name}: exit {code} after {took:.1f} s")
    assert code == 128 + signum, tail(log)
    assert took < STOP_DEADLINE_S, f"took {took:.1f} s:\n{tail(log)}"
    assert f"pipeline run: stopped by {name}; what was written so far is kept and registered" in text
    assert f"bronze_per_ticker - stopped by {name}:" in text, tail(log)
    assert "==> per-ticker datasets: silver" not in text  # no phase started after the signal
    assert "exiting now" not in text  # the clean path, not the forced exit

    on_disk = {Path(rel).stem for rel in store.iter_files()}
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        ledger = {r[0] for r in conn.execute("SELECT file_id FROM ops.file_ingestions").fetchall()}
        running = conn.execute("SELECT count(*) FROM ops.runs WHERE status = 'running'").fetchone()[0]
    assert on_disk and ledger == on_disk  # every file written before the stop is registered
    assert running == 0
    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        unfinished = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        assert unfinished == []
        storage = instance.event_log_storage
        assert all(storage.get_concurrency_info(p).claimed_slots == [] for p in storage.get_concurrency_keys())


HOLDER = """
import duckdb, sys, time
conn = duckdb.connect(sys.argv[1])
conn.execute("BEGIN TRANSACTION")
conn.execute("CREATE TABLE ops.long_write AS SELECT 1 AS i")
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture(scope="module")
def warehouse_with_data(server: FakeFmpServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder after a short `pipeline run` (Bronze, Silver, a Dagster home)."""
    data_dir = tmp_path_factory.mktemp("stopped") / "data"
    env = cli_env(server.base_url, data_dir, "AAPL", AS_OF)
    done = subprocess.run(
        pipeline_cmd("run", "--select", "bronze/company/profile,silver/fmp_company_profile"),
        env=env,
        capture_output=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    return data_dir


@pytest.mark.parametrize("command", ["replay", "check"])
def test_sigterm_stops_a_command_waiting_for_a_busy_warehouse(
    server: FakeFmpServer, warehouse_with_data: Path, tmp_path: Path, command: str
) -> None:
    data_dir = warehouse_with_data
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir / "warehouse.duckdb")], stdout=subprocess.PIPE, text=True
    )
    log = tmp_path / f"{command}.log"
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = start(pipeline_cmd(command), cli_env(server.base_url, data_dir, "AAPL", AS_OF), log)
        time.sleep(6)  # started, and waiting for the warehouse (replay) or retrying its busy reader (check)
        assert proc.poll() is None, tail(log)
        code, took = stop(proc, signal.SIGTERM, log)
    finally:
        holder.kill()
        holder.wait()
    print(f"pipeline {command}: exit {code} after {took:.1f} s")
    assert code == 128 + signal.SIGTERM, tail(log)
    assert took < STOP_GRACE_S + 3, tail(log)
    assert f"pipeline {command}: stopped by SIGTERM" in log.read_text(errors="replace"), tail(log)
