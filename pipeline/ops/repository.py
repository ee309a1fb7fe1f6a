"""The ops ledger: writes and queries over `ops.file_ingestions`, `ops.runs` and `ops.gold_builds`.

Every function takes an open DuckDB connection, so the caller decides how long it lives (short, never during
network I/O) and whether it is read-only. Set-based SQL throughout: the ledger grows to millions of rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import duckdb
import pandas as pd

from pipeline.bronze.envelope import BronzeEnvelope
from pipeline.keymap.model import DatasetIdentity, DatasetWatermark
from pipeline.warehouse.dialect import is_lake

IDENTITY_COLUMNS = ("domain", "source", "dataset", "discriminator", "ticker")

BRONZE_COLUMNS = (
    "run_id", "file_id", "domain", "source", "dataset", "discriminator", "ticker", "bronze_path", "request_path",
    "page", "as_of", "window_from", "window_to", "status_code", "error_class", "error_message", "bronze_rows", "bytes",
    "body_sha256", "coverage_from", "coverage_to", "fetched_at", "elapsed_ms", "can_promote", "silver_table",
)


def file_record(envelope: BronzeEnvelope, bronze_path: str, silver_table: str | None) -> dict:
    """The ledger row of one Bronze file (Bronze columns only)."""
    ident = envelope.identity
    return {
        "run_id": envelope.run_id,
        "file_id": envelope.file_id,
        "domain": ident.domain,
        "source": ident.source,
        "dataset": ident.dataset,
        "discriminator": ident.discriminator,
        "ticker": ident.ticker,
        "bronze_path": bronze_path,
        "request_path": envelope.request.path,
        "page": envelope.request.page,
        "as_of": envelope.request.as_of,
        "window_from": envelope.request.window_from,
        "window_to": envelope.request.window_to,
        "status_code": envelope.status_code,
        "error_class": envelope.error_class,
        "error_message": envelope.error_message,
        "bronze_rows": envelope.row_count,
        "bytes": envelope.bytes,
        "body_sha256": envelope.body_sha256,
        "coverage_from": envelope.coverage_from,
        "coverage_to": envelope.coverage_to,
        "fetched_at": envelope.fetched_at.astimezone(dt.UTC).replace(tzinfo=None),
        "elapsed_ms": envelope.elapsed_ms,
        "can_promote": envelope.can_promote,
        "silver_table": silver_table,
    }


_FRAME_TYPES = {
    "page": "Int64", "status_code": "Int64", "bronze_rows": "Int64", "bytes": "Int64", "elapsed_ms": "float64",
    "can_promote": "bool",
}


def register_files(conn: duckdb.DuckDBPyConnection, records: Sequence[dict]) -> int:
    """Upsert ledger rows keyed by (run_id, file_id): a rerun updates, never duplicates. Returns rows written.

    A MERGE, not INSERT ... ON CONFLICT, because a DuckLake has no key to conflict on. There the new rows'
    ingestion ids (a sequence on the file) are max + n, which grow in commit order because registrations
    hold the lake's exclusive write lock."""
    if not records:
        return 0
    frame = pd.DataFrame.from_records(list(records), columns=list(BRONZE_COLUMNS))
    frame = frame.drop_duplicates(["run_id", "file_id"], keep="last")   # a MERGE source may name a row once
    for col, dtype in _FRAME_TYPES.items():
        frame[col] = frame[col].astype(dtype)
    for col in ("as_of", "window_from", "window_to", "coverage_from", "coverage_to"):
        frame[col] = pd.to_datetime(frame[col]).dt.date
    conn.register("_incoming_files", frame)
    try:
        cols = ", ".join(BRONZE_COLUMNS)
        casts = ", ".join(
            f"CAST({c} AS DATE) AS {c}" if c in ("as_of", "window_from", "window_to", "coverage_from", "coverage_to")
            else f"CAST({c} AS TIMESTAMP) AS {c}" if c == "fetched_at" else c
            for c in BRONZE_COLUMNS)
        updates = ", ".join(f"{c} = s.{c}" for c in BRONZE_COLUMNS if c not in ("run_id", "file_id"))
        values = ", ".join(f"s.{c}" for c in BRONZE_COLUMNS)
        if is_lake(conn):
            casts += (", (SELECT coalesce(max(ingestion_id), 0) FROM ops.file_ingestions)"
                      " + row_number() OVER () AS ingestion_id")
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
    ids = list(file_ids)
    if not ids:
        return set()
    rows = conn.execute("SELECT file_id FROM ops.file_ingestions WHERE file_id IN (SELECT unnest(?))", [ids]).fetchall()
    return {r[0] for r in rows}


@dataclass(frozen=True)
class Coverage:
    identity: DatasetIdentity
    coverage_from: dt.date | None
    coverage_to: dt.date | None
    last_fetched_at: dt.datetime | None
    files: int
    last_as_of: dt.date | None = None   # planning date of the newest good fetch: cadence compares with this
    first_window_from: dt.date | None = None   # start of the oldest good date window (a hole before it is missing)


def latest_bronze_coverage(conn: duckdb.DuckDBPyConnection, identity: DatasetIdentity | None = None,
                           *, ticker_wildcard: bool = False) -> dict[DatasetIdentity, Coverage]:
    """Good coverage per identity: only successful, promotable files count (an error never moves a watermark).

    A failed date window that lies before good coverage (a middle window of a split backfill failed while
    later windows succeeded) is a hole: until a later good file covers its start again, coverage_to is held
    just before the hole and last_as_of is NULL (due now), so the next run re-requests it. So are days that no
    good window covers at all, between two windows or after the last one up to its planning date: a run killed
    mid-fetch leaves no file for its unfinished windows, yet its finished ones carry today's planning date. A
    missing *first* window is visible through `first_window_from`, which the planner compares with the recipe's
    history start.

    With `identity`, restrict to it (its ticker too, unless `ticker_wildcard`, which returns every ticker).
    """
    where = ["true"]
    params: list = []
    if identity is not None:
        for col in ("domain", "source", "dataset", "discriminator") + (() if ticker_wildcard else ("ticker",)):
            where.append(f"{col} = ?")
            params.append(getattr(identity, col) or "")
    rows = conn.execute(f"""
        WITH f AS (SELECT * FROM ops.file_ingestions WHERE {' AND '.join(where)}),
        good AS (
            SELECT domain, source, dataset, discriminator, ticker, min(coverage_from) AS cov_from,
                   max(coverage_to) AS cov_to, max(fetched_at) AS last_fetch, count(*) AS files, max(as_of) AS last_as_of,
                   min(window_from) AS first_from
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
    """, params).fetchall()
    return {DatasetIdentity(*r[:5]): Coverage(DatasetIdentity(*r[:5]), r[5], r[6], r[7], r[8], r[9], r[10])
            for r in rows}


def latest_silver_coverage(conn: duckdb.DuckDBPyConnection, tables: Sequence[str] | None = None) -> dict[DatasetIdentity, Coverage]:
    """Coverage that reached Silver, per identity (optionally only identities feeding `tables`)."""
    where = "silver_status = 'promoted'"
    params: list = []
    if tables:
        where += " AND silver_table IN (SELECT unnest(?))"
        params.append(list(tables))
    rows = conn.execute(f"""
        SELECT domain, source, dataset, discriminator, ticker,
               min(coalesce(silver_coverage_from, coverage_from)), max(coalesce(silver_coverage_to, coverage_to)),
               max(fetched_at), count(*)
        FROM ops.file_ingestions
        WHERE {where}
        GROUP BY ALL
    """, params).fetchall()
    return {DatasetIdentity(*r[:5]): Coverage(DatasetIdentity(*r[:5]), r[5], r[6], r[7], r[8]) for r in rows}


def input_watermarks(conn: duckdb.DuckDBPyConnection, tables: Sequence[str]) -> list[str]:
    """Canonical DatasetWatermark strings of everything promoted into `tables`, sorted.

    Gold builds record these; the gold sensor compares them. The last promotion (highest ingestion id)
    is part of the string for snapshot datasets via coverage_to = fetch date, so a new snapshot moves it.
    """
    rows = conn.execute("""
        SELECT domain, source, dataset, discriminator, ticker,
               min(coalesce(silver_coverage_from, coverage_from, CAST(fetched_at AS DATE))),
               max(coalesce(silver_coverage_to, coverage_to, CAST(fetched_at AS DATE)))
        FROM ops.file_ingestions
        WHERE silver_status = 'promoted' AND silver_table IN (SELECT unnest(?))
        GROUP BY ALL
        ORDER BY ALL
    """, [list(tables)]).fetchall()
    return [str(DatasetWatermark(DatasetIdentity(*r[:5]), r[5], r[6])) for r in rows]


def input_revisions(conn: duckdb.DuckDBPyConnection, tables: Sequence[str]) -> list[str]:
    """Per input identity, `<identity key>@revision=<newest ingestion id whose promotion changed Silver rows>`.

    Complements the coverage watermarks: a restatement or a corrected price inside covered dates changes Silver
    without moving coverage, but it does move this marker, so Gold rebuilds the affected tickers.
    """
    rows = conn.execute("""
        SELECT domain, source, dataset, discriminator, ticker, max(ingestion_id)
        FROM ops.file_ingestions
        WHERE silver_status = 'promoted' AND silver_table IN (SELECT unnest(?))
          AND coalesce(silver_inserted, 0) + coalesce(silver_updated, 0) > 0
        GROUP BY ALL
        ORDER BY ALL
    """, [list(tables)]).fetchall()
    return [f"{DatasetIdentity(*r[:5]).key}@revision={r[5]}" for r in rows]


def input_state_by_table(conn: duckdb.DuckDBPyConnection,
                         tables: Sequence[str]) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(watermarks, revisions) per Silver table, in one scan of the ledger.

    Per table, the same strings in the same order as `input_watermarks(conn, [table])` and
    `input_revisions(conn, [table])`. The Gold sensor reads the inputs of every Gold asset each tick; one
    grouped scan here replaces two scans per distinct input set (performance: the ledger has millions of rows).
    """
    rows = conn.execute("""
        SELECT silver_table, domain, source, dataset, discriminator, ticker,
               min(coalesce(silver_coverage_from, coverage_from, CAST(fetched_at AS DATE))),
               max(coalesce(silver_coverage_to, coverage_to, CAST(fetched_at AS DATE))),
               max(ingestion_id) FILTER (WHERE coalesce(silver_inserted, 0) + coalesce(silver_updated, 0) > 0)
        FROM ops.file_ingestions
        WHERE silver_status = 'promoted' AND silver_table IN (SELECT unnest(?))
        GROUP BY ALL
        ORDER BY ALL
    """, [list(tables)]).fetchall()
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


def promotable_files(conn: duckdb.DuckDBPyConnection, *, tables: Sequence[str] | None = None,
                     tickers: Sequence[str] | None = None, after_ingestion_id: int = 0) -> list[PromotableFile]:
    """Files that can promote and have not been promoted yet (failed promotions are retried)."""
    where = ["can_promote", "silver_table IS NOT NULL", "coalesce(silver_status, '') <> 'promoted'", "ingestion_id > ?"]
    params: list = [after_ingestion_id]
    if tables is not None:
        where.append("silver_table IN (SELECT unnest(?))")
        params.append(list(tables))
    if tickers is not None:
        where.append("ticker IN (SELECT unnest(?))")
        params.append(list(tickers))
    rows = conn.execute(f"""
        SELECT ingestion_id, run_id, file_id, silver_table, ticker, bronze_path, fetched_at
        FROM ops.file_ingestions
        WHERE {' AND '.join(where)}
        ORDER BY ingestion_id
    """, params).fetchall()
    return [PromotableFile(*r) for r in rows]


# ---- runs -----------------------------------------------------------------------------------------------

def record_run(conn: duckdb.DuckDBPyConnection, run_id: str, *, job: str | None, source_mode: str | None,
               status: str, requests: int = 0, skipped: int = 0, files: int = 0, rows: int = 0, errors: int = 0,
               message: str | None = None, finished: bool = False) -> None:
    """Create or update a run record; counts add up across the steps of one run."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    conn.execute("""
        MERGE INTO ops.runs AS t
        USING (SELECT $run_id AS run_id, $job AS job, $mode AS source_mode, $now AS started_at,
                      CASE WHEN $finished THEN $now END AS finished_at, $status AS status,
                      $requests AS requests, $skipped AS skipped, $files AS files, $rows AS rows,
                      $errors AS errors, $message AS message) AS s
        ON t.run_id = s.run_id
        WHEN MATCHED THEN UPDATE SET
            job = coalesce(s.job, t.job),
            source_mode = coalesce(s.source_mode, t.source_mode),
            finished_at = CASE WHEN $finished THEN $now ELSE t.finished_at END,
            status = CASE WHEN t.status = 'failed' THEN 'failed'
                          WHEN t.status = 'partial' AND s.status = 'success' THEN 'partial'
                          ELSE s.status END,
            requests = t.requests + s.requests,
            skipped = t.skipped + s.skipped,
            files = t.files + s.files,
            rows = t.rows + s.rows,
            errors = t.errors + s.errors,
            message = coalesce(s.message, t.message)
        WHEN NOT MATCHED THEN INSERT (run_id, job, source_mode, started_at, finished_at, status, requests, skipped,
                                      files, rows, errors, message)
            VALUES (s.run_id, s.job, s.source_mode, s.started_at, s.finished_at, s.status, s.requests, s.skipped,
                    s.files, s.rows, s.errors, s.message)
    """, {"run_id": run_id, "job": job, "mode": source_mode, "now": now, "finished": finished, "status": status,
          "requests": requests, "skipped": skipped, "files": files, "rows": rows, "errors": errors, "message": message})


RUN_OVERVIEW_SQL = """
    WITH files AS (
        SELECT run_id,
               count(*)                                   AS files,
               sum(bronze_rows)                           AS bronze_rows,
               count(*) FILTER (WHERE error_class IS NOT NULL) AS file_errors,
               count(*) FILTER (WHERE silver_status = 'promoted') AS promoted,
               min(fetched_at) AS first_fetch, max(fetched_at) AS last_fetch
        FROM ops.file_ingestions
        WHERE run_id IN (SELECT run_id FROM ops.runs ORDER BY started_at DESC LIMIT $limit)
        GROUP BY run_id
    )
    SELECT r.run_id, r.job, r.source_mode, r.status, r.started_at, r.finished_at, r.requests, r.skipped,
           coalesce(f.files, 0) AS files, coalesce(f.bronze_rows, 0) AS bronze_rows,
           coalesce(f.file_errors, 0) + 0 AS file_errors, r.errors, coalesce(f.promoted, 0) AS promoted, r.message
    FROM ops.runs r LEFT JOIN files f USING (run_id)
    ORDER BY r.started_at DESC
    LIMIT $limit
"""


def run_overviews(conn: duckdb.DuckDBPyConnection, limit: int = 20) -> list[dict]:
    """Recent runs, newest first, with file counts from the ledger (only the shown runs are aggregated)."""
    cur = conn.execute(RUN_OVERVIEW_SQL, {"limit": limit})
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def get_run(conn: duckdb.DuckDBPyConnection, run_id: str) -> dict | None:
    cur = conn.execute("SELECT * FROM ops.runs WHERE run_id = ?", [run_id])
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row))


def file_ingestions_for_run(conn: duckdb.DuckDBPyConnection, run_id: str) -> list[dict]:
    cur = conn.execute("""
        SELECT ingestion_id, file_id, domain, dataset, discriminator, ticker, status_code, error_class, bronze_rows,
               coverage_from, coverage_to, can_promote, silver_table, silver_status, silver_inserted, silver_updated,
               silver_unchanged, silver_rejected, bronze_path
        FROM ops.file_ingestions WHERE run_id = ? OR silver_run_id = ? ORDER BY ingestion_id
    """, [run_id, run_id])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]
