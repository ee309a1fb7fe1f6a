"""Which tickers the pipeline covers: pinned by PIPELINE_TICKERS, the sample tickers without a key, or the
Silver stock list filtered by the universe settings (exchange, ETFs, actively trading, market cap): by default
the whole filtered market (issue 19); PIPELINE_UNIVERSE_MAX_TICKERS caps it, largest market caps first."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import duckdb

from pipeline.settings import Settings, UniverseSettings
from pipeline.tickers import MAX_TICKER_LENGTH, TICKER_REGEX

UNIVERSE_SQL = """
    SELECT s.symbol
    FROM silver.fmp_stock_list AS s
    JOIN silver.fmp_company_screener AS c USING (symbol)
    WHERE upper(coalesce(c.exchange_short_name, c.exchange)) IN (SELECT unnest($exchanges))
      AND ($include_etfs OR coalesce(c.is_etf, false) = false)
      AND (NOT $active_only OR c.is_actively_trading IS DISTINCT FROM false)
      AND coalesce(c.market_cap, 0) >= $min_cap
      AND regexp_full_match(s.symbol, $ticker_regex) AND length(s.symbol) <= $max_ticker_length
    ORDER BY c.market_cap DESC NULLS LAST, s.symbol
    LIMIT $max_tickers
"""


def universe_from_silver(conn: duckdb.DuckDBPyConnection, universe: UniverseSettings) -> list[str]:
    """Tickers from the Silver stock list and screener; [] while those tables do not exist yet."""
    have = {
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'silver'"
        ).fetchall()
    }
    if not {"fmp_stock_list", "fmp_company_screener"} <= have:
        return []
    rows = conn.execute(
        UNIVERSE_SQL,
        {
            "exchanges": list(universe.exchanges),
            "include_etfs": universe.include_etfs,
            "active_only": universe.actively_trading_only,
            "min_cap": universe.min_market_cap,
            "max_tickers": universe.max_tickers,
            "ticker_regex": TICKER_REGEX,  # the one ticker rule (pipeline.tickers)
            "max_ticker_length": MAX_TICKER_LENGTH,
        },
    ).fetchall()
    listed = [r[0] for r in rows]
    if not universe.include_delisted or "fmp_delisted_companies" not in have:
        return listed
    still_traded = "fmp_actively_trading" in have
    return listed + [t for t in delisted_from_silver(conn, universe, still_traded) if t not in set(listed)]


DELISTED_SQL = """
    SELECT DISTINCT symbol
    FROM silver.fmp_delisted_companies
    WHERE upper(exchange) IN (SELECT unnest($exchanges))
      AND regexp_full_match(symbol, $ticker_regex) AND length(symbol) <= $max_ticker_length
      {still_traded}
    ORDER BY symbol
"""
# a symbol FMP lists as actively trading today has a live holder (a reused ticker, or a delisting announced ahead):
# it is not a dead name, and the listed universe's filters decide about it
NOT_TRADED = "AND symbol NOT IN (SELECT symbol FROM silver.fmp_actively_trading)"


def delisted_from_silver(
    conn: duckdb.DuckDBPyConnection, universe: UniverseSettings, still_traded: bool = False
) -> list[str]:
    """Delisted names on the universe's exchanges (DESIGN.md section 12: the universe is survivorship-free). Their
    history is fetched once after the delisting, then frozen (`pipeline.bronze.delisted`). Only the exchange and
    ticker filters apply: a delisted name has no screener row (market cap, ETF flag) today; `gold.universe_as_of`
    applies the listing dates. `still_traded`: leave out symbols of the Silver actively-trading list."""
    params = {"exchanges": list(universe.exchanges), "ticker_regex": TICKER_REGEX}
    params["max_ticker_length"] = MAX_TICKER_LENGTH
    sql = DELISTED_SQL.format(still_traded=NOT_TRADED if still_traded else "")
    return [r[0] for r in conn.execute(sql, params).fetchall()]


SILVER_UNIVERSE = "Silver stock list filtered by the universe settings"


def resolve_universe(
    settings: Settings, connect: Callable[[], AbstractContextManager[duckdb.DuckDBPyConnection]]
) -> tuple[list[str], str]:
    """(tickers, why): pinned or the sample's when they do not depend on Silver, else read from Silver through a
    connection from `connect` (opened only then; a caller that cannot wait passes a fail-fast reader)."""
    fixed = configured_tickers(settings)
    if fixed is not None:
        return fixed
    with connect() as conn:
        return universe_from_silver(conn, settings.universe), SILVER_UNIVERSE


def configured_tickers(settings: Settings) -> tuple[list[str], str] | None:
    """The universe when it does not depend on Silver: (tickers, why), else None."""
    if settings.tickers:
        return list(settings.tickers), "pinned by PIPELINE_TICKERS"
    if settings.uses_sample_source and not settings.sample_market:
        # a synthetic market (PIPELINE_SAMPLE_MARKET) is a whole market: its universe comes from Silver, filtered
        from pipeline.fmp.sample import SAMPLE_TICKERS

        return list(SAMPLE_TICKERS), f"the bundled sample source's tickers ({settings.source_reason})"
    return None


MAX_REMOVED_SHARE = 0.5  # more tickers leaving at once looks like a broken stock list, not a universe change


@dataclass(frozen=True)
class UniverseChange:
    """How the `tickers` partitions move toward the universe: tickers to add, tickers to remove, and why
    removals were held back (empty when they were not)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    refused: str = ""


def universe_change(wanted: Sequence[str], have: Sequence[str]) -> UniverseChange:
    """The partitions `have` against the universe `wanted`. Removing more than `MAX_REMOVED_SHARE` of them at
    once is refused (a truncated stock list would otherwise stop fetching most tickers); additions still apply."""
    added = [t for t in wanted if t not in set(have)]
    removed = [t for t in have if t not in set(wanted)]
    if removed and len(removed) > MAX_REMOVED_SHARE * len(have):
        refused = (
            f"{len(removed)} of {len(have)} tickers left the universe at once: not removed (a truncated "
            "stock list?); delete the partitions by hand in the UI if this is intended"
        )
        return UniverseChange(added, [], refused)
    return UniverseChange(added, removed)
