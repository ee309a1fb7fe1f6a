"""Crash safety through the real CLI: `kill -9` a `pipeline run` while it fetches Bronze and while it promotes
Silver, at random points (fixed seeds), then run again to completion and check that nothing was lost or doubled.

After every kill:
- the DuckDB file opens (DuckDB replays its WAL), before anything repairs it;
- the rerun succeeds; every Bronze envelope on disk is in the ledger exactly once and every ledger row points at
  an envelope on disk with the same file id; every promotable file is promoted; no journal is left;
- a `.tmp` left by a kill is never taken for data (not listed by the store, not in the ledger) and is removed by
  the next run's repair;
- no `ops.runs` row stays 'running';
- every Silver table (and its history) equals that of a clean run, lineage columns aside, although the killed
  run may have fetched some windows that the rerun fetches again.

The kills are driven by the run log: the fetching kill lands at a random delay after a Bronze step logged its plan,
the promotion kill at a random delay after a Silver-only run started promoting. The fake FMP sample_server answers with
~40 ms latency and the runs use two connections, so a fetch takes a few seconds and the kill lands inside it.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.planner import plan
from pipeline.bronze.store import TMP_SUFFIX, BronzeStore
from pipeline.fmp.client import FmpClient
from pipeline.fmp.ratelimit import RateLimiter
from pipeline.keymap import load_keymap
from pipeline.ops import file_ingestions
from pipeline.settings import PROJECT_ROOT
from pipeline.warehouse.connection import Warehouse
from pipeline_tests import support
from pipeline_tests.fakes.fmp_server import FakeFmpServer
from pipeline_tests.support import KEY, pipeline_cmd

AS_OF = "2025-06-27"
SERVER_LATENCY_S = 0.04  # the loopback server answers each request this late (sample_server fixture)
TICKERS = "AAPL,MSFT,NVDA,JPM"
# Windowed global datasets (many small windows: where a kill leaves gaps) and a few per-ticker ones.
BRONZE_ASSETS = [
    "bronze/market/treasury-rates",
    "bronze/market/sector-performance-snapshot__NASDAQ",
    "bronze/market/sector-performance-snapshot__NYSE",
    "bronze/prices/historical-price-eod",
    "bronze/company/profile",
    "bronze/company/dividends",
] + [
    f"bronze/economics/economic-indicators__{name}"
    for name in ("CPI", "GDP", "federalFunds", "inflationRate", "realGDP", "unemploymentRate")
]
SILVER_ASSETS = [
    "silver/fmp_treasury_rates",
    "silver/fmp_sector_performance",
    "silver/fmp_economic_indicator",
    "silver/fmp_price_eod",
    "silver/fmp_company_profile",
    "silver/fmp_dividends",
]
SELECT_BRONZE = ",".join(BRONZE_ASSETS)
SELECT_SILVER = ",".join(SILVER_ASSETS)
SELECT_ALL = f"{SELECT_BRONZE},{SELECT_SILVER}"
LINEAGE = ("run_id", "promoted_at", "bronze_file_id", "fetched_at")
HISTORY_LINEAGE = LINEAGE + ("valid_from", "valid_to")
RUN_TIMEOUT_S = 120

# (seed, marker in the run log after which the kill is armed, delay range in seconds)
FETCH_KILLS = [
    (11, r"bronze_global - planned [1-9]\d* request", (0.2, 1.5)),
    (12, r"bronze_global - planned [1-9]\d* request", (1.5, 3.5)),
    (13, r"bronze_per_ticker - planned [1-9]\d* request", (0.05, 0.4)),
]
# Silver-only runs promote the global tables in key order (economic indicators, sector performance, treasury),
# each in its own transactions, then the per-ticker tables.
PROMOTE_KILLS = [
    (21, r"silver_global - silver.fmp_economic_indicator: promoted", (0.0, 0.4)),
    (22, r"silver_global - silver.fmp_sector_performance: promoted", (0.0, 0.25)),
    (23, r"==> per-ticker datasets", (0.2, 0.9)),
]


# ---- the fake API and the CLI -----------------------------------------------------------------------------------


def cli_env(data_dir: Path, sample_server: FakeFmpServer, concurrency: int = 8) -> dict[str, str]:
    """The CLI's environment; the runs that get killed use 2 connections, so that fetching takes seconds."""
    return support.cli_env(sample_server.base_url, data_dir, TICKERS, AS_OF, FMP_MAX_CONCURRENCY=str(concurrency))


def start_run(env: dict[str, str], select: str, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    try:
        # its own session, so the kill reaches any child it may have, and nothing else
        return subprocess.Popen(
            pipeline_cmd("run", "--select", select),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def run_to_end(env: dict[str, str], select: str, log_path: Path) -> None:
    proc = start_run(env, select, log_path)
    try:
        code = proc.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(
            f"`pipeline run --select {select}` did not finish in {RUN_TIMEOUT_S} s (waiting for a pool "
            f"slot of a killed run?):\n{tail(log_path)}"
        )
    assert code == 0, f"`pipeline run --select {select}` exited {code}:\n{tail(log_path)}"


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def kill_after(proc: subprocess.Popen, log_path: Path, marker: str, delay_s: float, timeout_s: float = 90) -> str:
    """SIGKILL the run `delay_s` after `marker` shows up in its log; returns the last log line before the kill."""
    pattern = re.compile(marker)
    deadline = time.monotonic() + timeout_s
    while not pattern.search(log_path.read_text(errors="replace")):
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {marker!r}:\n{tail(log_path)}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"{marker!r} did not show up in {timeout_s} s:\n{tail(log_path)}")
        time.sleep(0.02)
    time.sleep(delay_s)
    if proc.poll() is not None:
        pytest.fail(
            f"the run ended (exit {proc.returncode}) before the kill at +{delay_s:.2f} s: move the kill "
            f"point\n{tail(log_path)}"
        )
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    lines = log_path.read_text(errors="replace").splitlines()
    return lines[-1][-160:] if lines else ""


# ---- what the warehouse and the Bronze folder hold ------------------------------------------------------------------


def silver_snapshot(warehouse: Path) -> dict[str, list[tuple]]:
    """Every Silver table (and history table) as sorted rows, lineage columns excluded."""
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'silver' ORDER BY 1"
            ).fetchall()
        ]
        out = {}
        for table in tables:
            drop = HISTORY_LINEAGE if table.endswith("__history") else LINEAGE
            rows = conn.execute(f'SELECT * EXCLUDE ({", ".join(drop)}) FROM silver."{table}"').fetchall()
            out[table] = sorted(rows, key=repr)
    return out


def assert_opens(warehouse: Path) -> str:
    """A kill while DuckDB writes must leave a file DuckDB opens (replaying its WAL, if one was left). Read-only,
    so the file stays as the kill left it and the rerun does the real recovery."""
    wal = Path(f"{warehouse}.wal")
    state = f"WAL of {wal.stat().st_size} bytes left" if wal.exists() else "no WAL left"
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        conn.execute("SELECT count(*) FROM ops.file_ingestions").fetchone()
    return state


def temp_files(bronze: Path) -> list[Path]:
    return [p for p in bronze.rglob(f"*{TMP_SUFFIX}") if p.is_file()]


def plant_cut_write(store: BronzeStore, dead_pid: int) -> Path:
    """What a kill between the temp write and the link leaves: half an envelope in `.<id>.json.tmp`, named in
    the dead process's journal (the journal line is written first). The window is microseconds wide, so the
    random kills rarely hit it: it is planted, next to a real file, in a journal of the killed process."""
    real = next(iter(store.iter_files()))
    file_id = uuid.uuid4().hex
    target = store.absolute(real).with_name(f"{file_id}.json")
    tmp = target.with_name(f".{target.name}{TMP_SUFFIX}")
    tmp.write_bytes(store.absolute(real).read_bytes()[:200])
    journal = store.root / "_journal" / f"{uuid.uuid4().hex}.{dead_pid}.1.txt"
    journal.parent.mkdir(exist_ok=True)
    journal.write_text(str(Path(real).with_name(target.name)) + "\n")
    assert all(rel.endswith(".json") and not Path(rel).name.startswith(".") for rel in store.iter_files())
    return tmp


def assert_dagster_runs_closed(data_dir: Path) -> None:
    """No Dagster run is left unfinished and no pool slot stays claimed (else the next run waits forever)."""
    with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
        unfinished = instance.get_runs(
            filters=dg.RunsFilter(
                statuses=[dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED]
            )
        )
        assert unfinished == [], f"Dagster runs left unfinished: {[r.run_id for r in unfinished]}"
        storage = instance.event_log_storage
        for pool in storage.get_concurrency_keys():
            assert storage.get_concurrency_info(pool).claimed_slots == [], f"pool {pool} still has a claimed slot"


def assert_consistent(data_dir: Path) -> None:
    """Ledger == envelopes on disk, each once; every promotable file promoted; no journal, temp file or open run."""
    store = BronzeStore(data_dir / "bronze")
    on_disk = {}
    for rel in store.iter_files():
        assert not Path(rel).name.startswith(".") and rel.endswith(".json"), f"store listed a non-envelope: {rel}"
        on_disk[rel] = store.read(rel).file_id
        assert Path(rel).stem == on_disk[rel]
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        ledger = conn.execute("SELECT file_id, bronze_path FROM ops.file_ingestions").fetchall()
        waiting = conn.execute("""
            SELECT count(*) FROM ops.file_ingestions
            WHERE can_promote AND coalesce(silver_status, '') <> 'promoted'
        """).fetchone()[0]
        # every keymap dataset has a Silver table: a row without one (an orphan registered by the wrong step)
        # would never be promoted
        tableless = conn.execute("SELECT count(*) FROM ops.file_ingestions WHERE silver_table IS NULL").fetchone()[0]
        open_runs = conn.execute("SELECT run_id FROM ops.runs WHERE status = 'running'").fetchall()
    ids = Counter(fid for fid, _ in ledger)
    assert [f for f, n in ids.items() if n > 1] == [], "a Bronze file is registered twice"
    assert {path: fid for fid, path in ledger} == on_disk, "ledger and Bronze files on disk differ"
    assert tableless == 0, f"{tableless} ledger row(s) have no Silver table"
    assert waiting == 0, f"{waiting} promotable file(s) were never promoted"
    assert store.journals() == [], "a journal of a finished run is left"
    assert temp_files(data_dir / "bronze") == [], "a temporary file of a killed write is left"
    assert open_runs == [], f"runs left 'running' after the rerun: {open_runs}"
    if (data_dir / "dagster_home").exists():
        assert_dagster_runs_closed(data_dir)


def assert_same_silver(got: dict[str, list[tuple]], clean: dict[str, list[tuple]]) -> None:
    assert sorted(got) == sorted(clean)
    for table in clean:
        if got[table] != clean[table]:
            extra = Counter(got[table]) - Counter(clean[table])
            missing = Counter(clean[table]) - Counter(got[table])
            pytest.fail(
                f"silver.{table} differs from the clean run: {sum(missing.values())} row(s) missing, "
                f"{sum(extra.values())} extra; e.g. missing {list(missing)[:2]}, extra {list(extra)[:2]}"
            )


# ---- fixtures: a clean run, and Bronze fetched but not yet promoted -------------------------------------------------


@pytest.fixture(scope="module")
def clean(sample_server: FakeFmpServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple]]:
    data_dir = tmp_path_factory.mktemp("clean") / "data"
    run_to_end(cli_env(data_dir, sample_server), SELECT_ALL, data_dir.parent / "run.log")
    assert_consistent(data_dir)
    snapshot = silver_snapshot(data_dir / "warehouse.duckdb")
    assert {t for t in snapshot if not t.endswith("__history")} == {a.split("/")[1] for a in SILVER_ASSETS}
    assert all(snapshot[a.split("/")[1]] for a in SILVER_ASSETS)
    return snapshot


@pytest.fixture(scope="module")
def fetched(sample_server: FakeFmpServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with every Bronze file fetched and registered, and nothing promoted yet (no Dagster home)."""
    data_dir = tmp_path_factory.mktemp("fetched") / "data"
    run_to_end(cli_env(data_dir, sample_server), SELECT_BRONZE, data_dir.parent / "run.log")
    shutil.rmtree(data_dir / "dagster_home")
    return data_dir


# ---- the tests --------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("seed,marker,delays", FETCH_KILLS, ids=[f"seed{s}" for s, _, _ in FETCH_KILLS])
def test_kill_while_fetching_bronze_then_rerun(sample_server, clean, tmp_path, seed, marker, delays) -> None:
    delay = random.Random(seed).uniform(*delays)
    data_dir = tmp_path / "data"
    log_path = tmp_path / "run.log"
    proc = start_run(cli_env(data_dir, sample_server, concurrency=2), SELECT_ALL, log_path)
    last = kill_after(proc, log_path, marker, delay)
    print(f"seed {seed}: killed {delay:.2f} s after {marker!r}; last log line: {last}")

    wal = assert_opens(data_dir / "warehouse.duckdb")
    store = BronzeStore(data_dir / "bronze")
    print(
        f"seed {seed}: {len(list(store.iter_files()))} Bronze file(s) on disk, journals {len(store.journals())}, "
        f"temp files {len(temp_files(store.root))}, {wal}"
    )
    tmp = plant_cut_write(store, proc.pid)

    run_to_end(cli_env(data_dir, sample_server), SELECT_ALL, log_path)
    assert not tmp.exists()
    assert_consistent(data_dir)
    assert_same_silver(silver_snapshot(data_dir / "warehouse.duckdb"), clean)


@pytest.mark.slow
@pytest.mark.parametrize("seed,marker,delays", PROMOTE_KILLS, ids=[f"seed{s}" for s, _, _ in PROMOTE_KILLS])
def test_kill_while_promoting_silver_then_rerun(sample_server, clean, fetched, tmp_path, seed, marker, delays) -> None:
    delay = random.Random(seed).uniform(*delays)
    data_dir = tmp_path / "data"
    shutil.copytree(fetched, data_dir)
    env = cli_env(data_dir, sample_server)
    log_path = tmp_path / "run.log"
    proc = start_run(env, SELECT_SILVER, log_path)
    last = kill_after(proc, log_path, marker, delay)
    print(f"seed {seed}: killed {delay:.2f} s after {marker!r}; last log line: {last}")

    wal = assert_opens(data_dir / "warehouse.duckdb")
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as conn:
        promoted = conn.execute("SELECT count(*) FROM ops.file_ingestions WHERE silver_status = 'promoted'").fetchone()[
            0
        ]
        print(f"seed {seed}: {promoted} file(s) promoted before the kill, {wal}")
        # the Silver write and the ledger update commit together: no Silver row of a file the ledger does not
        # call promoted survives the kill
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'silver'"
            ).fetchall()
        ]
        for table in tables:
            orphan_rows = conn.execute(f"""
                SELECT count(*) FROM silver."{table}" WHERE bronze_file_id NOT IN
                    (SELECT file_id FROM ops.file_ingestions WHERE silver_status = 'promoted')
            """).fetchone()[0]
            assert orphan_rows == 0, f"silver.{table} has rows of files the ledger does not call promoted"

    run_to_end(env, SELECT_ALL, log_path)  # Bronze is not due again (same day): this promotes what was left
    assert_consistent(data_dir)
    assert_same_silver(silver_snapshot(data_dir / "warehouse.duckdb"), clean)


# ---- the repairs themselves, without processes (fast) -------------------------------------------------------------

KEYMAP = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")
TREASURY = next(e for e in KEYMAP if e.dataset == "treasury-rates")
EOD = next(e for e in KEYMAP if e.dataset == "historical-price-eod")


def fetch(
    sample_server: FakeFmpServer, root: Path, entries, tickers=(), orphan_entries=None, run_id: str | None = None
):
    client = FmpClient(sample_server.base_url, KEY, max_retries=0, limiter=RateLimiter(100_000))
    with client:
        return run_bronze(
            entries=entries,
            tickers=tickers,
            warehouse=Warehouse(root / "warehouse.duckdb"),
            store=BronzeStore(root / "bronze"),
            client=client,
            run_id=run_id or str(uuid.uuid4()),
            today=dt.date.fromisoformat(AS_OF),
            fmp_plan=None,
            source_mode="fmp",
            orphan_entries=orphan_entries,
        )


def test_windows_a_killed_fetch_never_wrote_are_fetched_again_the_same_day(sample_server, tmp_path) -> None:
    """A killed fetch leaves files for some windows only, all with today's planning date: the days no good window
    covers (between windows, or after the last one) must stay due, or they never reach Silver."""
    fetch(sample_server, tmp_path, [TREASURY])
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.transaction() as conn:
        windows = conn.execute("SELECT window_from, window_to FROM ops.file_ingestions ORDER BY window_from").fetchall()
        assert len(windows) > 5 and windows[-1][1] == dt.date.fromisoformat(AS_OF)
        complete = file_ingestions.latest_bronze_coverage(conn, TREASURY.identity)[TREASURY.identity]
        assert complete.last_as_of == dt.date.fromisoformat(AS_OF)  # complete: not due again today
        # the kill: the third window and the last two were never written
        lost = [windows[2], *windows[-2:]]
        for window_from, _ in lost:
            conn.execute("DELETE FROM ops.file_ingestions WHERE window_from = ?", [window_from])
        cov = file_ingestions.latest_bronze_coverage(conn, TREASURY.identity)[TREASURY.identity]
    assert cov.last_as_of is None and cov.coverage_to <= windows[1][1]  # due now, from before the first gap
    (decision,) = plan([TREASURY], [], {TREASURY.identity: cov}, dt.date.fromisoformat(AS_OF), None)
    assert decision.due and decision.requests[0].window_from <= windows[2][0]

    fetch(sample_server, tmp_path, [TREASURY])
    with warehouse.connect() as conn:
        cov = file_ingestions.latest_bronze_coverage(conn, TREASURY.identity)[TREASURY.identity]
    assert cov.last_as_of == dt.date.fromisoformat(AS_OF) and cov.coverage_to == complete.coverage_to


def test_orphans_of_the_other_bronze_step_get_their_silver_table(sample_server, tmp_path) -> None:
    """The first Bronze step after a crash registers every orphan, also those of the other step's datasets."""
    report = fetch(sample_server, tmp_path, [EOD], ["AAPL"])
    assert report.entries[EOD.asset_name].files == 1
    store = BronzeStore(tmp_path / "bronze")
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.transaction() as conn:  # as if the process had died before registering the file
        (rel,) = [r[0] for r in conn.execute("SELECT bronze_path FROM ops.file_ingestions").fetchall()]
        conn.execute("DELETE FROM ops.file_ingestions")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    journal = store.root / "_journal" / f"{uuid.uuid4().hex}.{dead.pid}.1.txt"
    journal.parent.mkdir(exist_ok=True)
    journal.write_text(rel + "\n")

    report = fetch(sample_server, tmp_path, [TREASURY], orphan_entries=list(KEYMAP))  # the global step runs first
    assert report.orphans_registered == 1 and store.journals() == []
    with warehouse.connect() as conn:
        assert conn.execute("SELECT silver_table FROM ops.file_ingestions WHERE bronze_path = ?", [rel]).fetchall() == [
            (EOD.silver.table,)
        ]
