"""Each dataset's priority under the request budget: prices, then calendars, then statements, then metrics, then the
rest; derived from the entry, or set in the keymap (`recipe.priority`), validated like every other field."""

from __future__ import annotations

import copy

import pytest
import yaml

from pipeline.keymap import KeymapError, load_keymap, parse_keymap
from pipeline.keymap.model import PRIORITIES
from pipeline.settings import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "dataset_keymap.yaml"


def shipped_priorities() -> dict[str, str]:
    return {e.asset_name: e.priority for e in load_keymap(SHIPPED)}


def test_priorities_are_ordered_as_the_budget_spends() -> None:
    assert PRIORITIES == ("prices", "calendars", "statements", "metrics", "other")


def test_shipped_datasets_get_their_priority() -> None:
    got = shipped_priorities()
    assert got["historical-price-eod"] == "prices"
    assert got["historical-price-eod__non-split-adjusted"] == "prices"
    assert got["economic-calendar"] == "calendars"
    assert got["income-statement__quarter"] == "statements"
    assert got["balance-sheet-statement__annual"] == "statements"
    assert got["cash-flow-statement__quarter"] == "statements"
    assert got["key-metrics__annual"] == "metrics"
    assert got["ratios__quarter"] == "metrics"
    assert got["profile"] == "other" and got["stock-peers"] == "other" and got["treasury-rates"] == "other"
    # FMP's total-return series is a cross-check of what Gold derives: set to "other" in the keymap
    assert got["historical-price-eod__dividend-adjusted"] == "other"


def _doc_with(priority: object) -> dict:
    doc = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    doc = copy.deepcopy(doc)
    raw = next(r for r in doc["datasets"] if r["dataset"] == "profile")
    raw["recipe"]["priority"] = priority
    return doc


def test_a_keymap_priority_wins_over_the_derived_one() -> None:
    keymap = parse_keymap(_doc_with("prices"), "test.yaml")
    assert next(e for e in keymap if e.dataset == "profile").priority == "prices"


@pytest.mark.parametrize("bad", ["urgent", 1, ["prices"]])
def test_an_unknown_priority_is_refused_naming_entry_and_field(bad: object) -> None:
    with pytest.raises(KeymapError) as info:
        parse_keymap(_doc_with(bad), "test.yaml")
    message = str(info.value)
    assert "(company|fmp|profile|): field 'recipe.priority'" in message
    assert "prices, calendars, statements, metrics, other" in message
