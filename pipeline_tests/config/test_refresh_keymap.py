"""recipe.refresh and recipe.refresh_on in the keymap: what the shipped keymap declares, and bad values refused with
the entry and the field named (pipeline.keymap.loader)."""

from __future__ import annotations

import copy

import pytest
import yaml

from pipeline.keymap import KeymapError, load_keymap, parse_keymap
from pipeline.settings import PROJECT_ROOT

SHIPPED = PROJECT_ROOT / "dataset_keymap.yaml"


def shipped_doc() -> dict:
    return yaml.safe_load(SHIPPED.read_text())


def test_the_shipped_keymap_refreshes_by_events_what_the_calendars_announce() -> None:
    modes = {e.asset_name: (e.recipe.refresh, e.recipe.refresh_on) for e in load_keymap(SHIPPED)}
    assert modes["splits"] == ("events", ("splits-calendar",))
    assert modes["dividends"] == ("events", ("dividends-calendar",))
    assert modes["income-statement__quarter"] == ("events", ("earnings-calendar", "filings"))
    assert modes["ratios__annual"] == ("events", ("earnings-calendar", "filings"))
    assert modes["profile"] == ("events", ("earnings-calendar", "splits-calendar"))
    # /full stands in for the as-traded bars where a plan lacks them: daily for a ticker without them
    assert modes["historical-price-eod"] == ("cross_check", ("historical-price-eod__non-split-adjusted",))
    for name in ("historical-price-eod__dividend-adjusted", "historical-market-capitalization"):
        assert modes[name] == ("cross_check", ())
    assert modes["historical-price-eod__non-split-adjusted"] == ("cadence", ())  # the daily bar


def _with(asset: str, **recipe: object) -> dict:
    doc = copy.deepcopy(shipped_doc())
    for d in doc["datasets"]:
        name = d["dataset"] + (f"__{d['discriminator']}" if d.get("discriminator") else "")
        if name == asset:
            d["recipe"].update(recipe)
    return doc


@pytest.mark.parametrize(
    ("asset", "recipe", "message"),
    [
        ("splits", {"refresh": "daily"}, "'recipe.refresh': 'daily' is not a refresh mode"),
        ("treasury-rates", {"refresh": "events", "refresh_on": ["filings"]}, "only for per_ticker entries"),
        ("splits", {"refresh": "events", "refresh_on": []}, "needs at least one calendar"),
        (
            "splits",
            {"refresh": "cadence", "refresh_on": ["splits-calendar"]},
            "only used with refresh: events or cross_check",
        ),
        ("splits", {"refresh_on": "splits-calendar"}, "must be a list"),
        ("splits", {"refresh_on": ["treasury-rates"]}, "'treasury-rates' needs columns symbol and date"),
        ("historical-market-capitalization", {"refresh_on": ["splits-calendar"]}, "is not a per_ticker entry"),
    ],
)
def test_a_bad_refresh_is_refused_naming_entry_and_field(asset: str, recipe: dict, message: str) -> None:
    with pytest.raises(KeymapError) as info:
        parse_keymap(_with(asset, **recipe), "test.yaml")
    text = str(info.value)
    assert message in text and "test.yaml" in text and "field 'recipe.refresh" in text, text


def test_a_trimmed_keymap_without_the_calendars_loads_and_keeps_the_cadence() -> None:
    doc = shipped_doc()
    doc["datasets"] = [d for d in doc["datasets"] if not d["dataset"].endswith("s-calendar")]
    keymap = parse_keymap(doc, "trimmed.yaml")
    assert next(e for e in keymap if e.dataset == "splits").recipe.refresh_on == ("splits-calendar",)
