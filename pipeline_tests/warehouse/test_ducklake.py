"""The DuckLake warehouse backend (PIPELINE_WAREHOUSE=ducklake:postgres:...): a real PostgreSQL catalog and a
local data folder, the extensions loaded from their installed packages.

- Migrations run without the keys and sequences DuckLake lacks, record the files' checksums, and several
  processes opening a catalog that does not exist yet all succeed (the creation race).
- Two writer processes merging the same keys at once leave each key once (DuckLake has no PRIMARY KEY).
- Two `pipeline run` processes and sensor ticks started at once all succeed, the sensors read while the runs
  write (never "busy"), `pipeline status` answers during the runs, and Silver, Gold and the ledger equal a
  serial run's on the DuckDB file; `pipeline coverage` and `pipeline replay` work on the lake.

The server comes from PIPELINE_TEST_POSTGRES_URL (pipeline_tests/postgres_server.py); each test gets a fresh
database and data folder. Without a server the tests skip with the reason, unless PIPELINE_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipeline.fmp.sample import SampleSource
from pipeline.keymap import load_keymap
from pipeline.ops.reader import NoLedger, ledger_reader
from pipeline.orchestration.definitions import build_definitions
from pipeline.orchestration.pools import POOL_TAG
from pipeline.settings import SettingsError, load_settings
from pipeline.silver.schema import LINEAGE_COLUMNS, history_table
from pipeline.warehouse import migrations
from pipeline.warehouse.connection import Warehouse, WarehouseBusy, WarehouseMissing
from pipeline.warehouse.dialect import lake_ddl
from pipeline_tests import postgres_server
from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data
from pipeline_tests.support import KEY, cli_env, pipeline_cmd, wait_all

AS_OF = "2025-06-27"
TICKERS = "AAPL,MSFT"
SELECT = (
    "bronze/market/treasury-rates,silver/fmp_treasury_rates,bronze/prices/historical-price-eod,"
    "silver/fmp_price_eod,bronze/company/profile,silver/fmp_company_profile,gold/dim_instrument,gold/fact_price_daily"
)
RUN_TIMEOUT_S = 300
IGNORED = {name for name, _ in LINEAGE_COLUMNS} | {"valid_from", "valid_to"}  # differ between any two runs


@pytest.fixture()
def lake(tmp_path: Path) -> Iterator[dict[str, str]]:
    """PIPELINE_WAREHOUSE / PIPELINE_WAREHOUSE_DATA_PATH of a lake in a fresh database and folder."""
    with postgres_server.fresh_lake(tmp_path / "lake_data") as env:
        yield env


def lake_warehouse(lake: dict[str, str]) -> Warehouse:
    return Warehouse(lake["PIPELINE_WAREHOUSE"], data_path=lake["PIPELINE_WAREHOUSE_DATA_PATH"])


# ---- settings and DDL (no server) ------------------------------------------------------------------------------


def test_settings_select_the_backend_and_name_the_variable(tmp_path: Path) -> None:
    file_default = load_settings({"PIPELINE_DATA_DIR": str(tmp_path)})
    assert not file_default.uses_lake and file_default.warehouse_target == str(tmp_path / "warehouse.duckdb")
    lake = load_settings(
        {
            "PIPELINE_WAREHOUSE": "ducklake:postgres:dbname=w host=db password=s3cret",
            "PIPELINE_WAREHOUSE_DATA_PATH": "s3://bucket/lake",
        }
    )
    assert lake.uses_lake and lake.warehouse_data_path == "s3://bucket/lake/"
    assert "s3cret" not in lake.warehouse_label and "s3cret" not in repr(lake)
    with pytest.raises(SettingsError, match="PIPELINE_WAREHOUSE_DATA_PATH") as exc:
        load_settings({"PIPELINE_WAREHOUSE": "ducklake:postgres:dbname=w password=s3cret"})
    assert "s3cret" not in str(exc.value)
    with pytest.raises(SettingsError, match="PIPELINE_WAREHOUSE=.*only a PostgreSQL catalog"):
        load_settings({"PIPELINE_WAREHOUSE": "ducklake:metadata.sqlite", "PIPELINE_WAREHOUSE_DATA_PATH": "x"})
    with pytest.raises(SettingsError, match="PIPELINE_WAREHOUSE_DATA_PATH is set"):
        load_settings({"PIPELINE_WAREHOUSE_DATA_PATH": str(tmp_path)})


def test_writing_steps_use_the_writer_pool_on_the_file_only(tmp_path: Path) -> None:
    from pipeline.orchestration.assets import build_gold_assets, build_silver_assets

    file = load_settings({"PIPELINE_DATA_DIR": str(tmp_path)})
    lake = load_settings(
        {
            "PIPELINE_DATA_DIR": str(tmp_path),
            "PIPELINE_WAREHOUSE": "ducklake:postgres:dbname=w",
            "PIPELINE_WAREHOUSE_DATA_PATH": str(tmp_path / "lake"),
        }
    )
    keymap = load_keymap(file.keymap_path)
    for settings, pool, gold_pool in ((file, "duckdb_writer", "duckdb_writer"), (lake, None, "gold")):
        silver, gold = build_silver_assets(keymap, settings), build_gold_assets(keymap, settings)
        assert {a.op.tags.get(POOL_TAG) for a in silver} == {pool}  # claimed in the step (pipeline.orchestration.pools)
        # one Gold build at a time on a lake too, whoever launches it (issue 20)
        assert {a.op.tags.get(POOL_TAG) for a in gold} == {gold_pool}
        assert {a.op.pool for a in [*silver, *gold]} == {None}  # never Dagster's own pool wait, which spins


def test_lake_ddl_drops_only_keys_indexes_and_sequences() -> None:
    for m in migrations.discover(migrations.default_migrations_dir()):
        sql = lake_ddl(m.sql)
        for word in ("PRIMARY KEY", "UNIQUE", "SEQUENCE", "nextval"):
            assert word.lower() not in sql.lower(), (m.path.name, word)
        assert sql.count("CREATE TABLE") == m.sql.count("CREATE TABLE"), m.path.name
    ddl = "CREATE TABLE t (\n    a INTEGER NOT NULL,\n    b VARCHAR,   -- why\n    PRIMARY KEY (a, b)\n)"
    assert lake_ddl(ddl) == "CREATE TABLE t (\n    a INTEGER NOT NULL,\n    b VARCHAR   -- why\n)"


# ---- migrations and the catalog-creation race ----------------------------------------------------------------

OPENER = """
import sys, time
from pipeline.warehouse.connection import Warehouse
time.sleep(max(0.0, float(sys.argv[3]) - time.time()))
with Warehouse(sys.argv[1], data_path=sys.argv[2]).transaction() as conn:
    print(conn.execute("SELECT count(*) FROM ops.schema_migrations").fetchone()[0], flush=True)
"""


def test_processes_creating_one_catalog_at_once_all_migrate_it_once(lake: dict[str, str]) -> None:
    start = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                OPENER,
                lake["PIPELINE_WAREHOUSE"],
                lake["PIPELINE_WAREHOUSE_DATA_PATH"],
                str(start),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    files = migrations.discover(migrations.default_migrations_dir())
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err[-2000:]
        assert out.strip() == str(len(files))
    with lake_warehouse(lake).reader() as conn:
        recorded = conn.execute("SELECT version, name, checksum FROM ops.schema_migrations ORDER BY version").fetchall()
        keys = conn.execute(
            "SELECT count(*) FROM duckdb_constraints() WHERE database_name = 'lake' "
            "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')"
        ).fetchone()[0]
    assert recorded == [(m.version, m.name, m.checksum) for m in files]
    assert keys == 0


# ---- key uniqueness under concurrent writers -------------------------------------------------------------------

WRITER = """
import sys, time
from pipeline.warehouse.connection import Warehouse, retry_conflicts
from pipeline.warehouse.lake import silver_scopes
warehouse = Warehouse(sys.argv[1], data_path=sys.argv[2])
name, rounds = sys.argv[3], int(sys.argv[4])
time.sleep(max(0.0, float(sys.argv[5]) - time.time()))

def merge(day):
    with warehouse.transaction(silver_scopes("prices", ["AAA"])) as conn:
        conn.execute('''
            MERGE INTO silver.prices AS t
            USING (SELECT 'AAA' AS ticker, DATE '2025-01-01' + $day AS date, $close AS close) AS s
            ON t.ticker = s.ticker AND t.date = s.date
            WHEN MATCHED THEN UPDATE SET close = s.close
            WHEN NOT MATCHED THEN INSERT VALUES (s.ticker, s.date, s.close)''', {"day": day, "close": float(day)})
        time.sleep(0.2)   # a promotion's work between its MERGE and its commit: the window two writers overlap in

for day in range(rounds):
    retry_conflicts(lambda: merge(day))
print(name, "done", flush=True)
"""


def test_two_writer_processes_merging_the_same_keys_leave_each_key_once(lake: dict[str, str]) -> None:
    with lake_warehouse(lake).transaction() as conn:
        conn.execute("CREATE TABLE silver.prices (ticker VARCHAR NOT NULL, date DATE NOT NULL, close DOUBLE)")
    rounds, start = 25, time.time() + 3.0
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                lake["PIPELINE_WAREHOUSE"],
                lake["PIPELINE_WAREHOUSE_DATA_PATH"],
                name,
                str(rounds),
                str(start),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    with lake_warehouse(lake).reader() as conn:
        rows, keys = conn.execute("SELECT count(*), count(DISTINCT (ticker, date)) FROM silver.prices").fetchone()
    assert (rows, keys) == (rounds, rounds)


# ---- two runs and sensor ticks at once, against a serial run on the file ------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeFmpServer]:
    with FakeFmpServer(
        api_key=KEY, data=sample_data(SampleSource(as_of=dt.date.fromisoformat(AS_OF))), latency_s=0.02
    ) as fake:
        yield fake


def run_env(server: FakeFmpServer, data_dir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    return cli_env(server.base_url, data_dir, TICKERS, AS_OF, **(extra or {}))


def start_run(env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        return subprocess.Popen(
            pipeline_cmd("run", "--select", SELECT),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def finish(procs: list[subprocess.Popen], logs: list[Path]) -> None:
    codes = wait_all(procs, RUN_TIMEOUT_S)
    for code, log in zip(codes, logs):
        text = log.read_text(errors="replace")
        assert code == 0 and "Traceback" not in text, f"{log.name} (exit {code}):\n" + "\n".join(
            text.splitlines()[-40:]
        )
        # a Silver run that found its files promoted by the other run skips its check step: those checks ran alone
        assert text.count("check(s) did not run (") == text.count("ok: checks-only run"), text


def snapshot(conn: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Silver (current and history), Gold and the ledger without what differs between any two runs (lineage,
    fetch and build times)."""
    out: dict[str, list[tuple]] = {}
    tables = conn.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema IN ('silver', 'gold') ORDER BY ALL"
    ).fetchall()
    for schema, table in tables:
        cols = [
            c
            for c, t in conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
                [schema, table],
            ).fetchall()
            if c not in IGNORED and t != "TIMESTAMP"
        ]  # timestamps are fetch and build times
        out[f"{schema}.{table}"] = conn.execute(
            f"SELECT {', '.join(cols)} FROM {schema}.{table} ORDER BY ALL"
        ).fetchall()
    out["ledger"] = conn.execute("""
        SELECT dataset, discriminator, ticker, window_from, window_to, coverage_from, coverage_to, bronze_rows,
               can_promote, silver_status, silver_rows_read, silver_rejected
        FROM ops.file_ingestions ORDER BY ALL""").fetchall()
    return out


def has_ledger(settings) -> bool:
    """Whether `pipeline status` finds a ledger to report on: a run has created the catalog and applied every
    migration (while a run is still migrating it, readers rightly refuse it as WarehouseOutdated, a WarehouseBusy)."""
    try:
        with ledger_reader(settings):
            return True
    except (WarehouseMissing, NoLedger, WarehouseBusy):
        return False


def duplicate_keys(conn: duckdb.DuckDBPyConnection, keymap) -> dict[str, int]:
    found = {}
    for table, spec in keymap.tables().items():
        if conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'silver' AND table_name = ?", [table]
        ).fetchone()[0]:
            key = ", ".join(f'"{k}"' for k in spec.key)
            n = conn.execute(
                f"SELECT count(*) FROM (SELECT {key} FROM silver.{table} GROUP BY ALL HAVING count(*) > 1)"
            ).fetchone()[0]
            if n:
                found[table] = n
    return found


@pytest.mark.slow
def test_two_runs_and_sensor_ticks_at_once_equal_a_serial_run(
    lake: dict[str, str], server: FakeFmpServer, tmp_path: Path
) -> None:
    # the serial baseline: the same two runs, one after the other, on the DuckDB file
    serial_dir = tmp_path / "serial"
    for i in (1, 2):
        log = tmp_path / f"serial{i}.log"
        finish([start_run(run_env(server, serial_dir), log)], [log])

    lake_dir = tmp_path / "lake"
    env = run_env(server, lake_dir, lake)
    settings = load_settings(env)
    keymap = load_keymap(settings.keymap_path)
    defs = build_definitions(settings, keymap)
    sensor = {s.name: s for s in defs.sensors}["silver_promotion_sensor"]
    logs = [tmp_path / f"lake{i}.log" for i in (1, 2)]
    procs = [start_run(env, log) for log in logs]
    ticks: list[str] = []
    status_answer: tuple[int, str, bool] | None = None  # exit code, output, whether a run outlived the call
    (tmp_path / "sensor_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "sensor_home")) as instance:
        while any(p.poll() is None for p in procs):
            tick = sensor.evaluate_tick(
                dg.build_sensor_context(
                    instance=instance,
                    definitions=defs,
                    cursor="0",
                    resources={"warehouse": defs.resources["warehouse"]},
                )
            )
            ticks.append(tick.skip_message or "")
            # mid-run: status reads the lake while the runs write, once the runs have created its ledger (before
            # that, status rightly answers 1, "no warehouse yet": how long that takes depends on the machine's load)
            if status_answer is None and has_ledger(settings):
                answer = subprocess.run(
                    pipeline_cmd("status", "--no-plan"), env=env, capture_output=True, text=True, timeout=120
                )
                status_answer = (answer.returncode, answer.stdout + answer.stderr, any(p.poll() is None for p in procs))
            time.sleep(1.0)
    finish(procs, logs)
    assert ticks, "the runs finished before a sensor tick"
    assert not [t for t in ticks if "busy" in t], ticks
    assert status_answer is not None, "pipeline status never ran: the runs never showed a ledger while running"
    code, text, mid_run = status_answer
    assert code == 0 and "Recent runs" in text, text
    assert mid_run, "both runs had finished when pipeline status answered: it was not tested mid-run"

    warehouse = Warehouse.from_settings(settings)
    with warehouse.reader() as conn, duckdb.connect(str(serial_dir / "warehouse.duckdb"), read_only=True) as file:
        concurrent, serial = snapshot(conn), snapshot(file)
        assert duplicate_keys(conn, keymap) == {}
        ids = conn.execute(
            "SELECT count(*), count(DISTINCT ingestion_id), count(DISTINCT file_id) FROM ops.file_ingestions"
        ).fetchone()
        runs = conn.execute("SELECT DISTINCT status FROM ops.runs").fetchall()
        # the sensors' cursor: ids grow in the order the registrations committed
        out_of_order = conn.execute("""
            SELECT count(*) FROM (SELECT registered_at < lag(registered_at) OVER (ORDER BY ingestion_id) AS back
                                  FROM ops.file_ingestions) WHERE back""").fetchone()[0]
    assert ids[0] == ids[1] == ids[2]
    assert out_of_order == 0
    assert runs == [("success",)]
    assert concurrent.keys() == serial.keys()
    for name in serial:
        assert concurrent[name] == serial[name], name
    assert any(len(serial[f"silver.{t}"]) for t in ("fmp_price_eod", history_table("fmp_price_eod")))

    coverage = subprocess.run(pipeline_cmd("coverage"), env=env, capture_output=True, text=True, timeout=120)
    assert coverage.returncode == 0 and "historical-price-eod" in coverage.stdout, coverage.stderr[-2000:]
    replay = subprocess.run(pipeline_cmd("replay"), env=env, capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0, (replay.stdout + replay.stderr)[-2000:]
    with warehouse.reader() as conn:
        replayed = snapshot(conn)
    for name in serial:
        if name.startswith("silver.") and not name.endswith(history_table("")):
            assert replayed[name] == serial[name], f"{name} after replay"


# ---- data files on an S3-compatible server ----------------------------------------------------------------------

from pipeline_tests.fakes.s3_server import S3_ENV  # noqa: E402 - with the S3 tests below


def test_a_lake_with_its_data_on_s3_migrates_writes_and_reads(
    lake: dict[str, str], s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    fs = s3fs.S3FileSystem(endpoint_url=s3_endpoint)
    fs.mkdir("lake-data")
    warehouse = Warehouse(lake["PIPELINE_WAREHOUSE"], data_path="s3://lake-data/lake/")
    with warehouse.transaction() as conn:
        conn.execute("CREATE TABLE silver.numbers AS SELECT range AS i FROM range(100000)")
    with warehouse.reader() as conn:
        assert conn.execute("SELECT count(*), sum(i) FROM silver.numbers").fetchone() == (100000, 4999950000)
    assert [p for p in fs.find("lake-data/lake/") if p.endswith(".parquet")], "no Parquet file written to S3"
