"""The Gold tables as readable SQL over Silver: one SELECT per table, plus its columns and natural key.

Why this shape:
- Every model reads Silver only (never another Gold table), so its inputs are exactly the Silver tables in
  `inputs`, and the Silver watermarks recorded for a build describe everything it read. A Gold-on-Gold
  dependency would let a build run against a stale upstream Gold table that the watermarks cannot see.
- Every per-ticker SELECT takes the named parameter `$tickers` (VARCHAR[]; NULL = all tickers). An
  incremental build passes the moved tickers and gets each of them over its *full* history, so windowed
  metrics (SMA-200, 52-week range, TTM) come out exactly as in a full rebuild.
- Columns are declared here (not inferred by CREATE TABLE AS) so the tables carry primary keys and stable
  types; adding a column here makes the next build recreate the table and rebuild it in full.
- The SQL lives in Python strings rather than `.sql` files so that it ships with the package without any
  package-data configuration; the fundamentals CTEs are shared verbatim by the valuation model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import duckdb

from pipeline.gold.macro_releases import DEFAULT_RELEASE_LAG_DAYS, RELEASES

QUARTERS = ("Q1", "Q2", "Q3", "Q4")
ANNUAL = ("FY",)


@dataclass(frozen=True)
class GoldModel:
    name: str                               # table name in schema gold
    inputs: tuple[str, ...]                 # Silver tables read (names as in ops.file_ingestions.silver_table)
    columns: tuple[tuple[str, str], ...]    # (name, DuckDB type), in table order
    key: tuple[str, ...]                    # primary key
    sql: str                                # SELECT producing the rows; may use $tickers and $periods
    per_ticker: bool = True                 # has a `ticker` column; incremental builds recompute per ticker
    periods: tuple[str, ...] | None = None  # value of $periods for fundamentals-based models
    descriptions: dict[str, str] = field(default_factory=dict)   # column -> meaning, shown in the Dagster UI
    report_sql: str | None = None           # (label, count) rows worth telling the user after a build

    @property
    def qualified(self) -> str:
        return f"gold.{self.name}"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.columns)

    def ddl(self) -> str:
        cols = ",\n".join(f"    {c} {t}{' NOT NULL' if c in self.key else ''}" for c, t in self.columns)
        return f"CREATE TABLE {self.qualified} (\n{cols},\n    PRIMARY KEY ({', '.join(self.key)})\n)"

    def parameters(self, tickers: list[str] | None) -> dict:
        params: dict = {}
        if "$tickers" in self.sql:
            params["tickers"] = tickers
        if "$periods" in self.sql:
            params["periods"] = list(self.periods or ())
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

# The descriptive attributes whose changes make a new dimension version (price, volume, market cap etc.
# change on every profile fetch and must not).
DIM_ATTRIBUTES = ("name", "exchange", "sector", "industry", "country", "currency", "is_etf",
                  "is_actively_trading", "ipo_date")

# Gaps-and-islands over the profile history: consecutive history rows with the same attributes are one
# version; a version starts at the first fetch that carried it and ends when the next version starts.
PROFILE_VERSIONS_CTE = """
profile_rows AS (
    -- Every fetched version of each profile (the history table keeps them with valid_from/valid_to).
    SELECT ticker, company_name AS name, exchange, sector, industry, country, currency, is_etf,
           is_actively_trading, ipo_date, valid_from, valid_to
    FROM silver.fmp_company_profile__history
    WHERE ($tickers IS NULL OR list_contains($tickers, ticker))
    UNION ALL
    -- A profile whose history is not written yet counts as its own first version.
    SELECT p.ticker, p.company_name, p.exchange, p.sector, p.industry, p.country, p.currency, p.is_etf,
           p.is_actively_trading, p.ipo_date, p.fetched_at, NULL
    FROM silver.fmp_company_profile p
    WHERE ($tickers IS NULL OR list_contains($tickers, p.ticker))
      AND NOT EXISTS (SELECT 1 FROM silver.fmp_company_profile__history h WHERE h.ticker = p.ticker)
),
profile_changes AS (
    SELECT *,
           CASE WHEN lag(struct_pack(name, exchange, sector, industry, country, currency, is_etf,
                                     is_actively_trading, ipo_date))
                         OVER (PARTITION BY ticker ORDER BY valid_from)
                     IS NOT DISTINCT FROM
                     struct_pack(name, exchange, sector, industry, country, currency, is_etf,
                                 is_actively_trading, ipo_date)
                THEN 0 ELSE 1 END AS starts_version
    FROM profile_rows
),
profile_islands AS (
    SELECT *, sum(starts_version) OVER (PARTITION BY ticker ORDER BY valid_from
                                        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS version
    FROM profile_changes
),
profile_versions AS (
    SELECT ticker, CAST(version AS INTEGER) AS version,
           any_value(name) AS name, any_value(exchange) AS exchange, any_value(sector) AS sector,
           any_value(industry) AS industry, any_value(country) AS country, any_value(currency) AS currency,
           any_value(is_etf) AS is_etf, any_value(is_actively_trading) AS is_actively_trading,
           any_value(ipo_date) AS ipo_date,
           min(valid_from) AS valid_from,
           -- the island's own end: NULL while its last row is still current
           CASE WHEN count(valid_to) = count(*) THEN max(valid_to) END AS island_end
    FROM profile_islands
    GROUP BY ticker, version
),
dim_versions AS (
    SELECT ticker, version, name, exchange, sector, industry, country, currency, is_etf,
           is_actively_trading, ipo_date, valid_from,
           coalesce(lead(valid_from) OVER (PARTITION BY ticker ORDER BY valid_from), island_end) AS valid_to
    FROM profile_versions
)"""

DIM_INSTRUMENT_HISTORY = GoldModel(
    name="dim_instrument_history",
    inputs=("fmp_company_profile",),
    columns=_cols("""
        ticker VARCHAR, valid_from TIMESTAMP, valid_to TIMESTAMP, is_current BOOLEAN, version INTEGER,
        name VARCHAR, exchange VARCHAR, sector VARCHAR, industry VARCHAR, country VARCHAR, currency VARCHAR,
        is_etf BOOLEAN, is_actively_trading BOOLEAN, ipo_date DATE"""),
    key=("ticker", "valid_from"),
    sql=f"""
WITH {PROFILE_VERSIONS_CTE}
SELECT ticker, valid_from, valid_to, valid_to IS NULL AS is_current, version,
       name, exchange, sector, industry, country, currency, is_etf, is_actively_trading, ipo_date
FROM dim_versions
""",
)

DIM_INSTRUMENT = GoldModel(
    name="dim_instrument",
    inputs=("fmp_stock_list", "fmp_company_profile"),
    columns=_cols("""
        ticker VARCHAR, name VARCHAR, exchange VARCHAR, sector VARCHAR, industry VARCHAR, country VARCHAR,
        currency VARCHAR, is_etf BOOLEAN, is_actively_trading BOOLEAN, ipo_date DATE,
        in_stock_list BOOLEAN, has_profile BOOLEAN, last_changed_at TIMESTAMP, profile_fetched_at TIMESTAMP"""),
    key=("ticker",),
    sql=f"""
WITH {PROFILE_VERSIONS_CTE},
current_version AS (
    SELECT ticker, valid_from
    FROM dim_versions
    QUALIFY row_number() OVER (PARTITION BY ticker ORDER BY valid_from DESC) = 1
),
stock_list AS (
    SELECT symbol AS ticker, company_name, fetched_at
    FROM silver.fmp_stock_list
    WHERE ($tickers IS NULL OR list_contains($tickers, symbol))
),
profile AS (
    SELECT *
    FROM silver.fmp_company_profile
    WHERE ($tickers IS NULL OR list_contains($tickers, ticker))
),
tickers AS (
    SELECT ticker FROM stock_list
    UNION
    SELECT ticker FROM profile
)
SELECT t.ticker,
       coalesce(p.company_name, s.company_name) AS name,
       p.exchange, p.sector, p.industry, p.country, p.currency, p.is_etf, p.is_actively_trading, p.ipo_date,
       s.ticker IS NOT NULL AS in_stock_list,
       p.ticker IS NOT NULL AS has_profile,
       -- when the descriptive attributes last changed (stock-list-only symbols: when the list was fetched)
       coalesce(v.valid_from, p.fetched_at, s.fetched_at) AS last_changed_at,
       p.fetched_at AS profile_fetched_at
FROM tickers t
LEFT JOIN profile p ON p.ticker = t.ticker
LEFT JOIN stock_list s ON s.ticker = t.ticker
LEFT JOIN current_version v ON v.ticker = t.ticker
""",
)


# ---- shared building blocks: as-traded bars and the share basis -------------------------------------------
#
# FMP's semantics (fmp_api.md section 1) decide every formula below:
# - `/historical-price-eod/non-split-adjusted` (silver.fmp_price_eod_as_traded) is as traded: the source of truth.
# - `/historical-price-eod/full` (silver.fmp_price_eod) is split-adjusted on the share basis of the day it was
#   fetched, and FMP rewrites that history after every split; a row is read with its own fetched_at, so rows
#   fetched before and after a split are each put back on the as-traded basis correctly.
# - statement share counts and EPS are restated onto the basis of their fetch day, too.
# cum(t) is the number of shares per original share after the splits effective on or before t (a split dated s
# is effective from the trading day s). Splits dated after a ticker's last price are announcements: ignored.

NY_DATE = "CAST(timezone('America/New_York', timezone('UTC', {ts})) AS DATE)"   # ET date of a UTC timestamp


def _ny_date(column: str) -> str:
    return NY_DATE.format(ts=column)


def _served_on(alias: str) -> str:
    """The day the source served a Silver row (its share basis): from the ledger, else the row's fetch day."""
    return f"coalesce({alias}_served.served_on, {_ny_date(alias + '.fetched_at')})"


def _join_served_on(alias: str) -> str:
    return f"LEFT JOIN served_on {alias}_served ON {alias}_served.file_id = {alias}.bronze_file_id"


PRICE_CTE = f"""
-- The day a source answered fixes the share basis FMP served: the fetch day in New York, or the planning day when
-- that is earlier (the bundled sample source, the test fakes and a PIPELINE_AS_OF replay answer as of that day).
served_on AS (
    SELECT file_id, least({_ny_date('fetched_at')}, coalesce(as_of, {_ny_date('fetched_at')})) AS served_on
    FROM ops.file_ingestions
),
as_traded AS (
    SELECT ticker, date, open, high, low, close, volume
    FROM silver.fmp_price_eod_as_traded
    WHERE ($tickers IS NULL OR list_contains($tickers, ticker))
),
full_rows AS (
    -- split-adjusted on the basis of the fetch day (FMP rewrites /full after each split)
    SELECT f.ticker, f.date, f.open, f.high, f.low, f.close, f.volume, {_served_on('f')} AS basis_date
    FROM silver.fmp_price_eod f
    {_join_served_on('f')}
    WHERE ($tickers IS NULL OR list_contains($tickers, f.ticker))
),
price_days AS (
    SELECT ticker, date FROM as_traded
    UNION
    SELECT ticker, date FROM full_rows
),
last_price_day AS (
    SELECT ticker, max(date) AS last_date FROM price_days GROUP BY ticker
),
split_events AS (
    SELECT s.ticker, s.date, product(s.numerator / s.denominator) AS ratio
    FROM silver.fmp_splits s
    JOIN last_price_day l ON l.ticker = s.ticker AND s.date <= l.last_date
    WHERE s.numerator > 0 AND s.denominator > 0
    GROUP BY s.ticker, s.date
),
-- cum(t) from each split date on (look it up with an ASOF join on date <= t; no row = 1.0)
split_index AS (
    SELECT ticker, date,
           product(ratio) OVER (PARTITION BY ticker ORDER BY date ROWS UNBOUNDED PRECEDING) AS cum
    FROM split_events
),
-- cum_L: the current basis, after every split up to the last price
current_basis AS (
    SELECT ticker, product(ratio) AS cum_l FROM split_events GROUP BY ticker
),
derived_from_full AS (
    -- as traded = /full * k with k = cum(fetch day) / cum(day); volume / k
    SELECT f.*, coalesce(at_fetch.cum, 1.0) / coalesce(at_day.cum, 1.0) AS k
    FROM full_rows f
    ASOF LEFT JOIN split_index at_fetch ON at_fetch.ticker = f.ticker AND at_fetch.date <= f.basis_date
    ASOF LEFT JOIN split_index at_day ON at_day.ticker = f.ticker AND at_day.date <= f.date
    WHERE NOT EXISTS (SELECT 1 FROM as_traded a WHERE a.ticker = f.ticker AND a.date = f.date)
),
bars AS (
    SELECT ticker, date, open, high, low, close, volume, 'as_traded' AS price_source
    FROM as_traded
    UNION ALL
    SELECT ticker, date, open * k, high * k, low * k, close * k, CAST(round(volume / k) AS BIGINT),
           'derived_from_full'
    FROM derived_from_full
),
based_bars AS (
    SELECT b.*, coalesce(si.cum, 1.0) AS cum_day, coalesce(cb.cum_l, 1.0) AS cum_l,
           coalesce(si.cum, 1.0) / coalesce(cb.cum_l, 1.0) AS split_factor
    FROM bars b
    ASOF LEFT JOIN split_index si ON si.ticker = b.ticker AND si.date <= b.date
    LEFT JOIN current_basis cb ON cb.ticker = b.ticker
)"""


# ---- prices ---------------------------------------------------------------------------------------------

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
    inputs=("fmp_price_eod_as_traded", "fmp_price_eod", "fmp_splits", "fmp_dividends"),
    columns=_cols("""
        ticker VARCHAR, date DATE, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume BIGINT,
        price_source VARCHAR, split_factor DOUBLE,
        split_adj_open DOUBLE, split_adj_high DOUBLE, split_adj_low DOUBLE, split_adj_close DOUBLE,
        split_adj_volume BIGINT, total_return_factor DOUBLE, tr_close DOUBLE,
        return_1d DOUBLE, total_return_1d DOUBLE, log_return_1d DOUBLE, sma_20 DOUBLE, sma_50 DOUBLE, sma_200 DOUBLE,
        high_52w DOUBLE, low_52w DOUBLE, trading_days_per_year INTEGER, realized_vol_20d DOUBLE"""),
    key=("ticker", "date"),
    descriptions=PRICE_DESCRIPTIONS,
    # where the plan lacks /non-split-adjusted, bars are derived from /full and the splits: say how many
    report_sql="SELECT 'bars_' || price_source, count(*) FROM gold.fact_price_daily GROUP BY ALL ORDER BY 1",
    sql=f"""
WITH {PRICE_CTE},
split_adjusted AS (
    SELECT *, open * split_factor AS split_adj_open, high * split_factor AS split_adj_high,
           low * split_factor AS split_adj_low, close * split_factor AS split_adj_close,
           CAST(round(volume / split_factor) AS BIGINT) AS split_adj_volume
    FROM based_bars
),
-- A dividend on ex-date D (declared per share of D's basis) and the previous close, both on the current basis.
dividend_events AS (
    SELECT d.ticker, d.date,
           coalesce(d.dividend, d.adj_dividend * coalesce(at_fetch.cum, 1.0) / coalesce(at_ex.cum, 1.0))
               * coalesce(at_ex.cum, 1.0) / coalesce(cb.cum_l, 1.0) AS amount,
           prev.split_adj_close AS prev_close
    FROM silver.fmp_dividends d
    JOIN last_price_day l ON l.ticker = d.ticker AND d.date <= l.last_date
    LEFT JOIN current_basis cb ON cb.ticker = d.ticker
    ASOF LEFT JOIN split_index at_ex ON at_ex.ticker = d.ticker AND at_ex.date <= d.date
    {_join_served_on('d')}
    ASOF LEFT JOIN split_index at_fetch ON at_fetch.ticker = d.ticker AND at_fetch.date <= {_served_on('d')}
    ASOF JOIN split_adjusted prev ON prev.ticker = d.ticker AND prev.date < d.date
    WHERE ($tickers IS NULL OR list_contains($tickers, d.ticker))
),
dividend_factors AS (
    SELECT ticker, date, product(1 - amount / prev_close) AS factor
    FROM dividend_events
    WHERE amount > 0 AND prev_close > 0
    GROUP BY ticker, date
),
-- tr_factor(day) = product of the factors of the ex-dates after the day
dividend_cumulative AS (
    SELECT ticker, date,
           product(factor) OVER (PARTITION BY ticker ORDER BY date DESC ROWS UNBOUNDED PRECEDING) AS tr_factor
    FROM dividend_factors
),
with_total_return AS (
    SELECT s.*, coalesce(c.tr_factor, 1.0) AS total_return_factor,
           s.split_adj_close * coalesce(c.tr_factor, 1.0) AS tr_close
    FROM split_adjusted s
    ASOF LEFT JOIN dividend_cumulative c ON c.ticker = s.ticker AND s.date < c.date   -- first ex-date after the day
),
with_returns AS (
    SELECT *,
           split_adj_close / lag(split_adj_close) OVER by_day - 1 AS return_1d,
           tr_close / lag(tr_close) OVER by_day - 1 AS total_return_1d,
           CASE WHEN split_adj_close > 0 AND lag(split_adj_close) OVER by_day > 0
                THEN ln(split_adj_close / lag(split_adj_close) OVER by_day) END AS log_return_1d,
           min(date) OVER (PARTITION BY ticker) <= date - 364 AS has_full_year
    FROM with_total_return
    WINDOW by_day AS (PARTITION BY ticker ORDER BY date)
)
SELECT ticker, date, open, high, low, close, volume, price_source, split_factor,
       split_adj_open, split_adj_high, split_adj_low, split_adj_close, split_adj_volume,
       total_return_factor, tr_close, return_1d, total_return_1d, log_return_1d,
       CASE WHEN count(*) OVER last_20 = 20 THEN avg(split_adj_close) OVER last_20 END AS sma_20,
       CASE WHEN count(*) OVER last_50 = 50 THEN avg(split_adj_close) OVER last_50 END AS sma_50,
       CASE WHEN count(*) OVER last_200 = 200 THEN avg(split_adj_close) OVER last_200 END AS sma_200,
       CASE WHEN has_full_year THEN max(split_adj_high) OVER last_365_days END AS high_52w,
       CASE WHEN has_full_year THEN min(split_adj_low) OVER last_365_days END AS low_52w,
       CASE WHEN has_full_year THEN count(*) OVER last_365_days END AS trading_days_per_year,
       CASE WHEN has_full_year AND count(log_return_1d) OVER last_20 = 20
            THEN stddev_samp(log_return_1d) OVER last_20 * sqrt(count(*) OVER last_365_days) END AS realized_vol_20d
FROM with_returns
WINDOW last_20 AS (PARTITION BY ticker ORDER BY date ROWS BETWEEN 19 PRECEDING AND CURRENT ROW),
       last_50 AS (PARTITION BY ticker ORDER BY date ROWS BETWEEN 49 PRECEDING AND CURRENT ROW),
       last_200 AS (PARTITION BY ticker ORDER BY date ROWS BETWEEN 199 PRECEDING AND CURRENT ROW),
       -- 365 calendar days ending today, both ends included: (date - 365 days, date]
       last_365_days AS (PARTITION BY ticker ORDER BY date
                         RANGE BETWEEN INTERVAL 364 DAYS PRECEDING AND CURRENT ROW)
""",
)


# ---- fundamentals ---------------------------------------------------------------------------------------

# One row per (ticker, period_end, period) from the three statements. A row is known once all of its
# statements are accepted, so accepted_date is the latest of theirs. Share counts and EPS come from the income
# statement, restated by FMP onto the basis of its fetch day; they are put on the current basis here.
STATEMENTS_CTE = f"""
statement_keys AS (
    SELECT ticker, date, period FROM silver.fmp_income_statement
    WHERE list_contains($periods, period) AND ($tickers IS NULL OR list_contains($tickers, ticker))
    UNION
    SELECT ticker, date, period FROM silver.fmp_balance_sheet
    WHERE list_contains($periods, period) AND ($tickers IS NULL OR list_contains($tickers, ticker))
    UNION
    SELECT ticker, date, period FROM silver.fmp_cash_flow
    WHERE list_contains($periods, period) AND ($tickers IS NULL OR list_contains($tickers, ticker))
),
statements_raw AS (
    SELECT k.ticker, k.date AS period_end, k.period,
           coalesce(i.fiscal_year, b.fiscal_year, c.fiscal_year) AS fiscal_year,
           coalesce(i.reported_currency, b.reported_currency, c.reported_currency) AS reported_currency,
           greatest(i.filing_date, b.filing_date, c.filing_date) AS filing_date,
           greatest(i.accepted_date, b.accepted_date, c.accepted_date) AS accepted_date,
           {_served_on('i')} AS share_basis_date,
           -- income statement
           i.revenue, i.gross_profit, i.operating_income, i.net_income, i.ebitda,
           i.eps AS eps_served, i.eps_diluted AS eps_diluted_served,
           i.weighted_average_shs_out AS shares_served, i.weighted_average_shs_out_dil AS shares_dil_served,
           -- balance sheet
           b.total_assets, b.total_liabilities, b.total_equity, b.total_stockholders_equity,
           b.cash_and_cash_equivalents, b.total_debt,
           coalesce(b.net_debt, b.total_debt - b.cash_and_cash_equivalents) AS net_debt,
           -- cash flow (outflows negative, as reported)
           c.operating_cash_flow, c.capital_expenditure, c.free_cash_flow,
           coalesce(c.net_dividends_paid, c.common_dividends_paid) AS dividends_paid
    FROM statement_keys k
    LEFT JOIN silver.fmp_income_statement i ON i.ticker = k.ticker AND i.date = k.date AND i.period = k.period
    LEFT JOIN silver.fmp_balance_sheet b ON b.ticker = k.ticker AND b.date = k.date AND b.period = k.period
    LEFT JOIN silver.fmp_cash_flow c ON c.ticker = k.ticker AND c.date = k.date AND c.period = k.period
    {_join_served_on('i')}
),
-- The moment a statement becomes knowable: its EDGAR acceptance (US Eastern wall clock); without one, the day
-- after its filing date.
statements_timed AS (
    SELECT *, coalesce(accepted_date, CAST(filing_date + 1 AS TIMESTAMP)) AS knowable_at
    FROM statements_raw
),
price_closes AS (
    SELECT ticker, date, date + INTERVAL 16 HOUR AS close_at FROM price_days   -- the 16:00 New York close
),
statements AS (
    SELECT s.* EXCLUDE (eps_served, eps_diluted_served, shares_served, shares_dil_served, knowable_at),
           -- the first close at or after the acceptance; past the last known price, the weekday rule
           coalesce(p.date,
                    CASE WHEN isodow(s.knowable_at) <= 5 AND CAST(s.knowable_at AS TIME) <= TIME '16:00:00'
                         THEN CAST(s.knowable_at AS DATE)
                         ELSE CAST(s.knowable_at AS DATE)
                              + CASE isodow(s.knowable_at) WHEN 5 THEN 3 WHEN 6 THEN 2 ELSE 1 END END) AS usable_from,
           coalesce(at_fetch.cum, 1.0) AS cum_fetch, coalesce(cb.cum_l, 1.0) AS cum_l,
           s.shares_served * coalesce(cb.cum_l, 1.0) / coalesce(at_fetch.cum, 1.0) AS weighted_average_shs_out,
           s.shares_dil_served * coalesce(cb.cum_l, 1.0) / coalesce(at_fetch.cum, 1.0) AS weighted_average_shs_out_dil,
           s.eps_served * coalesce(at_fetch.cum, 1.0) / coalesce(cb.cum_l, 1.0) AS eps,
           s.eps_diluted_served * coalesce(at_fetch.cum, 1.0) / coalesce(cb.cum_l, 1.0) AS eps_diluted,
           s.shares_served, s.shares_dil_served
    FROM statements_timed s
    ASOF LEFT JOIN price_closes p ON p.ticker = s.ticker AND s.knowable_at <= p.close_at
    ASOF LEFT JOIN split_index at_fetch ON at_fetch.ticker = s.ticker AND at_fetch.date <= s.share_basis_date
    LEFT JOIN current_basis cb ON cb.ticker = s.ticker
)"""

# Trailing twelve months over the last 4 quarterly rows; NULL unless those 4 rows are consecutive quarters
# (the oldest period end at most ~300 days before the newest; a gap makes it ~365) and all have the item.
# EPS is summed on the current share basis, so quarters on either side of a split add up.
TTM_ITEMS = ("revenue", "gross_profit", "operating_income", "net_income", "ebitda", "eps", "operating_cash_flow",
             "capital_expenditure", "free_cash_flow", "dividends_paid")


def _ttm_cte() -> str:
    sums = ",\n".join(f"           CASE WHEN count({c}) OVER last_4 = 4 THEN sum({c}) OVER last_4 END AS {c}_4q"
                      for c in TTM_ITEMS)
    picks = ",\n".join(f"           CASE WHEN has_4_quarters THEN {c}_4q END AS {c}_ttm" for c in TTM_ITEMS)
    excluded = ", ".join(f"{c}_4q" for c in TTM_ITEMS)
    return f"""
statement_windows AS (
    SELECT *,
           count(*) OVER last_4 = 4
               AND date_diff('day', min(period_end) OVER last_4, period_end) <= 300 AS has_4_quarters,
{sums}
    FROM statements
    WINDOW last_4 AS (PARTITION BY ticker ORDER BY period_end ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)
),
ttm AS (
    SELECT * EXCLUDE (has_4_quarters, {excluded}),
{picks}
    FROM statement_windows
)"""


TTM_CTE = _ttm_cte()

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

_METRICS_SELECT = """
       km.enterprise_value, km.ev_to_ebitda, km.return_on_equity, km.return_on_assets,
       km.return_on_invested_capital, km.earnings_yield, km.free_cash_flow_yield,
       r.gross_profit_margin, r.operating_profit_margin, r.net_profit_margin,
       coalesce(r.current_ratio, km.current_ratio) AS current_ratio, r.quick_ratio, r.debt_to_equity_ratio,
       r.interest_coverage_ratio, r.dividend_payout_ratio,
       r.book_value_per_share * coalesce(r_fetch.cum, 1.0) / s.cum_l AS book_value_per_share,
       r.price_to_earnings_ratio"""
_METRICS_JOIN = f"""
LEFT JOIN silver.fmp_key_metrics km ON km.ticker = s.ticker AND km.date = s.period_end AND km.period = s.period
LEFT JOIN silver.fmp_ratios r ON r.ticker = s.ticker AND r.date = s.period_end AND r.period = s.period
{_join_served_on('r')}
ASOF LEFT JOIN split_index r_fetch ON r_fetch.ticker = s.ticker AND r_fetch.date <= {_served_on('r')}"""

STATEMENT_INPUTS = ("fmp_income_statement", "fmp_balance_sheet", "fmp_cash_flow")
PRICE_INPUTS = ("fmp_price_eod_as_traded", "fmp_price_eod", "fmp_splits")
FUNDAMENTALS_INPUTS = STATEMENT_INPUTS + ("fmp_key_metrics", "fmp_ratios") + PRICE_INPUTS


def _fundamentals_select(source: str) -> str:
    return f"""
SELECT s.* EXCLUDE (cum_fetch, cum_l, shares_served, shares_dil_served),{_METRICS_SELECT}
FROM {source} s{_METRICS_JOIN}
"""


FACT_FUNDAMENTALS_QUARTERLY = GoldModel(
    name="fact_fundamentals_quarterly",
    inputs=FUNDAMENTALS_INPUTS,
    columns=FUNDAMENTALS_COLUMNS + TTM_COLUMNS,
    key=("ticker", "period_end", "period"),
    periods=QUARTERS,
    descriptions=FUNDAMENTALS_DESCRIPTIONS,
    sql=f"WITH {PRICE_CTE},\n{STATEMENTS_CTE},\n{TTM_CTE}\n{_fundamentals_select('ttm')}",
)

FACT_FUNDAMENTALS_ANNUAL = GoldModel(
    name="fact_fundamentals_annual",
    inputs=FUNDAMENTALS_INPUTS,
    columns=FUNDAMENTALS_COLUMNS,
    key=("ticker", "period_end", "period"),
    periods=ANNUAL,
    descriptions=FUNDAMENTALS_DESCRIPTIONS,
    sql=f"WITH {PRICE_CTE},\n{STATEMENTS_CTE}\n{_fundamentals_select('statements')}",
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
    inputs=PRICE_INPUTS + ("fmp_dividends",) + STATEMENT_INPUTS,
    columns=_cols("""
        ticker VARCHAR, date DATE, close DOUBLE,
        statement_period_end DATE, statement_period VARCHAR, statement_fiscal_year INTEGER,
        statement_filing_date DATE, statement_accepted_at TIMESTAMP, statement_usable_from DATE,
        share_basis_factor DOUBLE, shares_outstanding DOUBLE, market_cap DOUBLE, net_debt DOUBLE,
        enterprise_value DOUBLE, revenue_ttm DOUBLE, net_income_ttm DOUBLE, ebitda_ttm DOUBLE,
        free_cash_flow_ttm DOUBLE, book_value DOUBLE, eps_ttm DOUBLE, pe_ttm DOUBLE, pb DOUBLE, ps_ttm DOUBLE,
        ev_to_ebitda_ttm DOUBLE, dividends_ttm_per_share DOUBLE, dividend_yield_ttm DOUBLE, fcf_yield DOUBLE"""),
    key=("ticker", "date"),
    periods=QUARTERS,
    descriptions=VALUATION_DESCRIPTIONS,
    sql=f"""
WITH {PRICE_CTE},
{STATEMENTS_CTE},
{TTM_CTE},
usable AS (
    SELECT t.*,
           max(t.period_end) OVER (PARTITION BY t.ticker ORDER BY t.usable_from, t.period_end
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newest_period_before
    FROM ttm t
    WHERE t.usable_from IS NOT NULL
),
-- The statement in force from each usable day: a late filing for an older period never replaces a newer period
-- already usable, and of two usable the same day the newer period wins.
in_force AS (
    SELECT *
    FROM usable
    WHERE newest_period_before IS NULL OR period_end > newest_period_before
    QUALIFY row_number() OVER (PARTITION BY ticker, usable_from ORDER BY period_end DESC) = 1
),
-- Regular dividends: amount per original share (declared amount * cum(ex-date)), N payments per year.
regular_dividends AS (
    SELECT d.ticker, d.date,
           coalesce(d.dividend, d.adj_dividend * coalesce(at_fetch.cum, 1.0) / coalesce(at_ex.cum, 1.0))
               * coalesce(at_ex.cum, 1.0) AS amount_per_original_share,
           CASE WHEN d.frequency IS NULL OR trim(d.frequency) = '' THEN 4
                ELSE CASE lower(replace(trim(d.frequency), '-', ''))
                         WHEN 'monthly' THEN 12 WHEN 'quarterly' THEN 4 WHEN 'semiannual' THEN 2
                         WHEN 'annual' THEN 1 WHEN 'yearly' THEN 1 END END AS per_year
    FROM silver.fmp_dividends d
    ASOF LEFT JOIN split_index at_ex ON at_ex.ticker = d.ticker AND at_ex.date <= d.date
    {_join_served_on('d')}
    ASOF LEFT JOIN split_index at_fetch ON at_fetch.ticker = d.ticker AND at_fetch.date <= {_served_on('d')}
    WHERE ($tickers IS NULL OR list_contains($tickers, d.ticker))
),
numbered_dividends AS (
    SELECT *, row_number() OVER (PARTITION BY ticker ORDER BY date) AS n
    FROM regular_dividends
    WHERE per_year IS NOT NULL AND amount_per_original_share > 0
),
dividends_ttm AS (
    SELECT b.ticker, b.date, sum(d.amount_per_original_share) / any_value(b.cum_day) AS per_share
    FROM based_bars b
    ASOF JOIN numbered_dividends latest ON latest.ticker = b.ticker AND latest.date <= b.date
    JOIN numbered_dividends d ON d.ticker = b.ticker AND d.n > latest.n - latest.per_year AND d.n <= latest.n
                             AND date_diff('day', d.date, b.date) < 365 + 182.0 / latest.per_year
    GROUP BY b.ticker, b.date
),
priced AS (
    SELECT b.ticker, b.date, b.close, b.cum_day, s.* EXCLUDE (ticker),
           coalesce(dv.per_share, 0.0) AS dividends_ttm_per_share
    FROM based_bars b
    ASOF LEFT JOIN in_force s ON s.ticker = b.ticker AND s.usable_from <= b.date
    LEFT JOIN dividends_ttm dv ON dv.ticker = b.ticker AND dv.date = b.date
),
valued AS (
    SELECT *,
           cum_day / cum_fetch AS share_basis_factor,
           coalesce(shares_served, shares_dil_served) * cum_day / cum_fetch AS shares_outstanding,
           eps_ttm * cum_l / cum_day AS eps_ttm_day,
           close * coalesce(shares_served, shares_dil_served) * cum_day / cum_fetch AS market_cap_day,
           coalesce(total_stockholders_equity, total_equity) AS book
    FROM priced
)
SELECT ticker, date, close,
       period_end AS statement_period_end, period AS statement_period, fiscal_year AS statement_fiscal_year,
       filing_date AS statement_filing_date, accepted_date AS statement_accepted_at,
       usable_from AS statement_usable_from,
       share_basis_factor, shares_outstanding,
       market_cap_day AS market_cap,
       net_debt,
       market_cap_day + net_debt AS enterprise_value,
       revenue_ttm, net_income_ttm, ebitda_ttm, free_cash_flow_ttm,
       book AS book_value,
       eps_ttm_day AS eps_ttm,
       CASE WHEN eps_ttm_day > 0 THEN close / eps_ttm_day END AS pe_ttm,
       CASE WHEN book > 0 THEN market_cap_day / book END AS pb,
       CASE WHEN revenue_ttm > 0 THEN market_cap_day / revenue_ttm END AS ps_ttm,
       CASE WHEN ebitda_ttm > 0 THEN (market_cap_day + net_debt) / ebitda_ttm END AS ev_to_ebitda_ttm,
       dividends_ttm_per_share,
       CASE WHEN close > 0 THEN dividends_ttm_per_share / close END AS dividend_yield_ttm,
       CASE WHEN market_cap_day > 0 THEN free_cash_flow_ttm / market_cap_day END AS fcf_yield
FROM valued
""",
)


# ---- macro ----------------------------------------------------------------------------------------------

TREASURY_COLUMNS = ("month1", "month2", "month3", "month6", "year1", "year2", "year3", "year5", "year7",
                    "year10", "year20", "year30")
MACRO_INPUTS = ("fmp_treasury_rates", "fmp_economic_indicator", "fmp_economic_calendar",
                "fmp_price_eod_as_traded", "fmp_price_eod")


def snake_name(name: str) -> str:
    """FMP indicator name -> column name: 'realGDP' -> 'real_gdp', 'unemploymentRate' -> 'unemployment_rate'."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    text = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    if not text or text[0].isdigit():
        text = f"indicator_{text}"
    if text in ("date", "treasury_date") or text in TREASURY_COLUMNS:
        text = f"{text}_indicator"
    return text


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _release_ctes() -> str:
    """The indicator -> calendar event mapping and the fallback lags, as SQL VALUES."""
    events = [(name, event) for name, rule in RELEASES.items() for event in rule.events]
    lags = [(name, rule.lag_days) for name, rule in RELEASES.items()]
    event_rows = ",\n        ".join(f"({_sql_literal(n)}, {_sql_literal(e)})" for n, e in events)
    lag_rows = ",\n        ".join(f"({_sql_literal(n)}, {d})" for n, d in lags)
    return f"""
release_events(name, event) AS (
    VALUES
        {event_rows}
),
release_lags(name, lag_days) AS (
    VALUES
        {lag_rows}
)"""


def macro_model(indicator_names: list[str]) -> GoldModel:
    """The macro table has three columns per indicator present in Silver, so its model is made per build."""
    columns = {snake_name(n): n for n in sorted(indicator_names)}   # first spelling wins on a clash
    treasury = ", ".join(f"t.{c}" for c in TREASURY_COLUMNS)
    indicator_select, indicator_joins = "", ""
    for i, (col, name) in enumerate(columns.items()):
        alias = f"i{i}"
        indicator_select += (f",\n       {alias}.value AS {col}, {alias}.period_start AS {col}_period, "
                             f"{alias}.known_from AS {col}_known_from")
        indicator_joins += (f"\nASOF LEFT JOIN (FROM known_values WHERE name = {_sql_literal(name)}) {alias}"
                            f" ON {alias}.as_of <= c.date")
    sql = f"""
WITH price_dates AS (
    SELECT date FROM silver.fmp_price_eod_as_traded
    UNION
    SELECT date FROM silver.fmp_price_eod
),
-- Without prices: every weekday between the first and last macro observation.
macro_span AS (
    SELECT least((SELECT min(date) FROM silver.fmp_treasury_rates),
                 (SELECT min(date) FROM silver.fmp_economic_indicator)) AS first_date,
           greatest((SELECT max(date) FROM silver.fmp_treasury_rates),
                    (SELECT max(date) FROM silver.fmp_economic_indicator)) AS last_date
),
weekdays AS (
    SELECT CAST(day AS DATE) AS date
    FROM macro_span, range(first_date, last_date + INTERVAL 1 DAY, INTERVAL 1 DAY) AS days(day)
    WHERE isodow(day) <= 5
),
dates AS (
    SELECT date FROM price_dates
    UNION ALL
    SELECT date FROM weekdays WHERE NOT EXISTS (SELECT 1 FROM price_dates)
),
curve AS (
    SELECT d.date, t.date AS treasury_date, {treasury}
    FROM dates d
    ASOF LEFT JOIN silver.fmp_treasury_rates t ON t.date <= d.date
),{_release_ctes()},
-- FMP dates an indicator at the start of its reference period; the period ends where the next one starts.
observations AS (
    SELECT name, date AS period_start, value,
           -- the newest period is as long as the one before it: in months when periods start on the 1st
           coalesce(lead(date) OVER by_period - 1,
                    CASE WHEN day(date) = 1 AND day(lag(date) OVER by_period) = 1
                         THEN CAST(date + to_months(CAST(date_diff('month', lag(date) OVER by_period, date) AS INTEGER))
                                   AS DATE) - 1
                         ELSE date + CAST(date - lag(date) OVER by_period AS INTEGER) - 1 END,
                    CAST(date + INTERVAL 1 MONTH AS DATE) - 1) AS period_end
    FROM silver.fmp_economic_indicator
    WINDOW by_period AS (PARTITION BY name ORDER BY date)
),
us_releases AS (
    SELECT event, timezone('America/New_York', timezone('UTC', released_at)) AS released_ny
    FROM silver.fmp_economic_calendar
    WHERE country = 'US'
),
-- The first mapped US release after the period ends (within 120 days) published the value.
released AS (
    SELECT o.*,
           (SELECT min(r.released_ny)
            FROM us_releases r JOIN release_events m ON m.event = r.event
            WHERE m.name = o.name
              AND CAST(r.released_ny AS DATE) > o.period_end
              AND CAST(r.released_ny AS DATE) <= o.period_end + 120) AS released_ny,
           (SELECT lag_days FROM release_lags l WHERE l.name = o.name) AS lag_days
    FROM observations o
),
known AS (
    SELECT name, period_start, value,
           CASE WHEN released_ny IS NOT NULL
                THEN CAST(released_ny AS DATE)
                     + CASE WHEN CAST(released_ny AS TIME) <= TIME '16:00:00' THEN 0 ELSE 1 END
                ELSE period_end + CAST(coalesce(lag_days, {DEFAULT_RELEASE_LAG_DAYS}) AS INTEGER) END AS known_from
    FROM released
),
-- On each day: the newest reference period among the values already known.
newest_known AS (
    SELECT name, known_from,
           max(max(period_start)) OVER (PARTITION BY name ORDER BY known_from ROWS UNBOUNDED PRECEDING) AS period_start
    FROM known
    GROUP BY name, known_from
),
known_values AS (
    SELECT n.name, n.known_from AS as_of, k.period_start, k.value, k.known_from
    FROM newest_known n
    JOIN known k ON k.name = n.name AND k.period_start = n.period_start
)
SELECT c.*{indicator_select}
FROM curve c{indicator_joins}
"""
    cols = (("date", "DATE"), ("treasury_date", "DATE")) + tuple((c, "DOUBLE") for c in TREASURY_COLUMNS)
    descriptions = {"treasury_date": "Date of the Treasury curve shown (the latest on or before date)."}
    for col, name in columns.items():
        cols += ((col, "DOUBLE"), (f"{col}_period", "DATE"), (f"{col}_known_from", "DATE"))
        rule = RELEASES.get(name)
        how = (f"the first US '{rule.events[0]}' release after the period ends, else {rule.lag_days} days after it"
               if rule and rule.events else
               f"{rule.lag_days if rule else DEFAULT_RELEASE_LAG_DAYS} days after the period ends (no calendar event)")
        descriptions[col] = f"FMP indicator {name} as known on date: the newest reference period already released."
        descriptions[f"{col}_period"] = f"Start of the reference period of {col} (FMP's date)."
        descriptions[f"{col}_known_from"] = f"The day {col} became usable: {how}."
    return GoldModel(name="fact_macro_daily", inputs=MACRO_INPUTS, columns=cols, key=("date",), sql=sql,
                     per_ticker=False, descriptions=descriptions)


def indicator_names(conn: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT DISTINCT name FROM silver.fmp_economic_indicator WHERE name IS NOT NULL ORDER BY 1").fetchall()]


MODELS: dict[str, GoldModel] = {m.name: m for m in (
    DIM_INSTRUMENT, DIM_INSTRUMENT_HISTORY, FACT_PRICE_DAILY, FACT_FUNDAMENTALS_QUARTERLY,
    FACT_FUNDAMENTALS_ANNUAL, FACT_VALUATION_DAILY, macro_model([]),
)}


def resolve(conn: duckdb.DuckDBPyConnection, name: str) -> GoldModel:
    """The model to build now (the macro model depends on which indicators Silver holds)."""
    if name not in MODELS:
        raise ValueError(f"unknown Gold table {name!r}; known: {', '.join(sorted(MODELS))}")
    if name == "fact_macro_daily":
        return macro_model(indicator_names(conn))
    return MODELS[name]
