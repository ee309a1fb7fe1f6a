"""What coverage reads from the warehouse: ledger facts per series, and Silver row dates with their lineage.

First/last date, files and error files come from the ledger (`ops.file_ingestions`); first/last is *good*
coverage (successful, promotable files that are not quarantined), the same rule the planner uses for watermarks.
Error files are error responses plus quarantined files that no good refetch has replaced yet
(`pipeline.ops.quarantine`). Silver rows are
attributed to their keymap entry through their lineage (`bronze_file_id` -> ledger identity), so entries
sharing a table (annual and quarterly statements, one economic indicator per discriminator) are told apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pandas as pd

from pipeline.keymap.model import DatasetIdentity, Keymap, KeymapEntry
from pipeline.ops.coverage.model import SeriesCoverage
from pipeline.ops.quarantine import good_file, unresolved
from pipeline.warehouse.dialect import quote

LEDGER_SQL = f"""
    WITH files AS (
        SELECT domain, source, dataset, discriminator, ticker,
               min(coverage_from) FILTER (WHERE {good_file()})  AS first_date,
               max(coverage_to)   FILTER (WHERE {good_file()})  AS last_date,
               count(*)                                          AS files,
               count(*) FILTER (WHERE error_class IS NOT NULL)   AS error_files,
               max(fetched_at)    FILTER (WHERE {good_file()})  AS last_fetch
        FROM ops.file_ingestions
        GROUP BY ALL
    ),
    -- its own WHERE, never an aggregate FILTER: only then does DuckDB look for a refetch of the quarantined rows
    -- alone (the FILTER form compares every file of an identity with every other: minutes on a large ledger)
    quarantined AS (
        SELECT domain, source, dataset, discriminator, ticker, count(*) AS quarantined
        FROM ops.file_ingestions q WHERE {unresolved("q")}
        GROUP BY ALL
    )
    SELECT domain, source, dataset, discriminator, ticker, first_date, last_date, files,
           error_files + coalesce(quarantined, 0), last_fetch, coalesce(quarantined, 0)
    FROM files LEFT JOIN quarantined USING (domain, source, dataset, discriminator, ticker)
"""

SILVER_ROWS_SQL = """
    SELECT f.domain, f.source, f.dataset, f.discriminator, f.ticker,
           s.{row_date} AS d{fiscal}
    FROM silver.{table} AS s
    JOIN ops.file_ingestions AS f ON f.file_id = s.bronze_file_id
    WHERE s.{row_date} IS NOT NULL
"""

IDENTITY_COLUMNS = ["domain", "source", "dataset", "discriminator", "ticker"]


def silver_columns(conn: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Existing Silver tables and their columns (a table appears after its first promotion)."""
    rows = conn.execute("""
        SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'silver'
    """).fetchall()
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


def ledger_series(
    conn: duckdb.DuckDBPyConnection, keymap: Keymap, entries: Sequence[KeymapEntry]
) -> dict[tuple[str, str], SeriesCoverage]:
    """Series keyed by (asset name, ticker) with the ledger's facts; files of unknown identities are ignored."""
    wanted = {e.asset_name for e in entries}
    series: dict[tuple[str, str], SeriesCoverage] = {}
    for dom, src, ds, disc, ticker, first, last, files, errors, last_fetch, quarantined in conn.execute(
        LEDGER_SQL
    ).fetchall():
        entry = keymap.find(DatasetIdentity(dom, src, ds, disc, ticker))
        if entry is None or entry.asset_name not in wanted:
            continue
        series[(entry.asset_name, ticker or "")] = SeriesCoverage(
            entry, ticker or "", first, last, int(files), int(errors), last_fetch, quarantined=int(quarantined)
        )
    return series


def silver_dates(conn: duckdb.DuckDBPyConnection, table: str, row_date: str, fiscal: bool) -> pd.DataFrame:
    """Row dates of one Silver table with the ledger identity of each row (plus fiscal year/period if asked)."""
    extra = ", s.fiscal_year AS fy, s.period AS period" if fiscal else ""
    sql = SILVER_ROWS_SQL.format(row_date=quote(row_date), table=quote(table), fiscal=extra)
    return conn.execute(sql).df()
