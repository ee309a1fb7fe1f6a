-- A fact table's rows with the security each belongs to, beside its ticker (DESIGN.md section 12): the security
-- holding the ticker on the row's date, else the ticker's current holder (FMP serves a symbol's whole history for
-- its current holder, fmp_api.md 3.4: a renamed company's history before its rename sits under the new symbol).
WITH
{% include '_security_master.sql' %},
sm_spell_starts AS (
    SELECT security_id, ticker, coalesce(valid_from, DATE '0001-01-01') AS valid_from, valid_to
    FROM sm_ticker_history
)
SELECT f.*,
       coalesce(CASE WHEN sp.valid_to IS NULL OR f.{{ date_column }} <= sp.valid_to THEN sp.security_id END,
                ch.security_id,
                CAST(('0x' || substr(md5(f.ticker || '|'), 1, 15)) AS BIGINT)) AS security_id
FROM (
{{ inner }}
) f
ASOF LEFT JOIN sm_spell_starts sp ON sp.ticker = f.ticker AND sp.valid_from <= f.{{ date_column }}
LEFT JOIN sm_current_holder ch ON ch.ticker = f.ticker
