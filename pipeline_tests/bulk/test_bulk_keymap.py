"""The keymap's response format and bulk scope (issue 19 item 2), validated like the rest: each broken entry is
refused with a message naming the file, the entry and the field."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from pipeline.bronze.bulk import plan_bulk
from pipeline.keymap import KeymapError
from pipeline.keymap.loader import parse_keymap
from pipeline.ledger_types import Coverage
from pipeline.settings import PROJECT_ROOT

DOC = yaml.safe_load((PROJECT_ROOT / "dataset_keymap.yaml").read_text(encoding="utf-8"))


def find(doc: dict, dataset: str, discriminator: str = "") -> tuple[int, dict]:
    for i, raw in enumerate(doc["datasets"]):
        if raw["dataset"] == dataset and (raw.get("discriminator") or "") == discriminator:
            return i, raw
    raise LookupError(dataset)


def recipe(dataset: str, **changes: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        target = find(doc, dataset)[1]["recipe"]
        for name, value in changes.items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value

    return mutate


def per_ticker_bulk(doc: dict) -> None:
    raw = find(doc, "profile")[1]
    raw["recipe"]["bulk"] = {"scope": "date"}
    raw["recipe"]["query"] = {"symbol": "__ticker__", "date": "__date__"}


def json_into_csv_table(doc: dict) -> None:
    raw = copy.deepcopy(find(doc, "eod-bulk")[1])
    raw["dataset"], raw["recipe"] = "eod-json", {**raw["recipe"], "format": "json"}
    raw["recipe"].pop("bulk")
    doc["datasets"].append(raw)


BROKEN = [
    ("unknown format", "eod-bulk", recipe("eod-bulk", format="xlsx"), "recipe.format", "'xlsx' is not a format"),
    ("unknown scope", "eod-bulk", recipe("eod-bulk", bulk={"scope": "week"}), "recipe.bulk.scope", "not a bulk scope"),
    (
        "date scope without __date__",
        "eod-bulk",
        recipe("eod-bulk", query={"day": "x"}),
        "recipe.query",
        "must send __date__",
    ),
    (
        "part scope without parts",
        "profile-bulk",
        recipe("profile-bulk", bulk={"scope": "part"}),
        "recipe.bulk.parts",
        "needs the number of parts",
    ),
    (
        "a period FMP refuses",
        "income-statement-bulk",
        recipe("income-statement-bulk", bulk={"scope": "year_period", "first_year": 2020, "periods": ["quarter"]}),
        "recipe.bulk.periods",
        "FY, Q1, Q2, Q3, Q4",
    ),
    (
        "year_period without first_year",
        "income-statement-bulk",
        recipe("income-statement-bulk", bulk={"scope": "year_period"}),
        "recipe.bulk.first_year",
        "oldest fiscal year",
    ),
    (
        "__part__ without a bulk scope",
        "profile-bulk",
        recipe("profile-bulk", bulk=None),
        "recipe.query",
        "__part__ needs recipe.bulk",
    ),
    (
        "a field of another scope",
        "eod-bulk",
        recipe("eod-bulk", bulk={"scope": "date", "parts": 4}),
        "recipe.bulk.parts",
        "only a bulk recipe with scope part",
    ),
    (
        "replaces names no per-ticker entry",
        "eod-bulk",
        recipe("eod-bulk", bulk={"scope": "date", "replaces": "nope"}),
        "recipe.bulk.replaces",
        "'nope' is not the asset name of a per_ticker entry",
    ),
    ("bulk on a per-ticker entry", "profile", per_ticker_bulk, "recipe.bulk", "must be ticker_scope: global"),
    ("json into a csv table", -1, json_into_csv_table, "recipe.format", "a table is read from one format"),
]


@pytest.mark.parametrize(("at", "mutate", "field", "problem"), [pytest.param(*c[1:], id=c[0]) for c in BROKEN])
def test_broken_bulk_entry_names_the_entry_and_field(
    at: str | int, mutate: Callable[[dict], None], field: str, problem: str
) -> None:
    doc = copy.deepcopy(DOC)
    mutate(doc)
    index = find(doc, at)[0] if isinstance(at, str) else len(doc["datasets"]) + at
    with pytest.raises(KeymapError) as info:
        parse_keymap(doc, "test.yaml")
    message = str(info.value)
    assert f"test.yaml: entry #{index} " in message and f"field '{field}'" in message and problem in message


def test_shipped_bulk_entries() -> None:
    keymap = parse_keymap(copy.deepcopy(DOC), "test.yaml")
    bulk = {e.dataset: e for e in keymap if e.recipe.bulk is not None}
    assert sorted(bulk) == sorted(
        [
            "eod-bulk",
            "profile-bulk",
            "income-statement-bulk",
            "balance-sheet-statement-bulk",
            "cash-flow-statement-bulk",
        ]
    )
    assert all(e.recipe.format == "csv" and not e.per_ticker for e in bulk.values())
    assert (bulk["eod-bulk"].recipe.bulk.scope, bulk["profile-bulk"].recipe.bulk.parts) == ("date", 4)


def test_units_each_scope_requests() -> None:
    keymap = parse_keymap(copy.deepcopy(DOC), "test.yaml")
    by = {e.dataset: e for e in keymap}
    today = dt.date(2025, 11, 12)  # a Wednesday
    eod = plan_bulk(by["eod-bulk"], None, today, "ultimate")
    assert [r.params for r in eod.requests] == [{"date": "2025-11-12"}]  # the first bulk day: today
    held = Coverage(by["eod-bulk"].identity, dt.date(2025, 11, 6), dt.date(2025, 11, 7), None, 2, dt.date(2025, 11, 7))
    eod = plan_bulk(by["eod-bulk"], held, today, "ultimate")
    assert [r.params["date"] for r in eod.requests] == ["2025-11-10", "2025-11-11", "2025-11-12"]  # sessions only
    hole = dataclasses.replace(held, coverage_from=dt.date(2025, 11, 5), files=2)  # 3 sessions held by 2 files
    assert [r.params["date"] for r in plan_bulk(by["eod-bulk"], hole, today, "ultimate").requests][0] == "2025-11-07"
    parts = plan_bulk(by["profile-bulk"], None, today, "ultimate")
    assert [r.params for r in parts.requests] == [{"part": str(p)} for p in range(4)]
    backfill = plan_bulk(by["income-statement-bulk"], None, today, "ultimate")
    assert len(backfill.requests) == 5 * 5 and backfill.requests[0].params == {"year": "2021", "period": "FY"}
    assert not plan_bulk(by["eod-bulk"], None, today, "premium").due
    assert not plan_bulk(by["eod-bulk"], None, today, None).due


def test_a_weekend_after_a_bulk_week_asks_nothing_and_a_gap_is_filled_by_the_ticker() -> None:
    from pipeline.bronze.planner import plan

    keymap = parse_keymap(copy.deepcopy(DOC), "test.yaml")
    bulk = next(e for e in keymap if e.dataset == "eod-bulk")
    as_traded = next(e for e in keymap if e.asset_name == bulk.recipe.bulk.replaces)
    friday, saturday = dt.date(2025, 11, 14), dt.date(2025, 11, 15)
    week = Coverage(bulk.identity, dt.date(2025, 11, 10), friday, None, 5, friday)

    def held(ticker: str, to: dt.date) -> Coverage:
        return Coverage(as_traded.identity.with_ticker(ticker), dt.date(2019, 1, 2), to, None, 3, to)

    coverage = {
        bulk.identity: week,
        **{c.identity: c for c in (held("AAPL", friday), held("MSFT", dt.date(2025, 11, 6)))},
    }
    decisions = plan([as_traded, bulk], ["AAPL", "MSFT"], coverage, saturday, "ultimate")
    due = {(d.entry.asset_name, d.identity.ticker): d for d in decisions if d.due}
    assert list(due) == [(as_traded.asset_name, "MSFT")]  # a gap before the bulk week: its own request fills it
    assert due[(as_traded.asset_name, "MSFT")].requests[0].window_to == saturday
    skipped = {d.identity.ticker: d.skip_kind for d in decisions if not d.due}
    assert skipped == {"AAPL": "bulk", "": "nothing_new"}
    # on Premium nothing is replaced: both tickers ask for themselves, as before
    premium = plan([as_traded, bulk], ["AAPL", "MSFT"], coverage, saturday, "premium")
    assert sorted(d.identity.ticker for d in premium if d.due) == ["AAPL", "MSFT"]


def test_after_a_missed_day_the_tickers_fill_the_gap_themselves_once() -> None:
    """Only the newest bulk day stands for the tickers' as-traded bars (fmp_api.md 3.2: an older bulk day fetched
    later may be split-adjusted): after a missed run the older bulk day is fetched for the bulk table, and each
    ticker's own request fills its gap."""
    from pipeline.bronze.planner import plan

    keymap = parse_keymap(copy.deepcopy(DOC), "test.yaml")
    bulk = next(e for e in keymap if e.dataset == "eod-bulk")
    as_traded = next(e for e in keymap if e.asset_name == bulk.recipe.bulk.replaces)
    monday, wednesday = dt.date(2025, 11, 10), dt.date(2025, 11, 12)
    coverage = {
        bulk.identity: Coverage(bulk.identity, monday, monday, None, 1, monday),
        as_traded.identity.with_ticker("AAPL"): Coverage(
            as_traded.identity.with_ticker("AAPL"), dt.date(2019, 1, 2), monday, None, 2, monday
        ),
    }
    decisions = {d.entry.asset_name: d for d in plan([as_traded, bulk], ["AAPL"], coverage, wednesday, "ultimate")}
    assert [r.params["date"] for r in decisions[bulk.asset_name].requests] == ["2025-11-11", "2025-11-12"]
    own = decisions[as_traded.asset_name]
    assert own.due and own.requests[0].window_to == wednesday  # Tuesday and Wednesday from its own request
