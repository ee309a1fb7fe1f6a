-- Shared CTEs: one row per (ticker, period_end, period) from the three statements, with the moment it became
-- usable and its share counts and EPS on the current basis. A row is known once all of its statements are
-- accepted, so accepted_date is the latest of theirs. Needs _price_bars.sql before it. Parameters: $tickers,
-- $periods (the fiscal periods: Q1..Q4 or FY), $sessions (DATE[]: the NYSE sessions).
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
           {{ served_on('i') }} AS share_basis_date,
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
    {{ join_served_on('i') }}
),
-- The moment a statement becomes knowable: its EDGAR acceptance (US Eastern wall clock); without one, the day
-- after its filing date.
statements_timed AS (
    SELECT *, coalesce(accepted_date, CAST(filing_date + 1 AS TIMESTAMP)) AS knowable_at
    FROM statements_raw
),
-- The NYSE sessions ($sessions, from pipeline.market_calendar) with their 16:00 New York close. Point in time is
-- decided on the exchange calendar, never on which price days the warehouse happens to hold: a statement accepted
-- years before the first price in the warehouse is usable from its own session.
session_closes AS (
    SELECT date, date + INTERVAL 16 HOUR AS close_at
    FROM (SELECT unnest(CAST($sessions AS DATE[])) AS date)
),
statements AS (
    SELECT s.* EXCLUDE (eps_served, eps_diluted_served, shares_served, shares_dil_served, knowable_at),
           -- the first session close at or after the acceptance; past the calendar's end, the weekday rule
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
    ASOF LEFT JOIN session_closes p ON s.knowable_at <= p.close_at
    ASOF LEFT JOIN split_index at_fetch ON at_fetch.ticker = s.ticker AND at_fetch.date <= s.share_basis_date
    LEFT JOIN current_basis cb ON cb.ticker = s.ticker
)
