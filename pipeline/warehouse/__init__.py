"""DuckDB warehouse: connections, migrations, the Dagster resource."""

from pipeline.warehouse.connection import Warehouse, WarehouseBusy, WarehouseMissing
from pipeline.warehouse.migrations import MigrationError

__all__ = ["MigrationError", "Warehouse", "WarehouseBusy", "WarehouseMissing"]
