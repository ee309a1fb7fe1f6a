"""The Silver tests' warehouse: the `lake` fixture runs a test on the DuckDB file and on a DuckLake."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.warehouse.connection import Warehouse
from pipeline_tests import postgres_server
from pipeline_tests.silver.test_silver import Lake


@pytest.fixture(params=["file", "ducklake"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lake]:
    """The tests that take this fixture run on the DuckDB file and on a DuckLake (PostgreSQL catalog)."""
    if request.param == "file":
        yield Lake(tmp_path)
        return
    with postgres_server.fresh_lake(tmp_path / "lake_data") as env:
        yield Lake(
            tmp_path, warehouse=Warehouse(env["PIPELINE_WAREHOUSE"], data_path=env["PIPELINE_WAREHOUSE_DATA_PATH"])
        )
