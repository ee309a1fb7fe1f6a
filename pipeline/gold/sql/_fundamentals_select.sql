-- The fundamentals row plus FMP's published key metrics and ratios for the same period, as published (per-share
-- book value put on the current share basis with the ratios row's serving day).
SELECT s.* EXCLUDE (cum_fetch, cum_l, shares_served, shares_dil_served),
       km.enterprise_value, km.ev_to_ebitda, km.return_on_equity, km.return_on_assets,
       km.return_on_invested_capital, km.earnings_yield, km.free_cash_flow_yield,
       r.gross_profit_margin, r.operating_profit_margin, r.net_profit_margin,
       coalesce(r.current_ratio, km.current_ratio) AS current_ratio, r.quick_ratio, r.debt_to_equity_ratio,
       r.interest_coverage_ratio, r.dividend_payout_ratio,
       r.book_value_per_share * coalesce(r_fetch.cum, 1.0) / s.cum_l AS book_value_per_share,
       r.price_to_earnings_ratio
FROM {{ source }} s
LEFT JOIN silver.fmp_key_metrics km ON km.ticker = s.ticker AND km.date = s.period_end AND km.period = s.period
LEFT JOIN silver.fmp_ratios r ON r.ticker = s.ticker AND r.date = s.period_end AND r.period = s.period
{{ join_served_on('r') }}
ASOF LEFT JOIN split_index r_fetch ON r_fetch.ticker = s.ticker AND r_fetch.date <= {{ served_on('r') }}
