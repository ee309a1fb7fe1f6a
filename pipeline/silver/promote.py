"""Set-based Silver promotion: many Bronze envelopes become typed, de-duplicated Silver rows with history and ledger.

Why it is built this way:

- One scan per batch: a single read over every file of the batch (`read_ndjson_objects` and one
  `json_transform` per file) gives each file's envelope fields and its typed rows. Vetting is one SQL
  statement over that scan and the ledger; the rest is a handful of set statements over temp tables. No
  Python loop ever touches a row, and none touches a file's content unless the reader could not parse that
  file, so a batch of thousands of files costs about what DuckDB reading them costs.
- Types come from the keymap, never from DuckDB sniffing a sample (`pipeline.silver.cast`): a value that
  cannot be cast is NULL; a NULL in a key or NOT NULL column rejects the row, counted per file. So does a row
  dated after the New York day of its fetch, unless the entry sets `allow_future_dates` (counted apart too).
- Per-ticker tables take `ticker` from the envelope (the request), never from the payload.
- Every row is merged by its full key; there is no per-dataset watermark that could drop a late row.
- Updates really happen: within a batch the rows of one key form a chain ordered by (fetched_at,
  file_id); each change in the chain is a version. The newest version is written to Silver (INSERT for a
  new key, UPDATE for a changed one), every version is written to `<table>__history` with
  valid_from/valid_to, so restatements stay visible. A row whose values equal Silver's is counted as
  unchanged and not written at all. A row whose (fetched_at, file_id) is older than the lineage Silver
  already holds is *stale*: it never overwrites (the UPDATE repeats the guard) and is counted as a
  duplicate. Because versions are chained inside the batch, promoting files one by one or all at once
  (replay) gives the same Silver and history.
- Counts add up: per file, rows_read = inserted + updated + unchanged + rejected + duplicates, where
  duplicates are rows that never become a version (repeated keys inside one file, keeping the last, and
  stale rows).

Bronze is verified on read. A file that is missing, is not valid JSON, is not a Bronze envelope, names another
file id or dataset identity than its ledger row, carries another body hash than the ledger recorded, says
`can_promote: false` or records an error, whose `content` is not an array (its row_count disagrees), or whose
bytes are not the ones the store wrote (their digest differs from the ledger's `file_md5`) is *quarantined*:
marked `silver_status='failed'` with `silver_error` naming the problem, plus `quarantined_at` and
`quarantine_reason`, and the rest of the batch is promoted. The file stays in Bronze untouched; it is never
offered again, and it no longer counts as good coverage, so the planner requests its window again
(`pipeline.ops.quarantine`). A *transient* problem (the file exists but cannot be read now) only marks it
failed, and `promotable_files` offers it again. Errors that are not about one file (I/O under the reader, SQL)
raise, and the caller's transaction rolls everything back.

Replay (`pipeline.silver.replay`) passes `kept`, the table's history as it was before it deleted it: the versions
that an unreadable file had promoted then join the batch as that file's rows, so they stay in Silver and history,
and the file's ledger row keeps saying `promoted` with their counts (while it stays quarantined).

Schema drift: API fields that no column maps, seen in the first row of the newest file of each dataset in
the batch, are returned in `drift_fields` and recorded once per (table, field) in `ops.schema_drift`
(migration 0002).

The caller owns the transaction: `with warehouse.transaction() as conn: promote_files(conn, ...)`. This module
holds that flow and its results; the batch's scan and vetting are in `batch`, the SQL in `sql`, the table's
shape in `shape` and the casting rules in `cast`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import duckdb

from pipeline.keymap.model import Keymap
from pipeline.ops import file_ingestions, schema_drift
from pipeline.ops.file_ingestions import PromotableFile
from pipeline.silver import sql
from pipeline.silver.batch import register_batch, scan_and_vet
from pipeline.silver.errors import PromotionError
from pipeline.silver.schema import ensure_table
from pipeline.silver.shape import TableShape, table_shape
from pipeline.warehouse.connection import retry_conflicts
from pipeline.warehouse.lake import silver_scopes

__all__ = ["FileOutcome", "PromotionError", "PromotionResult", "promote_files", "promote_waiting"]

PROMOTE_BATCH_FILES = 2000  # files per promotion transaction: bounds memory and the work lost to a crash


@dataclass(frozen=True)
class FileOutcome:
    """What promotion did with one Bronze file: the values written to its ledger row."""

    ingestion_id: int
    file_id: str
    status: str  # promoted | failed (transient: offered again) | quarantined (never again; counts: rows a replay kept)
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    duplicates: int = 0
    future_dated: int = 0  # of the rejected rows: dated after the New York day of the fetch
    coverage_from: dt.date | None = None
    coverage_to: dt.date | None = None
    error: str | None = None


@dataclass(frozen=True)
class PromotionResult:
    table: str
    files: int  # files promoted (the others are in per_file with status 'failed' or 'quarantined')
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    duplicates: int
    coverage_from: dt.date | None
    coverage_to: dt.date | None
    drift_fields: tuple[str, ...]  # API fields present in the payloads but not mapped by the keymap
    per_file: tuple[FileOutcome, ...] = field(default=(), repr=False)
    future_dated: int = 0  # of the rejected rows: dated after the New York day of their fetch

    @property
    def failed(self) -> tuple[FileOutcome, ...]:
        """Every file that did not promote: quarantined, or failed for a transient reason."""
        return tuple(f for f in self.per_file if f.status != "promoted")

    @property
    def quarantined(self) -> tuple[FileOutcome, ...]:
        return tuple(f for f in self.per_file if f.status == "quarantined")

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.inserted + self.updated + self.unchanged + self.rejected + self.duplicates

    def metadata(self) -> dict:
        """Plain values for Dagster materialization metadata."""
        return {
            "files": self.files,
            "failed_files": len(self.failed),
            "rows_read": self.rows_read,
            "inserted": self.inserted,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "duplicates": self.duplicates,
            "future_dated": self.future_dated,
            "coverage_from": self.coverage_from.isoformat() if self.coverage_from else None,
            "coverage_to": self.coverage_to.isoformat() if self.coverage_to else None,
            "drift_fields": list(self.drift_fields),
            "failed": [f"{f.file_id}: {f.error}" for f in self.failed][:20],
            "quarantined_files": len(self.quarantined),
        }


# ---- the entry point -------------------------------------------------------------------------------------


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _drop_temp(conn: duckdb.DuckDBPyConnection) -> None:
    for name in sql.TEMP_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS temp.{name}")


def promote_files(
    conn: duckdb.DuckDBPyConnection,
    keymap: Keymap,
    table: str,
    files: Sequence[PromotableFile],
    bronze_root: Path | str,
    run_id: str,
    *,
    kept: str | None = None,
) -> PromotionResult:
    """Promote Bronze files of one Silver table: Silver, history and ledger in the caller's transaction.

    Files that cannot promote are quarantined or marked failed (see the module docstring); everything else raises,
    and the caller's rollback leaves Silver, history and ledger as they were. `kept` (replay only) names a table
    with the history rows the batch's files had promoted before: those of a file that cannot be read are kept.
    """
    shape = table_shape(keymap, table)
    other = sorted({f.silver_table for f in files} - {table})
    if other:
        raise PromotionError(f"promote_files(table={table!r}) was given files of {other}; promote one table per call")
    if len({f.file_id for f in files}) != len(files):
        raise PromotionError("the batch lists a file twice")
    started_at = _utc_now()
    ensure_table(conn, shape.spec)
    _drop_temp(conn)
    try:
        return _promote(conn, shape, files, bronze_root, run_id, started_at, kept)
    finally:
        try:
            _drop_temp(conn)
        except duckdb.Error:
            pass  # the transaction is aborted: the caller rolls back, temp tables die with the connection


def _promote(
    conn: duckdb.DuckDBPyConnection,
    shape: TableShape,
    files: Sequence[PromotableFile],
    bronze_root: Path | str,
    run_id: str,
    started_at: dt.datetime,
    kept: str | None,
) -> PromotionResult:
    table = shape.spec.table
    readable, largest = register_batch(conn, files, bronze_root)
    scan_and_vet(conn, shape, readable, largest)
    if readable:
        # header rows of files without rows, and the rows of refused files (rare: usually deletes nothing)
        conn.execute(
            f"DELETE FROM {sql.ROWS} WHERE _ord IS NULL OR _file_id NOT IN "
            f"(SELECT file_id FROM {sql.FILES} WHERE problem IS NULL)"
        )
    else:
        conn.execute(f"CREATE TEMP TABLE {sql.ROWS} AS {sql.empty_rows_sql(shape)}")
    if kept is not None:
        conn.execute(sql.keep_rows_sql(shape, kept))
    conn.execute(sql.repeated_keys_sql(shape))
    if conn.execute("SELECT count(*) FROM _promote_repeated").fetchone()[0]:
        conn.execute(sql.chain_sql(shape))
        for statement in sql.replace_repeated_sql(shape):
            conn.execute(statement)

    params = {"run_id": run_id, "promoted_at": _utc_now()}
    expected = conn.execute(f"SELECT count(*) FROM {sql.ROWS} WHERE _is_last").fetchone()[0]
    if expected:
        conn.execute(sql.close_history_sql(shape))
        written = conn.execute(sql.insert_sql(shape), params).fetchone()[0]
        written += conn.execute(sql.update_sql(shape), params).fetchone()[0]
        if written != expected:
            raise PromotionError(
                f"silver.{table}: {written} rows were written but {expected} keys have a new "
                "version; nothing was committed"
            )
        conn.execute(sql.insert_history_sql(shape), params)
    conn.execute(f"CREATE TEMP TABLE _promote_file_stats AS {sql.file_stats_sql(shape)}")
    drift = _record_drift(conn, shape, run_id)
    return _finish(conn, shape, run_id, started_at, drift=drift)


def _record_drift(conn: duckdb.DuckDBPyConnection, shape: TableShape, run_id: str) -> tuple[str, ...]:
    """Unmapped fields of this batch; each is recorded once in ops.schema_drift (the first sighting wins)."""
    sample = [r[0] for r in conn.execute(sql.DRIFT_SAMPLE_SQL).fetchall()]
    if not sample:
        return ()
    conn.execute(sql.DRIFT_SQL, {"paths": sample, "mapped": list(shape.mapped_fields)})
    fields = tuple(r[0] for r in conn.execute("SELECT field FROM _promote_drift ORDER BY field").fetchall())
    if fields:
        schema_drift.record_drift(conn, shape.spec.table, "_promote_drift", run_id=run_id, recorded_at=_utc_now())
    return fields


def _finish(
    conn: duckdb.DuckDBPyConnection,
    shape: TableShape,
    run_id: str,
    started_at: dt.datetime,
    *,
    drift: tuple[str, ...],
) -> PromotionResult:
    """Write the ledger rows of the batch (promoted, failed, quarantined) and build the result.

    A file a replay kept rows of is first marked failed, then promoted with the counts of those rows: Silver holds
    them, and the reconciliation check counts them; it stays quarantined all the same.
    """
    times = {"run_id": run_id, "started_at": started_at, "finished_at": _utc_now()}
    # each mark is a join with the ledger (millions of rows): the usual batch has no problem file
    problems = conn.execute(f"SELECT count(*) FROM {sql.FILES} WHERE problem IS NOT NULL").fetchone()[0]
    if problems:
        file_ingestions.mark_failed(conn, sql.FILES, **times)
    file_ingestions.mark_promoted(conn, "_promote_file_stats", **times)
    if problems:
        file_ingestions.mark_quarantined(conn, sql.FILES, at=times["finished_at"])
    counts = {
        r[0]: r[1:]
        for r in conn.execute(
            "SELECT ingestion_id, rows_read, inserted, updated, unchanged, rejected, duplicates, future_rows, "
            "coverage_from, coverage_to FROM _promote_file_stats"
        ).fetchall()
    }
    outcomes = [
        FileOutcome(
            ingestion_id,
            file_id,
            "promoted" if problem is None else "failed" if transient else "quarantined",
            *counts.get(ingestion_id, ()),
            error=problem,
        )
        for ingestion_id, file_id, problem, transient in conn.execute(
            f"SELECT ingestion_id, file_id, problem, transient FROM {sql.FILES} ORDER BY ingestion_id"
        ).fetchall()
    ]
    good = [o for o in outcomes if o.status == "promoted"]
    froms = [o.coverage_from for o in good if o.coverage_from]
    tos = [o.coverage_to for o in good if o.coverage_to]
    result = PromotionResult(
        table=shape.spec.table,
        files=len(good),
        rows_read=sum(o.rows_read for o in good),
        inserted=sum(o.inserted for o in good),
        updated=sum(o.updated for o in good),
        unchanged=sum(o.unchanged for o in good),
        rejected=sum(o.rejected for o in good),
        duplicates=sum(o.duplicates for o in good),
        future_dated=sum(o.future_dated for o in good),
        coverage_from=min(froms) if froms else None,
        coverage_to=max(tos) if tos else None,
        drift_fields=drift,
        per_file=tuple(outcomes),
    )
    if not result.balanced:
        raise PromotionError(f"silver.{shape.spec.table}: counts do not add up ({result}); nothing was committed")
    return result


# ---- every waiting file of one table, batch by batch ------------------------------------------------------


class Transactions(Protocol):
    """What `promote_waiting` needs of the warehouse: `Warehouse` and the Dagster `WarehouseResource` both fit."""

    def transaction(self, scopes: Sequence[str] | None = None) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...


TICKER_COUNTS = ("files", "failed_files", "inserted", "updated", "unchanged", "rejected")


def add_outcome(counts: dict[str, int], outcome: FileOutcome) -> None:
    """Add one file's outcome to a ticker's counts (keys `TICKER_COUNTS`); a quarantined file is a failed one."""
    if outcome.status != "promoted":
        counts["failed_files"] += 1
        return
    counts["files"] += 1
    for key in ("inserted", "updated", "unchanged", "rejected"):
        counts[key] += getattr(outcome, key)


def promote_waiting(
    warehouse: Transactions,
    keymap: Keymap,
    table: str,
    tickers: list[str] | None,
    bronze_root: Path | str,
    run_id: str,
    log_fn: Callable[[str], None],
) -> dict:
    """Promote every waiting file of one table (for some tickers), in batches; returns summed metadata, and under
    "by_ticker" the counts (`TICKER_COUNTS`) of each ticker that had files.

    One transaction per batch of `PROMOTE_BATCH_FILES`, so a crash loses at most one batch of work and a rerun
    picks up the files still waiting. A DuckLake commit that meets a concurrent writer is retried as a whole.
    """
    totals = {
        "files": 0,
        "failed_files": 0,
        "rows_read": 0,
        "inserted": 0,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "duplicates": 0,
        "future_dated": 0,
        "quarantined_files": 0,
    }
    drift: set[str] = set()
    coverage: list = []
    failures: list[str] = []
    with warehouse.transaction() as conn:
        added = ensure_table(conn, keymap.tables()[table])
    if added:
        log_fn(f"silver.{table}: added column(s) {', '.join(added)} from the keymap")
    scopes = silver_scopes(table, tickers)

    by_ticker: dict[str, dict[str, int]] = {}  # per-ticker tables: what each ticker's partition is materialized with

    def promote_batch():
        with warehouse.transaction(scopes) as conn:
            files = file_ingestions.promotable_files(conn, tables=[table], tickers=tickers)
            batch = files[:PROMOTE_BATCH_FILES]
            return files, batch, (promote_files(conn, keymap, table, batch, bronze_root, run_id) if batch else None)

    while True:
        # a DuckLake commit may meet a concurrent one
        files, batch, result = retry_conflicts(promote_batch, log_fn=log_fn)
        if result is None:
            break
        meta = result.metadata()
        for k in totals:
            totals[k] += meta.get(k) or 0
        ticker_of = {f.ingestion_id: f.ticker for f in batch}
        for outcome in result.per_file:
            if ticker_of.get(outcome.ingestion_id):
                add_outcome(
                    by_ticker.setdefault(ticker_of[outcome.ingestion_id], dict.fromkeys(TICKER_COUNTS, 0)), outcome
                )
        drift.update(result.drift_fields)
        failures.extend(meta.get("failed") or [])
        path_of = {f.ingestion_id: f.bronze_path for f in batch}
        for outcome in result.quarantined:
            log_fn(
                f"silver.{table}: quarantined Bronze file {path_of[outcome.ingestion_id]}: {outcome.error} "
                "(kept on disk, never promoted; its window is due for a refetch)"
            )
        coverage += [d for d in (result.coverage_from, result.coverage_to) if d]
        log_fn(
            f"silver.{table}: promoted {result.files} file(s): +{result.inserted} new, {result.updated} updated, "
            f"{result.unchanged} unchanged, {result.rejected} rejected"
            + (f" ({result.future_dated} dated after their fetch day)" if result.future_dated else "")
        )
        if len(files) <= PROMOTE_BATCH_FILES:
            break
    totals["by_ticker"] = by_ticker
    totals["drift_fields"] = sorted(drift)
    totals["failures"] = failures[:20]
    totals["coverage_from"] = str(min(coverage)) if coverage else ""
    totals["coverage_to"] = str(max(coverage)) if coverage else ""
    return totals
