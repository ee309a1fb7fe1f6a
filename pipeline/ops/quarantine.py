"""Quarantined Bronze files, as the ledger records them: what counts as a good file, and which quarantined files still
wait for a refetch.

Silver promotion verifies every Bronze file it reads against the ledger (`pipeline.silver.sql.VET_SQL`). A file that
fails to parse or to verify is quarantined (`quarantined_at`, `quarantine_reason`, written by
`file_ingestions.mark_quarantined`): it stays on disk untouched, is never promoted again, the rows it had promoted stay
in Silver, and it no longer counts as good coverage, so the planner requests its window again. It is *unresolved*
until a good file of the same identity, fetched later, covers the start of its window (any later good file, for
files without a window): the same rule that closes a hole left by a failed window. Until then `pipeline coverage`
counts it as an error file and `pipeline status` lists it.

Read-only; the one writer of the ledger is `pipeline.ops.file_ingestions`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from pipeline.keymap.model import DatasetIdentity

IDENTITY = ("domain", "source", "dataset", "discriminator", "ticker")


def good_file(alias: str = "") -> str:
    """SQL: the ledger row is a good file: a successful, promotable answer that is not quarantined. Only good files
    count as coverage and move a watermark."""
    a = f"{alias}." if alias else ""
    return f"({a}error_class IS NULL AND {a}can_promote AND {a}quarantined_at IS NULL)"


def superseded(alias: str, source: str) -> str:
    """SQL: a good file of the same identity in `source`, fetched after the row `alias`, covers the start of its
    window (for a row without a window: any later good file)."""
    same = " AND ".join(f"g.{c} = {alias}.{c}" for c in IDENTITY)
    return f"""EXISTS (
        SELECT 1 FROM {source} g
        WHERE {good_file("g")} AND g.fetched_at > {alias}.fetched_at AND {same}
          AND ({alias}.window_from IS NULL
               OR (g.window_from <= {alias}.window_from AND g.window_to >= {alias}.window_from)))"""


def unresolved(alias: str, source: str = "ops.file_ingestions") -> str:
    """SQL: the row `alias` is a quarantined file that no good refetch has replaced yet. Use it in a WHERE, never in
    an aggregate FILTER: only a WHERE lets DuckDB filter the quarantined rows before it looks for their refetch."""
    return f"({alias}.quarantined_at IS NOT NULL AND NOT {superseded(alias, source)})"


@dataclass(frozen=True)
class QuarantinedFile:
    ingestion_id: int
    file_id: str
    identity: DatasetIdentity
    bronze_path: str
    reason: str
    quarantined_at: dt.datetime  # naive UTC, as the ledger stores it


def quarantined_files(
    conn: duckdb.DuckDBPyConnection, *, run_ids: Sequence[str] | None = None, unresolved_only: bool = True
) -> list[QuarantinedFile]:
    """Quarantined files, oldest quarantine first: by default those still waiting for a refetch; with `run_ids`,
    those the promotions or replays of these runs found."""
    where = [unresolved("q") if unresolved_only else "q.quarantined_at IS NOT NULL"]
    params: list = []
    if run_ids is not None:
        where.append("q.silver_run_id IN (SELECT unnest(?))")
        params.append(list(run_ids))
    rows = conn.execute(
        f"""
        SELECT q.ingestion_id, q.file_id, {", ".join(f"q.{c}" for c in IDENTITY)}, q.bronze_path, q.quarantine_reason,
               q.quarantined_at
        FROM ops.file_ingestions q
        WHERE {" AND ".join(where)}
        ORDER BY q.quarantined_at, q.ingestion_id
    """,
        params,
    ).fetchall()
    return [QuarantinedFile(r[0], r[1], DatasetIdentity(*r[2:7]), *r[7:]) for r in rows]
