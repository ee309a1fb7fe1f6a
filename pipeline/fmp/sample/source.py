"""`SampleSource`: answers FMP stable paths from generated data, with per-ticker data cached.

Lazy: per-ticker data is generated on first use and kept in a small LRU cache, so a 500-ticker universe
costs nothing up front and memory stays bounded. Thread-safe: one lock guards the caches.

Mutation knobs: `revision=1` restates one past quarter (same date/period, other values, later filing) and
revises some past EOD volume/vwap values; `extra_fields=True` adds new fields (schema drift).
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.fmp.sample.bulk_routes import BULK_ROUTES, bulk_limit_response
from pipeline.fmp.sample.calendar_routes import CALENDAR_ROUTES
from pipeline.fmp.sample.common import add_years
from pipeline.fmp.sample.companies import SAMPLE_TICKERS, Company, company
from pipeline.fmp.sample.market_routes import MARKET_ROUTES
from pipeline.fmp.sample.periods import generate_periods
from pipeline.fmp.sample.prices import (
    PRICE_ANCHOR,
    PRICE_START,
    Dividend,
    Prices,
    generate_dividends,
    generate_prices,
    split_factor,
    total_return_factor,
)
from pipeline.fmp.sample.statements import Period, shares_on
from pipeline.fmp.sample.survivorship import SURVIVORSHIP_ROUTES
from pipeline.fmp.sample.ticker_routes import TICKER_ROUTES
from pipeline.fmp.sample.trading_days import trading_days
from pipeline.fmp.sample.wire import QueryError, SampleResponse, response

CACHE_SIZE = 64  # tickers kept in the per-ticker LRU caches

_ROUTES = {**TICKER_ROUTES, **MARKET_ROUTES, **BULK_ROUTES, **SURVIVORSHIP_ROUTES, **CALENDAR_ROUTES}
RESTRICTED_ENDPOINT = (
    b'{\n  "Error Message": "Restricted Endpoint: This endpoint is not available under your current subscription"\n}'
)


class SampleSource:
    """Answers FMP stable paths from generated data. Thread-safe; per-ticker data is cached (LRU).

    `tickers` is the source's universe (default: the bundled companies; a test fake may pass a synthetic market):
    a symbol outside it gets `[]`, as FMP answers an unknown symbol, never invented data. `catalogue` describes
    each ticker (default: `companies.company`; a `SyntheticMarket` passes its own, with the market's calendars)."""

    def __init__(
        self,
        as_of: dt.date,
        tickers: Sequence[str] = SAMPLE_TICKERS,
        *,
        revision: int = 0,
        extra_fields: bool = False,
        plan: str | None = None,
        bulk_calls_per_minute: int | None = None,
        catalogue: Callable[[str], Company] = company,
    ) -> None:
        self.as_of = as_of
        self.tickers: tuple[str, ...] = tuple(dict.fromkeys(tickers))
        self.ticker_set = frozenset(self.tickers)
        self.position = {t: i for i, t in enumerate(self.tickers)}
        self.revision = revision
        self.extra_fields = extra_fields
        # fmp_api.md 3.1/3.2: a bulk path outside the plan is a 402; a bulk call over its own per-minute bucket is
        # a 200 with a JSON "Limit Reach" body. Both off by default (plan None serves every path).
        self.plan = plan
        self.bulk_calls_per_minute = bulk_calls_per_minute
        self._bulk_calls: list[float] = []
        self.catalogue = catalogue
        self._lock = threading.RLock()
        self._caches: dict[str, OrderedDict[str, Any]] = {}
        self._summary: dict[str, dict[str, Any]] = {}
        self._companies: dict[str, Company] = {}

    @functools.cached_property
    def _calendar(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(trading days, their ISO strings, how many are on or before as_of), built on first use: the NYSE
        calendar costs about a second to build, which a source that is never asked for prices need not pay.
        Prices are generated up to the anchor date even when as_of is earlier, then cut at as_of."""
        days = trading_days(PRICE_START, max(self.as_of, PRICE_ANCHOR))
        return (
            days,
            np.datetime_as_string(days, unit="D"),
            int(np.searchsorted(days, np.datetime64(self.as_of), side="right")),
        )

    # -- entry point ---------------------------------------------------------------------------------
    def respond(self, path: str, params: Mapping[str, str]) -> SampleResponse:
        """path is relative to the stable base, e.g. 'historical-price-eod/full'; params exclude apikey."""
        path = path.strip("/")
        handler = _ROUTES.get(path)
        if handler is None:
            return response(404, b"[]")
        params = {k: v for k, v in params.items() if k.lower() != "apikey"}
        try:
            if path in TICKER_ROUTES and not params.get("symbol"):
                raise QueryError("symbol")
            if path in BULK_ROUTES:
                refused = self._bulk_refusal(path)
                if refused is not None:
                    return refused
            return handler(self, params)
        except QueryError as err:
            return response(400, f"Query Error: Invalid or missing query parameter - {err.param}".encode())

    def _bulk_refusal(self, path: str) -> SampleResponse | None:
        """402 for a bulk path outside the plan; 200 + JSON Limit Reach over the bulk bucket (fmp_api.md 3.2)."""
        from pipeline.fmp.plans import has_bulk_path

        if self.plan is not None and not has_bulk_path(self.plan, path):
            return response(402, RESTRICTED_ENDPOINT)
        if self.bulk_calls_per_minute is not None:
            now = time.monotonic()
            with self._lock:
                self._bulk_calls = [t for t in self._bulk_calls if t > now - 60.0]
                if len(self._bulk_calls) >= self.bulk_calls_per_minute:
                    return bulk_limit_response()
                self._bulk_calls.append(now)
        return None

    def known(self, params: Mapping[str, str]) -> str | None:
        """The request's symbol when a company of the universe holds it as of as_of; None otherwise (FMP answers []
        for it). fmp_api.md 3.4: a symbol's history follows its current holder, so after a rename the new symbol
        serves the whole history and the old one nothing; before it, the old symbol serves it."""
        symbol = params["symbol"]
        return symbol if self.holder(symbol) is not None else None

    def holder(self, symbol: str) -> str | None:
        """The universe's company (its current symbol) that trades under `symbol` as of as_of, if any."""
        comp = self.company(symbol)
        names = {comp.symbol, *(old for old, _ in comp.former_symbols)}
        if self.ticker_set.isdisjoint(names):
            return None
        return comp.symbol if comp.symbol_on(self.as_of) == symbol else None

    def listed(self) -> list[str]:
        """The universe's symbols as of as_of (renames applied), delisted ones included (FMP's stock list has them)."""
        return [self.company(t).symbol_on(self.as_of) for t in self.tickers]

    def trading(self, symbol: str) -> bool:
        """Still traded as of as_of: not delisted before it (the delisting day itself still trades)."""
        gone = self.company(symbol).delisted_on
        return gone is None or self.as_of <= gone

    # -- cached per-ticker data ----------------------------------------------------------------------
    def cached(self, kind: str, symbol: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            cache = self._caches.setdefault(kind, OrderedDict())
            if symbol in cache:
                cache.move_to_end(symbol)
                return cache[symbol]
            value = build()
            cache[symbol] = value
            if len(cache) > CACHE_SIZE:
                cache.popitem(last=False)
            return value

    def company(self, symbol: str) -> Company:
        with self._lock:  # small: kept for every ticker
            if symbol not in self._companies:
                self._companies[symbol] = self.catalogue(symbol)
            return self._companies[symbol]

    def prices(self, symbol: str) -> Prices:
        revised_before = self.as_of - dt.timedelta(days=7) if self.revision else None

        def build() -> Prices:
            comp = self.company(symbol)
            days, dates, n = self._calendar
            px = generate_prices(comp, days, dates, revised_before)
            lo = int(np.searchsorted(px.days, np.datetime64(comp.first_trade))) if comp.first_trade else 0
            if comp.delisted:  # fmp_api.md 3.4: a delisted ticker's history ends on its delisting day
                n = min(n, int(np.searchsorted(px.days, np.datetime64(comp.delisted), side="right")))
            return Prices(
                px.days[lo:n],
                px.dates[lo:n],
                px.open[lo:n],
                px.high[lo:n],
                px.low[lo:n],
                px.close[lo:n],
                px.volume[lo:n],
                px.vwap[lo:n],
            )

        return self.cached("prices", symbol, build)

    def dividends(self, symbol: str) -> list[Dividend]:
        return self.cached(
            "dividends", symbol, lambda: generate_dividends(self.company(symbol), self.prices(symbol), self.as_of)
        )

    def periods(self, symbol: str) -> tuple[list[Period], list[Period]]:
        return self.cached(
            "periods",
            symbol,
            lambda: generate_periods(self.company(symbol), self.as_of, self.dividends(symbol), self.revision),
        )

    def total_return_factor(self, symbol: str) -> np.ndarray:
        return self.cached(
            "total_return",
            symbol,
            lambda: total_return_factor(self.company(symbol), self.prices(symbol), self.dividends(symbol), self.as_of),
        )

    def as_of_basis(self, symbol: str, px: Prices) -> np.ndarray:
        """Per day: divide an as-traded price (multiply a volume) by this to put it on as_of's share basis."""
        return split_factor(self.company(symbol), px.days, until=self.as_of)

    def summary(self, symbol: str) -> dict[str, Any]:
        """Latest quote facts (small, kept for every ticker): used by profile, peers and the screener."""
        with self._lock:
            if symbol in self._summary:
                return self._summary[symbol]
        comp, px = self.company(symbol), self.prices(symbol)
        divs = self.dividends(symbol)
        last, prev = len(px.days) - 1, max(len(px.days) - 2, 0)
        year_ago = int(np.searchsorted(px.days, np.datetime64(add_years(self.as_of, -1))))
        year_ago = min(year_ago, max(last - 251, 0))  # a delisted company: the last year it traded
        price = float(px.close[last]) / 100
        prev_close = float(px.close[prev]) / 100
        shares = shares_on(comp, self.as_of)
        basis = self.as_of_basis(symbol, px)
        out = {
            "price": price,
            "prev_close": prev_close,
            "volume": int(px.volume[last]),
            "average_volume": int(px.volume[max(last - 62, 0) :].mean()),
            "low52": round(float((px.low / basis)[year_ago:].min()) / 100, 4),
            "high52": round(float((px.high / basis)[year_ago:].max()) / 100, 4),
            "market_cap": round(price * shares, 2),
            "last_dividend": round(sum(d.dividend for d in divs[-4:]), 4) if divs else 0.0,
        }
        with self._lock:
            self._summary[symbol] = out
        return out
