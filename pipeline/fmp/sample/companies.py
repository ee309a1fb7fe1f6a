"""The company catalogue: the known sample tickers (real names, synthetic numbers) and a synthetic company for
any other ticker string, derived only from its name.

A `Company` holds the parameters every generator reads: reference data for profile and screener rows, the
split history, and the price and fundamentals models.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import yaml

from pipeline.fmp.sample.common import crc, on_or_after_weekday, rng

# The last three are the survivorship cases of fmp_api.md 3.4: a rename (META, formerly FB), a delisting (TWTR) and a
# reused ticker (AI); see companies.yaml and sample/survivorship.py.
SAMPLE_TICKERS: tuple[str, ...] = (
    "AAPL",
    "MSFT",
    "NVDA",
    "JPM",
    "XOM",
    "JNJ",
    "KO",
    "PG",
    "GE",
    "SNAP",
    "META",
    "TWTR",
    "AI",
)


@dataclass(frozen=True)
class Company:
    symbol: str
    name: str
    exchange: str  # NASDAQ | NYSE
    sector: str
    industry: str
    cik: str
    ceo: str
    city: str
    state: str
    employees: int
    ipo_date: str
    splits: tuple[tuple[str, int, int], ...]  # (date, numerator, denominator)
    # price model (split-adjusted, today's share basis)
    ref_price: float  # adjusted close on PRICE_ANCHOR
    drift: float  # annual log drift of the trend
    vol: float  # annual volatility
    beta: float
    avg_volume: float  # shares per day, today's basis
    # fundamentals model
    revenue0: float  # quarterly revenue in Q1 2012, dollars
    growth: float  # quarterly revenue growth
    gross_margin: float
    rd_ratio: float
    sga_ratio: float
    tax_rate: float
    capex_ratio: float
    inventory_ratio: float
    leverage: float  # total liabilities / total assets
    minority_ratio: float
    shares_now: float  # shares outstanding today (post all splits)
    dividend_yield: float  # target annual yield, fraction; 0 = no dividend
    dividend_month: int  # first ex-dividend month of the year (1..3)
    investments_ratio: float = 0.15  # long-term investments / annual revenue (a bank's loan book is ~20x)
    first_trade: str | None = None  # first trading day (IPO); no prices or statements long before it
    delisted: str | None = None  # last trading day: no prices or filings after it (fmp_api.md 3.4)
    former_symbols: tuple[tuple[str, str], ...] = ()  # (old symbol, day the current one replaced it)

    @property
    def delisted_on(self) -> dt.date | None:
        return dt.date.fromisoformat(self.delisted) if self.delisted else None

    @property
    def symbol_since(self) -> dt.date | None:
        """The day the company took its current symbol (None: it always had it)."""
        return max((dt.date.fromisoformat(day) for _, day in self.former_symbols), default=None)

    def symbol_on(self, day: dt.date) -> str:
        """The symbol the company traded under on `day`."""
        for old, until in sorted(self.former_symbols, key=lambda f: f[1]):
            if day < dt.date.fromisoformat(until):
                return old
        return self.symbol


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
    "Basic Materials",
    "Communication Services",
    "Consumer Cyclical",
    "Consumer Defensive",
    "Energy",
    "Financial Services",
    "Healthcare",
    "Industrials",
    "Real Estate",
    "Technology",
    "Utilities",
)


def _load_known() -> dict[str, dict[str, Any]]:
    """The known sample tickers from companies.yaml (names and identifiers are public facts; numbers synthetic)."""
    table = yaml.safe_load(resources.files("pipeline.fmp.sample").joinpath("companies.yaml").read_text("utf-8"))
    return {
        symbol: {
            **fields,
            "splits": tuple(tuple(s) for s in fields["splits"]),
            "former_symbols": tuple(tuple(f) for f in fields.get("former_symbols", ())),
        }
        for symbol, fields in table.items()
    }


_KNOWN: dict[str, dict[str, Any]] = _load_known()

_NAME_WORDS = (
    "Apex",
    "Blue",
    "Cedar",
    "Delta",
    "Ember",
    "Falcon",
    "Granite",
    "Harbor",
    "Iris",
    "Juniper",
    "Keystone",
    "Lumen",
    "Meridian",
    "Northwind",
    "Orion",
    "Pioneer",
    "Quarry",
    "Redwood",
    "Summit",
    "Tidewater",
    "Union",
    "Vertex",
    "Willow",
    "Zenith",
)
_NAME_SUFFIX = ("Holdings", "Systems", "Industries", "Group", "Technologies", "Partners", "Brands", "Labs")
_STATES = (
    ("Austin", "TX"),
    ("Boston", "MA"),
    ("Chicago", "IL"),
    ("Denver", "CO"),
    ("Seattle", "WA"),
    ("Atlanta", "GA"),
    ("Columbus", "OH"),
    ("San Jose", "CA"),
    ("Charlotte", "NC"),
    ("Phoenix", "AZ"),
)


def _synthetic_company(symbol: str) -> dict[str, Any]:
    """Plausible parameters for any ticker string, derived only from its name."""
    r = rng("company", symbol)
    seed = crc("company", symbol)
    sector, industry = _SECTORS[seed % len(_SECTORS)]
    city, state = _STATES[(seed >> 8) % len(_STATES)]
    word = _NAME_WORDS[(seed >> 4) % len(_NAME_WORDS)]
    suffix = _NAME_SUFFIX[(seed >> 12) % len(_NAME_SUFFIX)]
    splits: tuple[tuple[str, int, int], ...] = ()
    if seed % 10 == 3:  # about one ticker in ten split 2:1 or 3:1 between 2016 and 2023
        split_day = on_or_after_weekday(dt.date(2016, 3, 1) + dt.timedelta(days=int(seed >> 5) % 2800))
        splits = ((split_day.isoformat(), 2 + (seed >> 9) % 2, 1),)
    revenue0 = float(np.exp(r.uniform(np.log(2e8), np.log(2e10))))
    return dict(
        name=f"{word} {symbol.title()} {suffix}, Inc.",
        exchange="NASDAQ" if seed % 2 else "NYSE",
        sector=sector,
        industry=industry,
        cik=f"{1_100_000 + seed % 899_999:010d}",
        ceo=f"{('Alex', 'Jordan', 'Morgan', 'Taylor', 'Casey')[seed % 5]} {word}son",
        city=city,
        state=state,
        employees=int(r.integers(800, 90_000)),
        ipo_date=f"{1985 + seed % 14}-0{1 + seed % 9}-1{seed % 9}",
        splits=splits,
        ref_price=float(r.uniform(10, 300)),
        drift=float(r.uniform(0.0, 0.12)),
        vol=float(r.uniform(0.2, 0.45)),
        beta=round(float(r.uniform(0.4, 1.8)), 3),
        avg_volume=float(r.uniform(3e5, 2e7)),
        revenue0=revenue0,
        growth=float(r.uniform(0.0, 0.03)),
        gross_margin=float(r.uniform(0.25, 0.75)),
        rd_ratio=float(r.uniform(0.0, 0.12)),
        sga_ratio=float(r.uniform(0.05, 0.2)),
        tax_rate=float(r.uniform(0.12, 0.25)),
        capex_ratio=float(r.uniform(0.02, 0.1)),
        inventory_ratio=float(r.uniform(0.0, 0.5)),
        leverage=float(r.uniform(0.35, 0.8)),
        minority_ratio=0.01 if seed % 7 == 0 else 0.0,
        shares_now=float(revenue0 * r.uniform(0.02, 0.2)),
        dividend_yield=0.0 if seed % 5 == 0 else float(r.uniform(0.005, 0.04)),
        dividend_month=1 + seed % 3,
    )


KNOWN_SYMBOLS: frozenset[str] = frozenset(_KNOWN)


def synthetic_parameters(symbol: str) -> dict[str, Any]:
    """The `Company` fields (all but `symbol`) derived from a name alone; a synthetic market adjusts some."""
    return _synthetic_company(symbol)


# former symbol -> the known company's current symbol (FB -> META)
FORMER_SYMBOLS: dict[str, str] = {old: sym for sym, f in _KNOWN.items() for old, _ in f["former_symbols"]}


def company(symbol: str) -> Company:
    """Reference data for a ticker (real names for the sample tickers, synthetic for any other string). A former
    symbol gives its company under the current symbol, so both serve the same history."""
    symbol = FORMER_SYMBOLS.get(symbol, symbol)
    return Company(symbol=symbol, **(_KNOWN.get(symbol) or _synthetic_company(symbol)))


# Non-US listings that FMP's stock-list also returns, alongside the universe.
FOREIGN_LISTINGS: tuple[tuple[str, str], ...] = (
    ("6898.HK", "China Aluminum Cans Holdings Limited"),
    ("7203.T", "Toyota Motor Corporation"),
    ("SAP.DE", "SAP SE"),
    ("RY.TO", "Royal Bank of Canada"),
    ("SHEL.L", "Shell plc"),
)
