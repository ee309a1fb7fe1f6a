-- gold.fact_valuation_daily: point-in-time valuation per (ticker, day). A statement counts from the first close at
-- or after its acceptance; its restated share count is put on the day's share basis, so market cap is continuous
-- across splits. Ratios are NULL when their denominator is not positive.
WITH
{% include '_price_bars.sql' %},
{% include '_statements.sql' %},
{% include '_ttm.sql' %},
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
    {{ join_served_on('d') }}
    ASOF LEFT JOIN split_index at_fetch ON at_fetch.ticker = d.ticker AND at_fetch.date <= {{ served_on('d') }}
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
