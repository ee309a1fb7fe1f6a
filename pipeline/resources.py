"""Dagster resources: the warehouse and the FMP client, both configured from the settings."""

from __future__ import annotations

import dagster as dg

from pipeline.fmp.client import FmpClient
from pipeline.settings import Settings, get_settings
from pipeline.warehouse.resource import WarehouseResource


class FmpResource(dg.ConfigurableResource):
    """Hands a step one FMP client for the run (connection reuse, one rate limiter per process).

    With no FMP_API_KEY the client talks to the bundled sample source instead of the network.
    """

    def client(self, settings: Settings | None = None) -> FmpClient:
        return FmpClient.from_settings(settings or get_settings())


def build_resources(settings: Settings) -> dict[str, object]:
    return {
        "warehouse": WarehouseResource(database=settings.warehouse_target, data_path=settings.warehouse_data_path or ""),
        "fmp": FmpResource(),
    }
