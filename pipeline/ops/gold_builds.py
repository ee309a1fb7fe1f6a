"""`ops.gold_builds`, one row per Gold build: its only writer, and the last successful input state per table.

A build's row is committed 'running' before the work starts and closed afterwards ('success' with its input
watermarks in the data's own transaction, or 'failed' with the error), so a killed build never stays 'running'
past the next build of the same table, and the next build compares against the last *successful* one.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from pipeline.warehouse.dialect import next_id_sql


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def start_build(conn: duckdb.DuckDBPyConnection, asset: str, run_id: str) -> int:
    """Insert the 'running' row of a build of `asset` and return its build_id; rows of `asset` that a killed
    process left 'running' are closed as failed first. The caller owns the transaction."""
    conn.execute(
        """
        UPDATE ops.gold_builds
        SET status = 'failed', finished_at = ?, error_message = 'abandoned: the build never finished'
        WHERE asset = ? AND status = 'running'
    """,
        [_now(), asset],
    )
    # the id first, then the row: a DuckLake has neither sequences nor INSERT ... RETURNING
    build_id = conn.execute(
        f"SELECT {next_id_sql(conn, 'ops.gold_build_seq', 'ops.gold_builds', 'build_id')}"
    ).fetchone()[0]
    conn.execute(
        """
        INSERT INTO ops.gold_builds (build_id, asset, run_id, input_watermarks, status, started_at)
        VALUES (?, ?, ?, [], 'running', ?)
    """,
        [build_id, asset, run_id, _now()],
    )
    return int(build_id)


def finish_build(
    conn: duckdb.DuckDBPyConnection,
    build_id: int,
    status: str,
    *,
    mode: str | None = None,
    watermarks: list[str] | None = None,
    revisions: list[str] | None = None,
    tickers_touched: int | None = None,
    rows_written: int | None = None,
    promoted_to: list[str] | None = None,
    model_version: str | None = None,
    error: str | None = None,
) -> None:
    """Close a build's row with its outcome; what it read stays when not given. `promoted_to`: per Silver input
    table, `<table>@<newest promoted_at in its history>`; `model_version`: the hash of the table's SQL and columns
    (both migration 0004)."""
    conn.execute(
        """
        UPDATE ops.gold_builds
        SET status = ?, mode = coalesce(?, mode), input_watermarks = coalesce(?, input_watermarks),
            input_revisions = coalesce(?, input_revisions), input_promoted_to = coalesce(?, input_promoted_to),
            model_version = coalesce(?, model_version),
            tickers_touched = ?, rows_written = ?, finished_at = ?, error_message = ?
        WHERE build_id = ?
    """,
        [
            status,
            mode,
            watermarks,
            revisions,
            promoted_to,
            model_version,
            tickers_touched,
            rows_written,
            _now(),
            error,
            build_id,
        ],
    )


def last_successful_inputs(conn: duckdb.DuckDBPyConnection) -> dict[str, tuple[list[str], list[str]]]:
    """Gold table -> (input watermarks, input revisions) recorded by its latest successful build."""
    rows = conn.execute("""
        SELECT asset, input_watermarks, coalesce(input_revisions, [])
        FROM ops.gold_builds
        WHERE status = 'success'
        QUALIFY row_number() OVER (PARTITION BY asset ORDER BY build_id DESC) = 1
    """).fetchall()
    return {asset: (list(marks), list(revs)) for asset, marks, revs in rows}


@dataclass(frozen=True)
class LastBuild:
    """What the latest successful build of a table saw beyond its input watermarks (None: not recorded, either
    because there is no such build or because it predates migration 0004)."""

    promoted_to: list[str] | None  # per Silver input table, `<table>@<newest promoted_at>` in its history
    model_version: str | None  # the hash of the table's SQL and columns


def last_build(conn: duckdb.DuckDBPyConnection, asset: str) -> LastBuild:
    """The history marks and model version of the latest successful build of `asset`."""
    row = conn.execute(
        """
        SELECT input_promoted_to, model_version FROM ops.gold_builds
        WHERE asset = ? AND status = 'success'
        ORDER BY build_id DESC LIMIT 1
    """,
        [asset],
    ).fetchone()
    if row is None:
        return LastBuild(None, None)
    return LastBuild(None if row[0] is None else list(row[0]), row[1])
