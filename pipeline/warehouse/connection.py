"""The warehouse: short write connections, fail-fast readers, transactions, migrations on first use.

Two backends, chosen by PIPELINE_WAREHOUSE:

- A DuckDB file (the default). DuckDB lets one process hold a file read-write, and while it does, other
  processes cannot even open it read-only. So: writers wait (bounded, with backoff) for the lock instead of
  dying; readers (sensors, `pipeline status`) fail fast with `WarehouseBusy` so they can skip with a reason;
  nobody holds a connection during network I/O.
- A DuckLake (`ducklake:postgres:<libpq conninfo>`, data files under PIPELINE_WAREHOUSE_DATA_PATH). Each
  connection is an in-memory DuckDB that loads the ducklake and postgres extensions from their installed
  packages, ATTACHes the lake and USEs it, so `ops`, `silver` and `gold` resolve as on the file. There is no
  file lock: readers never wait and never see `WarehouseBusy`. Writers coordinate through PostgreSQL advisory
  locks on the catalog database (see `LakeLocks`), because DuckLake has no keys that would stop two writers
  from inserting one key twice, and it aborts a commit when another transaction changed the same table.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import backoff
import duckdb

from pipeline.warehouse import migrations
from pipeline.warehouse.lake import LAKE_PREFIX, LakeLocks, open_lake, redacted

T = TypeVar("T")

log = logging.getLogger("pipeline.warehouse")

_migrated: set[str] = set()
_migrate_lock = threading.Lock()


class WarehouseBusy(RuntimeError):
    """Another process holds the warehouse file; try again later."""


class WarehouseOutdated(WarehouseBusy):
    """A reader found the warehouse's schema behind this code's migrations: like a busy warehouse, try again once a
    writing run has migrated it (readers never migrate)."""


class WriteConflict(RuntimeError):
    """DuckLake refused a commit because another transaction changed the same table; rerun the transaction."""


def is_write_conflict(exc: BaseException) -> bool:
    return isinstance(exc, WriteConflict) or (isinstance(exc, duckdb.Error) and "Transaction conflict" in str(exc))


def retry_conflicts(
    work: Callable[[], T],
    *,
    attempts: int = 12,
    first_delay_s: float = 0.05,
    log_fn: Callable[[str], None] | None = None,
) -> T:
    """Run `work` (one whole transaction) again, with jittered backoff, when it fails on a DuckLake write
    conflict; any other error, and the last conflict, propagate. On the DuckDB file there are no conflicts."""

    def report(details: dict) -> None:
        (log_fn or log.info)(
            f"write conflict with a concurrent writer (attempt {details['tries']}/{attempts}); "
            f"retrying in {details['wait']:.2f} s"
        )

    retrying = backoff.on_exception(
        backoff.expo, Exception, giveup=lambda exc: not is_write_conflict(exc), max_tries=attempts,
        factor=first_delay_s, max_value=2.0, jitter=backoff.full_jitter, on_backoff=report, logger=None,
    )  # fmt: skip
    return retrying(work)()


def _is_lock_error(exc: BaseException) -> bool:
    text = str(exc)
    return "lock" in text.lower() or "Conflicting" in text


@contextmanager
def in_transaction(conn: duckdb.DuckDBPyConnection, label: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN on `conn`; COMMIT when the block succeeds, ROLLBACK and re-raise when it fails. A commit a lake refuses
    because a concurrent writer changed the same table raises `WriteConflict` (naming `label`)."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except duckdb.Error as exc:
        if is_write_conflict(exc):
            raise WriteConflict(f"{label}: {exc}") from exc
        raise


class Warehouse:
    """One DuckDB file (a path), or one DuckLake (`ducklake:postgres:<conninfo>` with `data_path`)."""

    def __init__(
        self,
        path: str | Path,
        *,
        data_path: str | None = None,
        migrations_dir: Path | None = None,
        lock_wait_s: float = 600.0,
    ) -> None:
        self.lake: str | None = str(path) if str(path).startswith(LAKE_PREFIX) else None
        self.path = Path("/nonexistent-ducklake") if self.lake else Path(path)
        if self.lake and not data_path:
            raise ValueError(f"a DuckLake warehouse needs a data path: {redacted(self.lake)}")
        self.data_path = data_path
        self.migrations_dir = migrations_dir
        self.lock_wait_s = lock_wait_s
        self._locks = LakeLocks(self.lake) if self.lake else None

    @classmethod
    def from_settings(cls, settings) -> Warehouse:
        """The warehouse PIPELINE_WAREHOUSE (and PIPELINE_WAREHOUSE_DATA_PATH) select."""
        return cls(settings.warehouse_target, data_path=settings.warehouse_data_path)

    @property
    def label(self) -> str:
        """The warehouse as messages name it: the file path, or the lake without its password."""
        return redacted(self.lake) if self.lake else str(self.path)

    def __repr__(self) -> str:
        return f"Warehouse({self.label!r})"

    def exists(self) -> bool:
        """Whether there is anything to read yet (a lake's catalog is created on first attach)."""
        return True if self.lake else self.path.exists()

    @contextmanager
    def write_lock(self, scopes: Sequence[str] | None = None) -> Iterator[None]:
        """On a lake: exclusive by default; with `scopes`, shared with other scoped writers but exclusive per
        scope (Silver promotion of disjoint tickers). On the file: nothing, the file lock serializes writers."""
        if self._locks is None:
            yield
            return
        with self._locks.write(scopes):
            yield

    def _open_write(self) -> duckdb.DuckDBPyConnection:
        if self.lake:
            return open_lake(self.lake, self.data_path, self._locks)
        self.path.parent.mkdir(parents=True, exist_ok=True)

        def report(details: dict) -> None:
            log.info("warehouse %s is locked by another process; retrying in %.2f s", self.path, details["wait"])

        connect = backoff.on_exception(
            backoff.expo, duckdb.IOException, giveup=lambda exc: not _is_lock_error(exc), max_time=self.lock_wait_s,
            factor=0.05, max_value=5.0, jitter=backoff.full_jitter, on_backoff=report, logger=None,
        )(duckdb.connect)  # fmt: skip
        try:
            return connect(str(self.path))
        except duckdb.IOException as exc:
            if _is_lock_error(exc):
                raise WarehouseBusy(
                    f"warehouse {self.path} stayed locked by another process for {self.lock_wait_s:g} s: {exc}"
                ) from exc
            raise

    def ensure_migrated(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Apply pending migrations once per process (cheap no-op afterwards)."""
        key = self.lake or str(self.path.resolve())
        if key in _migrated:
            return
        with _migrate_lock:
            if key in _migrated:
                return
            if self._locks is not None:
                with self._locks.catalog_init():  # two processes creating the same tables race
                    applied = migrations.migrate(conn, self.migrations_dir)
            else:
                applied = migrations.migrate(conn, self.migrations_dir)
            for m in applied:
                log.info("applied migration %04d_%s to %s", m.version, m.name, self)
            _migrated.add(key)

    @contextmanager
    def connect(self, scopes: Sequence[str] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short read-write connection, migrated; closed on exit. On a lake it holds the write lock
        (`write_lock(scopes)`) until it closes."""
        with self.write_lock(scopes):
            conn = self._open_write()
            try:
                self.ensure_migrated(conn)
                yield conn
            finally:
                conn.close()

    @contextmanager
    def transaction(self, scopes: Sequence[str] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """BEGIN; COMMIT when the block succeeds, ROLLBACK and re-raise when it fails.

        A commit a lake refuses because a concurrent writer changed the same table raises `WriteConflict`;
        nothing of the block is kept, and the caller may rerun it (`retry_conflicts`)."""
        with self.connect(scopes) as conn, in_transaction(conn, str(self)):
            yield conn

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection that fails fast with WarehouseBusy when a writer holds the file.

        Never migrates: a reader of a database that was never created gets WarehouseMissing. A lake reader
        neither waits nor fails for writers: it reads the last committed snapshot.
        """
        if self.lake:
            conn = open_lake(self.lake, self.data_path, self._locks)
            try:
                migrated = conn.execute("""
                    SELECT count(*) FROM information_schema.tables
                    WHERE table_schema = 'ops' AND table_name = 'file_ingestions'
                """).fetchone()[0]
                if not migrated:
                    raise WarehouseMissing(f"warehouse {self} has no ledger yet; run `pipeline run` first")
                self._require_current(conn)
                yield conn
            finally:
                conn.close()
            return
        if not self.path.exists():
            raise WarehouseMissing(
                f"warehouse {self.path} does not exist yet; run `pipeline run` or `pipeline demo` first"
            )
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
            self._require_current(conn)
            yield conn
        finally:
            conn.close()

    def _require_current(self, conn: duckdb.DuckDBPyConnection) -> None:
        """Readers never migrate, so they refuse a warehouse whose schema is behind this code (a run is migrating it,
        or none has run since an upgrade): reading it would fail on columns it does not have yet. Checked once per
        process and warehouse: a schema, once current, stays current for the code that checked it."""
        if self.label in _CURRENT:
            return
        if not migrations.applied(conn):
            return  # not a warehouse yet (an empty file): the caller finds nothing to read, as before any run
        todo = migrations.pending(conn, self.migrations_dir)
        if todo:
            names = ", ".join(m.path.name for m in todo[:3]) + (f" and {len(todo) - 3} more" if len(todo) > 3 else "")
            raise WarehouseOutdated(
                f"warehouse {self.label} is behind this code: migration(s) {names} not applied yet (a run is "
                "applying them, or none has run since the upgrade: the next writing command, e.g. `pipeline run`, "
                "applies them)"
            )
        _CURRENT.add(self.label)


_CURRENT: set[str] = set()  # warehouses this process has seen with every migration applied


class WarehouseMissing(FileNotFoundError):
    """The warehouse file has not been created yet."""
