"""`ops.runs`, one row per pipeline run: its only writer, and the run overviews `pipeline status` prints.

A run's row is written by Bronze as it fetches, by the Dagster assets as they finish, and by the runner when
it closes out runs whose process died. Counts add up across the steps of one run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import duckdb


def record_run(
    conn: duckdb.DuckDBPyConnection,
    run_id: str,
    *,
    job: str | None,
    source_mode: str | None,
    status: str,
    requests: int = 0,
    skipped: int = 0,
    files: int = 0,
    rows: int = 0,
    errors: int = 0,
    message: str | None = None,
    finished: bool = False,
    deferred: int = 0,
) -> None:
    """Create or update a run record; counts add up across the steps of one run. `deferred`: requests the request
    budget did not pay for (also counted in `skipped`)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    conn.execute(
        """
        MERGE INTO ops.runs AS t
        USING (SELECT $run_id AS run_id, $job AS job, $mode AS source_mode, $now AS started_at,
                      CASE WHEN $finished THEN $now END AS finished_at, $status AS status,
                      $requests AS requests, $skipped AS skipped, $files AS files, $rows AS rows,
                      $errors AS errors, $message AS message, $deferred AS deferred) AS s
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
            message = coalesce(s.message, t.message),
            deferred = coalesce(t.deferred, 0) + s.deferred
        WHEN NOT MATCHED THEN INSERT (run_id, job, source_mode, started_at, finished_at, status, requests, skipped,
                                      files, rows, errors, message, deferred)
            VALUES (s.run_id, s.job, s.source_mode, s.started_at, s.finished_at, s.status, s.requests, s.skipped,
                    s.files, s.rows, s.errors, s.message, s.deferred)
    """,
        {
            "run_id": run_id,
            "job": job,
            "mode": source_mode,
            "now": now,
            "finished": finished,
            "status": status,
            "requests": requests,
            "skipped": skipped,
            "files": files,
            "rows": rows,
            "errors": errors,
            "message": message,
            "deferred": deferred,
        },
    )


def record_step(
    conn: duckdb.DuckDBPyConnection, run_id: str, *, job: str | None, files: int = 0, rows: int = 0, errors: int = 0
) -> None:
    """A Silver or Gold step that finished: its counts add to the run's, and files that failed make it partial."""
    record_run(
        conn,
        run_id,
        job=job,
        source_mode=None,
        status="partial" if errors else "success",
        files=files,
        rows=rows,
        errors=errors,
        finished=True,
    )


def record_failed_step(conn: duckdb.DuckDBPyConnection, run_id: str, *, job: str | None, message: str) -> None:
    """A step that raised: the run is failed for good, with the error (cut to 2,000 characters) as its message."""
    record_run(
        conn, run_id, job=job, source_mode=None, status="failed", errors=1, message=message[:2000], finished=True
    )


class SourceMismatch(RuntimeError):
    """The warehouse holds data of the other source (live FMP vs the bundled sample): nothing is fetched."""


SOURCES_SQL = """
    SELECT source_mode, count(*) AS runs
    FROM ops.runs AS r
    WHERE source_mode IS NOT NULL
      AND (files > 0 OR EXISTS (SELECT 1 FROM ops.file_ingestions f WHERE f.run_id = r.run_id))
    GROUP BY ALL
"""
"""Per source, the Bronze runs that left files in this warehouse (a crashed run's files count too, once
registered)."""


def check_source(conn: duckdb.DuckDBPyConnection, source_mode: str, warehouse: str) -> None:
    """Raise SourceMismatch when the warehouse holds files of the other source; `warehouse` names it.

    Sample and live files share the Bronze layout (`bronze/fmp/...`), Silver tables and Gold: once mixed, an
    invented number is indistinguishable from a real one. So a warehouse holds one source, for good: the sample
    source never writes beside live data, and live data never lands beside the demo's invented data (a wrong
    number is worse than a missing one)."""
    held = dict(conn.execute(SOURCES_SQL).fetchall())
    other = {mode: n for mode, n in held.items() if mode != source_mode}
    if not other:
        return
    if source_mode == "sample":
        n = sum(other.values())
        raise SourceMismatch(
            f"the warehouse {warehouse} holds live FMP data ({n} run{'s' if n > 1 else ''}); the bundled sample "
            "source never writes beside it: set FMP_API_KEY to fetch live data, or point PIPELINE_DATA_DIR at "
            "another folder for the sample data"
        )
    n = other.get("sample", 0) or sum(other.values())
    raise SourceMismatch(
        f"the warehouse {warehouse} holds the bundled sample source's invented data ({n} run{'s' if n > 1 else ''}); "
        "live FMP data never lands beside it, where an invented number would pass for a real one: point "
        "PIPELINE_DATA_DIR at another folder for live data"
        + (" (or delete this one: it holds nothing but sample data)" if source_mode not in held else "")
    )


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
    """One run's row as a dict, or None."""
    cur = conn.execute("SELECT * FROM ops.runs WHERE run_id = ?", [run_id])
    row = cur.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cur.description], row))


def deferred_runs(conn: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> list[tuple[str, int, str]]:
    """(run id, requests deferred, the run's message saying which and why) for the runs among `run_ids` whose
    Bronze steps deferred requests for the request budget."""
    rows = conn.execute(
        "SELECT run_id, deferred, message FROM ops.runs WHERE deferred > 0 AND run_id IN (SELECT unnest(?))",
        [list(run_ids)],
    ).fetchall()
    order = {run_id: n for n, run_id in enumerate(run_ids)}
    return sorted(((r[0], int(r[1]), r[2] or "") for r in rows), key=lambda r: order[r[0]])


def fail_abandoned(conn: duckdb.DuckDBPyConnection, run_ids: Sequence[str]) -> None:
    """Mark failed the runs among `run_ids` still 'running': their process died before they finished."""
    conn.execute(
        """
        UPDATE ops.runs
        SET status = 'failed', finished_at = now() AT TIME ZONE 'UTC',
            message = coalesce(message || '; ', '') || 'abandoned: the process died before the run finished'
        WHERE status = 'running' AND run_id IN (SELECT unnest(?))
    """,
        [list(run_ids)],
    )
