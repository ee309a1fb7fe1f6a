"""Dagster resources: the warehouse and the FMP client, configured from the settings (the environment contract).

FmpResource carries the source the settings chose (`Settings.source_mode`: PIPELINE_SOURCE, else the key decides)
into the steps. Its fields show in the UI (Deployment -> Resources), the key only as the name of its environment
variable.
"""

from __future__ import annotations

import dataclasses

import dagster as dg
from pydantic import Field

from pipeline.fmp.client import FmpClient
from pipeline.fmp.plans import DEFAULT_CALLS_PER_MINUTE, BudgetLimits, budget_limits
from pipeline.orchestration.warehouse_resource import WarehouseResource
from pipeline.settings import DEFAULT_BASE_URL, Settings

SAMPLE_SOURCE_LABEL = "bundled sample source"


class FmpConfigError(RuntimeError):
    """The resource is set to the live API but has no key."""


class FmpResource(dg.ConfigurableResource):
    """Hands a step one FMP client for the run (connection reuse, one rate limiter per process)."""

    api_key: str | None = Field(
        default=None,
        description="FMP API key, from the FMP_API_KEY environment variable. "
        "Unset: requests go to the bundled sample source.",
    )
    source: str | None = Field(
        default=None,
        description="fmp or sample (PIPELINE_SOURCE, or as the settings decided it); unset: fmp when a key is set.",
    )
    base_url: str = Field(default=DEFAULT_BASE_URL, description="Where FMP requests go (FMP_BASE_URL).")
    plan: str | None = Field(default=None, description="FMP plan (FMP_PLAN): recipes above it are skipped, visibly.")
    calls_per_minute: int = Field(
        default=DEFAULT_CALLS_PER_MINUTE,
        description="Request ceiling per minute and process (FMP_CALLS_PER_MINUTE, default: the plan's).",
    )
    max_concurrency: int = Field(default=8, description="Requests in flight at once (FMP_MAX_CONCURRENCY).")
    bandwidth_30d: int | None = Field(
        default=None,
        description="Bytes the key may download in any 30 days (FMP_BANDWIDTH_30D, default: the plan's); "
        "unset: no bandwidth budget.",
    )
    daily_request_cap: int | None = Field(
        default=None, description="Requests per day, New York time (FMP_DAILY_REQUEST_CAP; Basic: 250); unset: none."
    )
    daily_byte_cap: int | None = Field(default=None, description="Bytes per day (FMP_DAILY_BYTE_CAP); unset: none.")

    @property
    def key(self) -> str | None:
        return (self.api_key or "").strip() or None

    @property
    def uses_sample_source(self) -> bool:
        return self.source == "sample" if self.source else self.key is None

    @property
    def source_mode(self) -> str:
        return "sample" if self.uses_sample_source else "fmp"

    @property
    def source_label(self) -> str:
        return SAMPLE_SOURCE_LABEL if self.uses_sample_source else self.base_url

    def budget_limits(self) -> BudgetLimits:
        """The budget Bronze steps plan within (`pipeline.bronze.budget`); the figures are already resolved."""
        return budget_limits(
            self.plan,
            bandwidth_30d=self.bandwidth_30d,
            daily_requests=self.daily_request_cap,
            daily_bytes=self.daily_byte_cap,
        )

    def client(self, settings: Settings) -> FmpClient:
        """A client for this configuration; `settings` supply the day and the tickers the sample source serves."""
        if not self.uses_sample_source and self.key is None:
            raise FmpConfigError(
                "the fmp resource is set to the live API, but FMP_API_KEY is not set in this process; set it "
                "where the code location and the daemon run (the pipeline never falls back to sample data)"
            )
        return FmpClient.from_settings(
            dataclasses.replace(
                settings,
                source=self.source,
                fmp_api_key=None if self.uses_sample_source else self.key,
                fmp_base_url=self.base_url.rstrip("/"),
                fmp_plan=self.plan,
                calls_per_minute=self.calls_per_minute,
                max_concurrency=self.max_concurrency,
            )
        )


def build_resources(settings: Settings) -> dict[str, object]:
    return {
        "warehouse": WarehouseResource(
            database=settings.warehouse_target, data_path=settings.warehouse_data_path or ""
        ),
        "fmp": FmpResource(
            # the key is never written into the config the UI shows: only the variable's name is
            api_key=dg.EnvVar("FMP_API_KEY") if settings.fmp_api_key else None,
            source=settings.source,  # None: the key decides, as in the settings
            base_url=settings.fmp_base_url,
            plan=settings.fmp_plan,
            calls_per_minute=settings.calls_per_minute,
            max_concurrency=settings.max_concurrency,
            bandwidth_30d=settings.budget.bandwidth_30d,
            daily_request_cap=settings.budget.daily_requests,
            daily_byte_cap=settings.budget.daily_bytes,
        ),
    }
