-- Shared CTEs: index membership spells from the current constituents and the history of changes (fmp_api.md 3.4),
-- by security (a member renamed or delisted since keeps its security). Needs the sm_ CTEs (_security_master.sql).
-- A change takes effect on its date: an added security is a member from that day, a removed one until the day
-- before. dateAdded is text ("June 7, 2018"); when it does not parse, the ISO `date` is used, and a row with neither
-- is left out of the history (it stays in Silver; gold.security_issues names it).
im_history AS (
    SELECT 'sp500' AS index_name, h.*,
           CAST(try_strptime(trim(h.date_added), '%B %d, %Y') AS DATE) AS parsed_date_added,
           coalesce(CAST(try_strptime(trim(h.date_added), '%B %d, %Y') AS DATE), h.date) AS effective_date
    FROM silver.fmp_sp500_constituent_history h
),
im_current AS (
    SELECT 'sp500' AS index_name, symbol AS ticker FROM silver.fmp_sp500_constituent
),
im_events AS (
    SELECT index_name, symbol AS ticker, effective_date AS date, 'add' AS kind, effective_date AS held_on
    FROM im_history WHERE effective_date IS NOT NULL AND symbol IS NOT NULL
    UNION ALL
    SELECT index_name, removed_ticker, effective_date, 'remove', effective_date - 1
    FROM im_history WHERE effective_date IS NOT NULL AND removed_ticker IS NOT NULL
),
-- the security holding the event's ticker that day (a removal: the day before), else the ticker's current holder
im_events_sec AS (
    SELECT e.*, coalesce(th.security_id, ch.security_id,
                         CAST(('0x' || substr(md5(e.ticker || '|'), 1, 15)) AS BIGINT)) AS security_id
    FROM im_events e
    LEFT JOIN sm_ticker_history th
           ON th.ticker = e.ticker
          AND (th.valid_from IS NULL OR th.valid_from <= e.held_on)
          AND (th.valid_to IS NULL OR e.held_on <= th.valid_to)
    LEFT JOIN sm_current_holder ch ON ch.ticker = e.ticker
    QUALIFY row_number() OVER (PARTITION BY e.index_name, e.ticker, e.date, e.kind ORDER BY th.valid_from DESC) = 1
),
im_current_sec AS (
    SELECT c.index_name, c.ticker,
           coalesce(ch.security_id, CAST(('0x' || substr(md5(c.ticker || '|'), 1, 15)) AS BIGINT)) AS security_id
    FROM im_current c
    LEFT JOIN sm_current_holder ch USING (ticker)
),
im_spells AS (
    -- from each addition to the first removal after it (open: still a member)
    SELECT a.index_name, a.security_id, a.ticker, a.date AS member_from,
           (SELECT min(r.date) FROM im_events_sec r
            WHERE r.kind = 'remove' AND r.index_name = a.index_name AND r.security_id = a.security_id
              AND r.date > a.date) AS member_to
    FROM im_events_sec a
    WHERE a.kind = 'add'
    UNION ALL
    -- removed before any recorded addition: a member since before the history
    SELECT r.index_name, r.security_id, r.ticker, NULL, min(r.date)
    FROM im_events_sec r
    WHERE r.kind = 'remove'
      AND NOT EXISTS (SELECT 1 FROM im_events_sec a
                      WHERE a.kind = 'add' AND a.index_name = r.index_name AND a.security_id = r.security_id
                        AND a.date < r.date)
    GROUP BY ALL
    UNION ALL
    -- a member today with no recorded change: a member all along
    SELECT c.index_name, c.security_id, c.ticker, NULL, NULL
    FROM im_current_sec c
    WHERE NOT EXISTS (SELECT 1 FROM im_events_sec e WHERE e.index_name = c.index_name AND e.security_id = c.security_id)
)
