"""Set-based Silver promotion: many Bronze envelopes become one typed, de-duplicated MERGE with history and ledger.

Why it is built this way (see DESIGN section 7 and the earlier system's defects B4, B5, B6, B8, B14, B15):

- One `read_json` over every file of the batch, `content` unnested in SQL, and a handful of set statements over
  temp tables. No Python loop ever touches a row, so a batch of thousands of files costs about as much as
  DuckDB reading them.
- Types come from the keymap, never from DuckDB sniffing a sample: `read_json` gets an explicit row type
  (READ_TYPES) and the rest is cast in SQL, with rules that are the same for JSON and CSV payloads
  (`"164000"` is a number; `""`, `"."`, `"null"` and blanks are NULL; booleans stay three-valued; a
  fractional value is not rounded into an integer column; a timestamp's UTC offset is applied). A value
  that cannot be cast is NULL; a NULL in a key or NOT NULL column rejects the row, counted per file (B6, B14).
- Per-ticker tables take `ticker` from the envelope (the request), never from the payload.
- Every row is merged by its full key; there is no per-dataset watermark that could drop a late row (B5).
- Updates really happen (B4): within a batch the rows of one key form a chain ordered by (fetched_at,
  file_id); each change in the chain is a version. The newest version is MERGEd into Silver, every version
  is written to `<table>__history` with valid_from/valid_to, so restatements stay visible. A row whose
  (fetched_at, file_id) is older than the lineage Silver already holds is *stale*: it never overwrites (the
  MERGE repeats the guard) and is counted as a duplicate. Because versions are chained inside the batch,
  promoting files one by one or all at once (replay) gives the same Silver and history.
- Counts add up (B15): per file, rows_read = inserted + updated + unchanged + rejected + duplicates, where
  duplicates are rows that never become a version (repeated keys inside one file, keeping the last, and
  stale rows).

Bad files: a file that is missing, is not valid JSON, is not a Bronze envelope, names another file id, says
`can_promote: false`, or whose `content` is not an array (its row_count disagrees), is marked
`silver_status='failed'` with `silver_error` naming the problem, and the rest of the batch is promoted. The
file stays in Bronze and the ledger, and `promotable_files` offers it again, so nothing is lost. Errors that
are not about one file (I/O, SQL) raise, and the caller's transaction rolls everything back.

Schema drift: API fields seen in the first row of each file that no column maps are returned in
`drift_fields` and recorded once per (table, field) in `ops.schema_drift` (migration 0002).

The caller owns the transaction: `with warehouse.transaction() as conn: promote_files(conn, ...)`.
"""

from __future__ import annotations

import datetime as dt
import os
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import fsspec

from pipeline.bronze.envelope import ENVELOPE_VERSION
from pipeline.bronze.store import ObjectBronzeStore, is_url
from pipeline.keymap.model import Column, Keymap, SilverSpec
from pipeline.ops.repository import PromotableFile
from pipeline.silver.schema import ensure_table, history_table, qualified, quote

# read_json's maximum_object_size: at least this, else the largest file of the batch (an envelope is one line).
MIN_OBJECT_BYTES = 16 * 1024 * 1024
# Text that means "no value" in a text column (compared after trimming whitespace and lower-casing); the
# other types get NULL for these from their cast anyway.
NULL_TOKENS = ("", ".", "null")
WHITESPACE = " \t\r\n"

# Temp tables of one call; dropped at the start and the end so a connection can promote many batches.
_FILES, _ROWS = "_promote_files", "_promote_rows"


class PromotionError(RuntimeError):
    """The batch cannot be promoted as asked (wrong table, inconsistent MERGE); nothing was written."""


@dataclass(frozen=True)
class FileOutcome:
    """What promotion did with one Bronze file: the values written to its ledger row."""

    ingestion_id: int
    file_id: str
    status: str                         # promoted | failed
    rows_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    duplicates: int = 0
    coverage_from: dt.date | None = None
    coverage_to: dt.date | None = None
    error: str | None = None


@dataclass(frozen=True)
class PromotionResult:
    table: str
    files: int                          # files promoted (failed files are in per_file with status 'failed')
    rows_read: int
    inserted: int
    updated: int
    unchanged: int
    rejected: int
    duplicates: int
    coverage_from: dt.date | None
    coverage_to: dt.date | None
    drift_fields: tuple[str, ...]       # API fields present in the payloads but not mapped by the keymap
    per_file: tuple[FileOutcome, ...] = field(default=(), repr=False)

    @property
    def failed(self) -> tuple[FileOutcome, ...]:
        return tuple(f for f in self.per_file if f.status == "failed")

    @property
    def balanced(self) -> bool:
        return self.rows_read == self.inserted + self.updated + self.unchanged + self.rejected + self.duplicates

    def metadata(self) -> dict:
        """Plain values for Dagster materialization metadata."""
        return {
            "files": self.files, "failed_files": len(self.failed), "rows_read": self.rows_read,
            "inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged,
            "rejected": self.rejected, "duplicates": self.duplicates,
            "coverage_from": self.coverage_from.isoformat() if self.coverage_from else None,
            "coverage_to": self.coverage_to.isoformat() if self.coverage_to else None,
            "drift_fields": list(self.drift_fields),
            "failed": [f"{f.file_id}: {f.error}" for f in self.failed][:20],
        }


# ---- casting ---------------------------------------------------------------------------------------------

# How each keymap type is read from the payload (the explicit `read_json` types; nothing is sniffed).
# DOUBLE and DATE are converted by DuckDB's JSON reader itself: with `ignore_errors` a value it cannot convert
# ("", ".", "null", "n/a") becomes NULL, exactly like TRY_CAST, and numeric text ("164000") and timestamps
# for dates ("2024-11-01 06:01:36", "...T06:01:36Z") convert. The other types are read as text and cast in
# SQL, because the reader would round 12.7 into an integer, call 164000 a boolean and drop a UTC offset.
READ_TYPES: dict[str, str] = {
    "varchar": "VARCHAR", "double": "DOUBLE", "date": "DATE", "integer": "VARCHAR", "bigint": "VARCHAR",
    "boolean": "VARCHAR", "timestamp": "VARCHAR", "json": "JSON",
}


def cast_sql(column: Column, raw: str, read_type: str | None = None) -> str:
    """SQL turning `raw`, read as `read_type` (default READ_TYPES), into the column's type; NULL when it cannot."""
    kind = column.type
    read_type = read_type or READ_TYPES[kind]
    if read_type != "VARCHAR":
        return raw                          # converted by the reader (JSON null is SQL NULL)
    if kind == "varchar":
        blank = f"lower(trim({raw}, {_sql_text(WHITESPACE)})) IN ({', '.join(_sql_text(t) for t in NULL_TOKENS)})"
        return f"CASE WHEN {blank} THEN NULL ELSE {raw} END"
    if kind == "double":
        return f"TRY_CAST({raw} AS DOUBLE)"
    if kind == "date":
        return f"TRY_CAST(trim({raw}) AS DATE)"
    if kind in ("integer", "bigint"):
        # TRY_CAST alone would round 12.7 to 13; a fractional value is not an integer, so it becomes NULL.
        return f"CASE WHEN TRY_CAST({raw} AS DOUBLE) % 1 = 0 THEN TRY_CAST({raw} AS {column.duckdb_type}) END"
    if kind == "boolean":
        # true/false/t/f/yes/no/1/0 in any case; anything else is unknown (NULL), never false.
        return f"TRY_CAST(trim({raw}) AS BOOLEAN)"
    if kind == "timestamp":
        # Naive text is taken as given; an explicit offset is converted to UTC ('Z' already is UTC).
        return (f"CASE WHEN regexp_matches({raw}, '[+-][0-9][0-9]:?[0-9][0-9]$') "
                f"THEN timezone('UTC', TRY_CAST(trim({raw}) AS TIMESTAMPTZ)) ELSE TRY_CAST(trim({raw}) AS TIMESTAMP) END")
    if kind == "json":
        return f"CASE WHEN json_valid({raw}) THEN {raw}::JSON ELSE to_json({raw}) END"
    raise PromotionError(f"column {column.name!r} has unknown keymap type {kind!r}")


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# ---- the table's shape -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Shape:
    """Everything the SQL generators need about one Silver table."""

    spec: SilverSpec
    envelope_ticker_column: str | None   # per-ticker tables take this column from the envelope's ticker

    @property
    def payload_columns(self) -> tuple[Column, ...]:
        """Columns whose value comes from the payload (all but the envelope ticker)."""
        return tuple(c for c in self.spec.columns if c.name != self.envelope_ticker_column)

    @property
    def read_types(self) -> dict[str, str]:
        """API field -> the type it is read as: READ_TYPES of its column, or text when columns disagree."""
        fields: dict[str, str] = {}
        for col in self.payload_columns:
            kind = READ_TYPES[col.type]
            fields[col.api] = kind if fields.get(col.api, kind) == kind else "VARCHAR"
        return fields

    @property
    def row_type(self) -> str:
        """The explicit type of one content row: one field per mapped API field."""
        fields = self.read_types or {"_none": "VARCHAR"}
        return "STRUCT(" + ", ".join(f"{quote(name)} {kind}" for name, kind in fields.items()) + ")"

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(list(self.spec.key) + [c.name for c in self.spec.columns if not c.nullable]))

    @property
    def mapped_fields(self) -> tuple[str, ...]:
        return tuple(c.api for c in self.spec.columns)

    def cols(self, prefix: str = "", names: Sequence[str] | None = None) -> str:
        names = [c.name for c in self.spec.columns] if names is None else list(names)
        return ", ".join(f"{prefix}{quote(n)}" for n in names)

    @property
    def value_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.spec.value_columns)

    def key_join(self, left: str, right: str) -> str:
        return " AND ".join(f"{left}.{quote(k)} = {right}.{quote(k)}" for k in self.spec.key)

    def values_struct(self, prefix: str = "") -> str:
        """All value columns as one struct: compared with IS DISTINCT FROM, which is NULL-safe per field."""
        if not self.value_names:
            return "true"
        return "struct_pack(" + ", ".join(f"{quote(n)} := {prefix}{quote(n)}" for n in self.value_names) + ")"


def _shape(keymap: Keymap, table: str) -> _Shape:
    specs = keymap.tables()
    if table not in specs:
        raise PromotionError(f"silver.{table} is not a table of the keymap {keymap.path or ''}".strip())
    spec = specs[table]
    per_ticker = keymap.table_scope(table) == "per_ticker"
    names = {c.name for c in spec.columns}
    return _Shape(spec, "ticker" if per_ticker and "ticker" in names else None)


# ---- SQL -------------------------------------------------------------------------------------------------

ENVELOPES_SQL = """
    SELECT filename, try(json_extract_string(content, ['$.envelope_version', '$.file_id', '$.can_promote',
                                                       '$.row_count', '$.content[0]'])) AS fields
    FROM read_text($paths)
"""
"""One cheap pass over the raw text (yyjson parses ~1 GB/s): the envelope fields of every file, even empty or
broken ones (`try` gives NULL for a file that is not JSON), and its first row, whose keys are the API
fields checked for drift. A few values per file, checked in Python."""


CONTENT_CHECK_SQL = f"""
    UPDATE {_FILES} AS f
    SET problem = 'content is not an array of ' || f.row_count || ' row objects (' || s.n || ' read)'
    FROM (
        SELECT f2.file_id, count(r._file_id) AS n
        FROM {_FILES} f2 LEFT JOIN {_ROWS} r ON r._file_id = f2.file_id
        WHERE f2.problem IS NULL
        GROUP BY f2.file_id
    ) AS s
    WHERE f.file_id = s.file_id AND s.n <> f.row_count
"""
"""The envelope's row_count is what the fetch saw; fewer rows read means `content` was not an array of
objects (the reader gives NULL for it), and such a file must fail, not promote as empty."""


def _older(row: str, current_fetched_at: str, current_file_id: str) -> str:
    """SQL: the row's lineage (fetched_at, file_id) is older than the current Silver row's."""
    return (f"({row}._fetched_at < {current_fetched_at} OR "
            f"({row}._fetched_at = {current_fetched_at} AND {row}._file_id < {current_file_id}))")


def _read_classify_sql(shape: _Shape, max_bytes: int) -> tuple[str, str]:
    """One read_json over the good files, cast, checked and compared with Silver: one row per payload row.

    `_action` is what the row does: rejected (NULL in a key or NOT NULL column), insert (key not in Silver),
    stale (older than the Silver row's lineage: never overwrites), update (values differ, NULL-safe) or
    unchanged. This is exact when a key occurs once in the batch, the common case; keys that occur more
    than once are classified again by `_chain_sql`.
    """
    read_types = shape.read_types
    exprs = {c.name: cast_sql(c, f"r.{quote(c.api)}", read_types[c.api]) for c in shape.payload_columns}
    if shape.envelope_ticker_column:
        exprs[shape.envelope_ticker_column] = "nullif(trim(env_ticker), '')"
    select = ",\n                       ".join(f"{exprs[c.name]} AS {quote(c.name)}" for c in shape.spec.columns)
    ok = " AND ".join(f"{quote(n)} IS NOT NULL" for n in shape.required)
    columns = "{'ticker': 'VARCHAR', 'content': " + _sql_text(shape.row_type + "[]") + "}"
    changed = " OR ".join(f"a.{quote(n)} IS DISTINCT FROM c.{quote(n)}" for n in shape.value_names) or "false"
    return f"""
        CREATE TEMP TABLE _promote_staged AS
        SELECT *, NOT ({ok}) AS _rejected
        FROM (
            SELECT f.file_id AS _file_id, f.fetched_at AS _fetched_at, s.ord AS _ord,
                   {select}
            FROM (
                SELECT filename, ticker AS env_ticker, unnest(content) AS r, unnest(range(len(content))) AS ord
                FROM read_json($paths, columns = {columns}, format = 'newline_delimited',
                               ignore_errors = true, filename = true, maximum_object_size = {max_bytes})
            ) AS s
            JOIN {_FILES} f ON f.filename = s.filename
        )
    """, f"""
        CREATE TEMP TABLE {_ROWS} AS
        SELECT *, NULL::TIMESTAMP AS _valid_to, _action IN ('insert', 'update') AS _is_last,
               _action = 'update' AS _close
        FROM (
            SELECT a.*, c.fetched_at AS _cur_fetched_at, c.bronze_file_id AS _cur_file_id,
                   CASE WHEN a._rejected THEN 'rejected'
                        WHEN c.bronze_file_id IS NULL THEN 'insert'
                        WHEN {_older('a', 'c.fetched_at', 'c.bronze_file_id')} THEN 'stale'
                        WHEN {changed} THEN 'update'
                        ELSE 'unchanged' END AS _action
            FROM _promote_staged a LEFT JOIN {qualified(shape.spec.table)} c ON {shape.key_join('a', 'c')}
        )
    """


def _repeated_keys_sql(shape: _Shape) -> str:
    key = shape.cols(names=shape.spec.key)
    return f"""
        CREATE TEMP TABLE _promote_repeated AS
        SELECT {key} FROM {_ROWS} WHERE NOT _rejected GROUP BY ALL HAVING count(*) > 1
    """


def _chain_sql(shape: _Shape) -> str:
    """Rows of keys that occur more than once in the batch, classified as a chain of versions.

    Inside one file the last row of a key wins (the others are duplicates). Across files the rows of a key
    are ordered by (fetched_at, file_id); the chain starts from the Silver row when there is one, rows older
    than it are stale, and each row whose values differ from the previous one is a new version, valid until
    the next version. So promoting day 1 and day 2 together keeps both versions, as promoting them one by
    one does.
    """
    key = shape.cols(names=shape.spec.key)
    key_m = ", ".join(f"m.{quote(k)}" for k in shape.spec.key)
    return f"""
        CREATE TEMP TABLE _promote_chain AS
        WITH repeated AS (
            SELECT r.* EXCLUDE (_action, _valid_to, _is_last, _close)
            FROM {_ROWS} r JOIN _promote_repeated m ON {shape.key_join('r', 'm')}
            WHERE NOT r._rejected
        ),
        dedup AS (
            SELECT *, row_number() OVER (PARTITION BY {key}, _file_id ORDER BY _ord DESC) > 1 AS _dup
            FROM repeated
        ),
        chain AS (
            SELECT l.*, {shape.values_struct('l.')} AS _values,
                   lag({shape.values_struct('l.')}) OVER w AS _prev_values, row_number() OVER w AS _pos,
                   CASE WHEN c.bronze_file_id IS NOT NULL THEN {shape.values_struct('c.')} END AS _cur_values
            FROM dedup l LEFT JOIN {qualified(shape.spec.table)} c ON {shape.key_join('l', 'c')}
            WHERE NOT l._dup AND NOT (l._cur_file_id IS NOT NULL
                                      AND {_older('l', 'l._cur_fetched_at', 'l._cur_file_id')})
            WINDOW w AS (PARTITION BY {key_m.replace('m.', 'l.')} ORDER BY l._fetched_at, l._file_id)
        ),
        acted AS (
            SELECT * EXCLUDE (_values, _prev_values, _pos, _cur_values, _dup),
                   CASE WHEN _pos = 1 AND _cur_file_id IS NULL THEN 'insert'
                        WHEN (CASE WHEN _pos = 1 THEN _cur_values ELSE _prev_values END) IS DISTINCT FROM _values
                            THEN 'update'
                        ELSE 'unchanged' END AS _action
            FROM chain
        ),
        versions AS (
            SELECT *, lead(_fetched_at) OVER v AS _valid_to, row_number() OVER v AS _vpos
            FROM acted
            WHERE _action IN ('insert', 'update')
            WINDOW v AS (PARTITION BY {key} ORDER BY _fetched_at, _file_id)
        )
        SELECT * EXCLUDE (_vpos), _valid_to IS NULL AS _is_last, _vpos = 1 AND _cur_file_id IS NOT NULL AS _close
        FROM versions
        UNION ALL BY NAME
        SELECT *, NULL::TIMESTAMP AS _valid_to, false AS _is_last, false AS _close
        FROM acted WHERE _action = 'unchanged'
        UNION ALL BY NAME
        SELECT * EXCLUDE (_dup), CASE WHEN _dup THEN 'duplicate' ELSE 'stale' END AS _action,
               NULL::TIMESTAMP AS _valid_to, false AS _is_last, false AS _close
        FROM dedup
        WHERE _dup OR (_cur_file_id IS NOT NULL AND {_older('dedup', '_cur_fetched_at', '_cur_file_id')})
    """


def _replace_repeated_sql(shape: _Shape) -> tuple[str, str]:
    return (f"""
        DELETE FROM {_ROWS} AS r USING _promote_repeated AS m
        WHERE {shape.key_join('r', 'm')} AND NOT r._rejected
    """, f"INSERT INTO {_ROWS} BY NAME SELECT * FROM _promote_chain")


def _merge_sql(shape: _Shape) -> str:
    """MERGE the newest version of each changed key. The guard repeats the lineage rule: never older data."""
    names = [c.name for c in shape.spec.columns]
    sets = ", ".join(f"{quote(n)} = s.{quote(n)}" for n in shape.value_names)
    sets = (sets + ", " if sets else "") + ("bronze_file_id = s._file_id, run_id = $run_id, "
                                           "fetched_at = s._fetched_at, promoted_at = $promoted_at")
    changed = " OR ".join([f"t.{quote(n)} IS DISTINCT FROM s.{quote(n)}" for n in shape.value_names]
                          + ["t.bronze_file_id IS DISTINCT FROM s._file_id"])
    return f"""
        MERGE INTO {qualified(shape.spec.table)} AS t
        USING (SELECT * FROM {_ROWS} WHERE _is_last) AS s
        ON {shape.key_join('t', 's')}
        WHEN MATCHED AND NOT {_older('s', 't.fetched_at', 't.bronze_file_id')} AND ({changed})
            THEN UPDATE SET {sets}
        WHEN NOT MATCHED
            THEN INSERT ({shape.cols(names=names)}, bronze_file_id, run_id, fetched_at, promoted_at)
                 VALUES ({shape.cols('s.', names)}, s._file_id, $run_id, s._fetched_at, $promoted_at)
    """


def _close_history_sql(shape: _Shape) -> str:
    """The current history version of a key that changed now ends at the first new version's fetch time."""
    return f"""
        UPDATE {qualified(history_table(shape.spec.table))} AS h
        SET valid_to = r._fetched_at
        FROM (SELECT * FROM {_ROWS} WHERE _close) AS r
        WHERE {shape.key_join('h', 'r')} AND h.valid_to IS NULL
    """


def _insert_history_sql(shape: _Shape) -> str:
    """Every new version, valid until the next version of the same key in this batch (NULL: current)."""
    names = [c.name for c in shape.spec.columns]
    return f"""
        INSERT INTO {qualified(history_table(shape.spec.table))}
            ({shape.cols(names=names)}, bronze_file_id, run_id, fetched_at, promoted_at, valid_from, valid_to)
        SELECT {shape.cols(names=names)}, _file_id, $run_id, _fetched_at, $promoted_at, _fetched_at, _valid_to
        FROM {_ROWS}
        WHERE _action IN ('insert', 'update')
    """


def _file_stats_sql(shape: _Shape) -> str:
    """Per good file: the ledger counts. Every row is counted once, in the file it came from."""
    row_date = quote(shape.spec.row_date) if shape.spec.row_date else "NULL::DATE"
    return f"""
        WITH counts AS (
            SELECT _file_id, count(*) AS rows_read,
                   count(*) FILTER (WHERE _action = 'insert') AS inserted,
                   count(*) FILTER (WHERE _action = 'update') AS updated,
                   count(*) FILTER (WHERE _action = 'unchanged') AS unchanged,
                   count(*) FILTER (WHERE _action = 'rejected') AS rejected,
                   count(*) FILTER (WHERE _action IN ('stale', 'duplicate')) AS duplicates,
                   min({row_date}) FILTER (WHERE NOT _rejected) AS coverage_from,
                   max({row_date}) FILTER (WHERE NOT _rejected) AS coverage_to
            FROM {_ROWS} GROUP BY _file_id
        )
        SELECT f.ingestion_id, f.file_id,
               coalesce(c.rows_read, 0) AS rows_read, coalesce(c.inserted, 0) AS inserted,
               coalesce(c.updated, 0) AS updated, coalesce(c.unchanged, 0) AS unchanged,
               coalesce(c.rejected, 0) AS rejected, coalesce(c.duplicates, 0) AS duplicates,
               c.coverage_from, c.coverage_to
        FROM {_FILES} f LEFT JOIN counts c ON c._file_id = f.file_id
        WHERE f.problem IS NULL
    """


LEDGER_PROMOTED_SQL = """
    UPDATE ops.file_ingestions AS l
    SET silver_status = 'promoted', silver_run_id = $run_id,
        silver_rows_read = s.rows_read, silver_inserted = s.inserted, silver_updated = s.updated,
        silver_unchanged = s.unchanged, silver_rejected = s.rejected, silver_duplicates = s.duplicates,
        silver_coverage_from = s.coverage_from, silver_coverage_to = s.coverage_to,
        silver_started_at = $started_at, silver_finished_at = $finished_at, silver_error = NULL
    FROM _promote_file_stats AS s
    WHERE l.file_id = s.file_id
"""

LEDGER_FAILED_SQL = """
    UPDATE ops.file_ingestions AS l
    SET silver_status = 'failed', silver_run_id = $run_id,
        silver_rows_read = NULL, silver_inserted = NULL, silver_updated = NULL, silver_unchanged = NULL,
        silver_rejected = NULL, silver_duplicates = NULL, silver_coverage_from = NULL, silver_coverage_to = NULL,
        silver_started_at = $started_at, silver_finished_at = $finished_at, silver_error = f.problem
    FROM _promote_files AS f
    WHERE l.file_id = f.file_id AND f.problem IS NOT NULL
"""

DRIFT_SQL = """
    CREATE TEMP TABLE _promote_drift AS
    SELECT field, arg_min(file_id, fetched_at) AS first_seen_file_id, min(fetched_at) AS first_seen_at
    FROM (
        SELECT file_id, fetched_at, unnest(first_row_keys) AS field
        FROM _promote_files
        WHERE problem IS NULL
    )
    WHERE field NOT IN (SELECT unnest($mapped))
    GROUP BY field
"""

RECORD_DRIFT_SQL = """
    INSERT INTO ops.schema_drift (silver_table, field, first_seen_file_id, first_seen_at, recorded_at, run_id)
    SELECT $table, field, first_seen_file_id, first_seen_at, $recorded_at, $run_id FROM _promote_drift AS d
    WHERE NOT EXISTS (SELECT 1 FROM ops.schema_drift AS s WHERE s.silver_table = $table AND s.field = d.field)
"""


# ---- the entry point -------------------------------------------------------------------------------------

def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _drop_temp(conn: duckdb.DuckDBPyConnection) -> None:
    for name in (_FILES, "_promote_staged", _ROWS, "_promote_repeated", "_promote_chain",
                 "_promote_file_stats", "_promote_drift"):
        conn.execute(f"DROP TABLE IF EXISTS temp.{name}")


@dataclass
class _BatchFile:
    file: PromotableFile
    filename: str
    problem: str | None = None
    row_count: int = 0
    first_row_keys: list[str] | None = None


def _envelope_problem(fields: list | None, file_id: str) -> str | None:
    """Why a file's envelope cannot promote (None when it can), from the ENVELOPES_SQL fields."""
    if fields is None:
        return "not valid JSON"
    version, env_file_id, can_promote = fields[0], fields[1], fields[2]
    if version != str(ENVELOPE_VERSION):
        return f"not a Bronze envelope (envelope_version {version or 'missing'})"
    if env_file_id != file_id:
        return f"the envelope's file_id {env_file_id or 'missing'} differs from the ledger's {file_id}"
    if can_promote != "true":
        return f"the envelope says can_promote = {can_promote or 'null'}"
    return None


def _first_row_keys(text: str | None) -> list[str] | None:
    if not text or not text.startswith("{"):
        return None
    try:
        row = json.loads(text)
    except ValueError:
        return None
    return list(row) if isinstance(row, dict) else None


def _register_batch(conn: duckdb.DuckDBPyConnection, files: Sequence[PromotableFile], bronze_root: Path | str) -> int:
    """Check every file (exists, is an envelope of the ledger's file, may promote) and keep the batch as a
    temp table with its problem per file. Returns the largest file size in bytes."""
    # Bronze on an object store (an fsspec URL): DuckDB reads its URLs through the store's fsspec filesystem
    located = (ObjectBronzeStore(str(bronze_root)).batch_locations(conn, [f.bronze_path for f in files])
               if is_url(bronze_root) else None)
    root = "" if located is not None else os.path.realpath(bronze_root)
    batch: list[_BatchFile] = []
    largest = 0
    for i, f in enumerate(files):
        if located is not None:
            path, size, problem = located[i]
            batch.append(_BatchFile(f, path, problem=problem))
            largest = max(largest, size)
            continue
        # lexical normalisation is enough here (resolving every path costs syscalls per file): a ledger path
        # with '..' that leaves the root is refused
        path = os.path.normpath(os.path.join(root, f.bronze_path))
        item = _BatchFile(f, path)
        if not path.startswith(root + os.sep):
            item.problem = f"Bronze path {f.bronze_path!r} points outside the Bronze root"
        else:
            try:
                largest = max(largest, os.stat(path).st_size)
            except FileNotFoundError:
                item.problem = f"Bronze file {f.bronze_path} is missing"
            except OSError as exc:
                item.problem = f"Bronze file {f.bronze_path} cannot be read: {exc.strerror or exc}"
        batch.append(item)
    readable = [b.filename for b in batch if b.problem is None]
    envelopes = dict(conn.execute(ENVELOPES_SQL, {"paths": readable}).fetchall()) if readable else {}
    for item in batch:
        if item.problem is not None:
            continue
        fields = envelopes.get(item.filename)
        item.problem = _envelope_problem(fields, item.file.file_id)
        if item.problem == "not valid JSON":
            item.problem = _diagnose(item.filename) or item.problem
        elif fields is not None:
            item.row_count = int(fields[3]) if (fields[3] or "").isdigit() else 0
            item.first_row_keys = _first_row_keys(fields[4])
    conn.execute(f"""
        CREATE TEMP TABLE {_FILES} AS
        SELECT unnest($ingestion_ids)::BIGINT AS ingestion_id, unnest($file_ids)::VARCHAR AS file_id,
               unnest($names)::VARCHAR AS filename, unnest($fetched)::TIMESTAMP AS fetched_at,
               unnest($problems)::VARCHAR AS problem, unnest($row_counts)::BIGINT AS row_count,
               unnest($keys)::VARCHAR[] AS first_row_keys
    """, {"ingestion_ids": [b.file.ingestion_id for b in batch], "file_ids": [b.file.file_id for b in batch],
          "names": [b.filename for b in batch], "fetched": [b.file.fetched_at for b in batch],
          "problems": [b.problem for b in batch], "row_counts": [b.row_count for b in batch],
          "keys": [b.first_row_keys for b in batch]})
    return largest


def _diagnose(path: str) -> str | None:
    """A precise reason for a file that is not valid JSON (only called for such files)."""
    try:
        with fsspec.open(path, "rb") as fh:     # a local path or an object-store URL
            json.loads(fh.read())
    except (OSError, ValueError) as exc:
        return f"not valid JSON: {exc}"
    return None


def promote_files(conn: duckdb.DuckDBPyConnection, keymap: Keymap, table: str, files: Sequence[PromotableFile],
                  bronze_root: Path, run_id: str) -> PromotionResult:
    """Promote Bronze files of one Silver table: MERGE, history and ledger in the caller's transaction.

    Files that cannot promote are marked failed (see the module docstring); everything else raises, and the
    caller's rollback leaves Silver, history and ledger as they were.
    """
    shape = _shape(keymap, table)
    other = sorted({f.silver_table for f in files} - {table})
    if other:
        raise PromotionError(f"promote_files(table={table!r}) was given files of {other}; promote one table per call")
    if len({f.file_id for f in files}) != len(files):
        raise PromotionError("the batch lists a file twice")
    started_at = _utc_now()
    ensure_table(conn, shape.spec)
    _drop_temp(conn)
    try:
        return _promote(conn, shape, files, bronze_root, run_id, started_at)
    finally:
        try:
            _drop_temp(conn)
        except duckdb.Error:
            pass  # the transaction is aborted: the caller rolls back, temp tables die with the connection


def _promote(conn: duckdb.DuckDBPyConnection, shape: _Shape, files: Sequence[PromotableFile], bronze_root: Path,
             run_id: str, started_at: dt.datetime) -> PromotionResult:
    table = shape.spec.table
    largest = _register_batch(conn, files, bronze_root)
    good = [r[0] for r in conn.execute(f"SELECT filename FROM {_FILES} WHERE problem IS NULL").fetchall()]
    if not good:
        return _finish(conn, shape, run_id, started_at, stats=[], drift=())
    max_bytes = max(MIN_OBJECT_BYTES, largest + 1024)
    read_sql, classify_sql = _read_classify_sql(shape, max_bytes)
    conn.execute(read_sql, {"paths": good})
    conn.execute(classify_sql)
    conn.execute("DROP TABLE _promote_staged")
    conn.execute(CONTENT_CHECK_SQL)
    conn.execute(f"DELETE FROM {_ROWS} WHERE _file_id IN (SELECT file_id FROM {_FILES} WHERE problem IS NOT NULL)")
    conn.execute(_repeated_keys_sql(shape))
    if conn.execute("SELECT count(*) FROM _promote_repeated").fetchone()[0]:
        conn.execute(_chain_sql(shape))
        for sql in _replace_repeated_sql(shape):
            conn.execute(sql)

    params = {"run_id": run_id, "promoted_at": _utc_now()}
    expected = conn.execute(f"SELECT count(*) FROM {_ROWS} WHERE _is_last").fetchone()[0]
    conn.execute(_close_history_sql(shape))
    merged = conn.execute(_merge_sql(shape), params).fetchone()[0]
    if merged != expected:
        raise PromotionError(f"silver.{table}: MERGE changed {merged} rows but {expected} keys have a new "
                             "version; nothing was committed")
    conn.execute(_insert_history_sql(shape), params)
    conn.execute(f"CREATE TEMP TABLE _promote_file_stats AS {_file_stats_sql(shape)}")
    stats = conn.execute("SELECT * FROM _promote_file_stats ORDER BY ingestion_id").fetchall()
    drift = _record_drift(conn, shape, run_id)
    return _finish(conn, shape, run_id, started_at, stats=stats, drift=drift)


def _record_drift(conn: duckdb.DuckDBPyConnection, shape: _Shape, run_id: str) -> tuple[str, ...]:
    """Unmapped fields of this batch; each is recorded once in ops.schema_drift (the first sighting wins)."""
    conn.execute(DRIFT_SQL, {"mapped": list(shape.mapped_fields)})
    fields = tuple(r[0] for r in conn.execute("SELECT field FROM _promote_drift ORDER BY field").fetchall())
    if fields:
        conn.execute(RECORD_DRIFT_SQL, {"table": shape.spec.table, "recorded_at": _utc_now(), "run_id": run_id})
    return fields


def _finish(conn: duckdb.DuckDBPyConnection, shape: _Shape, run_id: str, started_at: dt.datetime, *,
            stats: list[tuple], drift: tuple[str, ...]) -> PromotionResult:
    """Write the ledger rows of the batch (promoted and failed) and build the result."""
    params = {"run_id": run_id, "started_at": started_at, "finished_at": _utc_now()}
    if stats:
        conn.execute(LEDGER_PROMOTED_SQL, params)
    conn.execute(LEDGER_FAILED_SQL, params)
    failed = conn.execute(f"SELECT ingestion_id, file_id, problem FROM {_FILES} WHERE problem IS NOT NULL").fetchall()

    outcomes = [FileOutcome(r[0], r[1], "promoted", *r[2:]) for r in stats]
    outcomes += [FileOutcome(i, fid, "failed", error=problem) for i, fid, problem in failed]
    outcomes.sort(key=lambda o: o.ingestion_id)
    good = [o for o in outcomes if o.status == "promoted"]
    froms = [o.coverage_from for o in good if o.coverage_from]
    tos = [o.coverage_to for o in good if o.coverage_to]
    result = PromotionResult(
        table=shape.spec.table, files=len(good),
        rows_read=sum(o.rows_read for o in good), inserted=sum(o.inserted for o in good),
        updated=sum(o.updated for o in good), unchanged=sum(o.unchanged for o in good),
        rejected=sum(o.rejected for o in good), duplicates=sum(o.duplicates for o in good),
        coverage_from=min(froms) if froms else None, coverage_to=max(tos) if tos else None,
        drift_fields=drift, per_file=tuple(outcomes))
    if not result.balanced:
        raise PromotionError(f"silver.{shape.spec.table}: counts do not add up ({result}); nothing was committed")
    return result
