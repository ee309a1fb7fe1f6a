"""One batch of Bronze files on its way to Silver: registered with its file-system problems, read in one scan,
and vetted in SQL; only files the reader could not parse are looked at one by one (`_diagnose`), and when the
read itself fails the culprits are found by bisection (`_unreadable_files`).

Every problem is either about the file (it is missing, is not a regular file, cannot be parsed or does not verify:
the file is quarantined) or *transient* (the file exists but cannot be read right now: an I/O error, a permission;
it is retried, never quarantined). A Bronze root that is not there at all is the configuration's problem, not the
files': it raises before anything is judged.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from pathlib import Path

import duckdb
import fsspec

from pipeline.bronze.envelope import ENVELOPE_VERSION
from pipeline.bronze.store import ObjectBronzeStore, is_url
from pipeline.ops.file_ingestions import PromotableFile
from pipeline.silver.csv_scan import body_paths, csv_scan_sql
from pipeline.silver.errors import PromotionError
from pipeline.silver.shape import TableShape
from pipeline.silver.sql import FILES, VET_SQL, read_json_sql, scan_sql

# The reader's maximum_object_size: at least this, else the largest file of the batch (one envelope per line).
MIN_OBJECT_BYTES = 16 * 1024 * 1024


def _path_problem(root: str, bronze_path: str) -> tuple[str, str | None, int, bool]:
    """(absolute path, why it cannot be read or None, size in bytes, whether the problem is transient). Only
    file-system facts: whatever is inside the file is vetted in SQL. A file the scan could not open would fail the
    whole read, so a missing or unreadable file is caught here."""
    # lexical normalisation is enough (resolving every path costs syscalls per file): a ledger path with
    # '..' that leaves the root is refused
    path = os.path.normpath(os.path.join(root, bronze_path))
    if not path.startswith(root + os.sep):
        return path, f"Bronze path {bronze_path!r} points outside the Bronze root", 0, False
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path, f"Bronze file {bronze_path} is missing", 0, False
    except OSError as exc:
        return path, f"Bronze file {bronze_path} cannot be read: {exc.strerror or exc}", 0, True
    if not stat.S_ISREG(st.st_mode):
        return path, f"Bronze file {bronze_path} is not a regular file", 0, False
    if not os.access(path, os.R_OK):
        return path, f"Bronze file {bronze_path} cannot be read: permission denied", 0, True
    return path, None, st.st_size, False


def register_batch(
    conn: duckdb.DuckDBPyConnection, files: Sequence[PromotableFile], bronze_root: Path | str
) -> tuple[list[str], int]:
    """The batch as a temp table with the file-system problem of each file (a file quarantined earlier, which a
    replay lists, is not looked at again: its problem is its quarantine); returns the readable paths and the largest
    file size in bytes."""
    if is_url(bronze_root):
        # Bronze on an object store (an fsspec URL): DuckDB reads its URLs through the store's fsspec filesystem
        store = ObjectBronzeStore(str(bronze_root))
        if not store.fs.exists(store.prefix):
            raise PromotionError(f"the Bronze location {bronze_root} does not exist; nothing was promoted")
        located = store.batch_locations(conn, [f.bronze_path for f in files])
        checked = [(path, problem, size, False) for path, size, problem in located]
    else:
        root = os.path.realpath(bronze_root)
        if not os.path.isdir(root):  # an unmounted disk or a wrong PIPELINE_DATA_DIR: no file is to blame
            raise PromotionError(f"the Bronze folder {root} does not exist; nothing was promoted")
        checked = [_path_problem(root, f.bronze_path) for f in files]
    checked = [
        (c[0], f"quarantined earlier: {f.quarantine_reason}", 0, False) if f.quarantine_reason else c
        for f, c in zip(files, checked)
    ]
    conn.execute(
        """
        CREATE TEMP TABLE _promote_batch AS
        SELECT unnest($ingestion_ids)::BIGINT AS ingestion_id, unnest($file_ids)::VARCHAR AS file_id,
               unnest($names)::VARCHAR AS filename, unnest($fetched)::TIMESTAMP AS fetched_at,
               unnest($problems)::VARCHAR AS problem, unnest($transient)::BOOLEAN AS transient
    """,
        {
            "ingestion_ids": [f.ingestion_id for f in files],
            "file_ids": [f.file_id for f in files],
            "names": [c[0] for c in checked],
            "fetched": [f.fetched_at for f in files],
            "problems": [c[1] for c in checked],
            "transient": [c[3] for c in checked],
        },
    )
    readable = [c[0] for c in checked if c[1] is None]
    return readable, max((c[2] for c in checked), default=0)


def scan_and_vet(conn: duckdb.DuckDBPyConnection, shape: TableShape, readable: list[str], largest: int) -> None:
    """Read the batch once and vet every file in SQL; only files the reader could not parse are looked at
    one by one (`_diagnose`)."""
    if readable:
        max_bytes = max(MIN_OBJECT_BYTES, largest + 1024)
        try:
            if shape.csv:  # bulk CSV bodies, read with DuckDB's CSV reader
                bodies = body_paths(readable)
                params = {"paths": readable, **({"csv_paths": bodies} if bodies else {})}
                conn.execute(csv_scan_sql(shape, max_bytes, bool(bodies)), params)
            else:
                conn.execute(scan_sql(shape, max_bytes), {"paths": readable})
        except duckdb.Error as exc:
            # The reader skips unparsable files, so this is I/O failing under it (a file vanished or the disk
            # failed mid-read). The transaction is aborted: name the culprit(s) so the retry can be acted on.
            culprits = _unreadable_files(shape, readable, max_bytes)
            named = ", ".join(culprits[:5]) or "no single file (the batch as a whole)"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PromotionError(
                f"silver.{shape.spec.table}: reading the batch failed at {named}: {reason}; nothing was committed"
            ) from exc
        conn.execute(VET_SQL)
    else:
        conn.execute(
            f"CREATE TEMP TABLE {FILES} AS SELECT *, NULL::VARCHAR AS file_md5, false AS _diagnose, 0 AS rows_read "
            "FROM _promote_batch"
        )
    unparsed = conn.execute(f"SELECT file_id, filename FROM {FILES} WHERE _diagnose").fetchall()
    if unparsed:
        verdicts = [_diagnose(r[1]) for r in unparsed]
        conn.execute(
            f"UPDATE {FILES} SET problem = p.problem, transient = p.transient, _diagnose = false "
            "FROM (SELECT unnest($ids) AS file_id, unnest($problems) AS problem, unnest($transient) AS transient) AS p "
            f"WHERE {FILES}.file_id = p.file_id",
            {
                "ids": [r[0] for r in unparsed],
                "problems": [v[0] for v in verdicts],
                "transient": [v[1] for v in verdicts],
            },
        )


def _diagnose(path: str) -> tuple[str, bool]:
    """Why the reader could not take this file as one JSON envelope (only called for such files), and whether that
    is transient (the file could not be read now) rather than about its content."""
    try:
        with fsspec.open(path, "rb") as fh:  # a local path or an object-store URL
            data = fh.read()
    except FileNotFoundError:
        return "Bronze file is missing", False
    except OSError as exc:
        return f"Bronze file cannot be read: {exc.strerror or exc}", True
    try:
        doc = json.loads(data)
    except ValueError as exc:
        return f"not valid JSON: {exc}", False
    if not isinstance(doc, dict) or doc.get("envelope_version") != ENVELOPE_VERSION:
        version = doc.get("envelope_version") if isinstance(doc, dict) else None
        return f"not a Bronze envelope (envelope_version {version or 'missing'})", False
    return "not a Bronze envelope on one line (the file holds a valid envelope spread over several lines)", False


def _unreadable_files(shape: TableShape, paths: list[str], max_bytes: int) -> list[str]:
    """The files whose read fails, found by bisection in a scratch connection (failure path only)."""
    scratch = duckdb.connect()
    sql = f"SELECT count(*), sum(len(d.content)) FROM {read_json_sql(shape, max_bytes)}"

    def fails(chunk: list[str]) -> bool:
        try:
            scratch.execute(sql, {"paths": chunk}).fetchall()
            return False
        except duckdb.Error:
            return True

    def bisect(chunk: list[str]) -> list[str]:
        if not fails(chunk):
            return []
        if len(chunk) == 1:
            return chunk
        mid = len(chunk) // 2
        return bisect(chunk[:mid]) + bisect(chunk[mid:])

    try:
        return bisect(paths)
    finally:
        scratch.close()
