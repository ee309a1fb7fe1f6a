-- gold.security_issues: input the security master could not use as given, each with a message naming the row.
-- Nothing here is dropped from Silver: the rows stay, and this table says how Gold read them.
WITH
{% include '_security_master.sql' %},
{% include '_index_membership.sql' %}
SELECT 'symbol_change_conflict' AS kind, t.old_symbol || '->' || t.new_symbol || '@' || t.date AS subject,
       format('symbol-change on {}: {} -> {} ({}) not applied: {} is already held by {} (listed {}); {} and {} stay '
              || 'separate securities (the row stays in silver.fmp_symbol_change)',
              t.date, t.old_symbol, t.new_symbol, coalesce(t.company_name, '?'), t.new_symbol,
              coalesce(t.holder_name, '?'), coalesce(CAST(h.listed_on AS VARCHAR), '?'), t.old_symbol,
              t.new_symbol) AS message
FROM sm_change_target t
JOIN sm_holders_raw h USING (hid)
WHERE NOT t.applied
UNION ALL
SELECT 'symbol_change_unmatched', t.old_symbol || '->' || t.new_symbol || '@' || t.date,
       format('symbol-change on {}: {} -> {} not applied: no known security holds {} on that day (fetch its '
              || 'profile, or wait for the actively-trading list)', t.date, t.old_symbol, t.new_symbol, t.new_symbol)
FROM sm_change_target t
WHERE t.hid IS NULL
  -- a change into an intermediate ticker is applied by the walk back from the holder's later change
  AND NOT EXISTS (SELECT 1 FROM sm_back b WHERE b.ticker = t.old_symbol AND b.valid_to = t.date - 1)
UNION ALL
SELECT 'future_delisting', ticker || '@' || delisted_date,
       format('{} ({}): delisting dated {}, after FMP served it on {}: listed until then, and fetched daily until '
              || 'the day has passed', ticker, coalesce(company_name, '?'), delisted_date, served_on)
FROM sm_delisted
WHERE delisted_date > served_on
UNION ALL
SELECT 'unparseable_date_added', index_name || ':' || symbol || '@' || date_added,
       CASE WHEN effective_date IS NULL
            THEN format('historical-{}-constituent: dateAdded ''{}'' of {} does not parse and the row has no date: left '
                        || 'out of the membership history (kept in Silver)', index_name, date_added, symbol)
            ELSE format('historical-{}-constituent: dateAdded ''{}'' of {} does not parse: used its date {}',
                        index_name, date_added, symbol, effective_date)
       END
FROM im_history
WHERE parsed_date_added IS NULL
UNION ALL
SELECT 'index_history_missing', c.index_name,
       format('{}: no constituent history in Silver (the plan refuses historical-{}-constituent?): membership as '
              || 'of a past date is today''s members, with survivorship bias', c.index_name, c.index_name)
FROM (SELECT DISTINCT index_name FROM im_current) c
WHERE NOT EXISTS (SELECT 1 FROM im_history h WHERE h.index_name = c.index_name)
