-- gold.dim_security: one row per security (a permanent id that is not the ticker), its identifiers and its life.
WITH
{% include '_security_master.sql' %}
SELECT i.security_id, s.ticker, s.root_ticker AS first_ticker, s.name, s.cik, s.isin, s.cusip, s.exchange,
       s.listed_on, s.delisted_on, s.delisting_served_on, s.is_active, s.source
FROM sm_security s
JOIN sm_ids i USING (security_key)
QUALIFY row_number() OVER (PARTITION BY i.security_id ORDER BY s.valid_to DESC NULLS FIRST, s.hid) = 1
