-- gold.dim_instrument: one row per ticker from the stock list and the latest profile.
WITH
{% include '_profile_versions.sql' %},
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
