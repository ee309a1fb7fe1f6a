"""What the UI shows of the graph, checked on the definitions (no daemon): the layer of each asset in its group,
Silver columns described from the keymap, and freshness policies on the assets fed daily."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from pipeline.keymap import load_keymap
from pipeline.orchestration.assets import bronze_key, gold_key, silver_key
from pipeline.orchestration.definitions import build_definitions
from pipeline.settings import load_settings
from pipeline.silver.schema import LINEAGE_COLUMNS
from pipeline_tests.support import make_env


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    settings = load_settings(make_env(tmp_path_factory.mktemp("ui")))
    keymap = load_keymap(settings.keymap_path)
    return keymap, build_definitions(settings, keymap).resolve_asset_graph()


def test_each_asset_group_names_its_layer(graph) -> None:
    """The graph shortens keys to their last part; the group (`bronze_prices`, `silver_prices`, `gold`) keeps the
    layer visible, and Bronze and Silver of one domain are no longer one group."""
    keymap, g = graph
    for key in g.get_all_asset_keys():
        layer = key.path[0]
        group = g.get(key).group_name
        assert group == "gold" if layer == "gold" else group.startswith(f"{layer}_"), (key, group)
    eod = next(e for e in keymap if e.dataset == "historical-price-eod")
    assert g.get(bronze_key(eod)).group_name == "bronze_prices"
    assert g.get(silver_key(eod.silver.table)).group_name == "silver_prices"


def test_every_silver_column_has_a_description_from_the_keymap(graph) -> None:
    keymap, g = graph
    for table, spec in keymap.tables().items():
        columns = {c.name: c for c in g.get(silver_key(table)).metadata["dagster/column_schema"].columns}
        assert list(columns) == [c.name for c in spec.columns] + [name for name, _ in LINEAGE_COLUMNS]
        assert all(c.description for c in columns.values()), table
        for col in spec.columns:
            if col.name != "ticker":
                assert f"`{col.api}`" in columns[col.name].description  # the API field it comes from
    eod = keymap.tables()["fmp_price_eod"]
    described = {
        c.name: c.description for c in g.get(silver_key("fmp_price_eod")).metadata["dagster/column_schema"].columns
    }
    assert "Part of the key" in described[eod.key[-1]] and "ticker symbol" in described["ticker"]


def test_daily_assets_carry_a_freshness_policy_from_the_keymap_window(graph) -> None:
    """Dagster's freshness daemon (in `dg dev`) evaluates these; assets fetched weekly or less often have none."""
    keymap, g = graph
    for entry in keymap:
        policy = g.get(bronze_key(entry)).freshness_policy
        if entry.recipe.min_age_days != 1:
            assert policy is None, entry.asset_name
            continue
        assert isinstance(policy, dg.FreshnessPolicy), entry.asset_name
        assert policy.fail_window.to_timedelta() == dt.timedelta(days=entry.recipe.effective_freshness_days)
    assert g.get(silver_key("fmp_price_eod")).freshness_policy is not None
    assert g.get(gold_key("fact_price_daily")).freshness_policy is not None
