"""Rebuild Silver from Bronze with zero API calls.

Bronze is immutable and complete, so Silver is a function of it: replay deletes the Silver rows (current and
history) in scope, resets the `silver_*` ledger columns of the files in scope and promotes every promotable
file again, in fetch order, through the same `promote_files` as the sensor-driven runs. Because promotion
chains the versions of a key inside a batch, the result equals what incremental promotion produced, whatever
the chunk size. Used after a keymap change that `ensure_table` refuses to apply in place, after a cast-rule
fix, or to prove that Silver is reproducible.

Given a Warehouse, the whole replay is one transaction: a failure leaves Silver and the ledger as they were.
Given a connection, the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from pipeline.keymap.model import Keymap
from pipeline.ops import file_ingestions
from pipeline.silver.promote import PromotionError, PromotionResult, promote_files
from pipeline.silver.schema import ensure_table, history_table, qualified

BATCH_FILES = 5000


def replay(
    warehouse_or_conn,
    keymap: Keymap,
    bronze_root: Path,
    run_id: str,
    tables: Sequence[str] | None = None,
    tickers: Sequence[str] | None = None,
    *,
    batch_files: int = BATCH_FILES,
) -> list[PromotionResult]:
    """Rebuild the chosen tables (and tickers of per-ticker tables) from Bronze; one result per batch."""
    scope = _tables_in_scope(keymap, tables, tickers)
    if isinstance(warehouse_or_conn, duckdb.DuckDBPyConnection):
        return _replay(warehouse_or_conn, keymap, bronze_root, run_id, scope, tickers, batch_files)
    with warehouse_or_conn.transaction() as conn:
        return _replay(conn, keymap, bronze_root, run_id, scope, tickers, batch_files)


def _tables_in_scope(keymap: Keymap, tables: Sequence[str] | None, tickers: Sequence[str] | None) -> list[str]:
    known = keymap.tables()
    if tables is None:
        chosen = list(known)
        if tickers is not None:
            chosen = [t for t in chosen if keymap.table_scope(t) == "per_ticker"]
        return chosen
    unknown = sorted(set(tables) - set(known))
    if unknown:
        raise PromotionError(f"replay: {unknown} are not Silver tables of the keymap")
    if tickers is not None:
        global_tables = [t for t in tables if keymap.table_scope(t) != "per_ticker"]
        if global_tables:
            raise PromotionError(f"replay: tickers were given but {global_tables} are global tables (no ticker)")
    return list(dict.fromkeys(tables))


def _replay(
    conn: duckdb.DuckDBPyConnection,
    keymap: Keymap,
    bronze_root: Path,
    run_id: str,
    tables: list[str],
    tickers: Sequence[str] | None,
    batch_files: int,
) -> list[PromotionResult]:
    results: list[PromotionResult] = []
    specs = keymap.tables()
    for table in tables:
        spec = specs[table]
        ensure_table(conn, spec)
        _delete_scope(conn, table, tickers)
        file_ingestions.reset_silver(conn, table, tickers)
        files = file_ingestions.promotable_files(conn, tables=[table], tickers=tickers)
        # Fetch order, so every version lands in history in the order the API published it.
        files.sort(key=lambda f: (f.fetched_at, f.file_id))
        for start in range(0, len(files), batch_files):
            results.append(promote_files(conn, keymap, table, files[start : start + batch_files], bronze_root, run_id))
    return results


def _delete_scope(conn: duckdb.DuckDBPyConnection, table: str, tickers: Sequence[str] | None) -> None:
    for target in (table, history_table(table)):
        if tickers is None:
            conn.execute(f"DELETE FROM {qualified(target)}")
        else:
            conn.execute(
                f"DELETE FROM {qualified(target)} WHERE ticker IN (SELECT unnest($tickers))", {"tickers": list(tickers)}
            )
