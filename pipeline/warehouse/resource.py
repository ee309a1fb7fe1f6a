"""The Dagster resource around the warehouse: assets ask it for short connections and transactions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import dagster as dg
import duckdb

from pipeline.warehouse.connection import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """Path of the DuckDB file; migrations are applied on the first write connection of each process."""

    database: str                 # a DuckDB file path, or ducklake:postgres:<conninfo>
    data_path: str = ""           # the DuckLake's data files (PIPELINE_WAREHOUSE_DATA_PATH)
    lock_wait_s: float = 600.0

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.database, data_path=self.data_path or None, lock_wait_s=self.lock_wait_s)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.warehouse.connect() as conn:
            yield conn

    @contextmanager
    def transaction(self, scopes: Sequence[str] | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.warehouse.transaction(scopes) as conn:
            yield conn

    @contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.warehouse.reader() as conn:
            yield conn
