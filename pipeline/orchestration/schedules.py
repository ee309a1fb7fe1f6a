"""The daily refresh: weekdays after the US close, Bronze for everything, in a few runs.

Cadence gating in the keymap decides per dataset and ticker what is actually due, so a run where nothing is
due is cheap and says why in its metadata. Silver and Gold follow through their sensors.
"""

from __future__ import annotations

import dagster as dg

from pipeline.keymap.model import Keymap
from pipeline.orchestration.assets import bronze_key
from pipeline.orchestration.partitions import (
    TICKERS_PER_RUN,
    contiguous_ranges,
    partition_range_tags,
    tickers_partitions,
)


def build_daily_refresh(keymap: Keymap) -> dg.ScheduleDefinition:
    per_ticker = [bronze_key(e) for e in keymap.per_ticker_entries()]
    global_ = [bronze_key(e) for e in keymap.global_entries()]

    @dg.schedule(
        name="daily_refresh",
        cron_schedule="30 18 * * 1-5",
        execution_timezone="America/New_York",
        target=per_ticker + global_,
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description="Weekdays 18:30 New York: fetch due Bronze for the global datasets and every ticker "
        f"({TICKERS_PER_RUN} tickers per run). Off by default: it calls the API.",
    )
    def daily_refresh(context: dg.ScheduleEvaluationContext):
        day = context.scheduled_execution_time.date().isoformat()
        requests = [dg.RunRequest(run_key=f"daily:{day}:global", asset_selection=global_)] if global_ else []
        keys = context.instance.get_dynamic_partitions(tickers_partitions.name)
        if not keys:
            return requests or dg.SkipReason("no tickers yet: ticker_universe_sensor adds them")
        for first, last in contiguous_ranges(keys, set(keys)):
            requests.append(
                dg.RunRequest(
                    run_key=f"daily:{day}:tickers:{keys.index(first)}",
                    asset_selection=per_ticker,
                    tags=partition_range_tags(first, last),
                )
            )
        return requests

    return daily_refresh
