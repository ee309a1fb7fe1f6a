"""The one Dagster entry point: `defs`, built from the settings and the dataset keymap.

Reading order for a newcomer: settings.py (environment contract) -> keymap/ (what each dataset is) ->
assets/ (Bronze, Silver, Gold assets built from the keymap) -> sensors.py / schedules.py (automation).
"""

from __future__ import annotations

import dagster as dg

from pipeline.keymap import Keymap, load_keymap
from pipeline.orchestration.assets import build_bronze_assets, build_gold_assets, build_silver_assets
from pipeline.orchestration.checks import blocking_check_keys, build_asset_checks
from pipeline.orchestration.resources import build_resources
from pipeline.orchestration.schedules import build_daily_refresh
from pipeline.orchestration.sensors import (
    build_gold_promotion_sensor,
    build_silver_promotion_sensor,
    build_ticker_universe_sensor,
)
from pipeline.settings import Settings, get_settings
from pipeline.warehouse.lake import writer_pool

# Each step in its own process, as Dagster's default executor does (a step claims its pool slot in its body,
# `pipeline.orchestration.pools`, and touches the warehouse only once it holds it). The processes are forked from a
# server that has already imported the project, instead of each starting Python and loading the definitions again (about
# 2 s per step; a Gold run has seven steps).
STEP_EXECUTOR = dg.multiprocess_executor.configured({"start_method": {"forkserver": {}}}, name="forkserver_executor")


def build_definitions(settings: Settings, keymap: Keymap) -> dg.Definitions:
    assets = [
        *build_bronze_assets(keymap, settings),
        *build_silver_assets(keymap, settings),
        *build_gold_assets(keymap, settings),
    ]
    checks = build_asset_checks(keymap, settings.today, writer_pool(settings.uses_lake))
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        sensors=[
            build_ticker_universe_sensor(settings),
            build_silver_promotion_sensor(keymap, settings),
            build_gold_promotion_sensor(settings, blocking_check_keys(checks)),
        ],
        schedules=[build_daily_refresh(keymap)],
        resources=build_resources(settings),
        executor=STEP_EXECUTOR,
    )


def load_definitions() -> dg.Definitions:
    settings = get_settings()
    return build_definitions(settings, load_keymap(settings.keymap_path))


defs = load_definitions()
