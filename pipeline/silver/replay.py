"""Rebuild Silver from Bronze with zero API calls.

Bronze is immutable and complete, so Silver is a function of it: replay deletes the Silver rows (current and
history) in scope, resets the `silver_*` ledger columns of the files in scope and promotes every promotable
file again, in fetch order, through the same `promote_files` as the sensor-driven runs. Because promotion
chains the versions of a key inside a batch, the result equals what incremental promotion produced, whatever
the chunk size. Used after a keymap change that `ensure_table` refuses to apply in place, after a cast-rule
fix, or to prove that Silver is reproducible.

A replay never loses rows that no valid file contradicts. Every file is verified as it is read; one that fails to
parse or to verify is quarantined (see `pipeline.silver.promote`), and the versions it had promoted, taken from the
history as it was before the replay, are promoted again as its rows, in its place in fetch order: Silver and
history keep them exactly. A file quarantined earlier is not read again, and its versions are kept the same way.
A file that cannot be read *now* (an I/O error) stops the replay: the whole replay is rolled back, so nothing
changes until it can be read.

Gold's input state moves for exactly the identities whose Silver rows (or history versions) the replay changed
(`file_ingestions.bump_revisions`), so the Gold sensor and `pipeline run` rebuild those tickers; a replay that
changed nothing moves nothing.

Given a Warehouse, the whole replay is one transaction: a failure leaves Silver and the ledger as they were.
Given a connection, the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import duckdb

from pipeline.keymap.model import Keymap, SilverSpec
from pipeline.ops import file_ingestions
from pipeline.silver.promote import PromotionError, PromotionResult, promote_files
from pipeline.silver.schema import ensure_table, history_table, qualified
from pipeline.warehouse.dialect import quote

BATCH_FILES = 5000
# The table's rows and history as they were before the replay deleted them (temp tables of one table's replay).
BEFORE, KEPT, CHANGED = "_replay_before", "_replay_kept", "_replay_changed"


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
        _save_scope(conn, table, tickers)
        _delete_scope(conn, table, tickers)
        file_ingestions.reset_silver(conn, table, tickers)
        files = file_ingestions.promotable_files(conn, tables=[table], tickers=tickers, replay=True)
        # Fetch order, so every version lands in history in the order the API published it.
        files.sort(key=lambda f: (f.fetched_at, f.file_id))
        path_of = {f.ingestion_id: f.bronze_path for f in files}
        for start in range(0, len(files), batch_files):
            batch = files[start : start + batch_files]
            result = promote_files(conn, keymap, table, batch, bronze_root, run_id, kept=KEPT)
            transient = [f for f in result.failed if f.status == "failed"]
            if transient:
                raise PromotionError(
                    f"replay stopped: Bronze file {path_of[transient[0].ingestion_id]} cannot be read now "
                    f"({transient[0].error}); nothing was changed: run the replay again once it can be read"
                )
            results.append(result)
        _record_changes(conn, spec, tickers)
    return results


def _scope(tickers: Sequence[str] | None) -> str:
    return "true" if tickers is None else "ticker IN (SELECT unnest($tickers))"


def _params(tickers: Sequence[str] | None) -> dict:
    return {} if tickers is None else {"tickers": list(tickers)}


def _save_scope(conn: duckdb.DuckDBPyConnection, table: str, tickers: Sequence[str] | None) -> None:
    """Keep the rows and history in scope as they are: the history for the versions of files that cannot be read
    again, both to find what the replay changed."""
    for name, source in ((BEFORE, table), (KEPT, history_table(table))):
        conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
        conn.execute(
            f"CREATE TEMP TABLE {name} AS SELECT * FROM {qualified(source)} WHERE {_scope(tickers)}", _params(tickers)
        )


def _delete_scope(conn: duckdb.DuckDBPyConnection, table: str, tickers: Sequence[str] | None) -> None:
    for target in (table, history_table(table)):
        conn.execute(f"DELETE FROM {qualified(target)} WHERE {_scope(tickers)}", _params(tickers))


def _record_changes(conn: duckdb.DuckDBPyConnection, spec: SilverSpec, tickers: Sequence[str] | None) -> None:
    """Move Gold's input state of the identities whose rows or versions differ from before the replay, and give
    every row and version that did not change its promotion back (run_id, promoted_at).

    Compared: the table's columns and the lineage Gold reads (bronze_file_id, fetched_at; for history also
    valid_from/valid_to). A row is attributed to the identity of the file it came from (before and after). So a
    replay that changed nothing leaves Silver, history and Gold's input state exactly as they were, and one that
    changed a row shows it as newly promoted, which is what readers of `promoted_at` look for."""
    compared = [quote(c.name) for c in spec.columns] + ["bronze_file_id", "fetched_at"]
    versions = [*compared, "valid_from", "valid_to"]
    where, params = _scope(tickers), _params(tickers)
    tables = ((compared, BEFORE, qualified(spec.table)), (versions, KEPT, qualified(history_table(spec.table))))
    differences = " UNION ALL ".join(
        f"(SELECT bronze_file_id FROM (SELECT {s} FROM {a} {w} EXCEPT SELECT {s} FROM {b} {v}))"
        for s, before, after in ((", ".join(cols), before, after) for cols, before, after in tables)
        for a, w, b, v in ((before, "", after, f"WHERE {where}"), (after, f"WHERE {where}", before, ""))
    )
    conn.execute(f"DROP TABLE IF EXISTS temp.{CHANGED}")
    conn.execute(
        f"""
        CREATE TEMP TABLE {CHANGED} AS
        SELECT DISTINCT l.domain, l.source, l.dataset, l.discriminator, l.ticker
        FROM ({differences}) d JOIN ops.file_ingestions l ON l.file_id = d.bronze_file_id
    """,
        params,
    )
    file_ingestions.bump_revisions(conn, spec.table, CHANGED)
    for cols, before, after in tables:
        same = " AND ".join(f"t.{c} IS NOT DISTINCT FROM b.{c}" for c in cols)
        conn.execute(f"""
            UPDATE {after} AS t SET run_id = b.run_id, promoted_at = b.promoted_at
            FROM {before} AS b
            WHERE {" AND ".join(f"t.{quote(k)} = b.{quote(k)}" for k in spec.key)} AND {same}
        """)
    for name in (BEFORE, KEPT, CHANGED):
        conn.execute(f"DROP TABLE IF EXISTS temp.{name}")
