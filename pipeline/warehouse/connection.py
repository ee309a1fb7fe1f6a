"""The DuckDB warehouse file: short write connections, fail-fast readers, transactions, migrations on first use.

DuckDB lets one process hold a file read-write, and while it does, other processes cannot even open it
read-only. So: writers wait (bounded, with backoff) for the lock instead of dying; readers (sensors, `pipeline
status`) fail fast with `WarehouseBusy` so they can skip with a reason; nobody holds a connection during
network I/O.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pipeline.warehouse import migrations

log = logging.getLogger("pipeline.warehouse")

_migrated: set[str] = set()
_migrate_lock = threading.Lock()


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse file; try again later."""


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "lock" in text.lower() or "Conflicting" in text


class Warehouse:
    """Owns one DuckDB file under PIPELINE_DATA_DIR."""

    def __init__(self, path: str | Path, *, migrations_dir: Path | None = None, lock_wait_s: float = 600.0) -> None:
        self.path = Path(path)
        self.migrations_dir = migrations_dir
        self.lock_wait_s = lock_wait_s

    def __repr__(self) -> str:
        return f"Warehouse({str(self.path)!r})"

    def _open_write(self) -> duckdb.DuckDBPyConnection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_wait_s
        delay = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path))
            except duckdb.IOException as exc:
                remaining = deadline - time.monotonic()
                if not _is_lock_error(exc) or remaining <= 0:
                    if _is_lock_error(exc):
                        raise WarehouseBusy(f"warehouse {self.path} stayed locked by another process for "
                                            f"{self.lock_wait_s:g} s: {exc}") from exc
                    raise
                log.info("warehouse %s is locked by another process; retrying in %.2f s", self.path, delay)
                time.sleep(min(delay * random.uniform(0.5, 1.0), remaining))   # last try at the deadline
                delay = min(delay * 2, 5.0)

    def ensure_migrated(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Apply pending migrations once per process (cheap no-op afterwards)."""
        key = str(self.path.resolve())
        if key in _migrated:
            return
        with _migrate_lock:
            if key in _migrated:
                return
            applied = migrations.migrate(conn, self.migrations_dir)
            for m in applied:
                log.info("applied migration %04d_%s to %s", m.version, m.name, self.path)
            _migrated.add(key)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short read-write connection, migrated; closed on exit."""
        conn = self._open_write()
        try:
            self.ensure_migrated(conn)
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """BEGIN; COMMIT when the block succeeds, ROLLBACK and re-raise when it fails."""
        with self.connect() as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection that fails fast with WarehouseBusy when a writer holds the file.

        Never migrates: a reader of a database that was never created gets WarehouseMissing.
        """
        if not self.path.exists():
            raise WarehouseMissing(f"warehouse {self.path} does not exist yet; run `pipeline run` or `pipeline demo` first")
        try:
            conn = duckdb.connect(str(self.path), read_only=True)
        except duckdb.IOException as exc:
            if _is_lock_error(exc):
                raise WarehouseBusy(f"warehouse {self.path} is busy: a run is writing to it ({exc})") from exc
            raise
        except duckdb.ConnectionException as exc:
            # This process already holds the file read-write (e.g. a test or a step): that is "busy" too.
            raise WarehouseBusy(f"warehouse {self.path} is open for writing in this process") from exc
        try:
            yield conn
        finally:
            conn.close()


class WarehouseMissing(FileNotFoundError):
    """The warehouse file has not been created yet."""
