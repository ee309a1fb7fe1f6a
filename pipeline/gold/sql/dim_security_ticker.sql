-- gold.dim_security_ticker: the ticker history (security_id, ticker, valid_from, valid_to), both ends included;
-- a ticker resolves to a security only together with a date (gold.security_at).
WITH
{% include '_security_master.sql' %}
SELECT security_id, ticker, valid_from, valid_to, source
FROM sm_ticker_history
QUALIFY row_number() OVER (PARTITION BY security_id, ticker ORDER BY valid_to DESC NULLS FIRST) = 1
