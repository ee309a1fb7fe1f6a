"""Routes that answer for the whole market rather than one symbol: the stock list, the screener, the equity
risk premium, treasury rates, economic indicators, the economic calendar and sector performance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from pipeline.fmp.sample.common import add_years, iso, rng
from pipeline.fmp.sample.companies import FOREIGN_LISTINGS, SECTORS
from pipeline.fmp.sample.macro import (
    BASE_EQUITY_RISK_PREMIUM,
    EMPTY_INDICATORS,
    INDICATORS,
    MATURITIES,
    RISK_PREMIUM,
    calendar_events,
    indicator_series,
    treasury_curve,
)
from pipeline.fmp.sample.trading_days import trading_days
from pipeline.fmp.sample.wire import (
    QueryError,
    SampleResponse,
    json_response,
    limited,
    parse_date,
    parse_limit,
    parse_range,
    response,
)

if TYPE_CHECKING:
    from pipeline.fmp.sample.source import SampleSource

WINDOW_DAYS = 91  # treasury / economic-indicators: ~3 months, newest kept

Handler = Callable[["SampleSource", Mapping[str, str]], SampleResponse]


def _recent_window(frm: dt.date, to: dt.date, as_of: dt.date) -> tuple[dt.date, dt.date]:
    """Treasury/indicator behaviour: at most ~3 months, keeping the newest end of the range."""
    newest = min(to, as_of)
    return max(frm, newest - dt.timedelta(days=WINDOW_DAYS)), to


# -- directory and screener -------------------------------------------------------------------------


def _stock_list(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    # fmp_api.md 3.4: the stock list keeps dead symbols too; a renamed company is listed under its symbol as of as_of
    rows = [{"symbol": t, "companyName": source.company(t).name} for t in source.listed()]
    rows += [{"symbol": s, "companyName": n} for s, n in FOREIGN_LISTINGS if s not in source.ticker_set]
    rows.sort(key=lambda r: r["symbol"])
    return json_response(rows)


def _screener(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    limit = parse_limit(params, None)
    rows = []
    for t in source.listed():
        if not source.trading(t):
            continue  # the screener is asked for actively trading companies only
        comp, s = source.company(t), source.summary(t)
        rows.append(
            {
                "symbol": t,
                "companyName": comp.name,
                "marketCap": s["market_cap"],
                "sector": comp.sector,
                "industry": comp.industry,
                "beta": comp.beta,
                "price": s["price"],
                "lastAnnualDividend": s["last_dividend"],
                "volume": s["volume"],
                "exchange": comp.exchange,
                "exchangeShortName": comp.exchange,
                "country": "US",
                "isEtf": False,
                "isFund": False,
                "isActivelyTrading": True,
            }
        )
    rows.sort(key=lambda r: (-r["marketCap"], r["symbol"]))
    return limited(rows, limit)


def _risk_premium(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    rows = [
        {
            "country": c,
            "continent": cont,
            "countryRiskPremium": crp,
            "totalEquityRiskPremium": round(BASE_EQUITY_RISK_PREMIUM + crp, 2),
        }
        for c, cont, crp in sorted(RISK_PREMIUM, reverse=True)
    ]
    return json_response(rows)


# -- macro ------------------------------------------------------------------------------------------


def _treasury(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    frm, to = parse_range(params)
    to = to or source.as_of
    frm = frm or to - dt.timedelta(days=WINDOW_DAYS)
    if frm > to:
        return json_response([])
    frm, to = _recent_window(frm, to, source.as_of)
    dates, curve = source.cached("global", "treasury", lambda: treasury_curve(source.as_of))
    lo, hi = iso(frm), iso(to)
    rows = [{"date": d, **dict(zip(MATURITIES, curve[i].tolist()))} for i, d in enumerate(dates) if lo <= d <= hi]
    rows.reverse()
    return json_response(rows)


def _indicators(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    name = params.get("name")
    if not name:
        raise QueryError("name")
    frm, to = parse_range(params)
    if name not in INDICATORS and name not in EMPTY_INDICATORS:
        return response(200, b"Invalid name")
    to = to or source.as_of
    frm = frm or add_years(to, -1)
    if frm > to or name in EMPTY_INDICATORS:
        return json_response([])
    if INDICATORS[name][0] == "quarter" and (to - frm).days >= 365:
        return json_response([])  # FMP: quarterly series give nothing for ranges of a year or more
    frm, to = _recent_window(frm, to, source.as_of)
    series = source.cached("global", f"indicator:{name}", lambda: indicator_series(name, source.as_of))
    rows = [{"name": name, "date": iso(d), "value": v} for d, v, _ in reversed(series) if frm <= d <= to]
    return json_response(rows)


def _calendar(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    """economic-calendar: at most about 90 days per request, the newest kept (inferred: fmp_api.md section 1)."""
    frm, to = parse_range(params)
    to = to or source.as_of + dt.timedelta(days=7)
    frm = frm or to - dt.timedelta(days=7)
    if frm > to:
        return json_response([])
    frm = max(frm, to - dt.timedelta(days=WINDOW_DAYS - 1))
    events = source.cached("global", f"calendar:{to}", lambda: calendar_events(source.as_of, to))
    lo, hi = iso(frm), iso(to)
    return json_response([e for e in reversed(events) if lo <= e["date"][:10] <= hi])


def _sector_snapshot(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    day = parse_date(params, "date")
    if day is None:
        raise QueryError("date")
    exchange = (params.get("exchange") or "NASDAQ").upper()
    sector = (params.get("sector") or "").lower()
    trading = trading_days(day, day)
    if exchange not in ("NASDAQ", "NYSE") or day > source.as_of or not len(trading):
        return json_response([])
    rows = []
    for name in SECTORS:
        if sector and name.lower() != sector:
            continue
        z = float(rng("sector", day, name, exchange).standard_normal())
        market = float(rng("market", day).standard_normal())
        rows.append({"date": iso(day), "sector": name, "exchange": exchange, "averageChange": 0.8 * market + 0.6 * z})
    return json_response(rows)


MARKET_ROUTES: dict[str, Handler] = {
    "stock-list": _stock_list,
    "company-screener": _screener,
    "market-risk-premium": _risk_premium,
    "treasury-rates": _treasury,
    "economic-indicators": _indicators,
    "economic-calendar": _calendar,
    "sector-performance-snapshot": _sector_snapshot,
}
