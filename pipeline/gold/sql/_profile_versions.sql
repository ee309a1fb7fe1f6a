-- Shared CTEs: gaps-and-islands over the profile history. Consecutive history rows with the same descriptive
-- attributes are one version; a version starts at the first fetch that carried it and ends when the next starts
-- (price, volume and market cap change on every fetch and must not make versions).
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
)
