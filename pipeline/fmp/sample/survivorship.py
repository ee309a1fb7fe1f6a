"""Routes for survivorship and identity (fmp_api.md 3.4): delisted companies, symbol changes, the actively trading
list, and the S&P 500's current and historical constituents.

What the sample serves, and the FMP behaviour each models (all of fmp_api.md 3.4):
- `delisted-companies?page=&limit=`: `symbol, companyName, exchange, ipoDate, delistedDate`, at most 100 rows a
  page, newest first. The sample's delisted companies (`Company.delisted`: TWTR) and earlier holders of reused
  tickers (AI's holder before C3.ai), plus the former member MON. Only delistings dated on or before as_of.
- `symbol-change`: `date, companyName, oldSymbol, newSymbol`; it ignores `page` (fmp_api.md 2.5).
- `actively-trading-list`: `symbol, name` of the universe's companies still traded as of as_of.
- `sp500-constituent`: the members as of as_of; `historical-sp500-constituent`: the additions and removals up to
  as_of, newest first, with `dateAdded` as text ("June 7, 2018"). Starter's 402s on the historical constituents
  and on delisted pages >= 1 are the fake server's plan refusals (pipeline_tests/fakes/fmp_server.py).
The index history below is illustrative (shaped like FMP's rows, not the real S&P 500 record); the companies'
listing, rename and delisting dates are public facts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING

from pipeline.fmp.sample.companies import company
from pipeline.fmp.sample.wire import QueryError, SampleResponse, json_response, parse_limit

if TYPE_CHECKING:
    from pipeline.fmp.sample.source import SampleSource

DELISTED_PAGE_ROWS = 100  # FMP serves at most 100 delisted rows a page (fmp_api.md 3.4)

# Companies that appear only in delisted-companies: (symbol, companyName, exchange, ipoDate, delistedDate). AI's
# earlier holder shows the reuse: FMP matches such a row to its holder by symbol plus the date window (3.4).
# Illustrative windows.
EARLIER_HOLDERS: tuple[tuple[str, str, str, str, str], ...] = (
    ("AI", "Arlington Asset Investment Corp.", "NYSE", "2009-01-02", "2020-12-08"),
    ("MON", "Monsanto Company", "NYSE", "2000-10-18", "2018-06-06"),
)

# The S&P 500 in the sample: members (current symbols) before the first event, then (date, added, removed, reason).
# Illustrative; events name the symbols as they were on the day.
SP500_BEFORE = ("AAPL", "MSFT", "NVDA", "JPM", "XOM", "JNJ", "KO", "PG", "GE", "META", "MON")
SP500_EVENTS: tuple[tuple[str, str, str, str], ...] = (
    ("2018-06-07", "TWTR", "MON", "Monsanto Company acquired by Bayer AG"),
    ("2022-11-01", "AI", "TWTR", "Twitter, Inc. acquired; taken private"),
)
SP500_ADDED_FIRST = {"TWTR": "2018-06-07", "AI": "2022-11-01"}  # dateFirstAdded; others: illustrative 1990s dates


def _name(symbol: str, day: dt.date) -> str:
    """The name of the company that held `symbol` on `day` (a reused symbol names its holder of that day)."""
    for sym, name, _, ipo, gone in EARLIER_HOLDERS:
        if sym == symbol and dt.date.fromisoformat(ipo) <= day <= dt.date.fromisoformat(gone):
            return name
    return company(symbol).name


def _text_date(day: dt.date) -> str:
    """FMP's `dateAdded` text: 'June 7, 2018'."""
    return f"{day.strftime('%B')} {day.day}, {day.year}"


def delisted_rows(source: SampleSource) -> list[dict[str, object]]:
    """Every delisting dated on or before as_of, newest first (FMP's order)."""
    rows = [
        {"symbol": s, "companyName": n, "exchange": e, "ipoDate": ipo, "delistedDate": gone}
        for s, n, e, ipo, gone in EARLIER_HOLDERS
        if dt.date.fromisoformat(gone) <= source.as_of
    ]
    for t in source.tickers:
        comp = source.company(t)
        if comp.delisted_on is not None and comp.delisted_on <= source.as_of:
            rows.append(
                {
                    "symbol": comp.symbol_on(comp.delisted_on),
                    "companyName": comp.name,
                    "exchange": comp.exchange,
                    "ipoDate": comp.ipo_date,
                    "delistedDate": comp.delisted,
                }
            )
    rows.sort(key=lambda r: (str(r["delistedDate"]), str(r["symbol"])), reverse=True)
    return rows


def _delisted(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    raw_page = params.get("page") or "0"
    if not raw_page.isdigit():
        raise QueryError("page")
    limit = min(parse_limit(params, DELISTED_PAGE_ROWS) or DELISTED_PAGE_ROWS, DELISTED_PAGE_ROWS)
    start = int(raw_page) * limit
    return json_response(delisted_rows(source)[start : start + limit])


def symbol_change_rows(source: SampleSource) -> list[dict[str, object]]:
    rows = []
    for t in source.tickers:
        comp = source.company(t)
        for old, day in comp.former_symbols:
            if dt.date.fromisoformat(day) <= source.as_of:
                rows.append({"date": day, "companyName": comp.name, "oldSymbol": old, "newSymbol": comp.symbol})
    rows.sort(key=lambda r: (r["date"], r["newSymbol"]), reverse=True)
    return rows


def _symbol_change(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    limit = parse_limit(params, 100)  # 100 rows without a limit; `page` ignored (fmp_api.md 2.5)
    rows = symbol_change_rows(source)
    return json_response(rows[:limit] if limit is not None else rows)


def _actively_trading(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    rows = [{"symbol": t, "name": source.company(t).name} for t in source.listed() if source.trading(t)]
    return json_response(sorted(rows, key=lambda r: r["symbol"]))


def sp500_members(source: SampleSource, day: dt.date) -> list[str]:
    """The sample S&P 500 on `day`, by current symbol."""
    members = set(SP500_BEFORE)
    for date, added, removed, _ in SP500_EVENTS:
        if dt.date.fromisoformat(date) <= day:
            members.discard(company(removed).symbol)
            members.add(company(added).symbol)
    return sorted(members)


def _sp500(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    rows = []
    for sym in sp500_members(source, source.as_of):
        comp = company(sym)
        rows.append(
            {
                "symbol": comp.symbol_on(source.as_of),
                "name": comp.name,
                "sector": comp.sector,
                "subSector": comp.industry,
                "headQuarter": f"{comp.city}, {comp.state}",
                "dateFirstAdded": SP500_ADDED_FIRST.get(sym, "1994-01-03"),
                "cik": comp.cik,
                "founded": comp.ipo_date[:4],
            }
        )
    return json_response(rows)


def _sp500_history(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    rows = []
    for date, added, removed, reason in reversed(SP500_EVENTS):
        day = dt.date.fromisoformat(date)
        if day > source.as_of:
            continue
        rows.append(
            {
                "dateAdded": _text_date(day),
                "addedSecurity": _name(added, day),
                "removedTicker": removed,
                "removedSecurity": _name(removed, day - dt.timedelta(days=1)),
                "date": date,
                "symbol": added,
                "reason": reason,
            }
        )
    return json_response(rows)


SURVIVORSHIP_ROUTES = {
    "delisted-companies": _delisted,
    "symbol-change": _symbol_change,
    "actively-trading-list": _actively_trading,
    "sp500-constituent": _sp500,
    "historical-sp500-constituent": _sp500_history,
}
