"""A deterministic, offline stand-in for the FMP `stable` REST API.

Why it exists: the demo and CI must run the whole pipeline (fetch -> Bronze -> Silver -> Gold) without a
network or an API key, and tests need data whose properties are known in advance. `SampleSource` answers
every path of the shipped keymap with FMP-shaped JSON (the stable API's field names, its quirks such as
`fiscalYear` as a string, its caps, windows and error bodies), and `sample_transport` plugs it into httpx.

Properties the rest of the project relies on:
- Deterministic: same (as_of, tickers, knobs, path, params) -> same bytes. Randomness is seeded from
  `zlib.crc32` of names, never from Python's `hash()`. As-traded values for a past date do not depend on
  `as_of` (a later `as_of` only adds rows); what does depend on it is what FMP itself rewrites (below).
- Nothing is dated after `as_of`, and no statement is returned before its `filingDate`.
- FMP's real semantics (fmp_api.md section 1), which Gold must get right:
  - `/historical-price-eod/full` is split-adjusted (prices and volume) on the share basis of `as_of`, so its
    whole history is rewritten when `as_of` passes a split; `/non-split-adjusted` serves as-traded bars under
    `adjOpen..adjClose` names; `/dividend-adjusted` is split- and dividend-adjusted (total return).
  - statement share counts and EPS are restated onto the basis of `as_of`, while `filingDate` keeps the
    original date; `dividends.adjDividend` is split-adjusted to `as_of`, `dividend` is as declared.
  - `economic-indicators` dates are the start of the reference period; an observation is served only once
    its release (listed in `economic-calendar`, UTC datetimes) is on or before `as_of`.
  - many filings are accepted after the 16:00 New York close (`acceptedDate`, Eastern wall clock).
  - one loss-making ticker (SNAP) and one reverse split (GE, 1-for-8 on 2021-08-02).
- Consistent across datasets: as-traded prices drop on split dates and `splits` lists the same events;
  dividends are paid in cash-flow statements; key metrics and ratios are derived from the statements and the
  price at period end (both on the `as_of` basis).
- Accounting identities hold exactly (integer dollars) on every statement.
- Lazy: per-ticker data is generated on first use and kept in a small LRU cache, so a 500-ticker
  universe costs nothing up front and memory stays bounded.

Mutation knobs: `revision=1` restates one past quarter (same date/period, other values, later
filing) and revises some past EOD volume/vwap values; `extra_fields=True` adds new fields (schema drift).
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import math
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from zoneinfo import ZoneInfo

__all__ = ["SAMPLE_TICKERS", "SampleResponse", "SampleSource", "sample_transport"]

SAMPLE_TICKERS: tuple[str, ...] = ("AAPL", "MSFT", "NVDA", "JPM", "XOM", "JNJ", "KO", "PG", "GE", "SNAP")

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
EOD_ROW_CAP = 5000                      # FMP silently keeps the newest 5,000 EOD rows
DEFAULT_STATEMENT_LIMIT = 5             # statements/key-metrics/ratios without `limit`
WINDOW_DAYS = 91                        # treasury / economic-indicators: ~3 months, newest kept
PRICE_START = dt.date(2000, 1, 3)       # first trading day generated (covers every keymap history start)
PRICE_ANCHOR = dt.date(2025, 1, 2)      # the adjusted close equals Company.ref_price on this day
TREASURY_START = dt.date(2019, 1, 2)
INDICATOR_START = dt.date(2000, 1, 1)
DIVIDEND_START = dt.date(2012, 1, 1)
FIRST_FISCAL_YEAR = 2012                # statements start with Q1 2012
CACHE_SIZE = 64                         # tickers kept in the per-ticker LRU caches

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


# ---------------------------------------------------------------------------------------------------
# Public response type and errors
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SampleResponse:
    status_code: int
    body: bytes
    headers: dict[str, str]


class _QueryError(Exception):
    """A missing or malformed parameter: FMP answers 400 with a plain-text body labelled JSON."""

    def __init__(self, param: str) -> None:
        super().__init__(param)
        self.param = param


def _response(status: int, body: bytes) -> SampleResponse:
    etag = f'W/"{len(body):x}-{zlib.crc32(body):08x}"'
    return SampleResponse(status, body, {"content-type": JSON_CONTENT_TYPE, "etag": etag})


def _json_response(rows: list[dict[str, Any]], status: int = 200) -> SampleResponse:
    return _response(status, json.dumps(rows, indent=2, allow_nan=False).encode())


# ---------------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------------

def _crc(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(_crc(*parts))


def _div(a: float, b: float) -> float:
    """a / b as a finite float; 0.0 when the denominator is 0 (never NaN/Infinity in JSON)."""
    if not b:
        return 0.0
    value = a / b
    return float(value) if math.isfinite(value) else 0.0


def _iso(d: dt.date) -> str:
    return d.isoformat()


def _parse_date(params: Mapping[str, str], name: str) -> dt.date | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _DATE_RE.match(raw):
        raise _QueryError(name)
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise _QueryError(name) from None


def _parse_limit(params: Mapping[str, str], default: int | None) -> int | None:
    raw = params.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _QueryError("limit") from None
    if value < 0:
        raise _QueryError("limit")
    return value


def _add_years(d: dt.date, years: int) -> dt.date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def _quarter_end(year: int, quarter: int) -> dt.date:
    month = quarter * 3
    return dt.date(year, month, calendar.monthrange(year, month)[1])


def _holidays(first_year: int, last_year: int) -> list[str]:
    """A few fixed US market holidays (New Year, Independence Day, Christmas)."""
    return [f"{y}-{md}" for y in range(first_year, last_year + 1) for md in ("01-01", "07-04", "12-25")]


def _trading_days(start: dt.date, end: dt.date) -> np.ndarray:
    """Weekdays minus the fixed holidays, as datetime64[D], oldest first."""
    if end < start:
        return np.array([], dtype="datetime64[D]")
    days = np.arange(np.datetime64(start), np.datetime64(end) + 1, dtype="datetime64[D]")
    holidays = np.array(_holidays(start.year, end.year), dtype="datetime64[D]")
    return days[np.is_busday(days, holidays=holidays)]


def _window(frm: dt.date, to: dt.date, as_of: dt.date) -> tuple[dt.date, dt.date]:
    """Treasury/indicator behaviour: at most ~3 months, keeping the newest end of the range."""
    newest = min(to, as_of)
    return max(frm, newest - dt.timedelta(days=WINDOW_DAYS)), to


# ---------------------------------------------------------------------------------------------------
# Company reference data
# ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Company:
    symbol: str
    name: str
    exchange: str            # NASDAQ | NYSE
    sector: str
    industry: str
    cik: str
    ceo: str
    city: str
    state: str
    employees: int
    ipo_date: str
    splits: tuple[tuple[str, int, int], ...]   # (date, numerator, denominator)
    # price model (split-adjusted, today's share basis)
    ref_price: float         # adjusted close on PRICE_ANCHOR
    drift: float             # annual log drift of the trend
    vol: float               # annual volatility
    beta: float
    avg_volume: float        # shares per day, today's basis
    # fundamentals model
    revenue0: float          # quarterly revenue in Q1 2012, dollars
    growth: float            # quarterly revenue growth
    gross_margin: float
    rd_ratio: float
    sga_ratio: float
    tax_rate: float
    capex_ratio: float
    inventory_ratio: float
    leverage: float          # total liabilities / total assets
    minority_ratio: float
    shares_now: float        # shares outstanding today (post all splits)
    dividend_yield: float    # target annual yield, fraction; 0 = no dividend
    dividend_month: int      # first ex-dividend month of the year (1..3)
    investments_ratio: float = 0.15   # long-term investments / annual revenue (a bank's loan book is ~20x)
    first_trade: str | None = None    # first trading day (IPO); no prices or statements long before it


_SECTORS: tuple[tuple[str, str], ...] = (
    ("Technology", "Software - Infrastructure"),
    ("Technology", "Semiconductors"),
    ("Financial Services", "Banks - Diversified"),
    ("Energy", "Oil & Gas Integrated"),
    ("Healthcare", "Drug Manufacturers - General"),
    ("Consumer Defensive", "Beverages - Non-Alcoholic"),
    ("Consumer Defensive", "Household & Personal Products"),
    ("Consumer Cyclical", "Specialty Retail"),
    ("Industrials", "Specialty Industrial Machinery"),
    ("Communication Services", "Internet Content & Information"),
    ("Utilities", "Utilities - Regulated Electric"),
    ("Real Estate", "REIT - Specialty"),
    ("Basic Materials", "Specialty Chemicals"),
)

SECTORS: tuple[str, ...] = (
    "Basic Materials", "Communication Services", "Consumer Cyclical", "Consumer Defensive", "Energy",
    "Financial Services", "Healthcare", "Industrials", "Real Estate", "Technology", "Utilities",
)

# Names and identifiers are public facts; every number here is synthetic.
_KNOWN: dict[str, dict[str, Any]] = {
    "AAPL": dict(name="Apple Inc.", exchange="NASDAQ", sector="Technology", industry="Consumer Electronics",
                 cik="0000320193", ceo="Timothy D. Cook", city="Cupertino", state="CA", employees=164000,
                 ipo_date="1980-12-12", splits=(("2020-08-31", 4, 1),), ref_price=243.0, drift=0.1,
                 vol=0.33, beta=1.11, avg_volume=6.0e7, revenue0=39e9, growth=0.017, gross_margin=0.46,
                 rd_ratio=0.06, sga_ratio=0.07, tax_rate=0.16, capex_ratio=0.03, inventory_ratio=0.1,
                 leverage=0.8, minority_ratio=0.0, shares_now=15.2e9, dividend_yield=0.006, dividend_month=2),
    "MSFT": dict(name="Microsoft Corporation", exchange="NASDAQ", sector="Technology",
                 industry="Software - Infrastructure", cik="0000789019", ceo="Satya Nadella", city="Redmond",
                 state="WA", employees=228000, ipo_date="1986-03-13", splits=(), ref_price=420.0, drift=0.08,
                 vol=0.27, beta=0.9, avg_volume=2.2e7, revenue0=17e9, growth=0.025, gross_margin=0.68,
                 rd_ratio=0.13, sga_ratio=0.17, tax_rate=0.18, capex_ratio=0.12, inventory_ratio=0.05,
                 leverage=0.55, minority_ratio=0.0, shares_now=7.43e9, dividend_yield=0.009, dividend_month=2,
                 investments_ratio=1.2),
    "NVDA": dict(name="NVIDIA Corporation", exchange="NASDAQ", sector="Technology", industry="Semiconductors",
                 cik="0001045810", ceo="Jensen Huang", city="Santa Clara", state="CA", employees=36000,
                 ipo_date="1999-01-22", splits=(("2021-07-20", 4, 1), ("2024-06-10", 10, 1)),
                 ref_price=138.0, drift=0.2, vol=0.5, beta=1.7, avg_volume=3.0e8, revenue0=1.0e9,
                 growth=0.062, gross_margin=0.62, rd_ratio=0.15, sga_ratio=0.05, tax_rate=0.13,
                 capex_ratio=0.04, inventory_ratio=0.5, leverage=0.35, minority_ratio=0.0, shares_now=24.4e9,
                 dividend_yield=0.0005, dividend_month=3),
    "JPM": dict(name="JPMorgan Chase & Co.", exchange="NYSE", sector="Financial Services",
                industry="Banks - Diversified", cik="0000019617", ceo="James Dimon", city="New York",
                state="NY", employees=317000, ipo_date="1980-03-17", splits=(), ref_price=240.0, drift=0.05,
                vol=0.3, beta=1.08, avg_volume=1.0e7, revenue0=25e9, growth=0.016, gross_margin=0.85,
                rd_ratio=0.0, sga_ratio=0.5, tax_rate=0.2, capex_ratio=0.02, inventory_ratio=0.0,
                leverage=0.92, minority_ratio=0.0, shares_now=2.8e9, dividend_yield=0.025, dividend_month=1,
                investments_ratio=18.0),
    "XOM": dict(name="Exxon Mobil Corporation", exchange="NYSE", sector="Energy",
                industry="Oil & Gas Integrated", cik="0000034088", ceo="Darren W. Woods", city="Spring",
                state="TX", employees=61000, ipo_date="1978-01-13", splits=(), ref_price=107.0, drift=0.04,
                vol=0.26, beta=0.85, avg_volume=1.6e7, revenue0=85e9, growth=0.003, gross_margin=0.2,
                rd_ratio=0.0, sga_ratio=0.05, tax_rate=0.3, capex_ratio=0.07, inventory_ratio=0.12,
                leverage=0.45, minority_ratio=0.03, shares_now=4.3e9, dividend_yield=0.035, dividend_month=2),
    "JNJ": dict(name="Johnson & Johnson", exchange="NYSE", sector="Healthcare",
                industry="Drug Manufacturers - General", cik="0000200406", ceo="Joaquin Duato",
                city="New Brunswick", state="NJ", employees=138000, ipo_date="1944-09-24", splits=(),
                ref_price=145.0, drift=0.05, vol=0.18, beta=0.52, avg_volume=7.0e6, revenue0=17e9,
                growth=0.01, gross_margin=0.68, rd_ratio=0.14, sga_ratio=0.27, tax_rate=0.17, capex_ratio=0.05,
                inventory_ratio=0.35, leverage=0.6, minority_ratio=0.0, shares_now=2.4e9, dividend_yield=0.028,
                dividend_month=2),
    "KO": dict(name="The Coca-Cola Company", exchange="NYSE", sector="Consumer Defensive",
               industry="Beverages - Non-Alcoholic", cik="0000021344", ceo="James Quincey", city="Atlanta",
               state="GA", employees=69700, ipo_date="1919-09-05", splits=(), ref_price=62.0, drift=0.04,
               vol=0.18, beta=0.6, avg_volume=1.4e7, revenue0=11e9, growth=0.005, gross_margin=0.6,
               rd_ratio=0.0, sga_ratio=0.3, tax_rate=0.19, capex_ratio=0.04, inventory_ratio=0.3,
               leverage=0.75, minority_ratio=0.02, shares_now=4.3e9, dividend_yield=0.03, dividend_month=3,
               investments_ratio=0.8),
    "PG": dict(name="The Procter & Gamble Company", exchange="NYSE", sector="Consumer Defensive",
               industry="Household & Personal Products", cik="0000080424", ceo="Jon R. Moeller",
               city="Cincinnati", state="OH", employees=108000, ipo_date="1950-03-22", splits=(),
               ref_price=168.0, drift=0.06, vol=0.19, beta=0.42, avg_volume=7.0e6, revenue0=21e9, growth=0.007,
               gross_margin=0.5, rd_ratio=0.02, sga_ratio=0.26, tax_rate=0.2, capex_ratio=0.05,
               inventory_ratio=0.4, leverage=0.6, minority_ratio=0.005, shares_now=2.35e9,
               dividend_yield=0.025, dividend_month=1),
    # A 1-for-8 reverse split (numerator < denominator): as-traded prices jump up, share counts drop.
    "GE": dict(name="General Electric Company", exchange="NYSE", sector="Industrials",
               industry="Aerospace & Defense", cik="0000040545", ceo="H. Lawrence Culp, Jr.", city="Evendale",
               state="OH", employees=53000, ipo_date="1962-01-02", splits=(("2021-08-02", 1, 8),),
               ref_price=170.0, drift=0.09, vol=0.3, beta=1.2, avg_volume=6.0e6, revenue0=9e9, growth=0.004,
               gross_margin=0.32, rd_ratio=0.03, sga_ratio=0.11, tax_rate=0.18, capex_ratio=0.03,
               inventory_ratio=0.4, leverage=0.75, minority_ratio=0.01, shares_now=1.08e9, dividend_yield=0.007,
               dividend_month=3),
    # Loss-making every quarter (research and selling costs above gross profit): P/E must be NULL.
    "SNAP": dict(name="Snap Inc.", exchange="NYSE", sector="Communication Services",
                 industry="Internet Content & Information", cik="0001564408", ceo="Evan Spiegel",
                 city="Santa Monica", state="CA", employees=5300, ipo_date="2017-03-02", splits=(), ref_price=11.0,
                 drift=0.0, vol=0.55, beta=1.3, avg_volume=2.5e7, revenue0=0.1e9, growth=0.06, gross_margin=0.55,
                 rd_ratio=0.35, sga_ratio=0.32, tax_rate=0.05, capex_ratio=0.02, inventory_ratio=0.0,
                 leverage=0.6, minority_ratio=0.0, shares_now=1.7e9, dividend_yield=0.0, dividend_month=1,
                 first_trade="2017-03-02"),
}

_NAME_WORDS = ("Apex", "Blue", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris", "Juniper",
               "Keystone", "Lumen", "Meridian", "Northwind", "Orion", "Pioneer", "Quarry", "Redwood",
               "Summit", "Tidewater", "Union", "Vertex", "Willow", "Zenith")
_NAME_SUFFIX = ("Holdings", "Systems", "Industries", "Group", "Technologies", "Partners", "Brands", "Labs")
_STATES = (("Austin", "TX"), ("Boston", "MA"), ("Chicago", "IL"), ("Denver", "CO"), ("Seattle", "WA"),
           ("Atlanta", "GA"), ("Columbus", "OH"), ("San Jose", "CA"), ("Charlotte", "NC"), ("Phoenix", "AZ"))


def _synthetic_company(symbol: str) -> dict[str, Any]:
    """Plausible parameters for any ticker string, derived only from its name."""
    r = _rng("company", symbol)
    seed = _crc("company", symbol)
    sector, industry = _SECTORS[seed % len(_SECTORS)]
    city, state = _STATES[(seed >> 8) % len(_STATES)]
    word = _NAME_WORDS[(seed >> 4) % len(_NAME_WORDS)]
    suffix = _NAME_SUFFIX[(seed >> 12) % len(_NAME_SUFFIX)]
    splits: tuple[tuple[str, int, int], ...] = ()
    if seed % 10 == 3:  # about one ticker in ten split 2:1 or 3:1 between 2016 and 2023
        split_day = dt.date(2016, 3, 1) + dt.timedelta(days=int(seed >> 5) % 2800)
        while split_day.weekday() >= 5:
            split_day += dt.timedelta(days=1)
        splits = ((split_day.isoformat(), 2 + (seed >> 9) % 2, 1),)
    revenue0 = float(np.exp(r.uniform(np.log(2e8), np.log(2e10))))
    return dict(
        name=f"{word} {symbol.title()} {suffix}, Inc.", exchange="NASDAQ" if seed % 2 else "NYSE",
        sector=sector, industry=industry, cik=f"{1_100_000 + seed % 899_999:010d}",
        ceo=f"{('Alex', 'Jordan', 'Morgan', 'Taylor', 'Casey')[seed % 5]} {word}son", city=city, state=state,
        employees=int(r.integers(800, 90_000)), ipo_date=f"{1985 + seed % 14}-0{1 + seed % 9}-1{seed % 9}",
        splits=splits, ref_price=float(r.uniform(10, 300)), drift=float(r.uniform(0.0, 0.12)),
        vol=float(r.uniform(0.2, 0.45)), beta=round(float(r.uniform(0.4, 1.8)), 3),
        avg_volume=float(r.uniform(3e5, 2e7)), revenue0=revenue0, growth=float(r.uniform(0.0, 0.03)),
        gross_margin=float(r.uniform(0.25, 0.75)), rd_ratio=float(r.uniform(0.0, 0.12)),
        sga_ratio=float(r.uniform(0.05, 0.2)), tax_rate=float(r.uniform(0.12, 0.25)),
        capex_ratio=float(r.uniform(0.02, 0.1)), inventory_ratio=float(r.uniform(0.0, 0.5)),
        leverage=float(r.uniform(0.35, 0.8)), minority_ratio=0.01 if seed % 7 == 0 else 0.0,
        shares_now=float(revenue0 * r.uniform(0.02, 0.2)),
        dividend_yield=0.0 if seed % 5 == 0 else float(r.uniform(0.005, 0.04)), dividend_month=1 + seed % 3,
    )


def company(symbol: str) -> Company:
    """Reference data for a ticker (real names for the sample tickers, synthetic for any other string)."""
    return Company(symbol=symbol, **(_KNOWN.get(symbol) or _synthetic_company(symbol)))


# ---------------------------------------------------------------------------------------------------
# Per-ticker generated data
# ---------------------------------------------------------------------------------------------------

@dataclass
class Prices:
    """Raw (as-traded) daily bars, oldest first; prices in cents to keep rounding exact."""
    days: np.ndarray            # datetime64[D]
    dates: np.ndarray           # ISO strings
    open: np.ndarray            # int64 cents
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray          # int64 shares
    vwap: np.ndarray            # float64, 4 decimals

    def close_on_or_before(self, d: dt.date) -> float:
        i = int(np.searchsorted(self.days, np.datetime64(d), side="right")) - 1
        return float(self.close[max(i, 0)]) / 100 if len(self.days) else 0.0


@dataclass(frozen=True)
class Dividend:
    date: dt.date
    record: dt.date
    payment: dt.date
    declaration: dt.date
    dividend: float
    adj_dividend: float
    yield_pct: float


@dataclass
class Period:
    """One fiscal period (quarter or FY): the three statements plus what metrics need."""
    date: dt.date
    period: str                 # Q1..Q4 | FY
    fiscal_year: int
    filing: dt.date
    accepted: str
    income: dict[str, int | float]
    balance: dict[str, int]
    cash: dict[str, int]


def _split_factor(comp: Company, day: np.ndarray, until: dt.date | None = None) -> np.ndarray:
    """Product of the ratios of the splits after each day and on or before `until` (every split when None).

    An as-traded value on `day` divided by this is on the share basis of `until`: that is how FMP's
    split-adjusted `/full` history is rewritten after each split (fmp_api.md section 1).
    """
    factor = np.ones(len(day))
    for d, num, den in comp.splits:
        if until is None or dt.date.fromisoformat(d) <= until:
            factor[day < np.datetime64(d)] *= num / den
    return factor


def _split_factor_on(comp: Company, d: dt.date, until: dt.date | None = None) -> float:
    factor = 1.0
    for sd, num, den in comp.splits:
        split_day = dt.date.fromisoformat(sd)
        if d < split_day and (until is None or split_day <= until):
            factor *= num / den
    return factor


def generate_prices(comp: Company, days: np.ndarray, dates: np.ndarray, revised_before: dt.date | None) -> Prices:
    """Adjusted closes follow a log-linear trend plus a mean-reverting (AR(1)) deviation, pinned to
    `ref_price` on PRICE_ANCHOR; the splits then turn them into as-traded prices and volumes.

    `days` may run past as_of (to reach the anchor); callers slice. Each random stream has its own
    generator, so the first k draws do not depend on how many days are generated: history is stable.
    """
    n = len(days)
    sym = comp.symbol
    sigma = comp.vol / math.sqrt(252)
    phi = 0.998                                   # deviation half-life of about 350 trading days
    e = _rng("ret", sym).standard_normal(n) * sigma
    t = np.arange(n)
    deviation = phi ** t * np.cumsum(e * phi ** -t)   # x_t = phi * x_{t-1} + e_t, vectorised
    anchor = min(int(np.searchsorted(days, np.datetime64(PRICE_ANCHOR))), n - 1)
    trend = comp.drift / 252 * (t - anchor)
    adj_close = comp.ref_price * np.exp(trend + deviation - deviation[anchor])
    gap = _rng("gap", sym).standard_normal(n) * sigma * 0.25
    wick_hi = np.abs(_rng("hi", sym).standard_normal(n)) * sigma * 0.5
    wick_lo = np.abs(_rng("lo", sym).standard_normal(n)) * sigma * 0.5
    vol_noise = _rng("vol", sym).standard_normal(n) * 0.35

    adj_open = np.concatenate((adj_close[:1], adj_close[:-1])) * np.exp(gap)
    factor = _split_factor(comp, days)
    raw_open, raw_close = adj_open * factor, adj_close * factor
    raw_high = np.maximum(raw_open, raw_close) * (1 + wick_hi)
    raw_low = np.minimum(raw_open, raw_close) * (1 - wick_lo)

    def cents(x: np.ndarray) -> np.ndarray:
        return np.maximum(np.rint(x * 100).astype(np.int64), 1)

    o, c = cents(raw_open), cents(raw_close)
    h = np.maximum(cents(raw_high), np.maximum(o, c))
    lo = np.minimum(cents(raw_low), np.minimum(o, c))
    volume = np.rint(comp.avg_volume * np.exp(vol_noise) / factor).astype(np.int64)
    vwap = np.round((o + h + lo + c) / 400.0, 4)
    if revised_before is not None:
        # Late corrections: some past rows get a slightly different volume and a typical-price vwap.
        idx = np.arange(n)
        mask = (idx % 7 == 3) & (days < np.datetime64(revised_before))
        volume = np.where(mask, volume + 17 + idx % 50, volume)
        vwap = np.where(mask, np.round((h + lo + c) / 300.0, 4), vwap)
    return Prices(days, dates, o, h, lo, c, volume, vwap)


def generate_dividends(comp: Company, prices: Prices, as_of: dt.date) -> list[Dividend]:
    """Quarterly dividends (oldest first): `dividend` as declared (per as-traded share on the ex-date),
    `adj_dividend` split-adjusted to `as_of`'s basis (fmp_api.md section 1, /stable/dividends)."""
    if comp.dividend_yield <= 0 or not len(prices.days):
        return []
    out: list[Dividend] = []
    annual_adj = 0.0
    for year in range(DIVIDEND_START.year, as_of.year + 1):
        # The annual (adjusted) rate is reset each January from the price: yield stays near target.
        jan = prices.close_on_or_before(dt.date(year, 1, 10)) / _split_factor_on(comp, dt.date(year, 1, 10))
        annual_adj = max(annual_adj * 1.02, comp.dividend_yield * jan)
        for k in range(4):
            month = comp.dividend_month + 3 * k
            ex = dt.date(year, month, 8 + _crc("div", comp.symbol) % 10)
            i = int(np.searchsorted(prices.days, np.datetime64(ex)))
            if i >= len(prices.days):
                break
            ex = prices.days[i].item()
            if ex > as_of:
                break
            factor = _split_factor_on(comp, ex)
            raw = max(round(annual_adj / 4 * factor, 2), 0.01)
            close = float(prices.close[i]) / 100
            out.append(Dividend(date=ex, record=ex, payment=ex + dt.timedelta(days=14),
                                declaration=ex - dt.timedelta(days=21), dividend=raw,
                                # adjDividend: split-adjusted to the basis FMP serves today (as_of)
                                adj_dividend=round(raw / _split_factor_on(comp, ex, until=as_of), 6),
                                yield_pct=_div(raw * 4 * 100, close)))
    return out


# ---------------------------------------------------------------------------------------------------
# Financial statements
# ---------------------------------------------------------------------------------------------------

_META_KEYS = ("date", "symbol", "reportedCurrency", "cik", "filingDate", "acceptedDate", "fiscalYear", "period")


def _filing_date(comp: Company, period_end: dt.date, fiscal_year: int, quarter: int) -> dt.date:
    """25-45 days after the period end, moved off weekends."""
    filing = period_end + dt.timedelta(days=25 + _crc("filing", comp.symbol, fiscal_year, quarter) % 21)
    while filing.weekday() >= 5:
        filing += dt.timedelta(days=1)
    return filing


def _accepted(comp: Company, filing: dt.date, salt: object) -> str:
    """EDGAR acceptance time, US Eastern wall clock: about a third after the 16:00 close (16:05-19:59, usable
    only from the next trading day's close), the rest before the open (06:00-09:29). fmp_api.md section 1."""
    s = _crc("accepted", comp.symbol, filing, salt)
    minute, second = (s >> 4) % 60, (s >> 10) % 60
    if s % 3 == 0:
        return f"{filing.isoformat()} {16 + (s >> 16) % 4:02d}:{max(minute, 5):02d}:{second:02d}"
    return f"{filing.isoformat()} {6 + (s >> 16) % 4:02d}:{minute % 30:02d}:{second:02d}"


def shares_on(comp: Company, day: dt.date, basis: dt.date | None = None) -> int:
    """Shares outstanding on a day (slow buybacks), on the share basis of `basis` (as traded on `day` when None).

    FMP restates statement share counts onto the basis current when it serves them (AAPL FY2019 shows 4x the
    shares filed in 2019, after the 2020 4:1 split: fmp_api.md section 1), so statements use basis=as_of.
    """
    q = (day.year - FIRST_FISCAL_YEAR) * 4 + (day.month - 1) // 3
    final_basis = comp.shares_now * 1.004 ** (60 - q)          # on the basis after every split in comp.splits
    return int(round(final_basis / _split_factor_on(comp, basis or day)))


def _initial_state(comp: Company) -> dict[str, int]:
    rev = comp.revenue0
    return {"cash": int(rev * 0.5), "receivables": int(rev * 0.6), "inventory": int(rev * comp.inventory_ratio),
            "payables": int(rev * 0.45), "ppe": int(rev * 1.5), "short_debt": int(rev * 0.1),
            "long_debt": int(rev * 0.8), "intangibles": int(rev * 0.2)}


def _build_quarter(comp: Company, q: int, year: int, quarter: int, prev: dict[str, int],
                   dividends_paid: int, basis: dt.date, scale: float = 1.0) -> tuple[dict, dict, dict, dict[str, int]]:
    """Income, balance sheet and cash flow for one quarter; every identity holds in integer dollars.

    Share counts and EPS are on the share basis of `basis` (the day FMP serves them), not as filed.
    """
    r = _rng("quarter", comp.symbol, q)
    n = lambda s=1.0: float(r.normal(0.0, s))  # noqa: E731 - a terse draw keeps the formulas readable
    season = 1.0 + 0.06 * math.sin((quarter - 1) * math.pi / 2)
    rev = comp.revenue0 * (1 + comp.growth) ** q * season * math.exp(n(0.03)) * scale
    end = _quarter_end(year, quarter)

    # -- income statement
    revenue = int(round(rev))
    cost_of_revenue = int(round(revenue * (1 - comp.gross_margin * math.exp(n(0.02)))))
    gross_profit = revenue - cost_of_revenue
    rd = int(round(revenue * comp.rd_ratio))
    ga = int(round(revenue * comp.sga_ratio * 0.45))
    sm = int(round(revenue * comp.sga_ratio * 0.55))
    sga = ga + sm
    other_expenses = 0
    operating_expenses = rd + sga + other_expenses
    operating_income = gross_profit - operating_expenses
    da = int(round(revenue * comp.capex_ratio * 0.8))
    interest_income = int(round(prev["cash"] * 0.008))
    interest_expense = int(round((prev["short_debt"] + prev["long_debt"]) * 0.009))
    net_interest = interest_income - interest_expense
    non_operating = int(round(revenue * n(0.004)))
    total_other = net_interest + non_operating
    income_before_tax = operating_income + total_other
    income_tax = int(round(max(income_before_tax, 0) * comp.tax_rate))
    net_income_cont = income_before_tax - income_tax
    net_income = net_income_cont
    ebit = operating_income
    shares = shares_on(comp, end, basis=basis)
    shares_dil = int(round(shares * 1.006))
    income = {
        "revenue": revenue, "costOfRevenue": cost_of_revenue, "grossProfit": gross_profit,
        "researchAndDevelopmentExpenses": rd, "generalAndAdministrativeExpenses": ga,
        "sellingAndMarketingExpenses": sm, "sellingGeneralAndAdministrativeExpenses": sga,
        "otherExpenses": other_expenses, "operatingExpenses": operating_expenses,
        "costAndExpenses": cost_of_revenue + operating_expenses, "netInterestIncome": net_interest,
        "interestIncome": interest_income, "interestExpense": interest_expense,
        "depreciationAndAmortization": da, "ebitda": ebit + da, "ebit": ebit,
        "nonOperatingIncomeExcludingInterest": non_operating, "operatingIncome": operating_income,
        "totalOtherIncomeExpensesNet": total_other, "incomeBeforeTax": income_before_tax,
        "incomeTaxExpense": income_tax, "netIncomeFromContinuingOperations": net_income_cont,
        "netIncomeFromDiscontinuedOperations": 0, "otherAdjustmentsToNetIncome": 0, "netIncome": net_income,
        "netIncomeDeductions": 0, "bottomLineNetIncome": net_income,
        "eps": round(_div(net_income, shares), 2), "epsDiluted": round(_div(net_income, shares_dil), 2),
        "weightedAverageShsOut": shares, "weightedAverageShsOutDil": shares_dil,
    }

    # -- balance sheet (assets first; liabilities sized to the target leverage; equity is the remainder)
    annual = revenue * 4
    cash = int(round((0.75 * prev["cash"] + 0.25 * 0.12 * annual) * math.exp(n(0.06))))
    short_inv = int(round(annual * 0.08 * math.exp(n(0.05))))
    accounts_rec = int(round(revenue * 0.45 * math.exp(n(0.05))))
    other_rec = int(round(accounts_rec * 0.3))
    net_rec = accounts_rec + other_rec
    inventory = int(round(cost_of_revenue * comp.inventory_ratio * math.exp(n(0.05))))
    prepaids = int(round(revenue * 0.01))
    other_ca = int(round(annual * 0.03))
    total_ca = cash + short_inv + net_rec + inventory + prepaids + other_ca
    capex = int(round(revenue * comp.capex_ratio * math.exp(n(0.1))))
    ppe = max(prev["ppe"] + capex - da, int(annual * 0.05))
    intangibles = int(round(prev["intangibles"] * 0.99))
    goodwill = int(round(comp.revenue0 * 0.6))
    long_inv = int(round(annual * comp.investments_ratio * math.exp(n(0.03))))
    tax_assets = int(round(annual * 0.02))
    other_nca = int(round(annual * 0.08))
    total_nca = ppe + goodwill + intangibles + long_inv + tax_assets + other_nca
    total_assets = total_ca + total_nca

    liab_target = total_assets * comp.leverage
    accounts_pay = int(round(cost_of_revenue * 0.5 * math.exp(n(0.05))))
    other_pay = int(round(liab_target * 0.03))
    accrued = int(round(liab_target * 0.02))
    short_debt = max(int(round(prev["short_debt"] * math.exp(n(0.1)))), 0)
    lease_cur = int(round(liab_target * 0.005))
    deferred_rev = int(round(liab_target * 0.02))
    other_cl = int(round(liab_target * 0.08))
    total_cl = accounts_pay + other_pay + accrued + short_debt + lease_cur + deferred_rev + other_cl
    long_debt = max(int(round(prev["long_debt"] * math.exp(n(0.03)) * (1 + comp.growth))), 0)
    lease_ncur = lease_cur * 6
    deferred_tax_liab = int(round(liab_target * 0.02))
    fixed_so_far = total_cl + long_debt + lease_ncur + deferred_tax_liab
    other_ncl = max(int(round(liab_target)) - fixed_so_far, int(round(liab_target * 0.02)))
    total_ncl = long_debt + lease_ncur + 0 + deferred_tax_liab + other_ncl
    total_liabilities = total_cl + total_ncl
    total_equity = total_assets - total_liabilities
    minority = int(round(max(total_equity, 0) * comp.minority_ratio))
    stockholders = total_equity - minority
    common_stock = int(round(total_assets * 0.08))
    aoci = -int(round(total_assets * 0.01))
    retained = stockholders - common_stock - aoci
    total_debt = short_debt + long_debt + lease_cur + lease_ncur
    balance = {
        "cashAndCashEquivalents": cash, "shortTermInvestments": short_inv,
        "cashAndShortTermInvestments": cash + short_inv, "netReceivables": net_rec,
        "accountsReceivables": accounts_rec, "otherReceivables": other_rec, "inventory": inventory,
        "prepaids": prepaids, "otherCurrentAssets": other_ca, "totalCurrentAssets": total_ca,
        "propertyPlantEquipmentNet": ppe, "goodwill": goodwill, "intangibleAssets": intangibles,
        "goodwillAndIntangibleAssets": goodwill + intangibles, "longTermInvestments": long_inv,
        "taxAssets": tax_assets, "otherNonCurrentAssets": other_nca, "totalNonCurrentAssets": total_nca,
        "otherAssets": 0, "totalAssets": total_assets, "totalPayables": accounts_pay + other_pay,
        "accountPayables": accounts_pay, "otherPayables": other_pay, "accruedExpenses": accrued,
        "shortTermDebt": short_debt, "capitalLeaseObligationsCurrent": lease_cur, "taxPayables": other_pay,
        "deferredRevenue": deferred_rev, "otherCurrentLiabilities": other_cl,
        "totalCurrentLiabilities": total_cl, "longTermDebt": long_debt,
        "capitalLeaseObligationsNonCurrent": lease_ncur, "deferredRevenueNonCurrent": 0,
        "deferredTaxLiabilitiesNonCurrent": deferred_tax_liab, "otherNonCurrentLiabilities": other_ncl,
        "totalNonCurrentLiabilities": total_ncl, "otherLiabilities": 0,
        "capitalLeaseObligations": lease_cur + lease_ncur, "totalLiabilities": total_liabilities,
        "treasuryStock": 0, "preferredStock": 0, "commonStock": common_stock, "retainedEarnings": retained,
        "additionalPaidInCapital": 0, "accumulatedOtherComprehensiveIncomeLoss": aoci,
        "otherTotalStockholdersEquity": 0, "totalStockholdersEquity": stockholders, "totalEquity": total_equity,
        "minorityInterest": minority, "totalLiabilitiesAndTotalEquity": total_liabilities + total_equity,
        "totalInvestments": short_inv + long_inv, "totalDebt": total_debt, "netDebt": total_debt - cash,
    }

    # -- cash flow (working-capital lines are balance-sheet changes; other financing closes the cash gap)
    cf_receivables = -(net_rec - prev["receivables"])
    cf_inventory = -(inventory - prev["inventory"])
    cf_payables = accounts_pay - prev["payables"]
    other_wc = int(round(revenue * n(0.01)))
    change_wc = cf_receivables + cf_inventory + cf_payables + other_wc
    deferred_tax = int(round(income_tax * 0.05))
    sbc = int(round(revenue * 0.02))
    other_non_cash = int(round(revenue * n(0.005)))
    operating = net_income + da + deferred_tax + sbc + change_wc + other_non_cash
    purchases = -int(round(revenue * 0.1))
    sales = int(round(revenue * 0.1 * math.exp(n(0.1))))
    acquisitions = -int(round(revenue * 0.05)) if r.random() < 0.1 else 0
    other_investing = int(round(revenue * n(0.005)))
    investing = -capex + acquisitions + purchases + sales + other_investing
    long_issuance = long_debt - prev["long_debt"]
    short_issuance = short_debt - prev["short_debt"]
    repurchased = -int(round(max(net_income, 0) * 0.3))
    issuance = int(round(revenue * 0.002))
    common_dividends = -dividends_paid
    net_change = cash - prev["cash"]
    financing = net_change - operating - investing
    other_financing = financing - (long_issuance + short_issuance + issuance + repurchased + common_dividends)
    cash_flow = {
        "netIncome": net_income, "depreciationAndAmortization": da, "deferredIncomeTax": deferred_tax,
        "stockBasedCompensation": sbc, "changeInWorkingCapital": change_wc,
        "accountsReceivables": cf_receivables, "inventory": cf_inventory, "accountsPayables": cf_payables,
        "otherWorkingCapital": other_wc, "otherNonCashItems": other_non_cash,
        "netCashProvidedByOperatingActivities": operating, "investmentsInPropertyPlantAndEquipment": -capex,
        "acquisitionsNet": acquisitions, "purchasesOfInvestments": purchases,
        "salesMaturitiesOfInvestments": sales, "otherInvestingActivities": other_investing,
        "netCashProvidedByInvestingActivities": investing, "netDebtIssuance": long_issuance + short_issuance,
        "longTermNetDebtIssuance": long_issuance, "shortTermNetDebtIssuance": short_issuance,
        "netStockIssuance": issuance + repurchased, "netCommonStockIssuance": issuance + repurchased,
        "commonStockIssuance": issuance, "commonStockRepurchased": repurchased, "netPreferredStockIssuance": 0,
        "netDividendsPaid": common_dividends, "commonDividendsPaid": common_dividends,
        "preferredDividendsPaid": 0, "otherFinancingActivities": other_financing,
        "netCashProvidedByFinancingActivities": financing, "effectOfForexChangesOnCash": 0,
        "netChangeInCash": net_change, "cashAtEndOfPeriod": cash, "cashAtBeginningOfPeriod": prev["cash"],
        "operatingCashFlow": operating, "capitalExpenditure": -capex, "freeCashFlow": operating - capex,
        "incomeTaxesPaid": int(round(income_tax * 0.95)), "interestPaid": interest_expense,
    }
    state = {"cash": cash, "receivables": net_rec, "inventory": inventory, "payables": accounts_pay, "ppe": ppe,
             "short_debt": short_debt, "long_debt": long_debt, "intangibles": intangibles}
    return income, balance, cash_flow, state


def _fiscal_year_row(quarters: list[Period]) -> Period:
    """FY = sum of the four quarters for flows, year-end balance sheet, EPS on the year-end share count."""
    q4 = quarters[-1]
    income = {k: sum(q.income[k] for q in quarters) for k in q4.income}
    for k in ("weightedAverageShsOut", "weightedAverageShsOutDil"):
        income[k] = q4.income[k]
    income["eps"] = round(_div(income["netIncome"], income["weightedAverageShsOut"]), 2)
    income["epsDiluted"] = round(_div(income["netIncome"], income["weightedAverageShsOutDil"]), 2)
    cash = {k: sum(q.cash[k] for q in quarters) for k in q4.cash}
    cash["cashAtBeginningOfPeriod"] = quarters[0].cash["cashAtBeginningOfPeriod"]
    cash["cashAtEndOfPeriod"] = q4.cash["cashAtEndOfPeriod"]
    latest = max(quarters, key=lambda q: q.accepted)
    return Period(date=q4.date, period="FY", fiscal_year=q4.fiscal_year, filing=max(q4.filing, latest.filing),
                  accepted=max(q4.accepted, latest.accepted), income=income, balance=dict(q4.balance), cash=cash)


def generate_periods(comp: Company, as_of: dt.date, dividends: list[Dividend],
                     revision: int) -> tuple[list[Period], list[Period]]:
    """All quarters and fiscal years filed on or before as_of, oldest first."""
    paid: dict[tuple[int, int], int] = {}
    for d in dividends:
        key = (d.payment.year, (d.payment.month - 1) // 3 + 1)
        shares = shares_on(comp, d.date)
        paid[key] = paid.get(key, 0) + int(round(d.dividend * shares))

    quarters: list[Period] = []
    drivers: list[tuple[int, int, int, dict[str, int]]] = []   # (q, year, quarter, state before)
    state = _initial_state(comp)
    # Statements start two fiscal years before the first trade (an S-1 shows about that much history).
    q = max(0, int(comp.first_trade[:4]) - 2 - FIRST_FISCAL_YEAR) * 4 if comp.first_trade else 0
    while True:
        year, quarter = FIRST_FISCAL_YEAR + q // 4, q % 4 + 1
        end = _quarter_end(year, quarter)
        filing = _filing_date(comp, end, year, quarter)
        if filing > as_of:
            break
        income, balance, cash, new_state = _build_quarter(comp, q, year, quarter, state, paid.get((year, quarter), 0),
                                                          basis=as_of)
        drivers.append((q, year, quarter, state))
        quarters.append(Period(end, f"Q{quarter}", year, filing, _accepted(comp, filing, q), income, balance, cash))
        state = new_state
        q += 1

    if revision and len(quarters) >= 3:
        # Restate the third-newest quarter: same date and period, new values, filed with the newest one.
        k = len(quarters) - 3
        q_idx, year, quarter, before = drivers[k]
        income, balance, cash, _ = _build_quarter(comp, q_idx, year, quarter, before,
                                                  paid.get((year, quarter), 0), basis=as_of,
                                                  scale=1 + 0.02 * revision)
        filing = quarters[-1].filing
        quarters[k] = Period(quarters[k].date, quarters[k].period, year, filing,
                             f"{filing.isoformat()} 18:{30 + revision % 30:02d}:00", income, balance, cash)

    years: list[Period] = []
    for i in range(0, len(quarters) - 3, 4):
        years.append(_fiscal_year_row(quarters[i:i + 4]))
    return quarters, years


def _statement_row(comp: Company, p: Period, values: Mapping[str, Any]) -> dict[str, Any]:
    return {"date": _iso(p.date), "symbol": comp.symbol, "reportedCurrency": "USD", "cik": comp.cik,
            "filingDate": _iso(p.filing), "acceptedDate": p.accepted, "fiscalYear": str(p.fiscal_year),
            "period": p.period, **values}


def key_metrics_row(comp: Company, p: Period, prev: Period | None, price: float) -> dict[str, Any]:
    inc, bal, cf = p.income, p.balance, p.cash
    shares = inc["weightedAverageShsOut"]
    market_cap = int(round(price * shares))
    ev = market_cap + bal["netDebt"]
    days = 365 if p.period == "FY" else 91
    capex = -cf["capitalExpenditure"]
    equity = bal["totalStockholdersEquity"]
    eps, bvps = inc["eps"], _div(equity, shares)
    working_capital = bal["totalCurrentAssets"] - bal["totalCurrentLiabilities"]
    pb = prev.balance if prev else bal
    invested = bal["totalDebt"] + equity - bal["cashAndCashEquivalents"]
    return {
        "symbol": comp.symbol, "date": _iso(p.date), "fiscalYear": str(p.fiscal_year), "period": p.period,
        "reportedCurrency": "USD", "marketCap": market_cap, "enterpriseValue": ev,
        "evToSales": _div(ev, inc["revenue"]), "evToOperatingCashFlow": _div(ev, cf["operatingCashFlow"]),
        "evToFreeCashFlow": _div(ev, cf["freeCashFlow"]), "evToEBITDA": _div(ev, inc["ebitda"]),
        "netDebtToEBITDA": _div(bal["netDebt"], inc["ebitda"]),
        "currentRatio": _div(bal["totalCurrentAssets"], bal["totalCurrentLiabilities"]),
        "incomeQuality": _div(cf["operatingCashFlow"], inc["netIncome"]),
        "grahamNumber": math.sqrt(22.5 * eps * bvps) if eps > 0 and bvps > 0 else 0.0,
        "grahamNetNet": _div(bal["totalCurrentAssets"] - bal["totalLiabilities"], shares),
        "taxBurden": _div(inc["netIncome"], inc["incomeBeforeTax"]),
        "interestBurden": _div(inc["incomeBeforeTax"], inc["ebit"]),
        "workingCapital": working_capital, "investedCapital": working_capital + bal["propertyPlantEquipmentNet"],
        "returnOnAssets": _div(inc["netIncome"], bal["totalAssets"]),
        "operatingReturnOnAssets": _div(inc["operatingIncome"], bal["totalAssets"]),
        "returnOnTangibleAssets": _div(inc["netIncome"], bal["totalAssets"] - bal["goodwillAndIntangibleAssets"]),
        "returnOnEquity": _div(inc["netIncome"], equity),
        "returnOnInvestedCapital": _div(inc["ebit"] * (1 - _div(inc["incomeTaxExpense"], inc["incomeBeforeTax"])),
                                        invested),
        "returnOnCapitalEmployed": _div(inc["ebit"], bal["totalAssets"] - bal["totalCurrentLiabilities"]),
        "earningsYield": _div(inc["netIncome"], market_cap), "freeCashFlowYield": _div(cf["freeCashFlow"], market_cap),
        "capexToOperatingCashFlow": _div(capex, cf["operatingCashFlow"]),
        "capexToDepreciation": _div(capex, inc["depreciationAndAmortization"]),
        "capexToRevenue": _div(capex, inc["revenue"]),
        "salesGeneralAndAdministrativeToRevenue": _div(inc["sellingGeneralAndAdministrativeExpenses"], inc["revenue"]),
        "researchAndDevelopementToRevenue": _div(inc["researchAndDevelopmentExpenses"], inc["revenue"]),
        "stockBasedCompensationToRevenue": _div(cf["stockBasedCompensation"], inc["revenue"]),
        "intangiblesToTotalAssets": _div(bal["goodwillAndIntangibleAssets"], bal["totalAssets"]),
        "averageReceivables": (bal["netReceivables"] + pb["netReceivables"]) / 2,
        "averagePayables": (bal["accountPayables"] + pb["accountPayables"]) / 2,
        "averageInventory": (bal["inventory"] + pb["inventory"]) / 2,
        "daysOfSalesOutstanding": _div(bal["netReceivables"] * days, inc["revenue"]),
        "daysOfPayablesOutstanding": _div(bal["accountPayables"] * days, inc["costOfRevenue"]),
        "daysOfInventoryOutstanding": _div(bal["inventory"] * days, inc["costOfRevenue"]),
        "operatingCycle": _div(bal["netReceivables"] * days, inc["revenue"])
        + _div(bal["inventory"] * days, inc["costOfRevenue"]),
        "cashConversionCycle": _div(bal["netReceivables"] * days, inc["revenue"])
        + _div(bal["inventory"] * days, inc["costOfRevenue"])
        - _div(bal["accountPayables"] * days, inc["costOfRevenue"]),
        "freeCashFlowToEquity": cf["freeCashFlow"] + cf["netDebtIssuance"],
        "freeCashFlowToFirm": cf["freeCashFlow"]
        + inc["interestExpense"] * (1 - _div(inc["incomeTaxExpense"], inc["incomeBeforeTax"])),
        "tangibleAssetValue": equity - bal["goodwillAndIntangibleAssets"],
        "netCurrentAssetValue": bal["totalCurrentAssets"] - bal["totalLiabilities"],
    }


def ratios_row(comp: Company, p: Period, prev: Period | None, price: float, extra: bool) -> dict[str, Any]:
    inc, bal, cf = p.income, p.balance, p.cash
    shares = inc["weightedAverageShsOut"]
    market_cap = price * shares
    ev = market_cap + bal["netDebt"]
    rev = inc["revenue"]
    equity = bal["totalStockholdersEquity"]
    capex = -cf["capitalExpenditure"]
    dividends = -cf["netDividendsPaid"]
    pe = _div(market_cap, inc["netIncome"])
    growth = (_div(inc["eps"], prev.income["eps"]) - 1) * 100 if prev and prev.income["eps"] else 0.0
    peg = _div(pe, growth)
    working_capital = bal["totalCurrentAssets"] - bal["totalCurrentLiabilities"]
    row = {
        "symbol": comp.symbol, "date": _iso(p.date), "fiscalYear": str(p.fiscal_year), "period": p.period,
        "reportedCurrency": "USD",
        "grossProfitMargin": _div(inc["grossProfit"], rev), "ebitMargin": _div(inc["ebit"], rev),
        "ebitdaMargin": _div(inc["ebitda"], rev), "operatingProfitMargin": _div(inc["operatingIncome"], rev),
        "pretaxProfitMargin": _div(inc["incomeBeforeTax"], rev),
        "continuousOperationsProfitMargin": _div(inc["netIncomeFromContinuingOperations"], rev),
        "netProfitMargin": _div(inc["netIncome"], rev), "bottomLineProfitMargin": _div(inc["bottomLineNetIncome"], rev),
        "receivablesTurnover": _div(rev, bal["netReceivables"]),
        "payablesTurnover": _div(inc["costOfRevenue"], bal["accountPayables"]),
        "inventoryTurnover": _div(inc["costOfRevenue"], bal["inventory"]),
        "fixedAssetTurnover": _div(rev, bal["propertyPlantEquipmentNet"]),
        "assetTurnover": _div(rev, bal["totalAssets"]),
        "currentRatio": _div(bal["totalCurrentAssets"], bal["totalCurrentLiabilities"]),
        "quickRatio": _div(bal["totalCurrentAssets"] - bal["inventory"] - bal["prepaids"],
                           bal["totalCurrentLiabilities"]),
        "solvencyRatio": _div(inc["netIncome"] + inc["depreciationAndAmortization"], bal["totalLiabilities"]),
        "cashRatio": _div(bal["cashAndCashEquivalents"], bal["totalCurrentLiabilities"]),
        "priceToEarningsRatio": pe, "priceToEarningsGrowthRatio": peg, "forwardPriceToEarningsGrowthRatio": peg,
        "priceToBookRatio": _div(market_cap, equity), "priceToSalesRatio": _div(market_cap, rev),
        "priceToFreeCashFlowRatio": _div(market_cap, cf["freeCashFlow"]),
        "priceToOperatingCashFlowRatio": _div(market_cap, cf["operatingCashFlow"]),
        "debtToAssetsRatio": _div(bal["totalDebt"], bal["totalAssets"]),
        "debtToEquityRatio": _div(bal["totalDebt"], equity),
        "debtToCapitalRatio": _div(bal["totalDebt"], bal["totalDebt"] + equity),
        "longTermDebtToCapitalRatio": _div(bal["longTermDebt"], bal["longTermDebt"] + equity),
        "financialLeverageRatio": _div(bal["totalAssets"], equity),
        "workingCapitalTurnoverRatio": _div(rev, working_capital),
        "operatingCashFlowRatio": _div(cf["operatingCashFlow"], bal["totalCurrentLiabilities"]),
        "operatingCashFlowSalesRatio": _div(cf["operatingCashFlow"], rev),
        "freeCashFlowOperatingCashFlowRatio": _div(cf["freeCashFlow"], cf["operatingCashFlow"]),
        "debtServiceCoverageRatio": _div(cf["operatingCashFlow"],
                                         bal["shortTermDebt"] + bal["capitalLeaseObligationsCurrent"]
                                         + inc["interestExpense"]),
        "interestCoverageRatio": _div(inc["ebit"], inc["interestExpense"]),
        "shortTermOperatingCashFlowCoverageRatio": _div(cf["operatingCashFlow"], bal["shortTermDebt"]),
        "operatingCashFlowCoverageRatio": _div(cf["operatingCashFlow"], bal["totalDebt"]),
        "capitalExpenditureCoverageRatio": _div(cf["operatingCashFlow"], capex),
        "dividendPaidAndCapexCoverageRatio": _div(cf["operatingCashFlow"], capex + dividends),
        "dividendPayoutRatio": _div(dividends, inc["netIncome"]),
        "dividendYield": _div(dividends, market_cap), "dividendYieldPercentage": _div(dividends * 100, market_cap),
        "revenuePerShare": _div(rev, shares), "netIncomePerShare": _div(inc["netIncome"], shares),
        "interestDebtPerShare": _div(bal["totalDebt"] + inc["interestExpense"], shares),
        "cashPerShare": _div(bal["cashAndShortTermInvestments"], shares),
        "bookValuePerShare": _div(equity, shares),
        "tangibleBookValuePerShare": _div(equity - bal["goodwillAndIntangibleAssets"], shares),
        "shareholdersEquityPerShare": _div(equity, shares),
        "operatingCashFlowPerShare": _div(cf["operatingCashFlow"], shares),
        "capexPerShare": _div(capex, shares), "freeCashFlowPerShare": _div(cf["freeCashFlow"], shares),
        "netIncomePerEBT": _div(inc["netIncome"], inc["incomeBeforeTax"]),
        "ebtPerEbit": _div(inc["incomeBeforeTax"], inc["ebit"]),
        "priceToFairValue": _div(market_cap, equity), "debtToMarketCap": _div(bal["totalDebt"], market_cap),
        "effectiveTaxRate": _div(inc["incomeTaxExpense"], inc["incomeBeforeTax"]),
        "enterpriseValueMultiple": _div(ev, inc["ebitda"]),
    }
    if extra:
        row["priceToEarningsDilutedRatio"] = _div(price, inc["epsDiluted"])
    return row


# ---------------------------------------------------------------------------------------------------
# Global (non-ticker) series
# ---------------------------------------------------------------------------------------------------

_MATURITIES = ("month1", "month2", "month3", "month6", "year1", "year2", "year3", "year5", "year7",
               "year10", "year20", "year30")
_MATURITY_YEARS = np.array([1 / 12, 2 / 12, 3 / 12, 0.5, 1, 2, 3, 5, 7, 10, 20, 30])

# name -> (frequency, value in 2000, log drift and noise per observation, release: days after the reference
# period ends). FMP dates an observation at the start of its reference period (GDP Q1 2026 is 2026-01-01) and
# keeps no release date in the payload (fmp_api.md section 1); the release time is in the economic calendar.
_INDICATORS: dict[str, tuple[str, float, float, float, int]] = {
    "GDP": ("quarter", 10_250.0, 0.0105, 0.006, 29),
    "realGDP": ("quarter", 13_880.0, 0.0055, 0.005, 29),
    "nominalPotentialGDP": ("quarter", 10_300.0, 0.0105, 0.001, 40),
    "realGDPPerCapita": ("quarter", 49_000.0, 0.004, 0.005, 40),
    "CPI": ("month", 169.3, 0.0021, 0.002, 12),
    "inflationRate": ("level", 2.5, 0.0, 0.25, 12),
    "unemploymentRate": ("level", 4.8, 0.0, 0.15, 6),
    "federalFunds": ("level", 3.0, 0.0, 0.12, 1),
    "retailSales": ("month", 270_000.0, 0.003, 0.01, 15),
    "consumerSentiment": ("level", 90.0, 0.0, 2.5, 1),
    "durableGoods": ("month", 200_000.0, 0.002, 0.02, 26),
    "totalNonfarmPayroll": ("month", 130_000.0, 0.001, 0.001, 6),
    "industrialProductionTotalIndex": ("month", 90.0, 0.001, 0.005, 16),
    "30YearFixedRateMortgageAverage": ("level", 7.5, 0.0, 0.15, 3),
    "15YearFixedRateMortgageAverage": ("level", 7.0, 0.0, 0.15, 3),
    "smoothedUSRecessionProbabilities": ("level", 1.0, 0.0, 0.5, 35),
}
# indicator -> the economic-calendar event that first publishes it (free-text names, as FMP lists them:
# fmp_api.md section 1, e.g. "GDP Growth Rate QoQ Adv"). Indicators not listed have no calendar event.
_RELEASE_EVENTS: dict[str, tuple[str, str]] = {   # name -> (event, unit)
    "GDP": ("GDP Growth Rate QoQ Adv", "%"),
    "realGDP": ("GDP Growth Rate QoQ Adv", "%"),
    "CPI": ("CPI", ""),
    "inflationRate": ("Inflation Rate YoY", "%"),
    "unemploymentRate": ("Unemployment Rate", "%"),
    "retailSales": ("Retail Sales MoM", "%"),
}
_RELEASE_TIME_ET = dt.time(8, 30)
_NEW_YORK = ZoneInfo("America/New_York")
# Valid names FMP answers with [] (measured).
_EMPTY_INDICATORS = frozenset({"inflation", "3MonthOr90DayRatesAndYieldsCertificatesOfDeposit"})
_LEVEL_BOUNDS = {"inflationRate": (-1.0, 9.0), "unemploymentRate": (3.4, 14.0), "federalFunds": (0.05, 6.5),
                 "consumerSentiment": (50.0, 110.0), "30YearFixedRateMortgageAverage": (2.7, 8.0),
                 "15YearFixedRateMortgageAverage": (2.2, 7.5), "smoothedUSRecessionProbabilities": (0.0, 100.0)}

_RISK_PREMIUM: tuple[tuple[str, str, float], ...] = (
    ("Zimbabwe", "Africa", 12.02), ("United States", "North America", 0), ("United Kingdom", "Europe", 0.8),
    ("Switzerland", "Europe", 0), ("South Africa", "Africa", 3.73), ("Mexico", "North America", 2.33),
    ("Japan", "Asia", 0.8), ("India", "Asia", 2.71), ("Germany", "Europe", 0), ("China", "Asia", 0.99),
    ("Canada", "North America", 0), ("Brazil", "South America", 3.59), ("Australia", "Australia & New Zealand", 0),
)
_BASE_EQUITY_RISK_PREMIUM = 4.33

_FOREIGN_LISTINGS: tuple[tuple[str, str], ...] = (
    ("6898.HK", "China Aluminum Cans Holdings Limited"), ("7203.T", "Toyota Motor Corporation"),
    ("SAP.DE", "SAP SE"), ("RY.TO", "Royal Bank of Canada"), ("SHEL.L", "Shell plc"),
)


def _period_end(start: dt.date, months: int) -> dt.date:
    y, m = start.year + (start.month - 1 + months) // 12, (start.month - 1 + months) % 12 + 1
    return dt.date(y, m, 1) - dt.timedelta(days=1)


def _release_utc(period_end: dt.date, days_after: int) -> dt.datetime:
    """08:30 New York on a weekday `days_after` the reference period ends, as a naive UTC datetime."""
    day = period_end + dt.timedelta(days=days_after)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    local = dt.datetime.combine(day, _RELEASE_TIME_ET, tzinfo=_NEW_YORK)
    return local.astimezone(dt.UTC).replace(tzinfo=None)


def _indicator_series(name: str, as_of: dt.date) -> list[tuple[dt.date, float, dt.datetime]]:
    """(reference period start, value, release time UTC), oldest first, for observations released by as_of."""
    freq, start, drift, noise, days_after = _INDICATORS[name]
    step = 3 if freq == "quarter" else 1
    rows: list[tuple[dt.date, dt.datetime]] = []
    y, m = INDICATOR_START.year, INDICATOR_START.month
    while True:
        d = dt.date(y, m, 1)
        released = _release_utc(_period_end(d, step), days_after)
        if released.date() > as_of:
            break
        rows.append((d, released))
        m += step
        if m > 12:
            y, m = y + 1, m - 12
    z = _rng("indicator", name).standard_normal(len(rows))
    if freq == "level":
        lo, hi = _LEVEL_BOUNDS[name]
        values, x = [], start
        for e in z:  # a bounded walk: reflect at the bounds
            x = min(max(x + noise * e, lo), hi)
            values.append(round(x, 2))
    else:
        growth = np.exp(np.cumsum(drift + noise * z))
        values = [round(float(v), 3) for v in start * growth]
    return [(d, v, released) for (d, released), v in zip(rows, values)]


def _calendar_events(as_of: dt.date, until: dt.date) -> list[dict[str, Any]]:
    """Economic-calendar rows up to `until` (scheduled ones after as_of have no actual yet), oldest first.

    FMP's calendar gives `date` as a UTC datetime (fmp_api.md section 1). The US rows publish the mapped
    indicators; a German GDP release a fortnight earlier shares the US event's name, so a consumer that ignores
    `country` pairs US GDP with the wrong, earlier release.
    """
    horizon = until + dt.timedelta(days=140)           # series far enough ahead to schedule events up to `until`
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, dt.datetime]] = set()
    for name, (event, unit) in _RELEASE_EVENTS.items():
        freq, _, _, _, days_after = _INDICATORS[name]
        step = 3 if freq == "quarter" else 1
        series = _indicator_series(name, horizon)
        prev_value: float | None = None
        for i, (start, value, released) in enumerate(series):
            actual = value
            if unit == "%" and freq != "level":   # growth events report the change, in percent
                actual = None if i == 0 else round((value / series[i - 1][1] - 1) * 100 * (4 if step == 3 else 1), 1)
            if released.date() > until or (event, released) in seen:
                prev_value = actual
                continue
            seen.add((event, released))
            scheduled = released.date() > as_of
            rows.append({"date": released.strftime("%Y-%m-%d %H:%M:%S"), "country": "US", "event": event,
                         "currency": "USD", "previous": prev_value,
                         "estimate": None if actual is None else round(actual * 1.01, 2),
                         "actual": None if scheduled else actual,
                         "change": None if scheduled or actual is None or prev_value is None
                         else round(actual - prev_value, 2),
                         "changePercentage": None, "impact": "High", "unit": unit})
            prev_value = actual
            if event == "GDP Growth Rate QoQ Adv":
                second = _release_utc(_period_end(start, step), days_after + 30)
                if second.date() <= until:
                    rows.append({**rows[-1], "date": second.strftime("%Y-%m-%d %H:%M:%S"),
                                 "event": "GDP Growth Rate QoQ 2nd Est", "actual": None
                                 if second.date() > as_of else actual})
                early = _release_utc(_period_end(start, step), 14) + dt.timedelta(hours=-6)
                if early.date() <= until:
                    rows.append({**rows[-1], "date": early.strftime("%Y-%m-%d %H:%M:%S"), "country": "DE",
                                 "currency": "EUR", "event": "GDP Growth Rate QoQ Adv", "impact": "Medium"})
    rows.sort(key=lambda r: (r["date"], r["country"], r["event"]))
    return rows


# ---------------------------------------------------------------------------------------------------
# The source
# ---------------------------------------------------------------------------------------------------

_PER_TICKER = frozenset({"historical-price-eod/full", "historical-price-eod/non-split-adjusted",
                         "historical-price-eod/dividend-adjusted", "historical-market-capitalization", "dividends", "splits", "profile", "stock-peers",
                         "income-statement", "balance-sheet-statement", "cash-flow-statement", "key-metrics",
                         "ratios"})


class SampleSource:
    """Answers FMP stable paths from generated data. Thread-safe; per-ticker data is cached (LRU)."""

    def __init__(self, as_of: dt.date, tickers: Sequence[str] = SAMPLE_TICKERS, *,
                 revision: int = 0, extra_fields: bool = False) -> None:
        self.as_of = as_of
        self.tickers: tuple[str, ...] = tuple(dict.fromkeys(tickers))
        self._ticker_set = frozenset(self.tickers)
        self.revision = revision
        self.extra_fields = extra_fields
        self._lock = threading.RLock()
        self._caches: dict[str, OrderedDict[str, Any]] = {}
        self._summary: dict[str, dict[str, Any]] = {}
        self._companies: dict[str, Company] = {}
        self._position = {t: i for i, t in enumerate(self.tickers)}
        # Prices are generated up to the anchor date even when as_of is earlier, then cut at as_of.
        self._days = _trading_days(PRICE_START, max(as_of, PRICE_ANCHOR))
        self._dates = np.datetime_as_string(self._days, unit="D")
        self._n_days = int(np.searchsorted(self._days, np.datetime64(as_of), side="right"))
        self._routes: dict[str, Callable[[Mapping[str, str]], SampleResponse]] = {
            "historical-price-eod/full": self._eod,
            "historical-price-eod/non-split-adjusted": self._eod_as_traded,
            "historical-price-eod/dividend-adjusted": self._eod_total_return,
            "historical-market-capitalization": self._market_cap,
            "economic-calendar": self._calendar,
            "dividends": self._dividends,
            "splits": self._splits,
            "profile": self._profile,
            "stock-peers": self._peers,
            "income-statement": lambda p: self._statement(p, "income"),
            "balance-sheet-statement": lambda p: self._statement(p, "balance"),
            "cash-flow-statement": lambda p: self._statement(p, "cash"),
            "key-metrics": lambda p: self._statement(p, "metrics"),
            "ratios": lambda p: self._statement(p, "ratios"),
            "stock-list": self._stock_list,
            "company-screener": self._screener,
            "market-risk-premium": self._risk_premium,
            "treasury-rates": self._treasury,
            "economic-indicators": self._indicators,
            "sector-performance-snapshot": self._sector_snapshot,
        }

    # -- entry point ---------------------------------------------------------------------------------
    def respond(self, path: str, params: Mapping[str, str]) -> SampleResponse:
        """path is relative to the stable base, e.g. 'historical-price-eod/full'; params exclude apikey."""
        path = path.strip("/")
        handler = self._routes.get(path)
        if handler is None:
            return _response(404, b"[]")
        params = {k: v for k, v in params.items() if k.lower() != "apikey"}
        try:
            if path in _PER_TICKER and not params.get("symbol"):
                raise _QueryError("symbol")
            return handler(params)
        except _QueryError as err:
            return _response(400, f"Query Error: Invalid or missing query parameter - {err.param}".encode())

    # -- cached per-ticker data ----------------------------------------------------------------------
    def _cached(self, kind: str, symbol: str, build: Callable[[], Any]) -> Any:
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
                self._companies[symbol] = company(symbol)
            return self._companies[symbol]

    def prices(self, symbol: str) -> Prices:
        revised_before = self.as_of - dt.timedelta(days=7) if self.revision else None

        def build() -> Prices:
            comp = self.company(symbol)
            px = generate_prices(comp, self._days, self._dates, revised_before)
            lo = int(np.searchsorted(px.days, np.datetime64(comp.first_trade))) if comp.first_trade else 0
            n = self._n_days
            return Prices(px.days[lo:n], px.dates[lo:n], px.open[lo:n], px.high[lo:n], px.low[lo:n],
                          px.close[lo:n], px.volume[lo:n], px.vwap[lo:n])

        return self._cached("prices", symbol, build)

    def dividends(self, symbol: str) -> list[Dividend]:
        return self._cached("dividends", symbol,
                            lambda: generate_dividends(self.company(symbol), self.prices(symbol), self.as_of))

    def periods(self, symbol: str) -> tuple[list[Period], list[Period]]:
        return self._cached("periods", symbol, lambda: generate_periods(
            self.company(symbol), self.as_of, self.dividends(symbol), self.revision))

    def summary(self, symbol: str) -> dict[str, Any]:
        """Latest quote facts (small, kept for every ticker): used by profile, peers and the screener."""
        with self._lock:
            if symbol in self._summary:
                return self._summary[symbol]
        comp, px = self.company(symbol), self.prices(symbol)
        divs = self.dividends(symbol)
        last, prev = len(px.days) - 1, max(len(px.days) - 2, 0)
        year_ago = int(np.searchsorted(px.days, np.datetime64(_add_years(self.as_of, -1))))
        price = float(px.close[last]) / 100
        prev_close = float(px.close[prev]) / 100
        shares = shares_on(comp, self.as_of)
        basis = self._to_as_of_basis(symbol, px)
        out = {
            "price": price, "prev_close": prev_close, "volume": int(px.volume[last]),
            "average_volume": int(px.volume[max(last - 62, 0):].mean()),
            "low52": round(float((px.low / basis)[year_ago:].min()) / 100, 4),
            "high52": round(float((px.high / basis)[year_ago:].max()) / 100, 4),
            "market_cap": round(price * shares, 2),
            "last_dividend": round(sum(d.dividend for d in divs[-4:]), 4) if divs else 0.0,
        }
        with self._lock:
            self._summary[symbol] = out
        return out

    def _known(self, params: Mapping[str, str]) -> str | None:
        symbol = params["symbol"]
        return symbol if symbol in self._ticker_set else None

    # -- prices, dividends, splits -------------------------------------------------------------------
    def _eod_window(self, params: Mapping[str, str]) -> tuple[str, Prices, int, int] | None:
        """(symbol, prices, lo, hi) for an EOD-family request; None for an unknown symbol or a backwards range.

        Without from/to FMP gives about five years; at most the newest 5,000 rows (the silent cap).
        """
        frm, to = _parse_date(params, "from"), _parse_date(params, "to")
        symbol = self._known(params)
        if symbol is None:
            return None
        to = to or self.as_of
        frm = frm or _add_years(to, -5)
        if frm > to:
            return None
        px = self.prices(symbol)
        lo = int(np.searchsorted(px.days, np.datetime64(frm)))
        hi = int(np.searchsorted(px.days, np.datetime64(to), side="right"))
        return symbol, px, max(lo, hi - EOD_ROW_CAP), hi

    def _to_as_of_basis(self, symbol: str, px: Prices) -> np.ndarray:
        """Per day: divide an as-traded price (multiply a volume) by this to put it on as_of's share basis."""
        return _split_factor(self.company(symbol), px.days, until=self.as_of)

    def _eod(self, params: Mapping[str, str]) -> SampleResponse:
        """/full: split-adjusted prices and volume on the basis of as_of, so FMP's whole history is rewritten
        after each split (fmp_api.md section 1: TSLA's raw 891.30 -> 296.07 while /full stayed near 297)."""
        found = self._eod_window(params)
        if found is None:
            return _json_response([])
        symbol, px, lo, hi = found
        f = self._to_as_of_basis(symbol, px)[lo:hi]
        cols = (px.dates[lo:hi].tolist(), (px.open[lo:hi] / 100 / f).tolist(), (px.high[lo:hi] / 100 / f).tolist(),
                (px.low[lo:hi] / 100 / f).tolist(), (px.close[lo:hi] / 100 / f).tolist(),
                np.rint(px.volume[lo:hi] * f).astype(np.int64).tolist(), (px.vwap[lo:hi] / f).tolist())
        rows = []
        for d, o, h, lw, c, v, vw in zip(*cols):
            o, h, lw, c = round(o, 4), round(h, 4), round(lw, 4), round(c, 4)
            change = c - o
            row = {"symbol": symbol, "date": d, "open": o, "high": h, "low": lw, "close": c, "volume": v,
                   "change": round(change, 4), "changePercent": round(change / o * 100, 5), "vwap": round(vw, 4)}
            if self.extra_fields:
                row["changeOverTime"] = round(change / o, 7)
            rows.append(row)
        rows.reverse()
        return _json_response(rows)

    def _eod_as_traded(self, params: Mapping[str, str]) -> SampleResponse:
        """/non-split-adjusted: the prices as traded that day, under FMP's `adj*` names (fmp_api.md section 1:
        AAPL 2020-08-28 adjClose 499.24, the pre-split print)."""
        found = self._eod_window(params)
        if found is None:
            return _json_response([])
        symbol, px, lo, hi = found
        rows = [{"symbol": symbol, "date": d, "adjOpen": o / 100, "adjHigh": h / 100, "adjLow": lw / 100,
                 "adjClose": c / 100, "volume": v}
                for d, o, h, lw, c, v in zip(px.dates[lo:hi].tolist(), px.open[lo:hi].tolist(), px.high[lo:hi].tolist(),
                                             px.low[lo:hi].tolist(), px.close[lo:hi].tolist(),
                                             px.volume[lo:hi].tolist())]
        rows.reverse()
        return _json_response(rows)

    def total_return_factor(self, symbol: str) -> np.ndarray:
        """Per day: the product of (1 - dividend / previous close) over the ex-dates after it, both on the
        split-adjusted basis (the standard total-return adjustment; fmp_api.md section 1, /dividend-adjusted)."""
        def build() -> np.ndarray:
            px = self.prices(symbol)
            basis = self._to_as_of_basis(symbol, px)
            comp = self.company(symbol)
            factor = np.ones(len(px.days))
            for div in self.dividends(symbol):
                i = int(np.searchsorted(px.days, np.datetime64(div.date)))
                if i == 0 or i >= len(px.days):
                    continue
                amount = div.dividend / _split_factor_on(comp, div.date, until=self.as_of)
                factor[:i] *= 1 - amount / (px.close[i - 1] / 100 / basis[i - 1])
            return factor
        return self._cached("total_return", symbol, build)

    def _eod_total_return(self, params: Mapping[str, str]) -> SampleResponse:
        """/dividend-adjusted: split- and dividend-adjusted bars (total return), `adj*` names, split-adjusted volume."""
        found = self._eod_window(params)
        if found is None:
            return _json_response([])
        symbol, px, lo, hi = found
        f = self._to_as_of_basis(symbol, px)[lo:hi] / self.total_return_factor(symbol)[lo:hi]
        rows = [{"symbol": symbol, "date": d, "adjOpen": round(o / 100 / k, 4), "adjHigh": round(h / 100 / k, 4),
                 "adjLow": round(lw / 100 / k, 4), "adjClose": round(c / 100 / k, 4), "volume": v}
                for d, o, h, lw, c, k, v in zip(
                    px.dates[lo:hi].tolist(), px.open[lo:hi].tolist(), px.high[lo:hi].tolist(), px.low[lo:hi].tolist(),
                    px.close[lo:hi].tolist(), f.tolist(),
                    np.rint(px.volume[lo:hi] * self._to_as_of_basis(symbol, px)[lo:hi]).astype(np.int64).tolist())]
        rows.reverse()
        return _json_response(rows)

    def _market_cap(self, params: Mapping[str, str]) -> SampleResponse:
        """historical-market-capitalization: as-traded close times the shares outstanding that day."""
        found = self._eod_window(params)
        if found is None:
            return _json_response([])
        symbol, px, lo, hi = found
        comp = self.company(symbol)
        rows = [{"symbol": symbol, "date": d,
                 "marketCap": round(c / 100 * shares_on(comp, dt.date.fromisoformat(d)), 2)}
                for d, c in zip(px.dates[lo:hi].tolist(), px.close[lo:hi].tolist())]
        rows.reverse()
        return _json_response(rows)

    def _dividends(self, params: Mapping[str, str]) -> SampleResponse:
        frm, to = _parse_date(params, "from"), _parse_date(params, "to")
        limit = _parse_limit(params, None)
        symbol = self._known(params)
        if symbol is None:
            return _json_response([])
        rows = [{"symbol": symbol, "date": _iso(d.date), "recordDate": _iso(d.record),
                 "paymentDate": _iso(d.payment), "declarationDate": _iso(d.declaration),
                 "adjDividend": d.adj_dividend, "dividend": d.dividend, "yield": d.yield_pct,
                 "frequency": "Quarterly"}
                for d in reversed(self.dividends(symbol))
                if (frm is None or d.date >= frm) and (to is None or d.date <= to)]
        return _json_response(rows[:limit] if limit is not None else rows)

    def _splits(self, params: Mapping[str, str]) -> SampleResponse:
        frm, to = _parse_date(params, "from"), _parse_date(params, "to")
        limit = _parse_limit(params, None)
        symbol = self._known(params)
        if symbol is None:
            return _json_response([])
        rows = []
        for d, num, den in sorted(self.company(symbol).splits, reverse=True):
            day = dt.date.fromisoformat(d)
            if day <= self.as_of and (frm is None or day >= frm) and (to is None or day <= to):
                rows.append({"symbol": symbol, "date": d, "numerator": num, "denominator": den})
        return _json_response(rows[:limit] if limit is not None else rows)

    # -- company -------------------------------------------------------------------------------------
    def _profile(self, params: Mapping[str, str]) -> SampleResponse:
        symbol = self._known(params)
        if symbol is None:
            return _json_response([])
        comp, s = self.company(symbol), self.summary(symbol)
        change = round(s["price"] - s["prev_close"], 2)
        seed = _crc("profile", symbol)
        domain = re.sub(r"[^a-z0-9]", "", comp.name.lower().split(",")[0].replace(" inc.", ""))[:24]
        row = {
            "symbol": symbol, "price": s["price"], "marketCap": s["market_cap"], "beta": comp.beta,
            "lastDividend": s["last_dividend"], "range": f"{s['low52']}-{s['high52']}", "change": change,
            "changePercentage": round(_div(change * 100, s["prev_close"]), 5), "volume": s["volume"],
            "averageVolume": s["average_volume"], "companyName": comp.name, "currency": "USD", "cik": comp.cik,
            "isin": f"US{seed % 10**9:09d}{seed % 7}", "cusip": f"{seed % 10**9:09d}",
            "exchangeFullName": "NASDAQ Global Select" if comp.exchange == "NASDAQ" else "New York Stock Exchange",
            "exchange": comp.exchange, "industry": comp.industry, "website": f"https://www.{domain}.com",
            "description": f"{comp.name} operates in the {comp.industry.lower()} industry within the "
                           f"{comp.sector} sector. (Synthetic sample data.)",
            "ceo": comp.ceo, "sector": comp.sector, "country": "US", "fullTimeEmployees": str(comp.employees),
            "phone": f"({200 + seed % 700}) {100 + seed % 900}-{seed % 10000:04d}",
            "address": f"{1 + seed % 999} {comp.city} Parkway", "city": comp.city, "state": comp.state,
            "zip": f"{seed % 100000:05d}", "image": f"https://images.financialmodelingprep.com/symbol/{symbol}.png",
            "ipoDate": comp.ipo_date, "defaultImage": False, "isEtf": False, "isActivelyTrading": True,
            "isAdr": False, "isFund": False,
        }
        return _json_response([row])

    def _peers(self, params: Mapping[str, str]) -> SampleResponse:
        symbol = self._known(params)
        if symbol is None:
            return _json_response([])
        sector = self.company(symbol).sector
        others = [t for t in self.tickers if t != symbol]
        same = [t for t in others if self.company(t).sector == sector]
        # Same-sector tickers first, then neighbours in universe order; at most 5.
        start, size = self._position[symbol], len(self.tickers)
        neighbours = [self.tickers[(start + k) % size] for k in range(1, min(size, 6))]
        peers = list(dict.fromkeys(same[:5] + neighbours))[:5]
        rows = []
        for t in peers:
            s = self.summary(t)
            rows.append({"symbol": t, "companyName": self.company(t).name, "price": s["price"],
                         "mktCap": s["market_cap"]})
        return _json_response(rows)

    # -- statements, key metrics, ratios -------------------------------------------------------------
    def _statement(self, params: Mapping[str, str], kind: str) -> SampleResponse:
        period = params.get("period") or "annual"
        limit = _parse_limit(params, DEFAULT_STATEMENT_LIMIT)
        if re.fullmatch(r"Q\d+", period) and period not in ("Q1", "Q2", "Q3", "Q4"):
            raise _QueryError("period")
        symbol = self._known(params)
        if symbol is None:
            return _json_response([])
        quarters, years = self.periods(symbol)
        if period == "quarter":
            chosen = quarters
        elif period in ("Q1", "Q2", "Q3", "Q4"):
            chosen = [q for q in quarters if q.period == period]
        else:  # annual, FY and (silently) anything unrecognised
            chosen = years
        comp = self.company(symbol)
        rows: list[dict[str, Any]] = []
        for i in range(len(chosen) - 1, -1, -1):
            if limit is not None and len(rows) >= limit:
                break
            p = chosen[i]
            prev = chosen[i - 1] if i > 0 else None
            if kind == "income":
                rows.append(_statement_row(comp, p, p.income))
            elif kind == "balance":
                rows.append(_statement_row(comp, p, p.balance))
            elif kind == "cash":
                rows.append(_statement_row(comp, p, p.cash))
            else:
                # the period-end price on the same (as_of) share basis as the restated share counts
                price = (self.prices(symbol).close_on_or_before(p.date)
                         / _split_factor_on(comp, p.date, until=self.as_of))
                if kind == "metrics":
                    rows.append(key_metrics_row(comp, p, prev, price))
                else:
                    rows.append(ratios_row(comp, p, prev, price, self.extra_fields))
        return _json_response(rows)

    # -- directory and screener ----------------------------------------------------------------------
    def _stock_list(self, params: Mapping[str, str]) -> SampleResponse:
        rows = [{"symbol": t, "companyName": self.company(t).name} for t in self.tickers]
        rows += [{"symbol": s, "companyName": n} for s, n in _FOREIGN_LISTINGS if s not in self._ticker_set]
        rows.sort(key=lambda r: r["symbol"])
        return _json_response(rows)

    def _screener(self, params: Mapping[str, str]) -> SampleResponse:
        limit = _parse_limit(params, None)
        rows = []
        for t in self.tickers:
            comp, s = self.company(t), self.summary(t)
            rows.append({"symbol": t, "companyName": comp.name, "marketCap": s["market_cap"],
                         "sector": comp.sector, "industry": comp.industry, "beta": comp.beta,
                         "price": s["price"], "lastAnnualDividend": s["last_dividend"], "volume": s["volume"],
                         "exchange": comp.exchange, "exchangeShortName": comp.exchange, "country": "US",
                         "isEtf": False, "isFund": False, "isActivelyTrading": True})
        rows.sort(key=lambda r: (-r["marketCap"], r["symbol"]))
        return _json_response(rows[:limit] if limit is not None else rows)

    def _risk_premium(self, params: Mapping[str, str]) -> SampleResponse:
        rows = [{"country": c, "continent": cont, "countryRiskPremium": crp,
                 "totalEquityRiskPremium": round(_BASE_EQUITY_RISK_PREMIUM + crp, 2)}
                for c, cont, crp in sorted(_RISK_PREMIUM, reverse=True)]
        return _json_response(rows)

    # -- macro ---------------------------------------------------------------------------------------
    def _treasury_curve(self) -> tuple[list[str], np.ndarray]:
        def build() -> tuple[list[str], np.ndarray]:
            days = _trading_days(TREASURY_START, self.as_of)
            n = len(days)
            level = 2.5 + np.cumsum(_rng("ust", "level").standard_normal(n) * 0.035)
            slope = 0.3 + np.cumsum(_rng("ust", "slope").standard_normal(n) * 0.02)
            level = np.clip(level, 0.1, 6.5)
            slope = np.clip(slope, -1.5, 2.5)
            shape = 1 - np.exp(-_MATURITY_YEARS / 3.0)
            curve = np.clip(level[:, None] - slope[:, None] * (0.5 - shape[None, :]), 0.01, None)
            return np.datetime_as_string(days, unit="D").tolist(), np.round(curve, 2)
        return self._cached("global", "treasury", build)

    def _treasury(self, params: Mapping[str, str]) -> SampleResponse:
        frm, to = _parse_date(params, "from"), _parse_date(params, "to")
        to = to or self.as_of
        frm = frm or to - dt.timedelta(days=WINDOW_DAYS)
        if frm > to:
            return _json_response([])
        frm, to = _window(frm, to, self.as_of)
        dates, curve = self._treasury_curve()
        lo, hi = _iso(frm), _iso(to)
        rows = [{"date": d, **dict(zip(_MATURITIES, curve[i].tolist()))}
                for i, d in enumerate(dates) if lo <= d <= hi]
        rows.reverse()
        return _json_response(rows)

    def _indicators(self, params: Mapping[str, str]) -> SampleResponse:
        name = params.get("name")
        if not name:
            raise _QueryError("name")
        frm, to = _parse_date(params, "from"), _parse_date(params, "to")
        if name not in _INDICATORS and name not in _EMPTY_INDICATORS:
            return _response(200, b"Invalid name")
        to = to or self.as_of
        frm = frm or _add_years(to, -1)
        if frm > to or name in _EMPTY_INDICATORS:
            return _json_response([])
        if _INDICATORS[name][0] == "quarter" and (to - frm).days >= 365:
            return _json_response([])  # FMP: quarterly series give nothing for ranges of a year or more
        frm, to = _window(frm, to, self.as_of)
        series = self._cached("global", f"indicator:{name}", lambda: _indicator_series(name, self.as_of))
        rows = [{"name": name, "date": _iso(d), "value": v} for d, v, _ in reversed(series) if frm <= d <= to]
        return _json_response(rows)

    def _calendar(self, params: Mapping[str, str]) -> SampleResponse:
        """economic-calendar: at most about 90 days per request, the newest kept (inferred: fmp_api.md section 1)."""
        frm, to = _parse_date(params, "from"), _parse_date(params, "to")
        to = to or self.as_of + dt.timedelta(days=7)
        frm = frm or to - dt.timedelta(days=7)
        if frm > to:
            return _json_response([])
        frm = max(frm, to - dt.timedelta(days=WINDOW_DAYS - 1))
        events = self._cached("global", f"calendar:{to}", lambda: _calendar_events(self.as_of, to))
        lo, hi = _iso(frm), _iso(to)
        return _json_response([e for e in reversed(events) if lo <= e["date"][:10] <= hi])

    def _sector_snapshot(self, params: Mapping[str, str]) -> SampleResponse:
        day = _parse_date(params, "date")
        if day is None:
            raise _QueryError("date")
        exchange = (params.get("exchange") or "NASDAQ").upper()
        sector = (params.get("sector") or "").lower()
        trading = _trading_days(day, day)
        if exchange not in ("NASDAQ", "NYSE") or day > self.as_of or not len(trading):
            return _json_response([])
        rows = []
        for name in SECTORS:
            if sector and name.lower() != sector:
                continue
            z = float(_rng("sector", day, name, exchange).standard_normal())
            market = float(_rng("market", day).standard_normal())
            rows.append({"date": _iso(day), "sector": name, "exchange": exchange,
                         "averageChange": 0.8 * market + 0.6 * z})
        return _json_response(rows)


# ---------------------------------------------------------------------------------------------------
# httpx transport
# ---------------------------------------------------------------------------------------------------

def sample_transport(as_of: dt.date, tickers: Sequence[str] = SAMPLE_TICKERS, **knobs: Any) -> httpx.MockTransport:
    """Routes any request URL whose path ends with /stable/<endpoint> (or just /<endpoint>) to SampleSource.respond.
    The apikey query parameter/header is ignored. Used by the FMP client in place of the network."""
    source = SampleSource(as_of, tickers, **knobs)

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        marker = "/stable/"
        endpoint = path[path.index(marker) + len(marker):] if marker in path else path.lstrip("/")
        params = {k: v for k, v in request.url.params.items() if k.lower() != "apikey"}
        answer = source.respond(endpoint, params)
        return httpx.Response(answer.status_code, content=answer.body, headers=answer.headers)

    return httpx.MockTransport(handler)
