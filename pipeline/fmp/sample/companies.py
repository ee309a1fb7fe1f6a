"""The company catalogue: the known sample tickers (real names, synthetic numbers) and a synthetic company for
any other ticker string, derived only from its name.

A `Company` holds the parameters every generator reads: reference data for profile and screener rows, the
split history, and the price and fundamentals models.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.fmp.sample.common import crc, on_or_after_weekday, rng

SAMPLE_TICKERS: tuple[str, ...] = ("AAPL", "MSFT", "NVDA", "JPM", "XOM", "JNJ", "KO", "PG", "GE", "SNAP")


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

# Names and identifiers are public facts; every number here is synthetic.
_KNOWN: dict[str, dict[str, Any]] = {
    "AAPL": dict(
        name="Apple Inc.",
        exchange="NASDAQ",
        sector="Technology",
        industry="Consumer Electronics",
        cik="0000320193",
        ceo="Timothy D. Cook",
        city="Cupertino",
        state="CA",
        employees=164000,
        ipo_date="1980-12-12",
        splits=(("2020-08-31", 4, 1),),
        ref_price=243.0,
        drift=0.1,
        vol=0.33,
        beta=1.11,
        avg_volume=6.0e7,
        revenue0=39e9,
        growth=0.017,
        gross_margin=0.46,
        rd_ratio=0.06,
        sga_ratio=0.07,
        tax_rate=0.16,
        capex_ratio=0.03,
        inventory_ratio=0.1,
        leverage=0.8,
        minority_ratio=0.0,
        shares_now=15.2e9,
        dividend_yield=0.006,
        dividend_month=2,
    ),
    "MSFT": dict(
        name="Microsoft Corporation",
        exchange="NASDAQ",
        sector="Technology",
        industry="Software - Infrastructure",
        cik="0000789019",
        ceo="Satya Nadella",
        city="Redmond",
        state="WA",
        employees=228000,
        ipo_date="1986-03-13",
        splits=(),
        ref_price=420.0,
        drift=0.08,
        vol=0.27,
        beta=0.9,
        avg_volume=2.2e7,
        revenue0=17e9,
        growth=0.025,
        gross_margin=0.68,
        rd_ratio=0.13,
        sga_ratio=0.17,
        tax_rate=0.18,
        capex_ratio=0.12,
        inventory_ratio=0.05,
        leverage=0.55,
        minority_ratio=0.0,
        shares_now=7.43e9,
        dividend_yield=0.009,
        dividend_month=2,
        investments_ratio=1.2,
    ),
    "NVDA": dict(
        name="NVIDIA Corporation",
        exchange="NASDAQ",
        sector="Technology",
        industry="Semiconductors",
        cik="0001045810",
        ceo="Jensen Huang",
        city="Santa Clara",
        state="CA",
        employees=36000,
        ipo_date="1999-01-22",
        splits=(("2021-07-20", 4, 1), ("2024-06-10", 10, 1)),
        ref_price=138.0,
        drift=0.2,
        vol=0.5,
        beta=1.7,
        avg_volume=3.0e8,
        revenue0=1.0e9,
        growth=0.062,
        gross_margin=0.62,
        rd_ratio=0.15,
        sga_ratio=0.05,
        tax_rate=0.13,
        capex_ratio=0.04,
        inventory_ratio=0.5,
        leverage=0.35,
        minority_ratio=0.0,
        shares_now=24.4e9,
        dividend_yield=0.0005,
        dividend_month=3,
    ),
    "JPM": dict(
        name="JPMorgan Chase & Co.",
        exchange="NYSE",
        sector="Financial Services",
        industry="Banks - Diversified",
        cik="0000019617",
        ceo="James Dimon",
        city="New York",
        state="NY",
        employees=317000,
        ipo_date="1980-03-17",
        splits=(),
        ref_price=240.0,
        drift=0.05,
        vol=0.3,
        beta=1.08,
        avg_volume=1.0e7,
        revenue0=25e9,
        growth=0.016,
        gross_margin=0.85,
        rd_ratio=0.0,
        sga_ratio=0.5,
        tax_rate=0.2,
        capex_ratio=0.02,
        inventory_ratio=0.0,
        leverage=0.92,
        minority_ratio=0.0,
        shares_now=2.8e9,
        dividend_yield=0.025,
        dividend_month=1,
        investments_ratio=18.0,
    ),
    "XOM": dict(
        name="Exxon Mobil Corporation",
        exchange="NYSE",
        sector="Energy",
        industry="Oil & Gas Integrated",
        cik="0000034088",
        ceo="Darren W. Woods",
        city="Spring",
        state="TX",
        employees=61000,
        ipo_date="1978-01-13",
        splits=(),
        ref_price=107.0,
        drift=0.04,
        vol=0.26,
        beta=0.85,
        avg_volume=1.6e7,
        revenue0=85e9,
        growth=0.003,
        gross_margin=0.2,
        rd_ratio=0.0,
        sga_ratio=0.05,
        tax_rate=0.3,
        capex_ratio=0.07,
        inventory_ratio=0.12,
        leverage=0.45,
        minority_ratio=0.03,
        shares_now=4.3e9,
        dividend_yield=0.035,
        dividend_month=2,
    ),
    "JNJ": dict(
        name="Johnson & Johnson",
        exchange="NYSE",
        sector="Healthcare",
        industry="Drug Manufacturers - General",
        cik="0000200406",
        ceo="Joaquin Duato",
        city="New Brunswick",
        state="NJ",
        employees=138000,
        ipo_date="1944-09-24",
        splits=(),
        ref_price=145.0,
        drift=0.05,
        vol=0.18,
        beta=0.52,
        avg_volume=7.0e6,
        revenue0=17e9,
        growth=0.01,
        gross_margin=0.68,
        rd_ratio=0.14,
        sga_ratio=0.27,
        tax_rate=0.17,
        capex_ratio=0.05,
        inventory_ratio=0.35,
        leverage=0.6,
        minority_ratio=0.0,
        shares_now=2.4e9,
        dividend_yield=0.028,
        dividend_month=2,
    ),
    "KO": dict(
        name="The Coca-Cola Company",
        exchange="NYSE",
        sector="Consumer Defensive",
        industry="Beverages - Non-Alcoholic",
        cik="0000021344",
        ceo="James Quincey",
        city="Atlanta",
        state="GA",
        employees=69700,
        ipo_date="1919-09-05",
        splits=(),
        ref_price=62.0,
        drift=0.04,
        vol=0.18,
        beta=0.6,
        avg_volume=1.4e7,
        revenue0=11e9,
        growth=0.005,
        gross_margin=0.6,
        rd_ratio=0.0,
        sga_ratio=0.3,
        tax_rate=0.19,
        capex_ratio=0.04,
        inventory_ratio=0.3,
        leverage=0.75,
        minority_ratio=0.02,
        shares_now=4.3e9,
        dividend_yield=0.03,
        dividend_month=3,
        investments_ratio=0.8,
    ),
    "PG": dict(
        name="The Procter & Gamble Company",
        exchange="NYSE",
        sector="Consumer Defensive",
        industry="Household & Personal Products",
        cik="0000080424",
        ceo="Jon R. Moeller",
        city="Cincinnati",
        state="OH",
        employees=108000,
        ipo_date="1950-03-22",
        splits=(),
        ref_price=168.0,
        drift=0.06,
        vol=0.19,
        beta=0.42,
        avg_volume=7.0e6,
        revenue0=21e9,
        growth=0.007,
        gross_margin=0.5,
        rd_ratio=0.02,
        sga_ratio=0.26,
        tax_rate=0.2,
        capex_ratio=0.05,
        inventory_ratio=0.4,
        leverage=0.6,
        minority_ratio=0.005,
        shares_now=2.35e9,
        dividend_yield=0.025,
        dividend_month=1,
    ),
    # A 1-for-8 reverse split (numerator < denominator): as-traded prices jump up, share counts drop.
    "GE": dict(
        name="General Electric Company",
        exchange="NYSE",
        sector="Industrials",
        industry="Aerospace & Defense",
        cik="0000040545",
        ceo="H. Lawrence Culp, Jr.",
        city="Evendale",
        state="OH",
        employees=53000,
        ipo_date="1962-01-02",
        splits=(("2021-08-02", 1, 8),),
        ref_price=170.0,
        drift=0.09,
        vol=0.3,
        beta=1.2,
        avg_volume=6.0e6,
        revenue0=9e9,
        growth=0.004,
        gross_margin=0.32,
        rd_ratio=0.03,
        sga_ratio=0.11,
        tax_rate=0.18,
        capex_ratio=0.03,
        inventory_ratio=0.4,
        leverage=0.75,
        minority_ratio=0.01,
        shares_now=1.08e9,
        dividend_yield=0.007,
        dividend_month=3,
    ),
    # Loss-making every quarter (research and selling costs above gross profit): P/E must be NULL.
    "SNAP": dict(
        name="Snap Inc.",
        exchange="NYSE",
        sector="Communication Services",
        industry="Internet Content & Information",
        cik="0001564408",
        ceo="Evan Spiegel",
        city="Santa Monica",
        state="CA",
        employees=5300,
        ipo_date="2017-03-02",
        splits=(),
        ref_price=11.0,
        drift=0.0,
        vol=0.55,
        beta=1.3,
        avg_volume=2.5e7,
        revenue0=0.1e9,
        growth=0.06,
        gross_margin=0.55,
        rd_ratio=0.35,
        sga_ratio=0.32,
        tax_rate=0.05,
        capex_ratio=0.02,
        inventory_ratio=0.0,
        leverage=0.6,
        minority_ratio=0.0,
        shares_now=1.7e9,
        dividend_yield=0.0,
        dividend_month=1,
        first_trade="2017-03-02",
    ),
}

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


def company(symbol: str) -> Company:
    """Reference data for a ticker (real names for the sample tickers, synthetic for any other string)."""
    return Company(symbol=symbol, **(_KNOWN.get(symbol) or _synthetic_company(symbol)))


# Non-US listings that FMP's stock-list also returns, alongside the universe.
FOREIGN_LISTINGS: tuple[tuple[str, str], ...] = (
    ("6898.HK", "China Aluminum Cans Holdings Limited"),
    ("7203.T", "Toyota Motor Corporation"),
    ("SAP.DE", "SAP SE"),
    ("RY.TO", "Royal Bank of Canada"),
    ("SHEL.L", "Shell plc"),
)
