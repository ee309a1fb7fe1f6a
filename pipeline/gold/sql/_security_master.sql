-- Shared CTEs of the security master (DESIGN.md section 12; fmp_api.md 3.4): who held which ticker when.
--
-- A holder is one security under one ticker: a ticker FMP still answers for (profile or actively-trading list), or a
-- row of delisted-companies. A delisted row is the current holder's own delisting unless it ended before that
-- holder's listing: then it is an earlier holder of a reused ticker ("match delisted rows by symbol plus a date
-- window"). A symbol change (date C, old O, new N) continues the holder of N on C under O before C, unless N is
-- already held then by another company (a different name listed before C): that change is not applied and is
-- reported. Ticker spells are inclusive: valid_from .. valid_to (NULL: open), the delisting day included.
-- security_id is a hash of the security's first ticker and, for a reused ticker, the day its holding began: not the
-- ticker, stable across runs and rebuilds, unchanged by news about other securities (a rename learned later moves
-- a security's first ticker, and so its id: documented in the README).
-- All CTE names start with sm_ so that a model can include this beside other shared CTEs.
sm_served AS (
    SELECT file_id, least({{ ny_date('fetched_at') }}, coalesce(as_of, {{ ny_date('fetched_at') }})) AS served_on
    FROM ops.file_ingestions
),
sm_profile AS (
    SELECT ticker, company_name, cik, isin, cusip, exchange, ipo_date, is_actively_trading
    FROM silver.fmp_company_profile
),
sm_active AS (
    SELECT symbol AS ticker, name FROM silver.fmp_actively_trading
),
sm_delisted AS (
    SELECT d.symbol AS ticker, d.company_name, d.exchange, d.ipo_date, d.delisted_date,
           coalesce(s.served_on, {{ ny_date('d.fetched_at') }}) AS served_on
    FROM silver.fmp_delisted_companies d
    LEFT JOIN sm_served s ON s.file_id = d.bronze_file_id
),
sm_changes AS (
    SELECT date, company_name, old_symbol, new_symbol FROM silver.fmp_symbol_change WHERE old_symbol <> new_symbol
),
-- tickers FMP still answers for, with what the profile says about their holder
sm_current AS (
    SELECT t.ticker, p.company_name AS profile_name, a.name AS active_name, p.cik, p.isin, p.cusip, p.exchange,
           p.ipo_date, p.is_actively_trading, a.ticker IS NOT NULL AS in_active_list
    FROM (SELECT ticker FROM sm_profile UNION SELECT ticker FROM sm_active) t
    LEFT JOIN sm_profile p USING (ticker)
    LEFT JOIN sm_active a USING (ticker)
),
-- a delisted row ending before the current holder's listing belongs to an earlier holder of the ticker
sm_delisted_kind AS (
    SELECT d.*,
           CASE
               WHEN c.ticker IS NULL THEN 'holder'
               WHEN c.ipo_date IS NOT NULL AND d.delisted_date < c.ipo_date THEN 'earlier_holder'
               WHEN c.ipo_date IS NULL AND c.in_active_list AND d.delisted_date < d.served_on THEN 'earlier_holder'
               WHEN d.delisted_date = max(d.delisted_date) OVER (PARTITION BY d.ticker) THEN 'own'
               ELSE 'earlier_holder'
           END AS kind,
           -- FMP lists a renamed-away symbol as delisted around its change: that row is the rename, not a delisting
           EXISTS (SELECT 1 FROM sm_changes ch
                   WHERE ch.old_symbol = d.ticker AND abs(ch.date - d.delisted_date) <= 7) AS is_rename
    FROM sm_delisted d
    LEFT JOIN sm_current c USING (ticker)
),
sm_own_delisting AS (
    SELECT ticker, delisted_date, served_on FROM sm_delisted_kind WHERE kind = 'own' AND NOT is_rename
),
sm_holders_raw AS (
    -- the holder FMP answers for today (its own delisting, past or announced, ends its spell)
    SELECT 'C:' || c.ticker AS hid, c.ticker,
           greatest(c.ipo_date, (SELECT max(e.delisted_date) + 1 FROM sm_delisted_kind e
                                 WHERE e.ticker = c.ticker AND e.kind <> 'own' AND NOT e.is_rename)) AS valid_from,
           o.delisted_date AS valid_to,
           (SELECT max(e.delisted_date) + 1 FROM sm_delisted_kind e
            WHERE e.ticker = c.ticker AND e.kind <> 'own' AND NOT e.is_rename) AS root_from,
           coalesce(c.profile_name, c.active_name) AS name, c.cik, c.isin, c.cusip, c.exchange,
           c.ipo_date AS listed_on, o.delisted_date AS delisted_on, o.served_on AS delisting_served_on,
           CASE WHEN o.ticker IS NOT NULL THEN false ELSE coalesce(c.is_actively_trading, c.in_active_list) END
               AS is_active,
           'listing' AS source
    FROM sm_current c
    LEFT JOIN sm_own_delisting o USING (ticker)
    UNION ALL
    -- earlier holders of reused tickers, and delisted tickers FMP no longer answers for
    SELECT 'D:' || d.ticker || ':' || d.delisted_date, d.ticker, d.ipo_date, d.delisted_date,
           (SELECT max(e.delisted_date) + 1 FROM sm_delisted e
            WHERE e.ticker = d.ticker AND e.delisted_date < coalesce(d.ipo_date, d.delisted_date)),
           d.company_name, NULL, NULL, NULL, d.exchange, d.ipo_date, d.delisted_date, d.served_on, false,
           'delisted-companies'
    FROM sm_delisted_kind d
    WHERE d.kind IN ('holder', 'earlier_holder') AND NOT d.is_rename
),
-- which holder of N a change lands on: the one holding N on the change day
sm_change_target AS (
    SELECT ch.*, h.hid, h.name AS holder_name, h.valid_from AS holder_from,
           h.hid IS NOT NULL
           AND NOT (h.listed_on IS NOT NULL AND h.listed_on < ch.date AND ch.company_name IS NOT NULL
                    AND h.name IS NOT NULL AND lower(trim(ch.company_name)) <> lower(trim(h.name))) AS applied
    FROM sm_changes ch
    LEFT JOIN sm_holders_raw h
           ON h.ticker = ch.new_symbol
          AND (h.valid_from IS NULL OR h.valid_from <= ch.date)
          AND (h.valid_to IS NULL OR ch.date <= h.valid_to)
    QUALIFY row_number() OVER (PARTITION BY ch.date, ch.old_symbol, ch.new_symbol ORDER BY h.valid_from DESC) = 1
),
-- the tickers a holder had before its current one, walking the changes back
sm_back AS (
    WITH RECURSIVE walk(hid, ticker, valid_to, depth) AS (
        SELECT hid, old_symbol, date - 1, 1 FROM sm_change_target WHERE applied
        UNION ALL
        SELECT w.hid, ch.old_symbol, ch.date - 1, w.depth + 1
        FROM walk w
        JOIN sm_changes ch ON ch.new_symbol = w.ticker AND ch.date <= w.valid_to
        WHERE w.depth < 20
    )
    SELECT * FROM walk
),
-- a holder of an old symbol seen before its rename (an old profile kept in Silver) is the renamed security
sm_absorbed AS (
    SELECT DISTINCT h.hid
    FROM sm_holders_raw h
    JOIN sm_back b ON b.ticker = h.ticker AND b.hid <> h.hid
                  AND (h.valid_from IS NULL OR h.valid_from <= b.valid_to)
                  AND (h.valid_to IS NULL OR h.valid_to >= b.valid_to - 7)
),
sm_holders AS (
    SELECT h.*, coalesce(r.root_ticker, h.ticker) AS root_ticker,
           CASE WHEN r.root_ticker IS NULL THEN h.root_from END AS root_key_from
    FROM sm_holders_raw h
    LEFT JOIN (SELECT hid, arg_max(ticker, depth) AS root_ticker FROM sm_back GROUP BY hid) r USING (hid)
    WHERE h.hid NOT IN (SELECT hid FROM sm_absorbed)
),
sm_security AS (
    SELECT h.*,
           md5(h.root_ticker || '|' || coalesce(CAST(h.root_key_from AS VARCHAR), '')) AS security_key
    FROM sm_holders h
),
sm_spells AS (
    -- the holder's current (last) ticker: from its last applied change, else its own start
    SELECT s.security_key, s.ticker,
           coalesce((SELECT max(b.valid_to) + 1 FROM sm_back b WHERE b.hid = s.hid AND b.depth = 1), s.valid_from)
               AS valid_from,
           s.valid_to, s.source
    FROM sm_security s
    UNION ALL
    -- earlier tickers: each starts the day after the change before it, the oldest at the listing
    SELECT s.security_key, b.ticker,
           coalesce(lead(b.valid_to) OVER (PARTITION BY b.hid ORDER BY b.depth) + 1, s.listed_on) AS valid_from,
           b.valid_to, 'symbol-change'
    FROM sm_back b
    JOIN sm_security s USING (hid)
),
sm_ids AS (
    -- the permanent id: the first 15 hex digits of the key as a positive BIGINT
    SELECT security_key, CAST(('0x' || substr(security_key, 1, 15)) AS BIGINT) AS security_id FROM sm_security
),
sm_ticker_history AS (
    SELECT DISTINCT i.security_id, p.ticker, p.valid_from, p.valid_to, p.source
    FROM sm_spells p
    JOIN sm_ids i USING (security_key)
),
-- per ticker, the security FMP's history under it belongs to when no spell covers a date (FMP serves a symbol's
-- history for its current holder, fmp_api.md 3.4): the open spell, else the latest
sm_current_holder AS (
    SELECT ticker, security_id
    FROM sm_ticker_history
    QUALIFY row_number() OVER (PARTITION BY ticker ORDER BY valid_to DESC NULLS FIRST, valid_from DESC NULLS LAST) = 1
)
