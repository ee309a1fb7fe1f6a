"""The Dagster resource around the warehouse: dagster-duckdb's DuckDBResource, plus migrations, transactions and
a fail-fast reader.

Write connections come from DuckDBResource.get_connection (it retries a locked file with exponential backoff for
about 100 s; the `duckdb_writer` pool keeps Dagster's own writers from contending at all). Migrations are applied
on the first write connection of a process (once, idempotently), never when a step sets the resource up: a step
touches the file only once it holds its pool slot (`pipeline.orchestration.pools`). Sensors get the same resource and
only read. DuckDB refuses two connections to one file with different settings in one process, so a step uses either this
resource's connections or a plain `Warehouse` at a time (Bronze hands `warehouse` to the fetch code), never both
open together.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from pipeline.warehouse.connection import Warehouse, WarehouseBusy, _is_lock_error, in_transaction


class WarehouseResource(DuckDBResource):
    """The warehouse (`database`: a DuckDB file, or `ducklake:postgres:<conninfo>`): short write connections,
    transactions, fail-fast readers. On a DuckLake the plain `Warehouse` does the work (it attaches the lake and
    coordinates writers through the catalog's advisory locks); DuckDBResource's file connection is for the file."""

    data_path: str = Field(
        default="",
        description="Where a DuckLake keeps its data files (PIPELINE_WAREHOUSE_DATA_PATH); empty for the DuckDB file.",
    )
    lock_wait_s: float = Field(
        default=600.0,
        description="How long the plain `Warehouse` used by Bronze waits for the file lock before giving up.",
    )

    @property
    def is_lake(self) -> bool:
        return self.database.startswith("ducklake:")

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.database, data_path=self.data_path or None, lock_wait_s=self.lock_wait_s)

    @contextmanager
    def connect(self, scopes: Sequence[str] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short read-write connection, migrated; closed on exit, also when the block raises."""
        if self.is_lake:
            with self.warehouse.connect(scopes) as conn:
                yield conn
            return
        Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        opened = self.get_connection()
        try:
            conn = opened.__enter__()
        except duckdb.IOException as exc:
            if _is_lock_error(exc):
                raise WarehouseBusy(f"warehouse {self.database} stayed locked by another process: {exc}") from exc
            raise
        try:
            self.warehouse.ensure_migrated(conn)  # no-op once this process migrated the file
            yield conn
        finally:
            conn.close()  # get_connection does not close it when the block raises
            opened.__exit__(None, None, None)

    @contextmanager
    def transaction(self, scopes: Sequence[str] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """BEGIN; COMMIT when the block succeeds, ROLLBACK and re-raise when it fails (`scopes`: on a DuckLake, the
        writer scopes this transaction locks; see Warehouse.write_lock)."""
        if self.is_lake:
            with self.warehouse.transaction(scopes) as conn:
                yield conn
            return
        with self.connect() as conn, in_transaction(conn, self.database):
            yield conn

    def migrate(self) -> None:
        """Apply pending migrations to an existing warehouse (once per process): what a step that only reads does
        once it holds its slot, so that it reads the schema this code expects. A missing warehouse stays missing."""
        if self.warehouse.exists():
            with self.connect():
                pass

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Read-only, never migrates, fails fast with WarehouseBusy / WarehouseMissing (for sensors and checks)."""
        with self.warehouse.reader() as conn:
            yield conn
