"""The market-wide corporate calendars (fmp_api.md section 3.3): `splits-calendar`, `dividends-calendar` and
`earnings-calendar`, served from the sample's own company events, so that a calendar row and the per-ticker answer
agree the way they do on FMP.

What section 3.3 says and this copies: `from`/`to`, at most 90 days per request (a longer range keeps its newest 90
days), about 4,000 rows at most, and *global* rows: symbols outside any universe are listed too (here the foreign
listings of the stock list beside the source's own tickers). Starter has no corporate calendars: the loopback fake
answers 402 there (`pipeline_tests/fakes/fmp_server.py`); the sample source itself has no plan.

Where the rows come from:
- splits: the company's split history (the same rows `/splits` serves), upcoming ones included, as FMP lists
  announced splits ahead of their date;
- dividends: the dividends `/dividends` serves, by ex-date (the sample generates them up to its as-of day only);
- earnings: one row per quarter on the day its statements are filed (the date of their `acceptedDate`), the day the
  sample's statement routes start serving that quarter. The sample models when a company reports, not what analysts
  expected, so the EPS and revenue figures are null (FMP also serves null figures, e.g. for coming reports).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pipeline.fmp.sample.common import iso, quarter_end
from pipeline.fmp.sample.companies import FOREIGN_LISTINGS
from pipeline.fmp.sample.statements import FIRST_FISCAL_YEAR, filing_date_of
from pipeline.fmp.sample.wire import SampleResponse, json_response, parse_range

if TYPE_CHECKING:
    from pipeline.fmp.sample.source import SampleSource

MAX_DAYS = 90  # fmp_api.md 3.3: at most 90 days per request
MAX_ROWS = 4000  # fmp_api.md 3.3: about 4,000 rows per request
FILING_LAG_MAX_DAYS = 50  # statements.filing_date_of: 25-45 days after the period end, moved off weekends

Handler = Callable[["SampleSource", Mapping[str, str]], SampleResponse]


def _window(source: SampleSource, params: Mapping[str, str]) -> tuple[dt.date, dt.date] | None:
    """The request's range, at most MAX_DAYS (the newest kept); None when it is empty."""
    frm, to = parse_range(params)
    to = to or source.as_of
    frm = frm or to - dt.timedelta(days=7)
    if frm > to:
        return None
    return max(frm, to - dt.timedelta(days=MAX_DAYS - 1)), to


def _symbols(source: SampleSource) -> Iterator[str]:
    """Every symbol the calendars cover: the source's market and the foreign listings outside it (global rows)."""
    yield from source.tickers
    yield from (s for s, _ in FOREIGN_LISTINGS if s not in source.ticker_set)


def _answer(rows: list[dict[str, Any]]) -> SampleResponse:
    rows.sort(key=lambda r: (r["date"], r["symbol"]), reverse=True)
    return json_response(rows[:MAX_ROWS])


def _splits_calendar(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    window = _window(source, params)
    if window is None:
        return json_response([])
    lo, hi = iso(window[0]), iso(window[1])
    rows = [
        # splitType: added 2025-11, "possibly null" (fmp_api.md, splits); its values are not documented: null here
        {"symbol": s, "date": d, "numerator": num, "denominator": den, "splitType": None}
        for s in _symbols(source)
        for d, num, den in source.company(s).splits
        if lo <= d <= hi
    ]
    return _answer(rows)


def _dividends_calendar(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    window = _window(source, params)
    if window is None:
        return json_response([])
    frm, to = window
    rows = []
    for s in _symbols(source):
        comp = source.company(s)
        if comp.dividend_yield <= 0 or not _may_pay_within(comp.dividend_month, frm, to):
            continue
        rows.extend(
            {
                "symbol": s,
                "date": iso(d.date),
                "recordDate": iso(d.record),
                "paymentDate": iso(d.payment),
                "declarationDate": iso(d.declaration),
                "adjDividend": d.adj_dividend,
                "dividend": d.dividend,
                "yield": d.yield_pct,
                "frequency": "Quarterly",
            }
            for d in source.dividends(s)
            if frm <= d.date <= to
        )
    return _answer(rows)


def _may_pay_within(first_month: int, frm: dt.date, to: dt.date) -> bool:
    """Cheap pre-filter: the window touches one of the company's four ex-dividend months (ex-dates fall from the 8th
    to the first trading day after the 17th), so only those companies' dividends are generated."""
    months = {first_month + 3 * k for k in range(4)}
    day = frm - dt.timedelta(days=6)
    while day <= to:
        if day.month in months:
            return True
        day = (day.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    return False


def _earnings_calendar(source: SampleSource, params: Mapping[str, str]) -> SampleResponse:
    window = _window(source, params)
    if window is None:
        return json_response([])
    frm, to = window
    first_year = max(FIRST_FISCAL_YEAR, (frm - dt.timedelta(days=FILING_LAG_MAX_DAYS + 92)).year)
    rows = []
    for s in _symbols(source):
        comp = source.company(s)
        # statements start two fiscal years before the first trade (statements.generate_periods)
        start = max(FIRST_FISCAL_YEAR, int(comp.first_trade[:4]) - 2) if comp.first_trade else FIRST_FISCAL_YEAR
        for year in range(max(first_year, start), to.year + 1):
            for quarter in range(1, 5):
                filed = filing_date_of(comp, quarter_end(year, quarter), year, quarter)
                if frm <= filed <= to:
                    rows.append(
                        {
                            "symbol": s,
                            "date": iso(filed),
                            "epsActual": None,
                            "epsEstimated": None,
                            "revenueActual": None,
                            "revenueEstimated": None,
                            "lastUpdated": iso(min(filed, source.as_of)),
                        }
                    )
    return _answer(rows)


CALENDAR_ROUTES: dict[str, Handler] = {
    "splits-calendar": _splits_calendar,
    "dividends-calendar": _dividends_calendar,
    "earnings-calendar": _earnings_calendar,
}
