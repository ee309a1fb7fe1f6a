"""The DuckDB warehouse (DESIGN section 9) on real files: transactions, checksummed migrations, and the
cross-process lock rules (readers fail fast, writers wait within a budget)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from pipeline.warehouse import (
    MigrationError,
    Warehouse,
    WarehouseBusy,
    WarehouseMissing,
    connection,
    migrations,
)


@pytest.fixture(autouse=True)
def fresh_migration_cache(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """`connection._migrated` (and `_CURRENT`, what readers saw current) remember migrated files per process; give
    every test its own, empty ones."""
    cache: set[str] = set()
    monkeypatch.setattr(connection, "_migrated", cache)
    monkeypatch.setattr(connection, "_CURRENT", set())
    return cache


def write(folder: Path, name: str, sql: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(sql, encoding="utf-8")
    return path


FIRST = "CREATE SCHEMA IF NOT EXISTS ops;\nCREATE TABLE ops.t1 (a INTEGER);\n"
SECOND = "CREATE TABLE ops.t2 (b INTEGER);\n"


@pytest.fixture
def mig_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "migs"
    write(folder, "0001_first.sql", FIRST)
    write(folder, "0002_second.sql", SECOND)
    return folder


def tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        f"{s}.{t}" for s, t in conn.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
    }


# ---- transactions ---------------------------------------------------------------------------------------------


def test_transaction_commits_data_and_ddl(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh.duckdb")
    with wh.transaction() as conn:
        conn.execute("CREATE TABLE silver.t (k INTEGER PRIMARY KEY, v VARCHAR)")
        conn.execute("INSERT INTO silver.t VALUES (1, 'a'), (2, 'b')")
    # A separate connection (the file, not :memory:) sees the committed table and rows.
    with wh.connect() as conn:
        assert conn.execute("SELECT count(*) FROM silver.t").fetchone()[0] == 2
    assert (tmp_path / "wh.duckdb").is_file()


def test_transaction_rolls_back_data_and_ddl_on_error(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh.duckdb")
    with wh.transaction() as conn:
        conn.execute("CREATE TABLE silver.t (k INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO silver.t VALUES (1)")
    with pytest.raises(RuntimeError, match="boom"):
        with wh.transaction() as conn:
            conn.execute("INSERT INTO silver.t VALUES (2)")
            conn.execute("CREATE TABLE silver.never (x INTEGER)")
            conn.execute("DROP TABLE silver.t")
            raise RuntimeError("boom")
    with wh.connect() as conn:
        assert conn.execute("SELECT k FROM silver.t").fetchall() == [(1,)]
        assert "silver.never" not in tables(conn)


def test_transaction_rolls_back_when_a_statement_fails(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "wh.duckdb")
    with wh.transaction() as conn:
        conn.execute("CREATE TABLE silver.t (k INTEGER PRIMARY KEY)")
    with pytest.raises(duckdb.ConstraintException):
        with wh.transaction() as conn:
            conn.execute("INSERT INTO silver.t VALUES (1)")
            conn.execute("INSERT INTO silver.t VALUES (1)")
    with wh.connect() as conn:
        assert conn.execute("SELECT count(*) FROM silver.t").fetchone()[0] == 0


# ---- migrations ----------------------------------------------------------------------------------------------


def test_shipped_migrations_applied_once_with_checksums(tmp_path: Path, fresh_migration_cache: set[str]) -> None:
    path = tmp_path / "wh.duckdb"
    shipped = migrations.discover(migrations.default_migrations_dir())
    assert shipped and shipped[0].version == 1
    with Warehouse(path).connect() as conn:
        assert {"ops.file_ingestions", "ops.runs", "ops.gold_builds", "ops.schema_migrations"} <= tables(conn)
        rows = conn.execute(
            "SELECT version, name, checksum, applied_at FROM ops.schema_migrations ORDER BY version"
        ).fetchall()
    assert [(v, n, c) for v, n, c, _ in rows] == [(m.version, m.name, m.checksum) for m in shipped]
    for m, row in zip(shipped, rows):
        assert row[2] == hashlib.sha256(m.path.read_bytes()).hexdigest() and row[3] is not None
    assert str(path.resolve()) in fresh_migration_cache
    # A new process (empty cache) opening the same file applies nothing and records nothing twice.
    fresh_migration_cache.clear()
    with Warehouse(path).connect() as conn:
        assert migrations.migrate(conn) == []
        assert migrations.pending(conn) == []
        assert conn.execute("SELECT count(*) FROM ops.schema_migrations").fetchone()[0] == len(shipped)


def test_custom_folder_applies_in_order_then_only_new_ones(
    tmp_path: Path, mig_dir: Path, fresh_migration_cache: set[str]
) -> None:
    path = tmp_path / "wh.duckdb"
    with Warehouse(path, migrations_dir=mig_dir).connect() as conn:
        assert {"ops.t1", "ops.t2"} <= tables(conn)
    write(mig_dir, "0003_third.sql", "CREATE TABLE ops.t3 (c INTEGER);")
    fresh_migration_cache.clear()
    with Warehouse(path, migrations_dir=mig_dir).connect() as conn:
        assert "ops.t3" in tables(conn)
        assert conn.execute("SELECT version, name FROM ops.schema_migrations ORDER BY version").fetchall() == [
            (1, "first"),
            (2, "second"),
            (3, "third"),
        ]


def test_checksum_mismatch_names_the_file(tmp_path: Path, mig_dir: Path, fresh_migration_cache: set[str]) -> None:
    path = tmp_path / "wh.duckdb"
    with Warehouse(path, migrations_dir=mig_dir).connect():
        pass
    write(mig_dir, "0002_second.sql", SECOND + "-- edited after it was applied\n")
    fresh_migration_cache.clear()
    with pytest.raises(MigrationError, match=r"0002_second\.sql changed after it was applied \(checksum mismatch\)"):
        with Warehouse(path, migrations_dir=mig_dir).connect():
            pass
    assert str(path.resolve()) not in fresh_migration_cache  # a failed check is not remembered as migrated


def test_duplicate_version_names_both_files(tmp_path: Path, mig_dir: Path) -> None:
    write(mig_dir, "0002_other.sql", "SELECT 1;")
    with pytest.raises(MigrationError, match=r"0002 is used twice: .*0002_other\.sql.*0002_second\.sql"):
        with Warehouse(tmp_path / "wh.duckdb", migrations_dir=mig_dir).connect():
            pass


def test_missing_applied_file_names_it(tmp_path: Path, mig_dir: Path, fresh_migration_cache: set[str]) -> None:
    path = tmp_path / "wh.duckdb"
    with Warehouse(path, migrations_dir=mig_dir).connect():
        pass
    (mig_dir / "0002_second.sql").unlink()
    fresh_migration_cache.clear()
    with pytest.raises(MigrationError, match=r"0002_second\.sql was applied to this database but is missing from"):
        with Warehouse(path, migrations_dir=mig_dir).connect():
            pass


@pytest.mark.parametrize(
    "bad_name", ["1_first.sql", "0003-third.sql", "0003_Third.sql", "0003_third.SQL.sql", "00003_x.sql"]
)
def test_malformed_name_names_the_file(tmp_path: Path, mig_dir: Path, bad_name: str) -> None:
    write(mig_dir, bad_name, "SELECT 1;")
    with pytest.raises(MigrationError, match=rf"{bad_name.replace('.', r'.')} has a malformed name"):
        with Warehouse(tmp_path / "wh.duckdb", migrations_dir=mig_dir).connect():
            pass


def test_non_sql_files_are_ignored(tmp_path: Path, mig_dir: Path) -> None:
    write(mig_dir, "README.md", "notes")
    with Warehouse(tmp_path / "wh.duckdb", migrations_dir=mig_dir).connect() as conn:
        assert conn.execute("SELECT count(*) FROM ops.schema_migrations").fetchone()[0] == 2


def test_missing_folder_means_nothing_to_apply(tmp_path: Path, fresh_migration_cache: set[str]) -> None:
    missing = tmp_path / "no_such_migrations"
    fresh = tmp_path / "fresh.duckdb"
    with Warehouse(fresh, migrations_dir=missing).connect() as conn:
        assert (
            conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'ops'").fetchone()[0] == 0
        )
    # a database that recorded migrations names the first file that went missing
    migrated = tmp_path / "migrated.duckdb"
    with Warehouse(migrated).connect():
        pass
    fresh_migration_cache.clear()
    with pytest.raises(MigrationError, match=r"0001_ops_ledger\.sql was applied to this database but is missing"):
        with Warehouse(migrated, migrations_dir=missing).connect():
            pass


def test_failing_migration_is_rolled_back_and_not_recorded(tmp_path: Path, mig_dir: Path) -> None:
    write(mig_dir, "0003_broken.sql", "CREATE TABLE ops.t3 (c INTEGER);\nSELECT * FROM no_such_table;")
    path = tmp_path / "wh.duckdb"
    with pytest.raises(MigrationError, match=r"0003_broken\.sql failed"):
        with Warehouse(path, migrations_dir=mig_dir).connect():
            pass
    conn = duckdb.connect(str(path))
    try:
        assert conn.execute("SELECT max(version) FROM ops.schema_migrations").fetchone()[0] == 2
        assert "ops.t3" not in tables(conn)
    finally:
        conn.close()


# ---- readers and the cross-process lock ----------------------------------------------------------------------

HOLDER = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1])
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
conn.close()
print("released", flush=True)
time.sleep(float(sys.argv[3]))
"""


@contextmanager
def held_by_other_process(path: Path, hold_s: float, linger_s: float = 30.0) -> Iterator[subprocess.Popen[str]]:
    """Another process opens `path` read-write, holds it `hold_s` seconds, closes it and stays alive."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), str(hold_s), str(linger_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
        assert line == "ready", (
            f"holder did not start: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
        )
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "wh.duckdb"
    with Warehouse(path).connect():
        pass
    return path


def test_reader_reads_and_never_migrates(tmp_path: Path, db: Path) -> None:
    with Warehouse(db).reader() as conn:
        assert conn.execute("SELECT count(*) FROM ops.runs").fetchone()[0] == 0
        with pytest.raises(duckdb.Error):
            conn.execute("CREATE TABLE ops.x (a INTEGER)")
    with pytest.raises(WarehouseMissing, match="does not exist yet"):
        with Warehouse(tmp_path / "absent.duckdb").reader():
            pass
    assert not (tmp_path / "absent.duckdb").exists()


def test_reader_refuses_a_warehouse_behind_the_code_naming_the_pending_migration(
    tmp_path: Path, mig_dir: Path, fresh_migration_cache: set[str]
) -> None:
    """Readers never migrate: a schema behind this code's migrations (a run is applying them, or none has run since
    an upgrade) is reported like a busy warehouse, naming the migration, instead of failing on a missing column."""
    path = tmp_path / "wh.duckdb"
    with Warehouse(path, migrations_dir=mig_dir).connect():
        pass
    write(mig_dir, "0003_third.sql", "ALTER TABLE ops.t1 ADD COLUMN c INTEGER;\n")
    with pytest.raises(WarehouseBusy, match="0003_third.sql not applied yet"):
        with Warehouse(path, migrations_dir=mig_dir).reader():
            pass
    fresh_migration_cache.clear()  # as in a new process running the new code
    with Warehouse(path, migrations_dir=mig_dir).connect():  # a writer applies it
        pass
    with Warehouse(path, migrations_dir=mig_dir).reader() as conn:
        assert conn.execute("SELECT count(c) FROM ops.t1").fetchone()[0] == 0


def test_reader_is_busy_while_this_process_writes(db: Path) -> None:
    wh = Warehouse(db)
    with wh.connect():
        with pytest.raises(WarehouseBusy, match="open for writing in this process"):
            with wh.reader():
                pass


def test_reader_fails_fast_while_another_process_writes(db: Path) -> None:
    with held_by_other_process(db, hold_s=30):
        start = time.monotonic()
        with pytest.raises(WarehouseBusy) as info:
            with Warehouse(db).reader():
                pass
        assert time.monotonic() - start < 2.0
        assert str(db) in str(info.value)


def test_writer_waits_for_the_lock_then_succeeds(db: Path) -> None:
    # The other process releases after ~1.5 s, inside a 2.5 s budget but after the backoff has grown.
    with held_by_other_process(db, hold_s=1.5) as proc:
        start = time.monotonic()
        with Warehouse(db, lock_wait_s=2.5).transaction() as conn:
            conn.execute("INSERT INTO ops.runs (run_id, started_at, status) VALUES ('r1', now(), 'running')")
        waited = time.monotonic() - start
        assert proc.poll() is None  # released by closing, not by exiting
    assert 1.0 <= waited < 3.0
    with Warehouse(db).reader() as conn:
        assert conn.execute("SELECT run_id FROM ops.runs").fetchall() == [("r1",)]


def test_writer_gives_up_after_its_budget_naming_the_file(db: Path) -> None:
    with held_by_other_process(db, hold_s=30):
        start = time.monotonic()
        with pytest.raises(WarehouseBusy) as info:
            with Warehouse(db, lock_wait_s=0.5).connect():
                pass
        waited = time.monotonic() - start
    assert 0.3 <= waited < 2.0
    assert str(db) in str(info.value)
    assert "locked by another process" in str(info.value)
