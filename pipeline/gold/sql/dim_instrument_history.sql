-- gold.dim_instrument_history: every version of each instrument's descriptive attributes (SCD2).
WITH
{% include '_profile_versions.sql' %}
SELECT ticker, valid_from, valid_to, valid_to IS NULL AS is_current, version,
       name, exchange, sector, industry, country, currency, is_etf, is_actively_trading, ipo_date
FROM dim_versions
