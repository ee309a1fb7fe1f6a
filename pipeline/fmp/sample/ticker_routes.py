"""Routes that answer for one `symbol`: the EOD price family, market capitalisation, dividends, splits,
profile, peers, statements, key metrics and ratios.

A symbol outside the universe gets `[]`, as FMP answers for a ticker it does not know; a missing `symbol`
is refused by `SampleSource.respond` before any of these runs.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.fmp.sample.common import add_years, crc, iso, safe_div
from pipeline.fmp.sample.metrics import key_metrics_row, ratios_row
from pipeline.fmp.sample.prices import Prices, split_factor_on
from pipeline.fmp.sample.statements import shares_on, statement_row
from pipeline.fmp.sample.wire import (
    QueryError,
    SampleResponse,
    json_response,
    limited,
    parse_limit,
    parse_range,
)

if TYPE_CHECKING:
    from pipeline.fmp.sample.source import SampleSource

EOD_ROW_CAP = 5000  # FMP silently keeps the newest 5,000 EOD rows
DEFAULT_STATEMENT_LIMIT = 5  # statements/key-metrics/ratios without `limit`

Handler = Callable[["SampleSource", Mapping[str, str]], SampleResponse]
EodRows = Callable[["SampleSource", str, Prices, int, int], list[dict[str, Any]]]


# -- the EOD price family ---------------------------------------------------------------------------


def _eod_window(source: SampleSource, params: Mapping[str, str]) -> tuple[str, Prices, int, int] | None:
    """(symbol, prices, lo, hi) for an EOD-family request; None for an unknown symbol or a backwards range.

    Without from/to FMP gives about five years; at most the newest 5,000 rows (the silent cap).
    """
    frm, to = parse_range(params)
    symbol = source.known(params)
    if symbol is None:
        return None
    to = to or source.as_of
    frm = frm or add_years(to, -5)
    if frm > to:
        return None
    px = source.prices(symbol)
    lo = int(np.searchsorted(px.days, np.datetime64(frm)))
    hi = int(np.searchsorted(px.days, np.datetime64(to), side="right"))
    return symbol, px, max(lo, hi - EOD_ROW_CAP), hi


def _eod_route(build_rows: EodRows) -> Handler:
    """A handler serving `build_rows` (oldest first) for the requested window, newest first as FMP does."""

    def handler(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
        found = _eod_window(source, params)
        if found is None:
            return json_response([])
        rows = build_rows(source, *found)
        rows.reverse()
        return json_response(rows)

    return handler


def _adjusted_volume(px: Prices, lo: int, hi: int, basis: np.ndarray) -> list[int]:
    return np.rint(px.volume[lo:hi] * basis).astype(np.int64).tolist()


def _split_adjusted(source: SampleSource, symbol: str, px: Prices, lo: int, hi: int) -> list[dict[str, Any]]:
    """/full: split-adjusted prices and volume on the basis of as_of, so FMP's whole history is rewritten
    after each split (fmp_api.md section 1: TSLA's raw 891.30 -> 296.07 while /full stayed near 297)."""
    f = source.as_of_basis(symbol, px)[lo:hi]
    cols = (
        px.dates[lo:hi].tolist(),
        (px.open[lo:hi] / 100 / f).tolist(),
        (px.high[lo:hi] / 100 / f).tolist(),
        (px.low[lo:hi] / 100 / f).tolist(),
        (px.close[lo:hi] / 100 / f).tolist(),
        _adjusted_volume(px, lo, hi, f),
        (px.vwap[lo:hi] / f).tolist(),
    )
    rows = []
    for d, o, h, lw, c, v, vw in zip(*cols):
        o, h, lw, c = round(o, 4), round(h, 4), round(lw, 4), round(c, 4)
        change = c - o
        row = {
            "symbol": symbol,
            "date": d,
            "open": o,
            "high": h,
            "low": lw,
            "close": c,
            "volume": v,
            "change": round(change, 4),
            "changePercent": round(change / o * 100, 5),
            "vwap": round(vw, 4),
        }
        if source.extra_fields:
            row["changeOverTime"] = round(change / o, 7)
        rows.append(row)
    return rows


def _as_traded(source: SampleSource, symbol: str, px: Prices, lo: int, hi: int) -> list[dict[str, Any]]:
    """/non-split-adjusted: the prices as traded that day, under FMP's `adj*` names (fmp_api.md section 1:
    AAPL 2020-08-28 adjClose 499.24, the pre-split print)."""
    return [
        {
            "symbol": symbol,
            "date": d,
            "adjOpen": o / 100,
            "adjHigh": h / 100,
            "adjLow": lw / 100,
            "adjClose": c / 100,
            "volume": v,
        }
        for d, o, h, lw, c, v in zip(
            px.dates[lo:hi].tolist(),
            px.open[lo:hi].tolist(),
            px.high[lo:hi].tolist(),
            px.low[lo:hi].tolist(),
            px.close[lo:hi].tolist(),
            px.volume[lo:hi].tolist(),
        )
    ]


def _total_return(source: SampleSource, symbol: str, px: Prices, lo: int, hi: int) -> list[dict[str, Any]]:
    """/dividend-adjusted: split- and dividend-adjusted bars (total return), `adj*` names, split-adjusted volume."""
    basis = source.as_of_basis(symbol, px)[lo:hi]
    f = basis / source.total_return_factor(symbol)[lo:hi]
    return [
        {
            "symbol": symbol,
            "date": d,
            "adjOpen": round(o / 100 / k, 4),
            "adjHigh": round(h / 100 / k, 4),
            "adjLow": round(lw / 100 / k, 4),
            "adjClose": round(c / 100 / k, 4),
            "volume": v,
        }
        for d, o, h, lw, c, k, v in zip(
            px.dates[lo:hi].tolist(),
            px.open[lo:hi].tolist(),
            px.high[lo:hi].tolist(),
            px.low[lo:hi].tolist(),
            px.close[lo:hi].tolist(),
            f.tolist(),
            _adjusted_volume(px, lo, hi, basis),
        )
    ]


def _market_cap(source: SampleSource, symbol: str, px: Prices, lo: int, hi: int) -> list[dict[str, Any]]:
    """historical-market-capitalization: as-traded close times the shares outstanding that day."""
    comp = source.company(symbol)
    return [
        {"symbol": symbol, "date": d, "marketCap": round(c / 100 * shares_on(comp, dt.date.fromisoformat(d)), 2)}
        for d, c in zip(px.dates[lo:hi].tolist(), px.close[lo:hi].tolist())
    ]


# -- dividends and splits ---------------------------------------------------------------------------


def _events_request(
    source: SampleSource, params: Mapping[str, str]
) -> tuple[str | None, dt.date | None, dt.date | None, int | None]:
    """(known symbol or None, from, to, limit) of a dividends or splits request; bad dates or limits raise."""
    frm, to = parse_range(params)
    limit = parse_limit(params, None)
    return source.known(params), frm, to, limit


def _within(day: dt.date, frm: dt.date | None, to: dt.date | None) -> bool:
    return (frm is None or day >= frm) and (to is None or day <= to)


def _dividends(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    symbol, frm, to, limit = _events_request(source, params)
    if symbol is None:
        return json_response([])
    rows = [
        {
            "symbol": symbol,
            "date": iso(d.date),
            "recordDate": iso(d.record),
            "paymentDate": iso(d.payment),
            "declarationDate": iso(d.declaration),
            "adjDividend": d.adj_dividend,
            "dividend": d.dividend,
            "yield": d.yield_pct,
            "frequency": "Quarterly",
        }
        for d in reversed(source.dividends(symbol))
        if _within(d.date, frm, to)
    ]
    return limited(rows, limit)


def _splits(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    symbol, frm, to, limit = _events_request(source, params)
    if symbol is None:
        return json_response([])
    rows = []
    for d, num, den in sorted(source.company(symbol).splits, reverse=True):
        day = dt.date.fromisoformat(d)
        if day <= source.as_of and _within(day, frm, to):
            rows.append({"symbol": symbol, "date": d, "numerator": num, "denominator": den})
    return limited(rows, limit)


# -- company ----------------------------------------------------------------------------------------


def _profile(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    symbol = source.known(params)
    if symbol is None:
        return json_response([])
    comp, s = source.company(symbol), source.summary(symbol)
    change = round(s["price"] - s["prev_close"], 2)
    seed = crc("profile", symbol)
    domain = re.sub(r"[^a-z0-9]", "", comp.name.lower().split(",")[0].replace(" inc.", ""))[:24]
    row = {
        "symbol": symbol,
        "price": s["price"],
        "marketCap": s["market_cap"],
        "beta": comp.beta,
        "lastDividend": s["last_dividend"],
        "range": f"{s['low52']}-{s['high52']}",
        "change": change,
        "changePercentage": round(safe_div(change * 100, s["prev_close"]), 5),
        "volume": s["volume"],
        "averageVolume": s["average_volume"],
        "companyName": comp.name,
        "currency": "USD",
        "cik": comp.cik,
        "isin": f"US{seed % 10**9:09d}{seed % 7}",
        "cusip": f"{seed % 10**9:09d}",
        "exchangeFullName": "NASDAQ Global Select" if comp.exchange == "NASDAQ" else "New York Stock Exchange",
        "exchange": comp.exchange,
        "industry": comp.industry,
        "website": f"https://www.{domain}.com",
        "description": f"{comp.name} operates in the {comp.industry.lower()} industry within the "
        f"{comp.sector} sector. (Synthetic sample data.)",
        "ceo": comp.ceo,
        "sector": comp.sector,
        "country": "US",
        "fullTimeEmployees": str(comp.employees),
        "phone": f"({200 + seed % 700}) {100 + seed % 900}-{seed % 10000:04d}",
        "address": f"{1 + seed % 999} {comp.city} Parkway",
        "city": comp.city,
        "state": comp.state,
        "zip": f"{seed % 100000:05d}",
        "image": f"https://images.financialmodelingprep.com/symbol/{symbol}.png",
        "ipoDate": comp.ipo_date,
        "defaultImage": False,
        "isEtf": False,
        "isActivelyTrading": source.trading(symbol),
        "isAdr": False,
        "isFund": False,
    }
    return json_response([row])


def _peers(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    symbol = source.known(params)
    if symbol is None:
        return json_response([])
    sector = source.company(symbol).sector
    others = [t for t in source.tickers if t != symbol]
    same = [t for t in others if source.company(t).sector == sector]
    # Same-sector tickers first, then neighbours in universe order; at most 5.
    start, size = source.position[symbol], len(source.tickers)
    neighbours = [source.tickers[(start + k) % size] for k in range(1, min(size, 6))]
    peers = list(dict.fromkeys(same[:5] + neighbours))[:5]
    rows = []
    for t in peers:
        s = source.summary(t)
        rows.append(
            {"symbol": t, "companyName": source.company(t).name, "price": s["price"], "mktCap": s["market_cap"]}
        )
    return json_response(rows)


# -- statements, key metrics, ratios ----------------------------------------------------------------


def _statement(kind: str) -> Handler:
    """The handler for one kind: a `Period` statement (income, balance, cash), metrics or ratios."""

    def handler(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
        period = params.get("period") or "annual"
        limit = parse_limit(params, DEFAULT_STATEMENT_LIMIT)
        if re.fullmatch(r"Q\d+", period) and period not in ("Q1", "Q2", "Q3", "Q4"):
            raise QueryError("period")
        symbol = source.known(params)
        if symbol is None:
            return json_response([])
        quarters, years = source.periods(symbol)
        if period == "quarter":
            chosen = quarters
        elif period in ("Q1", "Q2", "Q3", "Q4"):
            chosen = [q for q in quarters if q.period == period]
        else:  # annual, FY and (silently) anything unrecognised
            chosen = years
        comp = source.company(symbol)
        rows: list[dict[str, Any]] = []
        for i in range(len(chosen) - 1, -1, -1):
            if limit is not None and len(rows) >= limit:
                break
            p = chosen[i]
            prev = chosen[i - 1] if i > 0 else None
            if kind in ("income", "balance", "cash"):
                rows.append(statement_row(comp, p, getattr(p, kind)))
            else:
                # the period-end price on the same (as_of) share basis as the restated share counts
                price = source.prices(symbol).close_on_or_before(p.date) / split_factor_on(
                    comp, p.date, until=source.as_of
                )
                if kind == "metrics":
                    rows.append(key_metrics_row(comp, p, prev, price))
                else:
                    rows.append(ratios_row(comp, p, prev, price, source.extra_fields))
        return json_response(rows)

    return handler


TICKER_ROUTES: dict[str, Handler] = {
    "historical-price-eod/full": _eod_route(_split_adjusted),
    "historical-price-eod/non-split-adjusted": _eod_route(_as_traded),
    "historical-price-eod/dividend-adjusted": _eod_route(_total_return),
    "historical-market-capitalization": _eod_route(_market_cap),
    "dividends": _dividends,
    "splits": _splits,
    "profile": _profile,
    "stock-peers": _peers,
    "income-statement": _statement("income"),
    "balance-sheet-statement": _statement("balance"),
    "cash-flow-statement": _statement("cash"),
    "key-metrics": _statement("metrics"),
    "ratios": _statement("ratios"),
}
