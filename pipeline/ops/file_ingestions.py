"""`ops.file_ingestions`, one row per Bronze file: its only writer, and the queries over it.

Bronze registers files (`register_files`), Silver promotion marks them promoted, failed or quarantined
(`mark_promoted`, `mark_failed`, `mark_quarantined`: see `pipeline.ops.quarantine`) and replay resets them
(`reset_silver`) and records which identities it changed (`bump_revisions`); the planner, the sensors and Gold read
coverage, promotable files and input watermarks from here. Every function takes an open DuckDB connection, so the caller
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
from pipeline.ops.quarantine import good_file, superseded, unresolved
from pipeline.warehouse.dialect import is_lake

BRONZE_COLUMNS = tuple(f.name for f in dataclasses.fields(FileRecord))

_FRAME_TYPES = {
    "page": "Int64",
    "status_code": "Int64",
    "bronze_rows": "Int64",
    "bytes": "Int64",
    "wire_bytes": "Int64",
    "attempts": "Int64",
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
        updates = ", ".join(
            f"{c} = coalesce(s.{c}, t.{c})" if c == "file_md5" else f"{c} = s.{c}"  # a digest, once known, stays
            for c in BRONZE_COLUMNS
            if c not in ("run_id", "file_id")
        )
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
    tickers: Sequence[str] | None = None,
) -> dict[DatasetIdentity, Coverage]:
    """Good coverage per identity: only successful, promotable files that are not quarantined count (an error never
    moves a watermark).

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

    A quarantined file that no good refetch has replaced yet (`pipeline.ops.quarantine`) makes its identity due now
    (last_as_of NULL, `quarantined` counts them) and, like a hole, holds coverage_to just before its window, so the
    planner requests that window again.

    With `identity`, restrict to it (its ticker too, unless `ticker_wildcard`, which returns every ticker). With
    `tickers`, only those tickers (and ticker-less identities): cheaper on a large universe.
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
    if tickers is not None:
        where.append("(ticker = '' OR ticker IN (SELECT unnest(?)))")
        params.append(list(tickers))
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
            FROM f WHERE {good_file()}
            GROUP BY ALL
        ),
        holes AS (
            SELECT b.domain, b.source, b.dataset, b.discriminator, b.ticker, min(b.window_from) AS hole_from
            FROM f b JOIN good USING (domain, source, dataset, discriminator, ticker)
            WHERE NOT {good_file("b")} AND b.window_to < good.cov_to AND NOT {superseded("b", "f")}
            GROUP BY ALL
        ),
        quarantined AS (
            SELECT domain, source, dataset, discriminator, ticker, count(*) AS quarantined,
                   min(window_from) AS hole_from
            FROM f b WHERE {unresolved("b", "f")}
            GROUP BY ALL
        ),
        windows AS (
            SELECT domain, source, dataset, discriminator, ticker, window_from, window_to, as_of,
                   max(window_to) OVER (PARTITION BY domain, source, dataset, discriminator, ticker
                                        ORDER BY window_from, window_to
                                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS reached
            FROM f WHERE {good_file()} AND window_from IS NOT NULL AND window_to IS NOT NULL
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
            FROM (SELECT * FROM holes UNION ALL SELECT * FROM gaps
                  UNION ALL SELECT * EXCLUDE (quarantined) FROM quarantined WHERE hole_from IS NOT NULL)
            GROUP BY ALL
        )
        SELECT domain, source, dataset, discriminator, ticker, cov_from,
               CASE WHEN hole_from IS NULL THEN cov_to ELSE least(cov_to, CAST(hole_from - 1 AS DATE)) END,
               last_fetch, files, CASE WHEN hole_from IS NULL AND q.quarantined IS NULL THEN last_as_of END,
               first_from, coalesce(q.quarantined, 0)
        FROM good LEFT JOIN first_hole USING (domain, source, dataset, discriminator, ticker)
        LEFT JOIN (SELECT * EXCLUDE (hole_from) FROM quarantined) q
            USING (domain, source, dataset, discriminator, ticker)
    """,
        params,
    ).fetchall()
    return {DatasetIdentity(*r[:5]): Coverage(DatasetIdentity(*r[:5]), *r[5:]) for r in rows}


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
# The two parts of an identity's revision marker: the newest ingestion that changed its Silver rows, and the newest
# replay that changed them (`bump_revisions`; a replay re-promotes old files, so the first part cannot show it).
_REVISION = f"max(ingestion_id) FILTER (WHERE {_CHANGED_SILVER}), max(silver_revision)"


def _revision_marker(changed: int | None, replayed: int | None) -> str | None:
    """`revision=<id>`, plus `+replay<n>` once a replay changed the identity's rows; None when neither happened.
    Identities no replay changed keep the marker they had before replays were counted, so Gold sees no move."""
    if changed is None and replayed is None:
        return None
    return f"revision={'' if changed is None else changed}" + (f"+replay{replayed}" if replayed is not None else "")


def _promoted_into(conn: duckdb.DuckDBPyConnection, select: str, tables: Sequence[str]) -> list:
    """`select`, grouped by its plain columns and sorted, over the ledger rows promoted into `tables`.

    The watermark and revision queries below share it, so their filters and order agree by construction.
    """
    return conn.execute(
        f"""
        SELECT {select}
        FROM ops.file_ingestions
        WHERE silver_status = 'promoted' AND silver_table IN (SELECT unnest(?))
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
    """Per input identity, `<identity key>@revision=<newest ingestion id whose promotion changed Silver rows>`, with
    `+replay<n>` once a replay changed its rows (`_revision_marker`).

    Complements the coverage watermarks: a restatement or a corrected price inside covered dates changes Silver
    without moving coverage, but it does move this marker, so Gold rebuilds the affected tickers.
    """
    rows = _promoted_into(conn, f"domain, source, dataset, discriminator, ticker, {_REVISION}", tables)
    markers = [(DatasetIdentity(*r[:5]).key, _revision_marker(r[5], r[6])) for r in rows]
    return [f"{key}@{marker}" for key, marker in markers if marker is not None]


def input_state_by_table(
    conn: duckdb.DuckDBPyConnection, tables: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(watermarks, revisions) per Silver table, in one scan of the ledger.

    Per table, the same strings in the same order as `input_watermarks(conn, [table])` and
    `input_revisions(conn, [table])`. The Gold sensor reads the inputs of every Gold asset each tick; one
    grouped scan here replaces two scans per distinct input set (performance: the ledger has millions of rows).
    """
    select = f"silver_table, domain, source, dataset, discriminator, ticker, {_COVERAGE}, {_REVISION}"
    rows = _promoted_into(conn, select, tables)
    watermarks: dict[str, list[str]] = {}
    revisions: dict[str, list[str]] = {}
    for table, *ident, cov_from, cov_to, changed, replayed in rows:
        identity = DatasetIdentity(*ident)
        watermarks.setdefault(table, []).append(str(DatasetWatermark(identity, cov_from, cov_to)))
        marker = _revision_marker(changed, replayed)
        if marker is not None:
            revisions.setdefault(table, []).append(f"{identity.key}@{marker}")
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
    quarantine_reason: str | None = None  # set only for the quarantined files a replay lists (never read again)


# Files promotion offers: promotable, not promoted yet (failed promotions are retried), never a quarantined one.
PROMOTABLE = """can_promote AND silver_table IS NOT NULL AND coalesce(silver_status, '') <> 'promoted'
    AND quarantined_at IS NULL"""


def promotable_files(
    conn: duckdb.DuckDBPyConnection,
    *,
    tables: Sequence[str] | None = None,
    tickers: Sequence[str] | None = None,
    after_ingestion_id: int = 0,
    replay: bool = False,
) -> list[PromotableFile]:
    """Files that can promote and have not been promoted yet (failed promotions are retried; quarantined files never).

    With `replay`, after `reset_silver`: every file the replay rebuilds from, quarantined ones included (with their
    reason): promotion does not read them again, but keeps the rows they had promoted.
    """
    where = ["can_promote AND silver_table IS NOT NULL" if replay else PROMOTABLE, "ingestion_id > ?"]
    params: list = [after_ingestion_id]
    if tables is not None:
        where.append("silver_table IN (SELECT unnest(?))")
        params.append(list(tables))
    if tickers is not None:
        where.append("ticker IN (SELECT unnest(?))")
        params.append(list(tickers))
    rows = conn.execute(
        f"""
        SELECT ingestion_id, run_id, file_id, silver_table, ticker, bronze_path, fetched_at, quarantine_reason
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
               silver_unchanged, silver_rejected, bronze_path, quarantine_reason
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
        silver_started_at = $started_at, silver_finished_at = $finished_at, silver_error = NULL,
        file_md5 = coalesce(l.file_md5, s.file_md5)
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

MARK_QUARANTINED_SQL = """
    UPDATE ops.file_ingestions AS l
    SET quarantined_at = coalesce(l.quarantined_at, $at), quarantine_reason = coalesce(l.quarantine_reason, f.problem)
    FROM {files} AS f
    WHERE l.file_id = f.file_id AND f.problem IS NOT NULL AND NOT f.transient
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
    """Mark the files of `stats_table` promoted, with its counts, and record the digest of a file registered
    without one (its first successful read: `pipeline.bronze.envelope.file_digest`).

    `stats_table` (filled by the caller) has one row per file: file_id, rows_read, inserted, updated, unchanged,
    rejected, duplicates, future_rows (the rejected rows dated after their fetch day), coverage_from, coverage_to,
    file_md5.
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


def mark_quarantined(conn: duckdb.DuckDBPyConnection, files_table: str, *, at: dt.datetime) -> None:
    """Quarantine the files of `files_table` (file_id, problem, transient) whose problem is not transient: never
    promoted again, no longer good coverage (see `pipeline.ops.quarantine`). A file quarantined earlier keeps its
    first time and reason."""
    conn.execute(MARK_QUARANTINED_SQL.format(files=files_table), {"at": at})


def bump_revisions(conn: duckdb.DuckDBPyConnection, table: str, identities_table: str) -> int:
    """A replay changed the Silver rows of `table` for the identities in `identities_table` (domain, source, dataset,
    discriminator, ticker): give their files a new replay revision, so Gold's input state of exactly those identities
    moves. Returns the revision (0 when there was nothing to bump)."""
    if not conn.execute(f"SELECT count(*) FROM {identities_table}").fetchone()[0]:
        return 0
    revision = conn.execute("SELECT coalesce(max(silver_revision), 0) + 1 FROM ops.file_ingestions").fetchone()[0]
    conn.execute(
        f"""
        UPDATE ops.file_ingestions AS l SET silver_revision = $revision
        FROM {identities_table} AS c
        WHERE l.silver_table = $table AND l.domain = c.domain AND l.source = c.source AND l.dataset = c.dataset
          AND l.discriminator = c.discriminator AND l.ticker = c.ticker
    """,
        {"revision": revision, "table": table},
    )
    return revision


def reset_silver(conn: duckdb.DuckDBPyConnection, table: str, tickers: Sequence[str] | None) -> None:
    """Forget the promotion of every file of `table` (of `tickers` only, when given): replay promotes them again."""
    conn.execute(RESET_SILVER_SQL, {"table": table, "all_tickers": tickers is None, "tickers": list(tickers or [])})
