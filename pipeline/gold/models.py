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
from dataclasses import dataclass

import duckdb

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


# ---- prices ---------------------------------------------------------------------------------------------

FACT_PRICE_DAILY = GoldModel(
    name="fact_price_daily",
    inputs=("fmp_price_eod", "fmp_splits", "fmp_dividends"),
    columns=_cols("""
        ticker VARCHAR, date DATE, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume BIGINT,
        adj_factor DOUBLE, adj_open DOUBLE, adj_high DOUBLE, adj_low DOUBLE, adj_close DOUBLE,
        return_1d DOUBLE, log_return_1d DOUBLE, sma_20 DOUBLE, sma_50 DOUBLE, sma_200 DOUBLE,
        high_52w DOUBLE, low_52w DOUBLE, realized_vol_20d DOUBLE"""),
    key=("ticker", "date"),
    sql="""
WITH prices AS (
    SELECT ticker, date, open, high, low, close, volume
    FROM silver.fmp_price_eod
    WHERE ($tickers IS NULL OR list_contains($tickers, ticker))
),
price_span AS (
    SELECT ticker, max(date) AS last_date FROM prices GROUP BY ticker
),
-- A split N:D on date S: prices before S are divided by N/D.
split_events AS (
    SELECT s.ticker, s.date, s.denominator / s.numerator AS factor
    FROM silver.fmp_splits s
    JOIN price_span ps ON ps.ticker = s.ticker AND s.date <= ps.last_date   -- not announced future splits
    WHERE s.numerator > 0 AND s.denominator > 0
),
-- An ex-dividend date D: prices before D are multiplied by 1 - dividend / close of the trading day before D
-- (both as traded on that day, so they are in the same share units).
dividend_events AS (
    SELECT d.ticker, d.date, 1 - coalesce(d.dividend, d.adj_dividend) / prev.close AS factor
    FROM silver.fmp_dividends d
    JOIN price_span ps ON ps.ticker = d.ticker AND d.date <= ps.last_date
    ASOF JOIN prices prev ON prev.ticker = d.ticker AND prev.date < d.date
    WHERE coalesce(d.dividend, d.adj_dividend) > 0 AND prev.close > 0
),
events AS (
    SELECT ticker, date, product(factor) AS factor
    FROM (SELECT * FROM split_events UNION ALL SELECT * FROM dividend_events)
    WHERE factor > 0
    GROUP BY ticker, date
),
-- The multiplier for a price before an event: this event's factor times every later one.
event_factors AS (
    SELECT ticker, date,
           product(factor) OVER (PARTITION BY ticker ORDER BY date DESC
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS cum_factor
    FROM events
),
adjusted AS (
    SELECT p.*, coalesce(e.cum_factor, 1.0) AS adj_factor
    FROM prices p
    ASOF LEFT JOIN event_factors e ON e.ticker = p.ticker AND p.date < e.date   -- first event after the day
),
with_adjusted AS (
    SELECT *, open * adj_factor AS adj_open, high * adj_factor AS adj_high, low * adj_factor AS adj_low,
           close * adj_factor AS adj_close
    FROM adjusted
),
with_returns AS (
    SELECT *,
           adj_close / lag(adj_close) OVER by_day - 1 AS return_1d,
           CASE WHEN adj_close > 0 AND lag(adj_close) OVER by_day > 0
                THEN ln(adj_close / lag(adj_close) OVER by_day) END AS log_return_1d
    FROM with_adjusted
    WINDOW by_day AS (PARTITION BY ticker ORDER BY date)
)
SELECT ticker, date, open, high, low, close, volume,
       adj_factor, adj_open, adj_high, adj_low, adj_close, return_1d, log_return_1d,
       CASE WHEN count(adj_close) OVER last_20 = 20 THEN avg(adj_close) OVER last_20 END AS sma_20,
       CASE WHEN count(adj_close) OVER last_50 = 50 THEN avg(adj_close) OVER last_50 END AS sma_50,
       CASE WHEN count(adj_close) OVER last_200 = 200 THEN avg(adj_close) OVER last_200 END AS sma_200,
       max(adj_high) OVER last_365_days AS high_52w,
       min(adj_low) OVER last_365_days AS low_52w,
       CASE WHEN count(log_return_1d) OVER last_20 = 20
            THEN stddev_samp(log_return_1d) OVER last_20 * sqrt(252) END AS realized_vol_20d
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
# statements are filed, so filing_date is the latest of their filing dates.
STATEMENTS_CTE = """
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
statements AS (
    SELECT k.ticker, k.date AS period_end, k.period,
           coalesce(i.fiscal_year, b.fiscal_year, c.fiscal_year) AS fiscal_year,
           coalesce(i.reported_currency, b.reported_currency, c.reported_currency) AS reported_currency,
           greatest(i.filing_date, b.filing_date, c.filing_date) AS filing_date,
           greatest(i.accepted_date, b.accepted_date, c.accepted_date) AS accepted_date,
           -- income statement
           i.revenue, i.gross_profit, i.operating_income, i.net_income, i.ebitda, i.eps, i.eps_diluted,
           i.weighted_average_shs_out, i.weighted_average_shs_out_dil,
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
)"""

# Trailing twelve months over the last 4 quarterly rows; NULL unless those 4 rows are consecutive quarters
# (the oldest period end at most ~300 days before the newest; a gap makes it ~365) and all have the item.
TTM_CTE = """
statement_windows AS (
    SELECT *,
           count(*) OVER last_4 = 4
               AND date_diff('day', min(period_end) OVER last_4, period_end) <= 300 AS has_4_quarters,
           CASE WHEN count(revenue) OVER last_4 = 4 THEN sum(revenue) OVER last_4 END AS revenue_4q,
           CASE WHEN count(gross_profit) OVER last_4 = 4 THEN sum(gross_profit) OVER last_4 END AS gross_profit_4q,
           CASE WHEN count(operating_income) OVER last_4 = 4 THEN sum(operating_income) OVER last_4 END AS operating_income_4q,
           CASE WHEN count(net_income) OVER last_4 = 4 THEN sum(net_income) OVER last_4 END AS net_income_4q,
           CASE WHEN count(ebitda) OVER last_4 = 4 THEN sum(ebitda) OVER last_4 END AS ebitda_4q,
           CASE WHEN count(eps) OVER last_4 = 4 THEN sum(eps) OVER last_4 END AS eps_4q,
           CASE WHEN count(operating_cash_flow) OVER last_4 = 4 THEN sum(operating_cash_flow) OVER last_4 END AS operating_cash_flow_4q,
           CASE WHEN count(capital_expenditure) OVER last_4 = 4 THEN sum(capital_expenditure) OVER last_4 END AS capital_expenditure_4q,
           CASE WHEN count(free_cash_flow) OVER last_4 = 4 THEN sum(free_cash_flow) OVER last_4 END AS free_cash_flow_4q,
           CASE WHEN count(dividends_paid) OVER last_4 = 4 THEN sum(dividends_paid) OVER last_4 END AS dividends_paid_4q
    FROM statements
    WINDOW last_4 AS (PARTITION BY ticker ORDER BY period_end ROWS BETWEEN 3 PRECEDING AND CURRENT ROW)
),
ttm AS (
    SELECT * EXCLUDE (has_4_quarters, revenue_4q, gross_profit_4q, operating_income_4q, net_income_4q,
                      ebitda_4q, eps_4q, operating_cash_flow_4q, capital_expenditure_4q, free_cash_flow_4q,
                      dividends_paid_4q),
           CASE WHEN has_4_quarters THEN revenue_4q END AS revenue_ttm,
           CASE WHEN has_4_quarters THEN gross_profit_4q END AS gross_profit_ttm,
           CASE WHEN has_4_quarters THEN operating_income_4q END AS operating_income_ttm,
           CASE WHEN has_4_quarters THEN net_income_4q END AS net_income_ttm,
           CASE WHEN has_4_quarters THEN ebitda_4q END AS ebitda_ttm,
           CASE WHEN has_4_quarters THEN eps_4q END AS eps_ttm,
           CASE WHEN has_4_quarters THEN operating_cash_flow_4q END AS operating_cash_flow_ttm,
           CASE WHEN has_4_quarters THEN capital_expenditure_4q END AS capital_expenditure_ttm,
           CASE WHEN has_4_quarters THEN free_cash_flow_4q END AS free_cash_flow_ttm,
           CASE WHEN has_4_quarters THEN dividends_paid_4q END AS dividends_paid_ttm
    FROM statement_windows
)"""

FUNDAMENTALS_COLUMNS = _cols("""
    ticker VARCHAR, period_end DATE, period VARCHAR, fiscal_year INTEGER, reported_currency VARCHAR,
    filing_date DATE, accepted_date TIMESTAMP,
    revenue DOUBLE, gross_profit DOUBLE, operating_income DOUBLE, net_income DOUBLE, ebitda DOUBLE,
    eps DOUBLE, eps_diluted DOUBLE, weighted_average_shs_out BIGINT, weighted_average_shs_out_dil BIGINT,
    total_assets DOUBLE, total_liabilities DOUBLE, total_equity DOUBLE, total_stockholders_equity DOUBLE,
    cash_and_cash_equivalents DOUBLE, total_debt DOUBLE, net_debt DOUBLE,
    operating_cash_flow DOUBLE, capital_expenditure DOUBLE, free_cash_flow DOUBLE, dividends_paid DOUBLE,
    enterprise_value DOUBLE, ev_to_ebitda DOUBLE, return_on_equity DOUBLE, return_on_assets DOUBLE,
    return_on_invested_capital DOUBLE, earnings_yield DOUBLE, free_cash_flow_yield DOUBLE,
    gross_profit_margin DOUBLE, operating_profit_margin DOUBLE, net_profit_margin DOUBLE,
    current_ratio DOUBLE, quick_ratio DOUBLE, debt_to_equity_ratio DOUBLE, interest_coverage_ratio DOUBLE,
    dividend_payout_ratio DOUBLE, book_value_per_share DOUBLE, price_to_earnings_ratio DOUBLE""")

TTM_COLUMNS = _cols("""
    revenue_ttm DOUBLE, gross_profit_ttm DOUBLE, operating_income_ttm DOUBLE, net_income_ttm DOUBLE,
    ebitda_ttm DOUBLE, eps_ttm DOUBLE, operating_cash_flow_ttm DOUBLE, capital_expenditure_ttm DOUBLE,
    free_cash_flow_ttm DOUBLE, dividends_paid_ttm DOUBLE""")

# FMP's published key metrics and ratios for the same period, as they are (not recomputed).
METRICS_SELECT = """
       km.enterprise_value, km.ev_to_ebitda, km.return_on_equity, km.return_on_assets,
       km.return_on_invested_capital, km.earnings_yield, km.free_cash_flow_yield,
       r.gross_profit_margin, r.operating_profit_margin, r.net_profit_margin,
       coalesce(r.current_ratio, km.current_ratio) AS current_ratio, r.quick_ratio, r.debt_to_equity_ratio,
       r.interest_coverage_ratio, r.dividend_payout_ratio, r.book_value_per_share, r.price_to_earnings_ratio"""
METRICS_JOIN = """
LEFT JOIN silver.fmp_key_metrics km ON km.ticker = s.ticker AND km.date = s.period_end AND km.period = s.period
LEFT JOIN silver.fmp_ratios r ON r.ticker = s.ticker AND r.date = s.period_end AND r.period = s.period"""

FUNDAMENTALS_INPUTS = ("fmp_income_statement", "fmp_balance_sheet", "fmp_cash_flow", "fmp_key_metrics", "fmp_ratios")

FACT_FUNDAMENTALS_QUARTERLY = GoldModel(
    name="fact_fundamentals_quarterly",
    inputs=FUNDAMENTALS_INPUTS,
    columns=FUNDAMENTALS_COLUMNS + TTM_COLUMNS,
    key=("ticker", "period_end", "period"),
    periods=QUARTERS,
    sql=f"""
WITH {STATEMENTS_CTE},
{TTM_CTE}
SELECT s.*,{METRICS_SELECT}
FROM ttm s{METRICS_JOIN}
""",
)

FACT_FUNDAMENTALS_ANNUAL = GoldModel(
    name="fact_fundamentals_annual",
    inputs=FUNDAMENTALS_INPUTS,
    columns=FUNDAMENTALS_COLUMNS,
    key=("ticker", "period_end", "period"),
    periods=ANNUAL,
    sql=f"""
WITH {STATEMENTS_CTE}
SELECT s.*,{METRICS_SELECT}
FROM statements s{METRICS_JOIN}
""",
)


# ---- valuation ------------------------------------------------------------------------------------------

FACT_VALUATION_DAILY = GoldModel(
    name="fact_valuation_daily",
    inputs=("fmp_price_eod", "fmp_splits", "fmp_dividends", "fmp_income_statement", "fmp_balance_sheet",
            "fmp_cash_flow"),
    columns=_cols("""
        ticker VARCHAR, date DATE, close DOUBLE,
        statement_period_end DATE, statement_period VARCHAR, statement_fiscal_year INTEGER,
        statement_filing_date DATE, split_factor_since_statement DOUBLE,
        shares_outstanding DOUBLE, market_cap DOUBLE, net_debt DOUBLE, enterprise_value DOUBLE,
        revenue_ttm DOUBLE, net_income_ttm DOUBLE, ebitda_ttm DOUBLE, free_cash_flow_ttm DOUBLE,
        book_value DOUBLE, eps_ttm DOUBLE, pe_ttm DOUBLE, pb DOUBLE, ps_ttm DOUBLE, ev_to_ebitda_ttm DOUBLE,
        dividends_ttm_per_share DOUBLE, dividend_yield_ttm DOUBLE, fcf_yield DOUBLE"""),
    key=("ticker", "date"),
    periods=QUARTERS,
    sql=f"""
WITH {STATEMENTS_CTE},
{TTM_CTE},
prices AS (
    SELECT ticker, date, close
    FROM silver.fmp_price_eod
    WHERE ($tickers IS NULL OR list_contains($tickers, ticker))
),
-- Shares per original share after every split so far (2:1 then 3:1 -> 2 then 6).
split_index AS (
    SELECT ticker, date,
           product(numerator / denominator) OVER (PARTITION BY ticker ORDER BY date
                                                  ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS shares_per_original
    FROM silver.fmp_splits
    WHERE numerator > 0 AND denominator > 0 AND ($tickers IS NULL OR list_contains($tickers, ticker))
),
filed AS (
    SELECT t.*, coalesce(si.shares_per_original, 1.0) AS split_index_at_period_end,
           max(t.period_end) OVER (PARTITION BY t.ticker ORDER BY t.filing_date, t.period_end
                                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS newest_period_filed_before
    FROM ttm t
    ASOF LEFT JOIN split_index si ON si.ticker = t.ticker AND si.date <= t.period_end
    WHERE t.filing_date IS NOT NULL
),
-- The statement in force from each filing date: a late filing for an older period never replaces a newer
-- period already filed, and of two filed the same day the newer period wins.
in_force AS (
    SELECT *
    FROM filed
    WHERE newest_period_filed_before IS NULL OR period_end > newest_period_filed_before
    QUALIFY row_number() OVER (PARTITION BY ticker, filing_date ORDER BY period_end DESC) = 1
),
-- Dividends in "original share" units, so that a trailing sum across a split is meaningful.
dividend_stream AS (
    SELECT d.ticker, d.date, coalesce(d.dividend, d.adj_dividend) * coalesce(si.shares_per_original, 1.0) AS amount
    FROM silver.fmp_dividends d
    ASOF LEFT JOIN split_index si ON si.ticker = d.ticker AND si.date <= d.date
    WHERE ($tickers IS NULL OR list_contains($tickers, d.ticker))
      AND coalesce(d.dividend, d.adj_dividend) IS NOT NULL
    UNION ALL
    SELECT ticker, date, NULL FROM prices
),
dividends_trailing AS (
    SELECT ticker, date,
           coalesce(sum(amount) OVER (PARTITION BY ticker ORDER BY date
                                      RANGE BETWEEN INTERVAL 364 DAYS PRECEDING AND CURRENT ROW), 0) AS amount_365d
    FROM dividend_stream
    QUALIFY amount IS NULL   -- keep the price rows
),
priced AS (
    SELECT p.ticker, p.date, p.close, s.*  EXCLUDE (ticker),
           coalesce(now_si.shares_per_original, 1.0) AS split_index_today,
           dt.amount_365d
    FROM prices p
    ASOF LEFT JOIN in_force s ON s.ticker = p.ticker AND s.filing_date <= p.date
    ASOF LEFT JOIN split_index now_si ON now_si.ticker = p.ticker AND now_si.date <= p.date
    LEFT JOIN dividends_trailing dt ON dt.ticker = p.ticker AND dt.date = p.date
),
valued AS (
    SELECT *,
           split_index_today / split_index_at_period_end AS split_factor_since_statement,
           coalesce(weighted_average_shs_out, weighted_average_shs_out_dil)
               * split_index_today / split_index_at_period_end AS shares_outstanding
    FROM priced
)
SELECT ticker, date, close,
       period_end AS statement_period_end, period AS statement_period, fiscal_year AS statement_fiscal_year,
       filing_date AS statement_filing_date, split_factor_since_statement,
       shares_outstanding,
       close * shares_outstanding AS market_cap,
       net_debt,
       close * shares_outstanding + net_debt AS enterprise_value,
       revenue_ttm, net_income_ttm, ebitda_ttm, free_cash_flow_ttm,
       coalesce(total_stockholders_equity, total_equity) AS book_value,
       -- per share in today's share units, so eps_ttm and close agree across a split
       net_income_ttm / nullif(shares_outstanding, 0) AS eps_ttm,
       close * shares_outstanding / nullif(net_income_ttm, 0) AS pe_ttm,
       close * shares_outstanding / nullif(coalesce(total_stockholders_equity, total_equity), 0) AS pb,
       close * shares_outstanding / nullif(revenue_ttm, 0) AS ps_ttm,
       (close * shares_outstanding + net_debt) / nullif(ebitda_ttm, 0) AS ev_to_ebitda_ttm,
       amount_365d / split_index_today AS dividends_ttm_per_share,
       amount_365d / split_index_today / nullif(close, 0) AS dividend_yield_ttm,
       free_cash_flow_ttm / nullif(close * shares_outstanding, 0) AS fcf_yield
FROM valued
""",
)


# ---- macro ----------------------------------------------------------------------------------------------

TREASURY_COLUMNS = ("month1", "month2", "month3", "month6", "year1", "year2", "year3", "year5", "year7",
                    "year10", "year20", "year30")
MACRO_INPUTS = ("fmp_treasury_rates", "fmp_economic_indicator", "fmp_price_eod")


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


def macro_model(indicator_names: list[str]) -> GoldModel:
    """The macro table has one column per indicator present in Silver, so its model is made per build."""
    columns = {snake_name(n): n for n in sorted(indicator_names)}   # first spelling wins on a clash
    treasury = ", ".join(f"t.{c}" for c in TREASURY_COLUMNS)
    if columns:
        names = ",\n        ".join(f"({_sql_literal(n)}, {_sql_literal(c)})" for c, n in columns.items())
        pivot_in = ", ".join(_sql_literal(c) for c in columns)
        indicator_ctes = f""",
indicator_columns(name, column_name) AS (
    VALUES
        {names}
),
-- The latest value of each indicator observed on or before each date.
indicator_latest AS (
    SELECT d.date, ic.column_name, i.value
    FROM dates d
    CROSS JOIN indicator_columns ic
    ASOF LEFT JOIN silver.fmp_economic_indicator i ON i.name = ic.name AND i.date <= d.date
),
indicators_wide AS (
    PIVOT indicator_latest ON column_name IN ({pivot_in}) USING first(value) GROUP BY date
)"""
        indicator_select = ", " + ", ".join(f"w.{c}" for c in columns)
        indicator_join = "\nLEFT JOIN indicators_wide w ON w.date = c.date"
    else:
        indicator_ctes, indicator_select, indicator_join = "", "", ""
    sql = f"""
WITH price_dates AS (
    SELECT DISTINCT date FROM silver.fmp_price_eod
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
){indicator_ctes}
SELECT c.*{indicator_select}
FROM curve c{indicator_join}
"""
    cols = (("date", "DATE"), ("treasury_date", "DATE")) + tuple((c, "DOUBLE") for c in TREASURY_COLUMNS) \
        + tuple((c, "DOUBLE") for c in columns)
    return GoldModel(name="fact_macro_daily", inputs=MACRO_INPUTS, columns=cols, key=("date",), sql=sql,
                     per_ticker=False)


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
