"""Fixtures of the Dagster end-to-end tests."""

from __future__ import annotations

import dagster as dg
import pytest

from pipeline.keymap import load_keymap
from pipeline.orchestration.definitions import build_definitions
from pipeline.orchestration.partitions import tickers_partitions
from pipeline.settings import load_settings
from pipeline_tests.support import E2E_TICKERS, make_env


@pytest.fixture()
def setup(tmp_path):
    """(settings, keymap, definitions, instance) for one test: its own data folder and Dagster instance, with the
    three test tickers already partitions."""
    settings = load_settings(make_env(tmp_path))
    keymap = load_keymap(settings.keymap_path)
    defs = build_definitions(settings, keymap)
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        instance.add_dynamic_partitions(tickers_partitions.name, E2E_TICKERS)
        yield settings, keymap, defs, instance
