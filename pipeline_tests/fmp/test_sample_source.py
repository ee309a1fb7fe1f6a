"""Tests for the offline FMP stand-in (pipeline.fmp.sample)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
from typing import Any

import httpx
import pytest
import yaml

from pipeline.fmp.sample import SAMPLE_TICKERS, SampleSource, sample_transport
from pipeline.settings import PROJECT_ROOT

AS_OF = dt.date(2025, 9, 30)
KEYMAP = PROJECT_ROOT / "dataset_keymap.yaml"
STATEMENTS = ("income-statement", "balance-sheet-statement", "cash-flow-statement", "key-metrics", "ratios")


@pytest.fixture(scope="module")
def source() -> SampleSource:
    return SampleSource(AS_OF)


def rows(source: SampleSource, path: str, **params: str) -> list[dict[str, Any]]:
    answer = source.respond(path, params)
    assert answer.status_code == 200, (path, params, answer.body[:200])
    if path.endswith("-bulk"):  # fmp_api.md 2.7: bulk endpoints answer CSV, every value as text
        assert answer.headers["content-type"] == "text/csv; charset=utf-8"
        return list(csv.DictReader(io.StringIO(answer.body.decode())))
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    return json.loads(answer.body)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def keymap_cases() -> list[tuple[str, dict[str, Any]]]:
    datasets = yaml.safe_load(KEYMAP.read_text())["datasets"]
    return [(f"{d['dataset']}:{d.get('discriminator', '')}", d) for d in datasets]


def recipe_params(entry: dict[str, Any], ticker: str) -> dict[str, str]:
    recipe = entry["recipe"]
    start = (
        dt.date.fromisoformat(recipe["history_start"])
        if "history_start" in recipe
        else AS_OF - dt.timedelta(days=recipe.get("history_days", 30))
    )
    while start.weekday() >= 5:
        start += dt.timedelta(days=1)
    end = min(start + dt.timedelta(days=recipe.get("max_window_days", 90) - 1), AS_OF)
    values = {
        "__ticker__": ticker,
        "__from__": start.isoformat(),
        "__to__": end.isoformat(),
        "__date__": (AS_OF if "bulk" in recipe else start).isoformat(),  # a bulk day: a trading day
        "__discriminator__": str(entry.get("discriminator", "")),
        "__limit__": str(recipe.get("row_limit", 5)),
        "__page__": "0",
        "__part__": "0",
        "__year__": "2024",
        "__period__": "FY",
    }
    return {k: values.get(v, v) for k, v in recipe["query"].items()}


# -- wire shape and keymap coverage -------------------------------------------------------------------


def test_pretty_printed_and_deterministic() -> None:
    params = {"symbol": "AAPL", "from": "2024-01-01", "to": "2024-03-31"}
    a = SampleSource(AS_OF).respond("historical-price-eod/full", params)
    b = SampleSource(AS_OF).respond("historical-price-eod/full", params)
    assert a == b
    assert a.body.startswith(b'[\n  {\n    "symbol": "AAPL",')
    for path in STATEMENTS:
        p = {"symbol": "T0042", "period": "quarter", "limit": "8"}
        assert (
            SampleSource(AS_OF, ["T0042"]).respond(path, p).body == SampleSource(AS_OF, ["T0042"]).respond(path, p).body
        )


def test_history_does_not_depend_on_as_of() -> None:
    params = {"symbol": "MSFT", "from": "2023-01-01", "to": "2023-06-30"}
    early, late = SampleSource(dt.date(2024, 2, 1)), SampleSource(AS_OF)
    assert (
        early.respond("historical-price-eod/full", params).body
        == late.respond("historical-price-eod/full", params).body
    )
    older = rows(early, "income-statement", symbol="MSFT", period="quarter", limit="100")
    newer = {
        (r["date"], r["period"]): r
        for r in rows(late, "income-statement", symbol="MSFT", period="quarter", limit="100")
    }
    assert older and all(newer[(r["date"], r["period"])] == r for r in older)


@pytest.mark.parametrize(("label", "entry"), keymap_cases(), ids=[c[0] for c in keymap_cases()])
def test_every_keymap_dataset_serves_every_mapped_field(
    source: SampleSource, label: str, entry: dict[str, Any]
) -> None:
    per_ticker = entry["ticker_scope"] == "per_ticker"
    params = recipe_params(entry, "AAPL")
    if entry["dataset"] == "splits-calendar":  # a quiet market has no split for months: a window with NVDA's 10:1
        params = {"from": "2024-05-01", "to": "2024-07-29"}
    got = rows(source, entry["recipe"]["path"], **params)
    assert got, f"{label}: no rows for {params}"
    expected = {
        c.get("api") or camel(c["name"])
        for c in entry["silver"]["columns"]
        if not (per_ticker and c["name"] == "ticker" and "api" not in c)
    }
    for row in got:
        missing = expected - row.keys()
        assert not missing, f"{label}: missing {sorted(missing)}"
    date_field = entry["recipe"].get("date_field")
    if date_field:
        assert all(row[date_field] <= AS_OF.isoformat() for row in got)


# -- prices ---------------------------------------------------------------------------------------------


def test_prices_are_sane_and_newest_first(source: SampleSource) -> None:
    for ticker in SAMPLE_TICKERS:
        got = rows(source, "historical-price-eod/full", symbol=ticker, **{"from": "2019-01-01"})
        dates = [r["date"] for r in got]
        assert dates == sorted(dates, reverse=True) and len(set(dates)) == len(dates)
        assert dates[0] <= AS_OF.isoformat()
        assert all(dt.date.fromisoformat(d).weekday() < 5 for d in dates)
        for r in got:
            assert 0 < r["low"] <= min(r["open"], r["close"]) <= max(r["open"], r["close"]) <= r["high"]
            assert r["volume"] > 0 and r["low"] <= r["vwap"] <= r["high"]
            assert r["change"] == round(r["close"] - r["open"], 4)


def test_default_range_is_about_five_years_and_backwards_range_is_empty(source: SampleSource) -> None:
    got = rows(source, "historical-price-eod/full", symbol="KO")
    assert 1200 <= len(got) <= 1300
    assert rows(source, "historical-price-eod/full", symbol="KO", **{"from": "2024-02-01", "to": "2024-01-01"}) == []


def test_eod_cap_keeps_the_newest_5000_rows(source: SampleSource) -> None:
    got = rows(source, "historical-price-eod/full", symbol="PG", **{"from": "2000-01-01", "to": "2030-01-01"})
    assert len(got) == 5000
    assert got[0]["date"] == rows(source, "historical-price-eod/full", symbol="PG")[0]["date"]
    assert got[-1]["date"] > "2000-12-31"


def test_split_is_visible_in_as_traded_prices_splits_and_shares(source: SampleSource) -> None:
    splits = rows(source, "splits", symbol="NVDA")
    assert {"symbol": "NVDA", "date": "2021-07-20", "numerator": 4, "denominator": 1} in splits
    window = {"from": "2021-07-16", "to": "2021-07-20"}
    bars = rows(source, "historical-price-eod/non-split-adjusted", symbol="NVDA", **window)
    on_split, before = bars[0], bars[1]
    assert on_split["date"] == "2021-07-20" and set(on_split) == {
        "symbol",
        "date",
        "adjOpen",
        "adjHigh",
        "adjLow",
        "adjClose",
        "volume",
    }
    assert 3.0 < before["adjClose"] / on_split["adjOpen"] < 5.3  # the as-traded print drops 4:1
    assert rows(source, "splits", symbol="KO") == []
    assert rows(SampleSource(dt.date(2021, 1, 4)), "splits", symbol="NVDA") == []


def test_full_is_split_adjusted_and_rewritten_after_each_split() -> None:
    """fmp_api.md section 1: /full is split-adjusted (prices and volume) on the basis of the day it is served."""
    window = {"symbol": "NVDA", "from": "2024-06-03", "to": "2024-06-07"}
    before_split, after_split = SampleSource(dt.date(2024, 6, 7)), SampleSource(dt.date(2024, 6, 14))
    old, new = (
        rows(before_split, "historical-price-eod/full", **window),
        rows(after_split, "historical-price-eod/full", **window),
    )
    raw = rows(after_split, "historical-price-eod/non-split-adjusted", **window)
    for o, n, r in zip(old, new, raw):
        assert o["date"] == n["date"] == r["date"]
        assert o["close"] == pytest.approx(r["adjClose"]) and o["volume"] == r["volume"]  # no split yet: as traded
        assert n["close"] == pytest.approx(r["adjClose"] / 10, abs=1e-4)  # re-based after the 10:1
        assert n["volume"] == r["volume"] * 10
    reverse = rows(
        SampleSource(AS_OF), "historical-price-eod/full", symbol="GE", **{"from": "2021-07-29", "to": "2021-08-03"}
    )
    traded = rows(
        SampleSource(AS_OF),
        "historical-price-eod/non-split-adjusted",
        symbol="GE",
        **{"from": "2021-07-29", "to": "2021-08-03"},
    )
    assert {"symbol": "GE", "date": "2021-08-02", "numerator": 1, "denominator": 8} in rows(
        SampleSource(AS_OF), "splits", symbol="GE"
    )
    pre = [(f, t) for f, t in zip(reverse, traded) if f["date"] < "2021-08-02"]
    assert pre and all(f["close"] == pytest.approx(t["adjClose"] * 8, abs=1e-3) for f, t in pre)


def test_dividend_adjusted_is_total_return(source: SampleSource) -> None:
    window = {"symbol": "KO", "from": "2024-01-01", "to": "2024-12-31"}
    full = {r["date"]: r for r in rows(source, "historical-price-eod/full", **window)}
    total = {r["date"]: r for r in rows(source, "historical-price-eod/dividend-adjusted", **window)}
    ex_dates = [d["date"] for d in rows(source, "dividends", **window)]
    assert set(full) == set(total) and ex_dates
    ratios = {d: total[d]["adjClose"] / full[d]["close"] for d in sorted(full)}
    days = sorted(ratios)
    assert all(ratios[a] <= ratios[b] + 1e-4 for a, b in zip(days, days[1:]))  # the factor only grows towards today
    jumps = [b for a, b in zip(days, days[1:]) if ratios[b] - ratios[a] > 1e-3]
    assert jumps == ex_dates[::-1]  # exactly at each ex-date


def test_statement_shares_and_eps_are_restated_onto_the_serving_basis() -> None:
    """fmp_api.md section 1: AAPL FY2019 showed 4x the filed share count after the 2020 split."""
    q = {"symbol": "NVDA", "period": "quarter", "limit": "100"}
    early = {r["date"]: r for r in rows(SampleSource(dt.date(2024, 6, 7)), "income-statement", **q)}
    late = {r["date"]: r for r in rows(SampleSource(dt.date(2024, 6, 14)), "income-statement", **q)}
    row_before, row_after = early["2023-12-31"], late["2023-12-31"]
    assert row_after["filingDate"] == row_before["filingDate"]
    assert row_after["weightedAverageShsOut"] == pytest.approx(row_before["weightedAverageShsOut"] * 10, rel=1e-6)
    assert row_after["eps"] == pytest.approx(row_before["eps"] / 10, abs=0.006)
    # one basis across the whole history: no 4x jump at the 2021 split any more
    assert late["2021-09-30"]["weightedAverageShsOut"] / late["2021-06-30"]["weightedAverageShsOut"] < 1.01


def test_some_filings_are_accepted_after_the_close(source: SampleSource) -> None:
    accepted = [
        r["acceptedDate"]
        for t in SAMPLE_TICKERS
        for r in rows(source, "income-statement", symbol=t, period="quarter", limit="40")
    ]
    after_close = [a for a in accepted if a[11:] > "16:00:00"]
    assert 0.2 < len(after_close) / len(accepted) < 0.5
    assert all(len(a) == 19 and a[10] == " " for a in accepted)


def test_loss_maker_and_ipo_start() -> None:
    source = SampleSource(AS_OF)
    income = rows(source, "income-statement", symbol="SNAP", period="quarter", limit="100")
    assert income and all(r["netIncome"] < 0 and r["eps"] < 0 for r in income)
    assert min(r["date"] for r in income) >= "2015-01-01"
    bars = rows(source, "historical-price-eod/non-split-adjusted", symbol="SNAP", **{"from": "2010-01-01"})
    assert min(r["date"] for r in bars) == "2017-03-02"


def test_indicators_appear_only_after_their_calendar_release() -> None:
    """fmp_api.md section 1: the indicator date is the start of the reference period; release times are only in
    the economic calendar (UTC)."""

    def gdp(as_of: dt.date) -> list[str]:
        return [
            r["date"]
            for r in rows(
                SampleSource(as_of), "economic-indicators", name="GDP", **{"from": "2024-01-01", "to": "2024-03-31"}
            )
        ]

    calendar = rows(
        SampleSource(dt.date(2024, 6, 1)), "economic-calendar", **{"from": "2024-04-01", "to": "2024-05-31"}
    )
    us_gdp = [e for e in calendar if e["event"] == "GDP Growth Rate QoQ Adv" and e["country"] == "US"]
    assert len(us_gdp) == 1 and us_gdp[0]["date"].endswith("12:30:00")  # 08:30 New York in summer time
    release_day = dt.date.fromisoformat(us_gdp[0]["date"][:10])
    assert gdp(release_day - dt.timedelta(days=1)) == [] and gdp(release_day) == ["2024-01-01"]
    assert any(e["country"] == "DE" and e["event"] == us_gdp[0]["event"] for e in calendar)
    assert len(rows(SampleSource(AS_OF), "economic-calendar", **{"from": "2023-01-01", "to": "2024-12-31"})) < 120


def test_dividends_are_quarterly_and_consistent_with_price(source: SampleSource) -> None:
    got = rows(source, "dividends", symbol="KO", **{"from": "2015-01-01", "to": "2024-12-31"})
    assert 38 <= len(got) <= 40
    assert all("2015-01-01" <= r["date"] <= "2024-12-31" and r["frequency"] == "Quarterly" for r in got)
    r = got[0]
    close = rows(
        source, "historical-price-eod/non-split-adjusted", symbol="KO", **{"from": r["date"], "to": r["date"]}
    )[0]["adjClose"]
    assert r["yield"] == pytest.approx(r["dividend"] * 4 / close * 100)
    assert r["declarationDate"] < r["date"] <= r["recordDate"] < r["paymentDate"]
    assert len(rows(source, "dividends", symbol="KO", limit="3")) == 3


# -- statements -----------------------------------------------------------------------------------------


def test_accounting_identities_hold_for_every_statement(source: SampleSource) -> None:
    for ticker in SAMPLE_TICKERS:
        for period in ("annual", "quarter"):
            q = {"symbol": ticker, "period": period, "limit": "1000"}
            income = rows(source, "income-statement", **q)
            balance = rows(source, "balance-sheet-statement", **q)
            cash = rows(source, "cash-flow-statement", **q)
            assert len(income) == len(balance) == len(cash) > 0
            for i in income:
                assert i["grossProfit"] == i["revenue"] - i["costOfRevenue"]
                assert i["ebitda"] == i["ebit"] + i["depreciationAndAmortization"]
                assert i["eps"] == round(i["netIncome"] / i["weightedAverageShsOut"], 2)
                assert isinstance(i["fiscalYear"], str) and len(i["cik"]) == 10
            for b in balance:
                assert (
                    b["totalAssets"] == b["totalLiabilities"] + b["totalEquity"] == b["totalLiabilitiesAndTotalEquity"]
                )
                assert b["totalEquity"] == b["totalStockholdersEquity"] + b["minorityInterest"]
                assert b["netDebt"] == b["totalDebt"] - b["cashAndCashEquivalents"]
                assert b["totalAssets"] == b["totalCurrentAssets"] + b["totalNonCurrentAssets"] + b["otherAssets"]
            for c in cash:
                assert c["capitalExpenditure"] <= 0
                assert c["freeCashFlow"] == c["operatingCashFlow"] + c["capitalExpenditure"]
                assert c["netChangeInCash"] == c["cashAtEndOfPeriod"] - c["cashAtBeginningOfPeriod"]
            for c, b in zip(cash, balance):
                assert c["cashAtEndOfPeriod"] == b["cashAndCashEquivalents"]
            for row in income + balance + cash:
                assert row["filingDate"] <= AS_OF.isoformat()
                assert row["acceptedDate"].startswith(row["filingDate"]) and len(row["acceptedDate"]) == 19
                assert 25 <= (dt.date.fromisoformat(row["filingDate"]) - dt.date.fromisoformat(row["date"])).days <= 50


def test_fiscal_year_is_the_sum_of_its_quarters(source: SampleSource) -> None:
    fy = rows(source, "income-statement", symbol="JNJ", period="FY", limit="1")[0]
    quarters = [
        r
        for r in rows(source, "income-statement", symbol="JNJ", period="quarter", limit="12")
        if r["fiscalYear"] == fy["fiscalYear"]
    ]
    assert sorted(r["period"] for r in quarters) == ["Q1", "Q2", "Q3", "Q4"]
    for field in ("revenue", "netIncome", "ebitda"):
        assert fy[field] == sum(r[field] for r in quarters)
    fy_balance = rows(source, "balance-sheet-statement", symbol="JNJ", period="annual", limit="1")[0]
    q4_balance = rows(source, "balance-sheet-statement", symbol="JNJ", period="Q4", limit="1")[0]
    assert {k: v for k, v in fy_balance.items() if k not in ("period", "filingDate", "acceptedDate")} == {
        k: v for k, v in q4_balance.items() if k not in ("period", "filingDate", "acceptedDate")
    }


def test_statement_limits_and_periods(source: SampleSource) -> None:
    assert len(rows(source, "income-statement", symbol="KO")) == 5
    assert [r["period"] for r in rows(source, "ratios", symbol="KO")] == ["FY"] * 5
    quarters = rows(source, "key-metrics", symbol="KO", period="quarter", limit="40")
    assert len(quarters) == 40 and {r["period"] for r in quarters} == {"Q1", "Q2", "Q3", "Q4"}
    assert [r["date"] for r in quarters] == sorted((r["date"] for r in quarters), reverse=True)
    assert {r["period"] for r in rows(source, "income-statement", symbol="KO", period="Q2", limit="10")} == {"Q2"}


def test_metrics_and_ratios_derive_from_statements_and_price(source: SampleSource) -> None:
    q = {"symbol": "XOM", "period": "annual", "limit": "3"}
    metrics = rows(source, "key-metrics", **q)
    ratios = rows(source, "ratios", **q)
    income = rows(source, "income-statement", **q)
    balance = rows(source, "balance-sheet-statement", **q)
    for m, r, i, b in zip(metrics, ratios, income, balance):
        assert m["date"] == r["date"] == i["date"] == b["date"]
        close = rows(
            source,
            "historical-price-eod/full",
            symbol="XOM",
            **{"from": (dt.date.fromisoformat(m["date"]) - dt.timedelta(days=7)).isoformat(), "to": m["date"]},
        )[0]["close"]
        assert m["marketCap"] == round(close * i["weightedAverageShsOut"])
        assert m["enterpriseValue"] == m["marketCap"] + b["netDebt"]
        assert r["priceToEarningsRatio"] == pytest.approx(m["marketCap"] / i["netIncome"], rel=1e-9)
        assert r["priceToBookRatio"] == pytest.approx(m["marketCap"] / b["totalStockholdersEquity"], rel=1e-9)
        assert 0 <= r["dividendYield"] < 0.2


# -- global datasets ------------------------------------------------------------------------------------


def test_nothing_is_dated_after_as_of(source: SampleSource) -> None:
    far = {"from": "2025-09-01", "to": "2026-12-31"}
    for path, params in [
        ("historical-price-eod/full", {"symbol": "AAPL", **far}),
        ("treasury-rates", far),
        ("dividends", {"symbol": "KO", **far}),
        ("economic-indicators", {"name": "federalFunds", **far}),
    ]:
        assert all(r["date"] <= AS_OF.isoformat() for r in rows(source, path, **params))
    assert rows(source, "sector-performance-snapshot", date="2025-10-01") == []


def test_treasury_and_indicator_windows_keep_the_newest_three_months(source: SampleSource) -> None:
    got = rows(source, "treasury-rates", **{"from": "2023-01-01", "to": "2024-12-31"})
    assert got[0]["date"] == "2024-12-31" and got[-1]["date"] >= "2024-09-30"
    assert all(0 < r["month3"] < 10 for r in got)
    cpi = rows(source, "economic-indicators", name="CPI", **{"from": "2024-01-01", "to": "2024-12-31"})
    assert [r["date"] for r in cpi] == ["2024-12-01", "2024-11-01", "2024-10-01"]
    assert rows(source, "economic-indicators", name="GDP", **{"from": "2023-01-01", "to": "2024-01-01"}) == []
    assert len(rows(source, "economic-indicators", name="GDP", **{"from": "2024-01-01", "to": "2024-03-31"})) == 1


def test_sector_snapshot(source: SampleSource) -> None:
    nasdaq = rows(source, "sector-performance-snapshot", date="2025-09-02")
    assert len(nasdaq) == 11 and {r["exchange"] for r in nasdaq} == {"NASDAQ"}
    assert {r["exchange"] for r in rows(source, "sector-performance-snapshot", date="2025-09-02", exchange="nyse")} == {
        "NYSE"
    }
    assert rows(source, "sector-performance-snapshot", date="2025-09-06") == []  # Saturday


def test_directory_screener_peers_profile(source: SampleSource) -> None:
    listed = {r["symbol"] for r in rows(source, "stock-list")}
    assert set(SAMPLE_TICKERS) < listed and "6898.HK" in listed
    screener = rows(source, "company-screener", isActivelyTrading="true", limit="10000")
    assert {r["symbol"] for r in screener} == set(SAMPLE_TICKERS) - {"TWTR"}  # delisted 2022: not actively trading
    assert {r["exchange"] for r in screener} == {"NASDAQ", "NYSE"}
    assert len(rows(source, "company-screener", limit="3")) == 3
    peers = rows(source, "stock-peers", symbol="KO")
    assert peers and all(p["symbol"] in SAMPLE_TICKERS and p["symbol"] != "KO" for p in peers)
    profile = rows(source, "profile", symbol="AAPL")
    assert len(profile) == 1 and isinstance(profile[0]["fullTimeEmployees"], str)
    lo, hi = (float(x) for x in profile[0]["range"].split("-"))
    assert lo <= profile[0]["price"] <= hi
    premium = [r["country"] for r in rows(source, "market-risk-premium")]
    assert len(premium) >= 12 and premium == sorted(premium, reverse=True)


# -- errors ---------------------------------------------------------------------------------------------


def test_errors_look_like_fmp(source: SampleSource) -> None:
    assert rows(source, "profile", symbol="ZZZZ") == []
    assert rows(source, "historical-price-eod/full", symbol="AAPL,MSFT") == []
    missing = source.respond("income-statement", {"period": "annual"})
    assert (missing.status_code, missing.body) == (400, b"Query Error: Invalid or missing query parameter - symbol")
    assert missing.headers["content-type"].startswith("application/json")
    bad_date = source.respond("treasury-rates", {"from": "2024-13-01"})
    assert (bad_date.status_code, bad_date.body) == (400, b"Query Error: Invalid or missing query parameter - from")
    assert source.respond("sector-performance-snapshot", {}).status_code == 400
    assert source.respond("economic-indicators", {}).status_code == 400
    unknown = source.respond("company-symbol-list", {})
    assert (unknown.status_code, unknown.body) == (404, b"[]")
    assert source.respond("historical-price-eod", {"symbol": "AAPL"}).status_code == 404
    wrong_case = source.respond("economic-indicators", {"name": "gdp"})
    assert (wrong_case.status_code, wrong_case.body) == (200, b"Invalid name") and len(wrong_case.body) == 12


# -- knobs, laziness, transport -------------------------------------------------------------------------


def test_revision_restates_one_quarter_and_some_eod_rows() -> None:
    base, revised = SampleSource(AS_OF), SampleSource(AS_OF, revision=1)
    for path in ("income-statement", "balance-sheet-statement", "cash-flow-statement"):
        q = {"symbol": "AAPL", "period": "quarter", "limit": "8"}
        a, b = rows(base, path, **q), rows(revised, path, **q)
        changed = [(x, y) for x, y in zip(a, b) if x != y]
        assert len(changed) == 1
        x, y = changed[0]
        assert (x["date"], x["period"]) == (y["date"], y["period"])
        assert y["filingDate"] > x["filingDate"] and y["acceptedDate"] > x["acceptedDate"]
        assert y["filingDate"] <= AS_OF.isoformat()
    restated = [r for r in rows(revised, "balance-sheet-statement", symbol="AAPL", period="quarter", limit="8")]
    assert all(r["totalAssets"] == r["totalLiabilitiesAndTotalEquity"] for r in restated)
    q = {"symbol": "AAPL", "from": "2024-01-01", "to": "2024-06-30"}
    a, b = rows(base, "historical-price-eod/full", **q), rows(revised, "historical-price-eod/full", **q)
    assert [r["date"] for r in a] == [r["date"] for r in b]
    assert any(x["volume"] != y["volume"] for x, y in zip(a, b))
    assert all(x["close"] == y["close"] and y["low"] <= y["vwap"] <= y["high"] for x, y in zip(a, b))


def test_extra_fields_simulate_schema_drift() -> None:
    drift = SampleSource(AS_OF, extra_fields=True)
    assert "priceToEarningsDilutedRatio" in rows(drift, "ratios", symbol="MSFT")[0]
    plain = rows(SampleSource(AS_OF), "historical-price-eod/full", symbol="MSFT")[0]
    assert set(rows(drift, "historical-price-eod/full", symbol="MSFT")[0]) > set(plain)


def test_large_universe_is_lazy_and_fast() -> None:
    tickers = [f"T{i:04d}" for i in range(1, 501)]
    start = time.perf_counter()
    source = SampleSource(AS_OF, tickers)
    assert time.perf_counter() - start < 0.5
    got = rows(source, "historical-price-eod/full", symbol="T0123", **{"from": "2019-01-01"})
    assert len(got) > 1500
    assert rows(source, "income-statement", symbol="T0499", period="quarter", limit="4")
    assert rows(source, "profile", symbol="AAPL") == []
    assert time.perf_counter() - start < 2.0
    splitters = [t for t in tickers[:100] if rows(source, "splits", symbol=t)]
    assert splitters  # some synthetic tickers split too


def test_sample_transport_through_httpx() -> None:
    transport = sample_transport(AS_OF, ["AAPL", "MSFT"])
    with httpx.Client(transport=transport, base_url="https://sample.invalid/stable") as client:
        answer = client.get(
            "/historical-price-eod/full",
            params={"symbol": "AAPL", "from": "2025-09-01", "to": "2025-09-30", "apikey": "x"},
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json; charset=utf-8"
        body = answer.json()
        assert body[0]["symbol"] == "AAPL" and body[0]["date"] == "2025-09-30"
        assert client.get("/profile", params={"symbol": "NVDA"}).json() == []
        assert client.get("/nope").status_code == 404
    with httpx.Client(transport=transport) as client:
        assert client.get("https://elsewhere.invalid/stock-list").status_code == 200
