"""`ops.file_ingestions`, one row per Bronze file: its only writer, and the queries over it.

Bronze registers files (`register_files`), Silver promotion marks them promoted or failed (`mark_promoted`,
`mark_failed`) and replay resets them (`reset_silver`); the planner, the sensors and Gold read coverage,
promotable files and input watermarks from here. Every function takes an open DuckDB connection, so the caller
decides how long it lives (short, never during network I/O), whether it is read-only and which transaction a
write joins. Set-based SQL throughout: the ledger grows to millions of rows, so promotion hands over the name
of a temp table it filled instead of a list of rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb
import pandas as pd

from pipeline.keymap.model import DatasetIdentity, DatasetWatermark
from pipeline.ledger_types import Coverage, FileRecord
from pipeline.warehouse.dialect import is_lake

BRONZE_COLUMNS = tuple(f.name for f in dataclasses.fields(FileRecord))

_FRAME_TYPES = {
    "page": "Int64",
    "status_code": "Int64",
    "bronze_rows": "Int64",
    "bytes": "Int64",
    "elapsed_ms": "float64",
    "can_promote": "bool",
}


def register_files(conn: duckdb.DuckDBPyConnection, records: Sequence[FileRecord]) -> int:
    """Upsert ledger rows keyed by (run_id, file_id): a rerun updates, never duplicates. Returns rows written.

    A MERGE, not INSERT ... ON CONFLICT, because a DuckLake has no key to conflict on. There the new rows'
    ingestion ids (a sequence on the file) are max + n, which grow in commit order because registrations
    hold the lake's exclusive write lock."""
    if not records:
        return 0
    frame = pd.DataFrame.from_records([vars(r) for r in records], columns=list(BRONZE_COLUMNS))
    frame = frame.drop_duplicates(["run_id", "file_id"], keep="last")  # a MERGE source may name a row once
    for col, dtype in _FRAME_TYPES.items():
        frame[col] = frame[col].astype(dtype)
    for col in ("as_of", "window_from", "window_to", "coverage_from", "coverage_to"):
        frame[col] = pd.to_datetime(frame[col]).dt.date
    conn.register("_incoming_files", frame)
    try:
        cols = ", ".join(BRONZE_COLUMNS)
        casts = ", ".join(
            f"CAST({c} AS DATE) AS {c}"
            if c in ("as_of", "window_from", "window_to", "coverage_from", "coverage_to")
            else f"CAST({c} AS TIMESTAMP) AS {c}"
            if c == "fetched_at"
            else c
            for c in BRONZE_COLUMNS
        )
        updates = ", ".join(f"{c} = s.{c}" for c in BRONZE_COLUMNS if c not in ("run_id", "file_id"))
        values = ", ".join(f"s.{c}" for c in BRONZE_COLUMNS)
        if is_lake(conn):
            casts += (
                ", (SELECT coalesce(max(ingestion_id), 0) FROM ops.file_ingestions)"
                " + row_number() OVER () AS ingestion_id"
            )
            cols, values = cols + ", ingestion_id", values + ", s.ingestion_id"
        conn.execute(f"""
            MERGE INTO ops.file_ingestions AS t
            USING (SELECT {casts} FROM _incoming_files) AS s
            ON t.run_id = s.run_id AND t.file_id = s.file_id
            WHEN MATCHED THEN UPDATE SET {updates}
            WHEN NOT MATCHED THEN INSERT ({cols}) VALUES ({values})
        """)
    finally:
        conn.unregister("_incoming_files")
    return len(records)


def registered_file_ids(conn: duckdb.DuckDBPyConnection, file_ids: Iterable[str]) -> set[str]:
    """Which of these Bronze files already have a ledger row (orphan recovery registers the others)."""
    ids = list(file_ids)
    if not ids:
        return set()
    rows = conn.execute("SELECT file_id FROM ops.file_ingestions WHERE file_id IN (SELECT unnest(?))", [ids]).fetchall()
    return {r[0] for r in rows}


def latest_bronze_coverage(
    conn: duckdb.DuckDBPyConnection,
    identity: DatasetIdentity | None = None,
    *,
    ticker_wildcard: bool = False,
    today: dt.date | None = None,
) -> dict[DatasetIdentity, Coverage]:
    """Good coverage per identity: only successful, promotable files count (an error never moves a watermark).

    A failed date window that lies before good coverage (a middle window of a split backfill failed while
    later windows succeeded) is a hole: until a later good file covers its start again, coverage_to is held
    just before the hole and last_as_of is NULL (due now), so the next run re-requests it. So are days that no
    good window covers at all, between two windows or after the last one up to its planning date: a run killed
    mid-fetch leaves no file for its unfinished windows, yet its finished ones carry today's planning date. A
    missing *first* window is visible through `first_window_from`, which the planner compares with the recipe's
    history start.

    Time moves only forward: a file counts only up to its own planning date (`as_of`; rows a source served
    for later days, such as an economic calendar's coming releases, are not coverage yet), and a file planned
    for a day after `today` (the planning date of the caller; a PIPELINE_AS_OF ahead of time, refused since)
    does not count at all. Otherwise such a file would hold every later run back until that day.
    `pipeline.ops.reader.future_dated_files` lists them for `pipeline status`.

    With `identity`, restrict to it (its ticker too, unless `ticker_wildcard`, which returns every ticker).
    """
    where = ["true"]
    params: list = []
    if identity is not None:
        for col in ("domain", "source", "dataset", "discriminator") + (() if ticker_wildcard else ("ticker",)):
            where.append(f"{col} = ?")
            params.append(getattr(identity, col) or "")
    if today is not None:
        where.append("(as_of IS NULL OR as_of <= ?)")
        params.append(today)
    rows = conn.execute(
        f"""
        WITH f AS (
            -- what a file holds after its own planning date is not coverage yet (NULL as_of: no limit)
            SELECT * REPLACE (
                       CASE WHEN coalesce(coverage_from, coverage_to) > as_of THEN NULL ELSE coverage_from END
                           AS coverage_from,
                       CASE WHEN coalesce(coverage_from, coverage_to) > as_of THEN NULL
                            ELSE least(coverage_to, coalesce(as_of, coverage_to)) END AS coverage_to)
            FROM ops.file_ingestions WHERE {" AND ".join(where)}
        ),
        good AS (
            SELECT domain, source, dataset, discriminator, ticker, min(coverage_from) AS cov_from,
                   max(coverage_to) AS cov_to, max(fetched_at) AS last_fetch, count(*) AS files,
                   max(as_of) AS last_as_of, min(window_from) AS first_from
            FROM f WHERE error_class IS NULL AND can_promote
            GROUP BY ALL
        ),
        holes AS (
            SELECT b.domain, b.source, b.dataset, b.discriminator, b.ticker, min(b.window_from) AS hole_from
            FROM f b JOIN good USING (domain, source, dataset, discriminator, ticker)
            WHERE NOT (b.error_class IS NULL AND b.can_promote) AND b.window_to < good.cov_to
              AND NOT EXISTS (
                  SELECT 1 FROM f g
                  WHERE g.error_class IS NULL AND g.can_promote AND g.fetched_at > b.fetched_at
                    AND g.domain = b.domain AND g.source = b.source AND g.dataset = b.dataset
                    AND g.discriminator = b.discriminator AND g.ticker = b.ticker
                    AND g.window_from <= b.window_from AND g.window_to >= b.window_from)
            GROUP BY ALL
        ),
        windows AS (
            SELECT domain, source, dataset, discriminator, ticker, window_from, window_to, as_of,
                   max(window_to) OVER (PARTITION BY domain, source, dataset, discriminator, ticker
                                        ORDER BY window_from, window_to
                                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reached
            FROM f WHERE error_class IS NULL AND can_promote AND window_from IS NOT NULL AND window_to IS NOT NULL
        ),
        gaps AS (
            SELECT domain, source, dataset, discriminator, ticker, min(CAST(reached + 1 AS DATE)) AS hole_from
            FROM windows WHERE window_from > reached + 1
            GROUP BY ALL
            UNION ALL
            SELECT domain, source, dataset, discriminator, ticker, CAST(max(window_to) + 1 AS DATE)
            FROM windows GROUP BY ALL HAVING max(window_to) < max(as_of)
        ),
        first_hole AS (
            SELECT domain, source, dataset, discriminator, ticker, min(hole_from) AS hole_from
            FROM (SELECT * FROM holes UNION ALL SELECT * FROM gaps)
            GROUP BY ALL
        )
        SELECT domain, source, dataset, discriminator, ticker, cov_from,
               CASE WHEN hole_from IS NULL THEN cov_to ELSE least(cov_to, CAST(hole_from - 1 AS DATE)) END,
               last_fetch, files, CASE WHEN hole_from IS NULL THEN last_as_of END, first_from
        FROM good LEFT JOIN first_hole USING (domain, source, dataset, discriminator, ticker)
    """,
        params,
    ).fetchall()
    return {
        DatasetIdentity(*r[:5]): Coverage(DatasetIdentity(*r[:5]), r[5], r[6], r[7], r[8], r[9], r[10]) for r in rows
    }


def latest_silver_coverage(
    conn: duckdb.DuckDBPyConnection, tables: Sequence[str] | None = None
) -> dict[DatasetIdentity, Coverage]:
    """Coverage that reached Silver, per identity (optionally only identities feeding `tables`)."""
    where = "silver_status = 'promoted'"
    params: list = []
    if tables:
        where += " AND silver_table IN (SELECT unnest(?))"
        params.append(list(tables))
    rows = conn.execute(
        f"""
        SELECT domain, source, dataset, discriminator, ticker,
               min(coalesce(silver_coverage_from, coverage_from)), max(coalesce(silver_coverage_to, coverage_to)),
               max(fetched_at), count(*)
        FROM ops.file_ingestions
        WHERE {where}
        GROUP BY ALL
    """,
        params,
    ).fetchall()
    return {DatasetIdentity(*r[:5]): Coverage(DatasetIdentity(*r[:5]), r[5], r[6], r[7], r[8]) for r in rows}


# Coverage of a promoted file: what Silver took from it, else what was asked for, else its fetch day (snapshots).
_COVERAGE = """min(coalesce(silver_coverage_from, coverage_from, CAST(fetched_at AS DATE))),
               max(coalesce(silver_coverage_to, coverage_to, CAST(fetched_at AS DATE)))"""
# A promotion that changed Silver rows (a restatement moves this without moving coverage).
_CHANGED_SILVER = "coalesce(silver_inserted, 0) + coalesce(silver_updated, 0) > 0"


def _promoted_into(conn: duckdb.DuckDBPyConnection, select: str, tables: Sequence[str], where: str = "TRUE") -> list:
    """`select`, grouped by its plain columns and sorted, over the ledger rows promoted into `tables`.

    The watermark and revision queries below share it, so their filters and order agree by construction.
    """
    return conn.execute(
        f"""
        SELECT {select}
        FROM ops.file_ingestions
        WHERE silver_status = 'promoted' AND silver_table IN (SELECT unnest(?)) AND {where}
        GROUP BY ALL
        ORDER BY ALL
    """,
        [list(tables)],
    ).fetchall()


def input_watermarks(conn: duckdb.DuckDBPyConnection, tables: Sequence[str]) -> list[str]:
    """Canonical DatasetWatermark strings of everything promoted into `tables`, sorted.

    Gold builds record these; the gold sensor compares them. The last promotion (highest ingestion id)
    is part of the string for snapshot datasets via coverage_to = fetch date, so a new snapshot moves it.
    """
    rows = _promoted_into(conn, f"domain, source, dataset, discriminator, ticker, {_COVERAGE}", tables)
    return [str(DatasetWatermark(DatasetIdentity(*r[:5]), r[5], r[6])) for r in rows]


def input_revisions(conn: duckdb.DuckDBPyConnection, tables: Sequence[str]) -> list[str]:
    """Per input identity, `<identity key>@revision=<newest ingestion id whose promotion changed Silver rows>`.

    Complements the coverage watermarks: a restatement or a corrected price inside covered dates changes Silver
    without moving coverage, but it does move this marker, so Gold rebuilds the affected tickers.
    """
    select = "domain, source, dataset, discriminator, ticker, max(ingestion_id)"
    rows = _promoted_into(conn, select, tables, where=_CHANGED_SILVER)
    return [f"{DatasetIdentity(*r[:5]).key}@revision={r[5]}" for r in rows]


def input_state_by_table(
    conn: duckdb.DuckDBPyConnection, tables: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(watermarks, revisions) per Silver table, in one scan of the ledger.

    Per table, the same strings in the same order as `input_watermarks(conn, [table])` and
    `input_revisions(conn, [table])`. The Gold sensor reads the inputs of every Gold asset each tick; one
    grouped scan here replaces two scans per distinct input set (performance: the ledger has millions of rows).
    """
    select = f"""silver_table, domain, source, dataset, discriminator, ticker, {_COVERAGE},
               max(ingestion_id) FILTER (WHERE {_CHANGED_SILVER})"""
    rows = _promoted_into(conn, select, tables)
    watermarks: dict[str, list[str]] = {}
    revisions: dict[str, list[str]] = {}
    for table, *ident, cov_from, cov_to, revision in rows:
        identity = DatasetIdentity(*ident)
        watermarks.setdefault(table, []).append(str(DatasetWatermark(identity, cov_from, cov_to)))
        if revision is not None:
            revisions.setdefault(table, []).append(f"{identity.key}@revision={revision}")
    return watermarks, revisions


@dataclass(frozen=True)
class PromotableFile:
    ingestion_id: int
    run_id: str
    file_id: str
    silver_table: str
    ticker: str
    bronze_path: str
    fetched_at: dt.datetime


def promotable_files(
    conn: duckdb.DuckDBPyConnection,
    *,
    tables: Sequence[str] | None = None,
    tickers: Sequence[str] | None = None,
    after_ingestion_id: int = 0,
) -> list[PromotableFile]:
    """Files that can promote and have not been promoted yet (failed promotions are retried)."""
    where = ["can_promote", "silver_table IS NOT NULL", "coalesce(silver_status, '') <> 'promoted'", "ingestion_id > ?"]
    params: list = [after_ingestion_id]
    if tables is not None:
        where.append("silver_table IN (SELECT unnest(?))")
        params.append(list(tables))
    if tickers is not None:
        where.append("ticker IN (SELECT unnest(?))")
        params.append(list(tickers))
    rows = conn.execute(
        f"""
        SELECT ingestion_id, run_id, file_id, silver_table, ticker, bronze_path, fetched_at
        FROM ops.file_ingestions
        WHERE {" AND ".join(where)}
        ORDER BY ingestion_id
    """,
        params,
    ).fetchall()
    return [PromotableFile(*r) for r in rows]


def file_ingestions_for_run(conn: duckdb.DuckDBPyConnection, run_id: str) -> list[dict]:
    """The files a run fetched or promoted, for `pipeline status --run`."""
    cur = conn.execute(
        """
        SELECT ingestion_id, file_id, domain, dataset, discriminator, ticker, status_code, error_class, bronze_rows,
               coverage_from, coverage_to, can_promote, silver_table, silver_status, silver_inserted, silver_updated,
               silver_unchanged, silver_rejected, bronze_path
        FROM ops.file_ingestions WHERE run_id = ? OR silver_run_id = ? ORDER BY ingestion_id
    """,
        [run_id, run_id],
    )
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


# ---- Silver promotion ------------------------------------------------------------------------------------

MARK_PROMOTED_SQL = """
    UPDATE ops.file_ingestions AS l
    SET silver_status = 'promoted', silver_run_id = $run_id,
        silver_rows_read = s.rows_read, silver_inserted = s.inserted, silver_updated = s.updated,
        silver_unchanged = s.unchanged, silver_rejected = s.rejected, silver_duplicates = s.duplicates,
        silver_future_rows = s.future_rows, silver_coverage_from = s.coverage_from, silver_coverage_to = s.coverage_to,
        silver_started_at = $started_at, silver_finished_at = $finished_at, silver_error = NULL
    FROM {stats} AS s
    WHERE l.file_id = s.file_id
"""

MARK_FAILED_SQL = """
    UPDATE ops.file_ingestions AS l
    SET silver_status = 'failed', silver_run_id = $run_id,
        silver_rows_read = NULL, silver_inserted = NULL, silver_updated = NULL, silver_unchanged = NULL,
        silver_rejected = NULL, silver_duplicates = NULL, silver_future_rows = NULL, silver_coverage_from = NULL,
        silver_coverage_to = NULL, silver_started_at = $started_at, silver_finished_at = $finished_at,
        silver_error = f.problem
    FROM {files} AS f
    WHERE l.file_id = f.file_id AND f.problem IS NOT NULL
"""

RESET_SILVER_SQL = """
    UPDATE ops.file_ingestions
    SET silver_status = NULL, silver_run_id = NULL, silver_rows_read = NULL, silver_inserted = NULL,
        silver_updated = NULL, silver_unchanged = NULL, silver_rejected = NULL, silver_duplicates = NULL,
        silver_future_rows = NULL, silver_coverage_from = NULL, silver_coverage_to = NULL, silver_started_at = NULL,
        silver_finished_at = NULL, silver_error = NULL
    WHERE silver_table = $table AND ($all_tickers OR ticker IN (SELECT unnest($tickers)))
"""


def mark_promoted(
    conn: duckdb.DuckDBPyConnection, stats_table: str, *, run_id: str, started_at: dt.datetime, finished_at: dt.datetime
) -> None:
    """Mark the files of `stats_table` promoted, with its counts.

    `stats_table` (filled by the caller) has one row per file: file_id, rows_read, inserted, updated, unchanged,
    rejected, duplicates, future_rows (the rejected rows dated after their fetch day), coverage_from, coverage_to.
    """
    conn.execute(
        MARK_PROMOTED_SQL.format(stats=stats_table),
        {"run_id": run_id, "started_at": started_at, "finished_at": finished_at},
    )


def mark_failed(
    conn: duckdb.DuckDBPyConnection, files_table: str, *, run_id: str, started_at: dt.datetime, finished_at: dt.datetime
) -> None:
    """Mark failed the files of `files_table` (file_id, problem) whose `problem` is set; it becomes silver_error."""
    conn.execute(
        MARK_FAILED_SQL.format(files=files_table),
        {"run_id": run_id, "started_at": started_at, "finished_at": finished_at},
    )


def reset_silver(conn: duckdb.DuckDBPyConnection, table: str, tickers: Sequence[str] | None) -> None:
    """Forget the promotion of every file of `table` (of `tickers` only, when given): replay promotes them again."""
    conn.execute(RESET_SILVER_SQL, {"table": table, "all_tickers": tickers is None, "tickers": list(tickers or [])})
