"""`pipeline status`'s survivorship section: what the security master holds, which delisted tickers are frozen, and
what the plan keeps from it (a Starter key is refused the delisted pages after the first and the constituents
history, fmp_api.md 3.4), so a backtest's user knows how survivorship-free the warehouse is."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import duckdb

from pipeline.bronze.delisted import frozen_tickers
from pipeline.keymap.model import KeymapEntry

SURVIVORSHIP_DATASETS = (
    "delisted-companies",
    "symbol-change",
    "actively-trading-list",
    "sp500-constituent",
    "historical-sp500-constituent",
)

REFUSED_SQL = """
    SELECT f.dataset, f.discriminator, f.page, f.error_message, f.fetched_at
    FROM ops.file_ingestions f
    WHERE f.dataset IN (SELECT unnest($datasets)) AND f.error_class = 'plan_restricted'
      AND f.run_id = (SELECT arg_max(f2.run_id, f2.fetched_at) FROM ops.file_ingestions f2
                      WHERE f2.dataset = f.dataset AND f2.discriminator = f.discriminator)
    ORDER BY f.dataset, f.discriminator
"""


def _gold_tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'gold'").fetchall()
    return {r[0] for r in rows}


def lacking(entries: Sequence[KeymapEntry], conn: duckdb.DuckDBPyConnection, fmp_plan: str | None) -> list[str]:
    """What the plan keeps from the security master: datasets skipped for FMP_PLAN, and the latest refusals."""
    out = []
    for e in entries:
        if e.dataset in SURVIVORSHIP_DATASETS and not e.recipe.allowed_on(fmp_plan):
            out.append(f"{e.asset_name}: skipped, needs the FMP {e.recipe.min_plan} plan (FMP_PLAN={fmp_plan})")
    refused = conn.execute(REFUSED_SQL, {"datasets": list(SURVIVORSHIP_DATASETS)}).fetchall()
    for dataset, disc, page, message, _ in refused:
        where = f" page {page}" if page else ""
        name = f"{dataset}__{disc}" if disc else dataset
        out.append(f"{name}{where}: refused by the plan in its latest fetch ({(message or '402')[:80]})")
    return out


def survivorship_section(
    entries: Sequence[KeymapEntry], conn: duckdb.DuckDBPyConnection, today: dt.date, fmp_plan: str | None
) -> list[str]:
    lines = ["Securities (survivorship; gold.dim_security, gold.security_issues):"]
    gold = _gold_tables(conn)
    if "dim_security" in gold:
        listed, delisted, tickers = conn.execute(
            "SELECT count(*) FILTER (WHERE delisted_on IS NULL), count(*) FILTER (WHERE delisted_on IS NOT NULL), "
            "(SELECT count(DISTINCT ticker) FROM gold.dim_security_ticker) FROM gold.dim_security"
        ).fetchone()
        lines.append(f"  {listed} listed and {delisted} delisted securities under {tickers} ticker(s)")
    else:
        lines.append("  no security master yet (Gold dim_security not built)")
    frozen = frozen_tickers(conn, today)
    if frozen:
        names = ", ".join(sorted(frozen)[:5]) + (f" (+{len(frozen) - 5} more)" if len(frozen) > 5 else "")
        lines.append(f"  {len(frozen)} delisted ticker(s), frozen once fetched after their delisting: {names}")
    for item in lacking(entries, conn, fmp_plan):
        lines.append(f"  lacks: {item}")
    if "security_issues" in gold:
        issues = conn.execute("SELECT kind, message FROM gold.security_issues ORDER BY 1, 2 LIMIT 5").fetchall()
        for kind, message in issues:
            lines.append(f"  issue ({kind}): {message}")
    return lines
