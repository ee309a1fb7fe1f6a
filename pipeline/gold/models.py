"""The Gold tables: for each, the SQL file that computes it, its columns (with their meaning) and its natural key.

Why this shape:
- Every model reads Silver only (never another Gold table), so its inputs are exactly the Silver tables in
  `inputs`, and the Silver watermarks recorded for a build describe everything it read. A Gold-on-Gold
  dependency would let a build run against a stale upstream Gold table that the watermarks cannot see. (The
  ledger is read for the day each Silver row was served, which never changes once written.)
- Every per-ticker SELECT takes the named parameter `$tickers` (VARCHAR[]; NULL = all tickers). An
  incremental build passes the moved tickers and gets each of them over its full history, so windowed
  metrics (SMA-200, 52-week range, TTM) come out as in a full rebuild; the price SQL also takes `$bars_from`,
  which limits the bars read for tickers built by date (`ByDate`, `pipeline.gold.by_date`) to their new days and
  the lookback their rolling windows need.
- Statements become usable on the NYSE calendar (`$sessions`), never on the price days the warehouse holds.
- Columns are declared here (not inferred by CREATE TABLE AS) so the tables carry primary keys, stable types and
  descriptions the Dagster UI shows before the first run; adding a column here makes the next build recreate the
  table and rebuild it in full.
- The SQL itself lives in `pipeline/gold/sql/`, one file per table (rendered by `pipeline.gold.templates`).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
from dataclasses import dataclass, field

import duckdb

from pipeline import market_calendar
from pipeline.fmp.fields import TREASURY_MATURITIES
from pipeline.gold.macro_releases import DEFAULT_RELEASE_LAG_DAYS, RELEASES
from pipeline.gold.security_join import SECURITY_COLUMN, SECURITY_DESCRIPTION, SECURITY_INPUTS, with_security
from pipeline.gold.templates import render

QUARTERS = ("Q1", "Q2", "Q3", "Q4")
ANNUAL = ("FY",)
SESSIONS_FROM = dt.date(1970, 1, 1)  # the NYSE sessions passed to the SQL start here (before any EDGAR acceptance)


@functools.cache
def _sessions(until_year: int) -> list[dt.date]:
    return market_calendar.sessions(SESSIONS_FROM, dt.date(until_year, 12, 31)).tolist()


def exchange_sessions() -> list[dt.date]:
    """The NYSE sessions from SESSIONS_FROM to the end of next year: the value of `$sessions`."""
    return _sessions(dt.date.today().year + 1)


@dataclass(frozen=True)
class ByDate:
    """A table keyed (ticker, date) that a daily refresh extends by date: for a ticker whose history did not
    change, only its new days are computed and written (`pipeline.gold.by_date` decides which tickers qualify).

    `rows` and `days`: how far before its first new day a ticker's bars are read, so that every rolling window
    of the new days sees what a full rebuild sees (the longest ROWS frame, the longest RANGE frame in days).
    """

    rows: int = 0
    days: int = 0


@dataclass(frozen=True)
class GoldModel:
    name: str  # table name in schema gold
    inputs: tuple[str, ...]  # Silver tables read (names as in ops.file_ingestions.silver_table)
    columns: tuple[tuple[str, str], ...]  # (name, DuckDB type), in table order
    key: tuple[str, ...]  # primary key
    sql: str  # SELECT producing the rows; may use $tickers and $periods
    per_ticker: bool = True  # has a `ticker` column; incremental builds recompute per ticker
    periods: tuple[str, ...] | None = None  # value of $periods for fundamentals-based models
    descriptions: dict[str, str] = field(default_factory=dict)  # column -> meaning, shown in the Dagster UI
    report_sql: str | None = None  # (label, count) rows worth telling the user after a build
    description: str = ""  # what a row is, shown as the asset's description in the Dagster UI
    by_date: ByDate | None = None  # keyed (ticker, date) and extended by date on a daily refresh

    @property
    def qualified(self) -> str:
        return f"gold.{self.name}"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    @property
    def version(self) -> str:
        """A short hash of what the table's rows are: its SQL, columns and key. A build records it; a change
        recomputes the whole table (a corrected formula must reach every row, not only those of moved tickers)."""
        text = "\n".join([self.sql, repr(self.columns), repr(self.key), repr(self.periods), repr(self.by_date)])
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def ddl(self) -> str:
        cols = ",\n".join(f"    {c} {t}{' NOT NULL' if c in self.key else ''}" for c, t in self.columns)
        return f"CREATE TABLE {self.qualified} (\n{cols},\n    PRIMARY KEY ({', '.join(self.key)})\n)"

    def parameters(self, tickers: list[str] | None, bars_from: list[dict] | None = None) -> dict:
        """The SQL's named parameters. `bars_from`: [{ticker, read_from}] for tickers built by date."""
        params: dict = {}
        if "$tickers" in self.sql:
            params["tickers"] = tickers
        if "$periods" in self.sql:
            params["periods"] = list(self.periods or ())
        if "$bars_from" in self.sql:
            params["bars_from"] = bars_from or []
        if "$sessions" in self.sql:
            params["sessions"] = exchange_sessions()
        return params


def _cols(spec: str) -> tuple[tuple[str, str], ...]:
    """'name TYPE, name TYPE, ...' -> ((name, TYPE), ...): keeps the column lists below compact."""
    out = []
    for part in spec.split(","):
        part = part.strip()
        if part:
            name, typ = part.split(None, 1)
            out.append((name, typ.strip()))
    return tuple(out)


# ---- dimensions -----------------------------------------------------------------------------------------

DIM_INSTRUMENT_HISTORY = GoldModel(
    name="dim_instrument_history",
    description="Every version of each instrument's descriptive attributes (SCD2: valid_from/valid_to).",
    inputs=("fmp_company_profile",),
    columns=_cols("""
        ticker VARCHAR, valid_from TIMESTAMP, valid_to TIMESTAMP, is_current BOOLEAN, version INTEGER,
        name VARCHAR, exchange VARCHAR, sector VARCHAR, industry VARCHAR, country VARCHAR, currency VARCHAR,
        is_etf BOOLEAN, is_actively_trading BOOLEAN, ipo_date DATE"""),
    key=("ticker", "valid_from"),
    sql=render("dim_instrument_history"),
)

DIM_INSTRUMENT = GoldModel(
    name="dim_instrument",
    description="One row per ticker: name, exchange, sector, industry, country, currency, ETF and trading flags, "
    "IPO date, from the stock list and the latest profile.",
    inputs=("fmp_stock_list", "fmp_company_profile"),
    columns=_cols("""
        ticker VARCHAR, name VARCHAR, exchange VARCHAR, sector VARCHAR, industry VARCHAR, country VARCHAR,
        currency VARCHAR, is_etf BOOLEAN, is_actively_trading BOOLEAN, ipo_date DATE,
        in_stock_list BOOLEAN, has_profile BOOLEAN, last_changed_at TIMESTAMP, profile_fetched_at TIMESTAMP"""),
    key=("ticker",),
    sql=render("dim_instrument"),
)


# ---- prices ---------------------------------------------------------------------------------------------

STATEMENT_INPUTS = ("fmp_income_statement", "fmp_balance_sheet", "fmp_cash_flow")
PRICE_INPUTS = ("fmp_price_eod_as_traded", "fmp_price_eod", "fmp_splits")

PRICE_DESCRIPTIONS = {
    "open": "As traded that day (FMP /non-split-adjusted; else derived from /full and the splits, see price_source).",
    "high": "As traded that day.",
    "low": "As traded that day.",
    "close": "As traded that day: the print a trader saw. Not comparable across splits.",
    "volume": "Shares traded that day, as traded (not split-adjusted).",
    "price_source": "'as_traded' (from /non-split-adjusted) or 'derived_from_full' (/full row * cum(fetch day) / "
    "cum(day), used when the plan lacks /non-split-adjusted or the day is missing there).",
    "split_factor": "cum(day) / cum(current): multiply an as-traded price by it to get the split-adjusted price. "
    "A new split changes it for all earlier days (history re-based).",
    "split_adj_open": "Split-adjusted (splits only, current share basis).",
    "split_adj_high": "Split-adjusted (splits only, current share basis).",
    "split_adj_low": "Split-adjusted (splits only, current share basis).",
    "split_adj_close": "Split-adjusted close (splits only, current share basis): the price series for returns, "
    "moving averages and the 52-week range.",
    "split_adj_volume": "Volume on the current share basis (as traded / split_factor).",
    "total_return_factor": "Product over later ex-dates of (1 - dividend / previous split-adjusted close).",
    "tr_close": "Total return close: split_adj_close * total_return_factor (splits and dividends, current basis).",
    "return_1d": "Price return from split_adj_close (splits only, no dividends).",
    "total_return_1d": "Total return from tr_close (splits and dividends).",
    "log_return_1d": "ln of the split_adj_close ratio (price, no dividends).",
    "sma_20": "Mean split_adj_close over the last 20 rows; NULL until 20 rows exist.",
    "sma_50": "Mean split_adj_close over the last 50 rows; NULL until 50 rows exist.",
    "sma_200": "Mean split_adj_close over the last 200 rows; NULL until 200 rows exist.",
    "high_52w": "Highest split_adj_high in (date - 365 days, date]; compare with split_adj_close. NULL until the "
    "ticker has a full year of history.",
    "low_52w": "Lowest split_adj_low in (date - 365 days, date]; compare with split_adj_close. NULL until a full year.",
    "trading_days_per_year": "Rows in (date - 365 days, date]: the observed trading days per year; NULL until a "
    "full year.",
    "realized_vol_20d": "Sample stddev of the last 20 log_return_1d (price) * sqrt(trading_days_per_year); NULL "
    "until 20 returns and a full year exist.",
}

FACT_PRICE_DAILY = GoldModel(
    name="fact_price_daily",
    description="Daily bars in three explicitly named series: as traded (open..close, volume), split-adjusted "
    "(split_adj_*, splits only, current share basis) and total return (tr_close, splits and "
    "dividends); returns, 20/50/200-day SMAs, 52-week range and realised volatility on the "
    "split-adjusted series (see each column's description).",
    inputs=PRICE_INPUTS + ("fmp_dividends",) + SECURITY_INPUTS,
    columns=_cols("""
        ticker VARCHAR, date DATE, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume BIGINT,
        price_source VARCHAR, split_factor DOUBLE,
        split_adj_open DOUBLE, split_adj_high DOUBLE, split_adj_low DOUBLE, split_adj_close DOUBLE,
        split_adj_volume BIGINT, total_return_factor DOUBLE, tr_close DOUBLE,
        return_1d DOUBLE, total_return_1d DOUBLE, log_return_1d DOUBLE, sma_20 DOUBLE, sma_50 DOUBLE, sma_200 DOUBLE,
        high_52w DOUBLE, low_52w DOUBLE, trading_days_per_year INTEGER, realized_vol_20d DOUBLE""")
    + (SECURITY_COLUMN,),
    key=("ticker", "date"),
    descriptions=PRICE_DESCRIPTIONS | {"security_id": SECURITY_DESCRIPTION},
    sql=with_security(render("fact_price_daily"), "date"),
    # sma_200 reads 199 earlier rows, the 52-week range 364 earlier days
    by_date=ByDate(rows=200, days=365),
    # where the plan lacks /non-split-adjusted, bars are derived from /full and the splits: say how many
    report_sql="SELECT 'bars_' || price_source, count(*) FROM gold.fact_price_daily GROUP BY ALL ORDER BY 1",
)


# ---- fundamentals ---------------------------------------------------------------------------------------

# Flow items summed over the trailing four quarters (EPS on the current share basis).
TTM_ITEMS = (
    "revenue",
    "gross_profit",
    "operating_income",
    "net_income",
    "ebitda",
    "eps",
    "operating_cash_flow",
    "capital_expenditure",
    "free_cash_flow",
    "dividends_paid",
)

FUNDAMENTALS_COLUMNS = _cols("""
    ticker VARCHAR, period_end DATE, period VARCHAR, fiscal_year INTEGER, reported_currency VARCHAR,
    filing_date DATE, accepted_date TIMESTAMP, usable_from DATE, share_basis_date DATE,
    revenue DOUBLE, gross_profit DOUBLE, operating_income DOUBLE, net_income DOUBLE, ebitda DOUBLE,
    eps DOUBLE, eps_diluted DOUBLE, weighted_average_shs_out DOUBLE, weighted_average_shs_out_dil DOUBLE,
    total_assets DOUBLE, total_liabilities DOUBLE, total_equity DOUBLE, total_stockholders_equity DOUBLE,
    cash_and_cash_equivalents DOUBLE, total_debt DOUBLE, net_debt DOUBLE,
    operating_cash_flow DOUBLE, capital_expenditure DOUBLE, free_cash_flow DOUBLE, dividends_paid DOUBLE,
    enterprise_value DOUBLE, ev_to_ebitda DOUBLE, return_on_equity DOUBLE, return_on_assets DOUBLE,
    return_on_invested_capital DOUBLE, earnings_yield DOUBLE, free_cash_flow_yield DOUBLE,
    gross_profit_margin DOUBLE, operating_profit_margin DOUBLE, net_profit_margin DOUBLE,
    current_ratio DOUBLE, quick_ratio DOUBLE, debt_to_equity_ratio DOUBLE, interest_coverage_ratio DOUBLE,
    dividend_payout_ratio DOUBLE, book_value_per_share DOUBLE, price_to_earnings_ratio DOUBLE""")

TTM_COLUMNS = tuple((f"{c}_ttm", "DOUBLE") for c in TTM_ITEMS)

FUNDAMENTALS_DESCRIPTIONS = {
    "filing_date": "FMP filingDate: the original filing date (FMP keeps it when it restates).",
    "accepted_date": "EDGAR acceptance, US Eastern wall clock; the latest of the three statements'.",
    "usable_from": "First trading day whose 16:00 New York close is at or after accepted_date (after-close "
    "acceptances count from the next trading day). Point-in-time joins use this, never period_end.",
    "share_basis_date": "The day the income statement was served (its fetch day in New York, or the planning day "
    "when earlier): FMP restates share counts and EPS onto the basis current on that day.",
    "eps": "EPS on the current share basis (FMP's restated value * cum(share_basis_date) / cum(current)).",
    "eps_diluted": "Diluted EPS on the current share basis.",
    "weighted_average_shs_out": "Weighted average shares on the current share basis (after every split known).",
    "weighted_average_shs_out_dil": "Diluted weighted average shares on the current share basis.",
    "book_value_per_share": "FMP ratios value put on the current share basis.",
    "eps_ttm": "Sum of the last 4 quarters' eps, all on the current share basis; NULL unless 4 consecutive quarters.",
    "revenue_ttm": "Sum of the last 4 consecutive quarters; NULL until 4 exist (same rule for every *_ttm).",
}

FUNDAMENTALS_INPUTS = STATEMENT_INPUTS + ("fmp_key_metrics", "fmp_ratios") + PRICE_INPUTS + SECURITY_INPUTS
FUNDAMENTALS_DESCRIPTIONS["security_id"] = SECURITY_DESCRIPTION

FACT_FUNDAMENTALS_QUARTERLY = GoldModel(
    name="fact_fundamentals_quarterly",
    description="Quarterly income statement, balance sheet, cash flow, key metrics and ratios per fiscal period, "
    "with trailing-twelve-month sums of flow items.",
    inputs=FUNDAMENTALS_INPUTS,
    columns=FUNDAMENTALS_COLUMNS + TTM_COLUMNS + (SECURITY_COLUMN,),
    key=("ticker", "period_end", "period"),
    periods=QUARTERS,
    descriptions=FUNDAMENTALS_DESCRIPTIONS,
    sql=with_security(render("fact_fundamentals_quarterly", ttm_items=TTM_ITEMS), "period_end"),
)

FACT_FUNDAMENTALS_ANNUAL = GoldModel(
    name="fact_fundamentals_annual",
    description="Annual income statement, balance sheet, cash flow, key metrics and ratios per fiscal year.",
    inputs=FUNDAMENTALS_INPUTS,
    columns=FUNDAMENTALS_COLUMNS + (SECURITY_COLUMN,),
    key=("ticker", "period_end", "period"),
    periods=ANNUAL,
    descriptions=FUNDAMENTALS_DESCRIPTIONS,
    sql=with_security(render("fact_fundamentals_annual"), "period_end"),
)


# ---- valuation ------------------------------------------------------------------------------------------

VALUATION_DESCRIPTIONS = {
    "close": "As-traded close of the day.",
    "statement_usable_from": "When the statement in force became usable (first close at or after its acceptance).",
    "statement_accepted_at": "EDGAR acceptance of the statement in force, US Eastern wall clock.",
    "share_basis_factor": "cum(date) / cum(statement fetch day): puts FMP's restated share count on this day's basis.",
    "shares_outstanding": "Weighted average shares of the statement in force, on this day's share basis.",
    "market_cap": "close * shares_outstanding: both as of this day, so it is continuous across splits.",
    "enterprise_value": "market_cap + net_debt of the statement in force.",
    "eps_ttm": "Trailing 4-quarter EPS on this day's share basis (comparable with close).",
    "pe_ttm": "close / eps_ttm; NULL when eps_ttm <= 0 (a loss-making company has no P/E).",
    "pb": "market_cap / book_value; NULL when book_value <= 0.",
    "ps_ttm": "market_cap / revenue_ttm; NULL when revenue_ttm <= 0.",
    "ev_to_ebitda_ttm": "enterprise_value / ebitda_ttm; NULL when ebitda_ttm <= 0.",
    "dividends_ttm_per_share": "Sum of the last N regular dividends (N = payments per year from the dividend "
    "frequency: 4 quarterly, 12 monthly, 2 semi-annual, 1 annual) with ex-date in "
    "(date - 365 - 182/N days, date], each on this day's share basis; 0 when none.",
    "dividend_yield_ttm": "dividends_ttm_per_share / close.",
    "fcf_yield": "free_cash_flow_ttm / market_cap; NULL when market_cap <= 0.",
}

FACT_VALUATION_DAILY = GoldModel(
    name="fact_valuation_daily",
    description="Point-in-time daily valuation (market cap, P/E, P/B, P/S, EV/EBITDA, dividend and FCF yield): a "
    "statement counts from the first close at or after its acceptance (US Eastern), and its restated "
    "share count is put on each day's share basis.",
    inputs=PRICE_INPUTS + ("fmp_dividends",) + STATEMENT_INPUTS + SECURITY_INPUTS,
    columns=_cols("""
        ticker VARCHAR, date DATE, close DOUBLE,
        statement_period_end DATE, statement_period VARCHAR, statement_fiscal_year INTEGER,
        statement_filing_date DATE, statement_accepted_at TIMESTAMP, statement_usable_from DATE,
        share_basis_factor DOUBLE, shares_outstanding DOUBLE, market_cap DOUBLE, net_debt DOUBLE,
        enterprise_value DOUBLE, revenue_ttm DOUBLE, net_income_ttm DOUBLE, ebitda_ttm DOUBLE,
        free_cash_flow_ttm DOUBLE, book_value DOUBLE, eps_ttm DOUBLE, pe_ttm DOUBLE, pb DOUBLE, ps_ttm DOUBLE,
        ev_to_ebitda_ttm DOUBLE, dividends_ttm_per_share DOUBLE, dividend_yield_ttm DOUBLE, fcf_yield DOUBLE""")
    + (SECURITY_COLUMN,),
    key=("ticker", "date"),
    periods=QUARTERS,
    descriptions=VALUATION_DESCRIPTIONS | {"security_id": SECURITY_DESCRIPTION},
    sql=with_security(render("fact_valuation_daily", ttm_items=TTM_ITEMS), "date"),
    by_date=ByDate(),  # each day stands alone (no window over days): the new days need no earlier bar
)


# ---- macro ----------------------------------------------------------------------------------------------

TREASURY_COLUMNS = TREASURY_MATURITIES  # one DOUBLE column per maturity, as in Silver
MACRO_INPUTS = (
    "fmp_treasury_rates",
    "fmp_economic_indicator",
    "fmp_economic_calendar",
    "fmp_price_eod_as_traded",
    "fmp_price_eod",
)


MACRO_DESCRIPTION = (
    "Per trading date: the treasury curve and, per economic indicator, the newest value already "
    "released (economic-calendar release time, else a documented lag), with its reference "
    "period and the day it became known."
)


def snake_name(name: str) -> str:
    """FMP indicator name -> column name: 'realGDP' -> 'real_gdp', 'unemploymentRate' -> 'unemployment_rate'."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    text = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    if not text or text[0].isdigit():
        text = f"indicator_{text}"
    if text in ("date", "treasury_date") or text in TREASURY_COLUMNS:
        text = f"{text}_indicator"
    return text


def macro_model(indicator_names: list[str]) -> GoldModel:
    """The macro table has three columns per indicator present in Silver, so its model is made per build."""
    columns = {snake_name(n): n for n in sorted(indicator_names)}  # first spelling wins on a clash
    sql = render(
        "fact_macro_daily",
        treasury_columns=TREASURY_COLUMNS,
        indicators=list(columns.items()),
        release_events=[(name, event) for name, rule in RELEASES.items() for event in rule.events],
        release_lags=[(name, rule.lag_days) for name, rule in RELEASES.items()],
        default_lag_days=DEFAULT_RELEASE_LAG_DAYS,
    )
    cols = (("date", "DATE"), ("treasury_date", "DATE")) + tuple((c, "DOUBLE") for c in TREASURY_COLUMNS)
    descriptions = {"treasury_date": "Date of the Treasury curve shown (the latest on or before date)."}
    for col, name in columns.items():
        cols += ((col, "DOUBLE"), (f"{col}_period", "DATE"), (f"{col}_known_from", "DATE"))
        rule = RELEASES.get(name)
        how = (
            f"the first US '{rule.events[0]}' release after the period ends, else {rule.lag_days} days after it"
            if rule and rule.events
            else f"{rule.lag_days if rule else DEFAULT_RELEASE_LAG_DAYS} days after the period ends (no calendar event)"
        )
        descriptions[col] = f"FMP indicator {name} as known on date: the newest reference period already released."
        descriptions[f"{col}_period"] = f"Start of the reference period of {col} (FMP's date)."
        descriptions[f"{col}_known_from"] = f"The day {col} became usable: {how}."
    return GoldModel(
        name="fact_macro_daily",
        inputs=MACRO_INPUTS,
        columns=cols,
        key=("date",),
        sql=sql,
        per_ticker=False,
        descriptions=descriptions,
        description=MACRO_DESCRIPTION,
    )


def indicator_names(conn: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT name FROM silver.fmp_economic_indicator WHERE name IS NOT NULL ORDER BY 1"
        ).fetchall()
    ]


from pipeline.gold.security_models import SECURITY_MODELS  # noqa: E402 - they build on GoldModel above

MODELS: dict[str, GoldModel] = {
    m.name: m
    for m in (
        *SECURITY_MODELS,
        DIM_INSTRUMENT,
        DIM_INSTRUMENT_HISTORY,
        FACT_PRICE_DAILY,
        FACT_FUNDAMENTALS_QUARTERLY,
        FACT_FUNDAMENTALS_ANNUAL,
        FACT_VALUATION_DAILY,
        macro_model([]),
    )
}


def resolve(conn: duckdb.DuckDBPyConnection, name: str) -> GoldModel:
    """The model to build now (the macro model depends on which indicators Silver holds)."""
    if name not in MODELS:
        raise ValueError(f"unknown Gold table {name!r}; known: {', '.join(sorted(MODELS))}")
    if name == "fact_macro_daily":
        return macro_model(indicator_names(conn))
    return MODELS[name]
