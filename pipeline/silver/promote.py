"""Set-based Silver promotion: many Bronze envelopes become typed, de-duplicated Silver rows with history and ledger.

Why it is built this way:

- One scan per batch: a single read over every file of the batch (`read_ndjson_objects` and one
  `json_transform` per file) gives each file's envelope fields and its typed rows. Vetting is one SQL
  statement over that scan and the ledger; the rest is a handful of set statements over temp tables. No
  Python loop ever touches a row, and none touches a file's content unless the reader could not parse that
  file, so a batch of thousands of files costs about what DuckDB reading them costs.
- Types come from the keymap, never from DuckDB sniffing a sample: the rows get an explicit type
  (READ_TYPES) and the rest is cast in SQL, with rules that are the same for JSON and CSV payloads
  (`"164000"` is a number; `""`, `"."`, `"null"` and blanks are NULL; booleans stay three-valued; a
  fractional value is not rounded into an integer column; a timestamp's UTC offset is applied). A value
  that cannot be cast is NULL; a NULL in a key or NOT NULL column rejects the row, counted per file.
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

Bad files: a file that is missing, is not valid JSON, is not a Bronze envelope, names another file id or
dataset identity than its ledger row, carries another body hash than the ledger recorded, says
`can_promote: false` or records an error, or whose `content` is not an array (its row_count disagrees), is
marked `silver_status='failed'` with `silver_error` naming the problem, and the rest of the batch is
promoted. The file stays in Bronze and the ledger, and `promotable_files` offers it again, so nothing is
lost. Errors that are not about one file's content (I/O under the reader, SQL) raise, and the caller's
transaction rolls everything back.

Schema drift: API fields that no column maps, seen in the first row of the newest file of each dataset in
the batch, are returned in `drift_fields` and recorded once per (table, field) in `ops.schema_drift`
(migration 0002).

The caller owns the transaction: `with warehouse.transaction() as conn: promote_files(conn, ...)`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import fsspec

from pipeline.bronze.envelope import ENVELOPE_VERSION
from pipeline.bronze.store import ObjectBronzeStore, is_url
from pipeline.keymap.model import Column, Keymap, SilverSpec
from pipeline.ops import file_ingestions, schema_drift
from pipeline.ops.file_ingestions import PromotableFile
from pipeline.silver.schema import ensure_table, history_table, qualified, quote

# The reader's maximum_object_size: at least this, else the largest file of the batch (one envelope per line).
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

# How each keymap type is read from the payload (the explicit `json_transform` types; nothing is sniffed).
# DOUBLE and DATE are converted by DuckDB's JSON conversion itself (the one `read_json` uses): a value it
# cannot convert ("", ".", "null", "n/a") becomes NULL, exactly like TRY_CAST, and numeric text ("164000")
# and timestamps for dates ("2024-11-01 06:01:36", "...T06:01:36Z") convert. The other types are read as
# text and cast in SQL, because the conversion would round 12.7 into an integer, call 164000 a boolean and
# drop a UTC offset.
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

# The envelope fields the scan reads, each as the type it is vetted as.
ENVELOPE_COLUMNS: dict[str, str] = {
    "envelope_version": "VARCHAR", "file_id": "VARCHAR", "domain": "VARCHAR", "source": "VARCHAR",
    "dataset": "VARCHAR", "discriminator": "VARCHAR", "ticker": "VARCHAR", "can_promote": "VARCHAR",
    "row_count": "VARCHAR", "body_sha256": "VARCHAR", "error": "JSON",
}


def _older(row: str, current_fetched_at: str, current_file_id: str) -> str:
    """SQL: the row's lineage (fetched_at, file_id) is older than the current Silver row's."""
    return (f"({row}._fetched_at < {current_fetched_at} OR "
            f"({row}._fetched_at = {current_fetched_at} AND {row}._file_id < {current_file_id}))")


def _read_json_sql(shape: _Shape, max_bytes: int) -> str:
    """The read of the scan: per file its name and `d`, the envelope fields and `content` with the table's
    row type.

    Each line is taken as raw JSON and converted by one `json_transform` (the reader's own conversion rules).
    That is half the CPU of `read_json` with the same explicit columns, whose cost grows with every column
    on every file (each file is a chunk of its own).
    """
    structure = json.dumps({**ENVELOPE_COLUMNS, "content": [shape.read_types or {"_none": "VARCHAR"}]})
    return f"""(
        SELECT filename, json_transform(json, {_sql_text(structure)}) AS d
        FROM read_ndjson_objects($paths, filename = true, ignore_errors = true, maximum_object_size = {max_bytes})
    )"""


def _scan_sql(shape: _Shape, max_bytes: int) -> str:
    """The one read of the batch: every file's envelope fields, and its rows typed, cast, checked and
    compared with Silver.

    Rows are unnested, cast and classified as they are read, so the payload is never held twice; the rows
    of files that vetting then refuses are deleted (rare). The envelope fields are kept once per file, as
    one JSON value in `_env` on its header row (its first row, or a row of its own with `_ord` NULL when
    `content` has no row), which is all that vetting needs; one mostly-NULL text column costs less to
    store than a struct of a dozen mostly-NULL fields.

    `_action` is what a row does: rejected (NULL in a key or NOT NULL column), insert (key not in Silver),
    stale (older than the Silver row's lineage: never overwrites), update (values differ, NULL-safe) or
    unchanged. This is exact when a key occurs once in the batch, the common case; keys that occur more
    than once are classified again by `_chain_sql`.

    `ignore_errors` turns a file that is not valid JSON (truncated, empty, not UTF-8) into a record of NULLs
    (or no record) instead of failing the whole read, so one bad file never costs the batch its single
    scan; such files are diagnosed one by one afterwards, and only they. With `ignore_errors` a value the
    reader cannot convert to its explicit type is NULL (see READ_TYPES), and a `content` that is not an
    array is NULL (caught by the row count check).
    """
    read_types = shape.read_types
    exprs = {c.name: cast_sql(c, f"s.r.{quote(c.api)}", read_types[c.api]) for c in shape.payload_columns}
    if shape.envelope_ticker_column:
        exprs[shape.envelope_ticker_column] = "nullif(trim(s.ticker), '')"
    select = ",\n                       ".join(f"{exprs[c.name]} AS {quote(c.name)}" for c in shape.spec.columns)
    envelope = ", ".join(f"{quote(k)} := d.{quote(k)}" for k in ENVELOPE_COLUMNS)
    ok = " AND ".join(f"{quote(n)} IS NOT NULL" for n in shape.required)
    changed = " OR ".join(f"a.{quote(n)} IS DISTINCT FROM c.{quote(n)}" for n in shape.value_names) or "false"
    return f"""
        CREATE TEMP TABLE {_ROWS} AS
        WITH staged AS (
            SELECT *, NOT ({ok}) AS _rejected
            FROM (
                SELECT b.file_id AS _file_id, b.fetched_at AS _fetched_at, s.ord AS _ord, s.env AS _env,
                       {select}
                FROM (
                    -- unnests of unequal length are zipped and padded with NULL: the envelope lands on the
                    -- first row only, and a file without rows keeps that one row (with ord NULL)
                    SELECT filename, d.ticker AS ticker,
                           unnest(CASE WHEN len(d.content) > 0 THEN d.content ELSE [NULL] END) AS r,
                           unnest(CASE WHEN len(d.content) > 0 THEN range(len(d.content)) ELSE [NULL] END) AS ord,
                           unnest([to_json(struct_pack({envelope}, rows_read := len(d.content)))]) AS env
                    FROM {_read_json_sql(shape, max_bytes)}
                ) AS s
                JOIN _promote_batch b ON b.filename = s.filename
            )
        )
        SELECT *, NULL::TIMESTAMP AS _valid_to, _action IN ('insert', 'update') AS _is_last,
               _action = 'update' AS _close
        FROM (
            SELECT a.*, c.fetched_at AS _cur_fetched_at, c.bronze_file_id AS _cur_file_id,
                   CASE WHEN a._rejected THEN 'rejected'
                        WHEN c.bronze_file_id IS NULL THEN 'insert'
                        WHEN {_older('a', 'c.fetched_at', 'c.bronze_file_id')} THEN 'stale'
                        WHEN {changed} THEN 'update'
                        ELSE 'unchanged' END AS _action
            FROM staged a LEFT JOIN {qualified(shape.spec.table)} c ON {shape.key_join('a', 'c')}
        )
    """


def _identity(alias: str) -> str:
    """SQL: a dataset identity as 'domain/source/dataset/discriminator/ticker' (empty parts kept)."""
    parts = ", ".join(f"coalesce({alias}.{c}, '')" for c in ("domain", "source", "dataset", "discriminator", "ticker"))
    return f"concat_ws('/', {parts})"


_ENV_STRUCTURE = json.dumps({**ENVELOPE_COLUMNS, "rows_read": "BIGINT"})
VET_SQL = f"""
    CREATE TEMP TABLE {_FILES} AS
    SELECT b.ingestion_id, b.file_id, b.filename, b.fetched_at,
           CASE
               WHEN b.problem IS NOT NULL THEN b.problem
               WHEN s.records IS DISTINCT FROM 1 OR s.env.envelope_version IS NULL THEN NULL  -- diagnosed one by one
               WHEN s.env.envelope_version <> '{ENVELOPE_VERSION}'
                   THEN 'not a Bronze envelope (envelope_version ' || s.env.envelope_version || ')'
               WHEN s.env.file_id IS DISTINCT FROM b.file_id
                   THEN 'the envelope''s file_id ' || coalesce(s.env.file_id, 'missing') || ' differs from the ledger''s '
                        || b.file_id
               WHEN s.env.can_promote IS DISTINCT FROM 'true'
                   THEN 'the envelope says can_promote = ' || coalesce(s.env.can_promote, 'null')
               WHEN coalesce(json_type(s.env.error), 'NULL') <> 'NULL'
                   THEN 'the envelope records an error: ' || s.env.error::VARCHAR
               WHEN l.ingestion_id IS NOT NULL AND {_identity('s.env')} <> {_identity('l')}
                   THEN 'the envelope is for ' || {_identity('s.env')} || ' but its ledger row says '
                        || {_identity('l')}
               WHEN nullif(s.env.body_sha256, '') <> nullif(l.body_sha256, '')
                   THEN 'the envelope''s body_sha256 ' || s.env.body_sha256 || ' differs from the ledger''s '
                        || l.body_sha256 || ' (the file changed after it was registered)'
               WHEN coalesce(s.env.rows_read, 0) <> coalesce(TRY_CAST(s.env.row_count AS BIGINT), 0)
                   THEN 'content is not an array of ' || coalesce(TRY_CAST(s.env.row_count AS BIGINT), 0)
                        || ' row objects (' || coalesce(s.env.rows_read, 0) || ' read)'
           END AS problem,
           b.problem IS NULL AND (s.records IS DISTINCT FROM 1 OR s.env.envelope_version IS NULL) AS _diagnose,
           coalesce(s.env.rows_read, 0) AS rows_read
    FROM _promote_batch b
    LEFT JOIN (
        -- one header per record; a file with several records is not one envelope (diagnosed, whichever row this is)
        SELECT _file_id, count(*) AS records, json_transform(first(_env), {_sql_text(_ENV_STRUCTURE)}) AS env
        FROM {_ROWS} WHERE _env IS NOT NULL GROUP BY _file_id
    ) s ON s._file_id = b.file_id
    LEFT JOIN ops.file_ingestions l ON l.ingestion_id = b.ingestion_id
"""
"""Vetting of the whole batch in one statement, from the scan's header rows and the ledger: a file promotes
only when it is one Bronze envelope of this version, for the ledger's file id and dataset identity, with
the body hash the ledger recorded, that may promote and records no error, and whose `content` is an
array of as many rows as the fetch saw (fewer means it was not an array of objects, and such a file must
fail, not promote as empty). Files the reader could not take as one JSON document get no verdict here (`_diagnose`)."""


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




def _insert_sql(shape: _Shape) -> str:
    """Keys that were not in Silver when the batch was classified: a plain INSERT (the primary key refuses a
    key that appeared meanwhile, so nothing is silently overwritten)."""
    names = [c.name for c in shape.spec.columns]
    return f"""
        INSERT INTO {qualified(shape.spec.table)}
            ({shape.cols(names=names)}, bronze_file_id, run_id, fetched_at, promoted_at)
        SELECT {shape.cols(names=names)}, _file_id, $run_id, _fetched_at, $promoted_at
        FROM {_ROWS}
        WHERE _is_last AND _cur_file_id IS NULL
    """


def _update_sql(shape: _Shape) -> str:
    """The newest version of each changed key that Silver holds. The guard repeats the lineage rule (never
    older data) and the value comparison, so unchanged rows are never rewritten."""
    sets = ", ".join(f"{quote(n)} = s.{quote(n)}" for n in shape.value_names)
    sets = (sets + ", " if sets else "") + ("bronze_file_id = s._file_id, run_id = $run_id, "
                                           "fetched_at = s._fetched_at, promoted_at = $promoted_at")
    changed = " OR ".join([f"t.{quote(n)} IS DISTINCT FROM s.{quote(n)}" for n in shape.value_names]
                          + ["t.bronze_file_id IS DISTINCT FROM s._file_id"])
    return f"""
        UPDATE {qualified(shape.spec.table)} AS t
        SET {sets}
        FROM (SELECT * FROM {_ROWS} WHERE _is_last AND _cur_file_id IS NOT NULL) AS s
        WHERE {shape.key_join('t', 's')}
          AND NOT {_older('s', 't.fetched_at', 't.bronze_file_id')} AND ({changed})
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


DRIFT_SAMPLE_SQL = f"""
    SELECT f.filename
    FROM {_FILES} f JOIN ops.file_ingestions l ON l.ingestion_id = f.ingestion_id
    WHERE f.problem IS NULL AND f.rows_read > 0
    QUALIFY row_number() OVER (PARTITION BY l.domain, l.source, l.dataset, l.discriminator
                               ORDER BY f.fetched_at DESC, f.file_id DESC) = 1
"""
"""Schema drift is a property of a dataset, not of a file: the newest file of each dataset in the batch (the
one most likely to show a field the API just added) stands for it. Reading the first row of every file
again would be a second scan of the batch."""

DRIFT_SQL = f"""
    CREATE TEMP TABLE _promote_drift AS
    SELECT field, arg_min(file_id, fetched_at) AS first_seen_file_id, min(fetched_at) AS first_seen_at
    FROM (
        SELECT f.file_id, f.fetched_at, unnest(json_keys(t.content, '$.content[0]')) AS field
        FROM read_text($paths) t JOIN {_FILES} f ON f.filename = t.filename
        WHERE json_type(t.content, '$.content[0]') = 'OBJECT'
    )
    WHERE field NOT IN (SELECT unnest($mapped))
    GROUP BY field
"""

# ---- the entry point -------------------------------------------------------------------------------------

def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


_TEMP_TABLES = ("_promote_batch", _FILES, _ROWS, "_promote_repeated", "_promote_chain",
                "_promote_file_stats", "_promote_drift")


def _drop_temp(conn: duckdb.DuckDBPyConnection) -> None:
    for name in _TEMP_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS temp.{name}")


def _path_problem(root: str, bronze_path: str) -> tuple[str, str | None, int]:
    """(absolute path, why it cannot be read or None, size in bytes). Only file-system facts: whatever is
    inside the file is vetted in SQL. A file the scan could not open would fail the whole read, so a missing
    or unreadable file is caught here."""
    # lexical normalisation is enough (resolving every path costs syscalls per file): a ledger path with
    # '..' that leaves the root is refused
    path = os.path.normpath(os.path.join(root, bronze_path))
    if not path.startswith(root + os.sep):
        return path, f"Bronze path {bronze_path!r} points outside the Bronze root", 0
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path, f"Bronze file {bronze_path} is missing", 0
    except OSError as exc:
        return path, f"Bronze file {bronze_path} cannot be read: {exc.strerror or exc}", 0
    if not stat.S_ISREG(st.st_mode):
        return path, f"Bronze file {bronze_path} is not a regular file", 0
    if not os.access(path, os.R_OK):
        return path, f"Bronze file {bronze_path} cannot be read: permission denied", 0
    return path, None, st.st_size


def _register_batch(conn: duckdb.DuckDBPyConnection, files: Sequence[PromotableFile],
                    bronze_root: Path | str) -> tuple[list[str], int]:
    """The batch as a temp table with the file-system problem of each file; returns the readable paths and
    the largest file size in bytes."""
    if is_url(bronze_root):
        # Bronze on an object store (an fsspec URL): DuckDB reads its URLs through the store's fsspec filesystem
        located = ObjectBronzeStore(str(bronze_root)).batch_locations(conn, [f.bronze_path for f in files])
        checked = [(path, problem, size) for path, size, problem in located]
    else:
        root = os.path.realpath(bronze_root)
        checked = [_path_problem(root, f.bronze_path) for f in files]
    conn.execute("""
        CREATE TEMP TABLE _promote_batch AS
        SELECT unnest($ingestion_ids)::BIGINT AS ingestion_id, unnest($file_ids)::VARCHAR AS file_id,
               unnest($names)::VARCHAR AS filename, unnest($fetched)::TIMESTAMP AS fetched_at,
               unnest($problems)::VARCHAR AS problem
    """, {"ingestion_ids": [f.ingestion_id for f in files], "file_ids": [f.file_id for f in files],
          "names": [c[0] for c in checked], "fetched": [f.fetched_at for f in files],
          "problems": [c[1] for c in checked]})
    readable = [path for path, problem, _size in checked if problem is None]
    return readable, max((size for _p, _problem, size in checked), default=0)


def _scan_and_vet(conn: duckdb.DuckDBPyConnection, shape: _Shape, readable: list[str], largest: int) -> None:
    """Read the batch once and vet every file in SQL; only files the reader could not parse are looked at
    one by one (`_diagnose`)."""
    if readable:
        max_bytes = max(MIN_OBJECT_BYTES, largest + 1024)
        try:
            conn.execute(_scan_sql(shape, max_bytes), {"paths": readable})
        except duckdb.Error as exc:
            # The reader skips unparsable files, so this is I/O failing under it (a file vanished or the disk
            # failed mid-read). The transaction is aborted: name the culprit(s) so the retry can be acted on.
            culprits = _unreadable_files(shape, readable, max_bytes)
            named = ", ".join(culprits[:5]) or "no single file (the batch as a whole)"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise PromotionError(f"silver.{shape.spec.table}: reading the batch failed at {named}: {reason}; "
                                 "nothing was committed") from exc
        conn.execute(VET_SQL)
    else:
        conn.execute(f"CREATE TEMP TABLE {_FILES} AS SELECT *, false AS _diagnose, 0 AS rows_read FROM _promote_batch")
    unparsed = conn.execute(f"SELECT file_id, filename FROM {_FILES} WHERE _diagnose").fetchall()
    if unparsed:
        conn.execute(f"UPDATE {_FILES} SET problem = p.problem, _diagnose = false "
                     "FROM (SELECT unnest($ids) AS file_id, unnest($problems) AS problem) AS p "
                     f"WHERE {_FILES}.file_id = p.file_id",
                     {"ids": [r[0] for r in unparsed], "problems": [_diagnose(r[1]) for r in unparsed]})


def _diagnose(path: str) -> str:
    """Why the reader could not take this file as one JSON envelope (only called for such files)."""
    try:
        with fsspec.open(path, "rb") as fh:     # a local path or an object-store URL
            data = fh.read()
    except OSError as exc:
        return f"Bronze file cannot be read: {exc.strerror or exc}"
    try:
        doc = json.loads(data)
    except ValueError as exc:
        return f"not valid JSON: {exc}"
    if not isinstance(doc, dict) or doc.get("envelope_version") != ENVELOPE_VERSION:
        version = doc.get("envelope_version") if isinstance(doc, dict) else None
        return f"not a Bronze envelope (envelope_version {version or 'missing'})"
    return "not a Bronze envelope on one line (the file holds a valid envelope spread over several lines)"


def _unreadable_files(shape: _Shape, paths: list[str], max_bytes: int) -> list[str]:
    """The files whose read fails, found by bisection in a scratch connection (failure path only)."""
    scratch = duckdb.connect()
    sql = f"SELECT count(*), sum(len(d.content)) FROM {_read_json_sql(shape, max_bytes)}"

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


def promote_files(conn: duckdb.DuckDBPyConnection, keymap: Keymap, table: str, files: Sequence[PromotableFile],
                  bronze_root: Path | str, run_id: str) -> PromotionResult:
    """Promote Bronze files of one Silver table: Silver, history and ledger in the caller's transaction.

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


def _promote(conn: duckdb.DuckDBPyConnection, shape: _Shape, files: Sequence[PromotableFile], bronze_root: Path | str,
             run_id: str, started_at: dt.datetime) -> PromotionResult:
    table = shape.spec.table
    readable, largest = _register_batch(conn, files, bronze_root)
    _scan_and_vet(conn, shape, readable, largest)
    if not readable:
        return _finish(conn, shape, run_id, started_at, stats=[], drift=())
    # header rows of files without rows, and the rows of refused files (rare: usually deletes nothing)
    conn.execute(f"DELETE FROM {_ROWS} WHERE _ord IS NULL OR _file_id NOT IN "
                 f"(SELECT file_id FROM {_FILES} WHERE problem IS NULL)")
    conn.execute(_repeated_keys_sql(shape))
    if conn.execute("SELECT count(*) FROM _promote_repeated").fetchone()[0]:
        conn.execute(_chain_sql(shape))
        for sql in _replace_repeated_sql(shape):
            conn.execute(sql)

    params = {"run_id": run_id, "promoted_at": _utc_now()}
    expected = conn.execute(f"SELECT count(*) FROM {_ROWS} WHERE _is_last").fetchone()[0]
    if expected:
        conn.execute(_close_history_sql(shape))
        written = conn.execute(_insert_sql(shape), params).fetchone()[0]
        written += conn.execute(_update_sql(shape), params).fetchone()[0]
        if written != expected:
            raise PromotionError(f"silver.{table}: {written} rows were written but {expected} keys have a new "
                                 "version; nothing was committed")
        conn.execute(_insert_history_sql(shape), params)
    conn.execute(f"CREATE TEMP TABLE _promote_file_stats AS {_file_stats_sql(shape)}")
    stats = conn.execute("SELECT * FROM _promote_file_stats ORDER BY ingestion_id").fetchall()
    drift = _record_drift(conn, shape, run_id)
    return _finish(conn, shape, run_id, started_at, stats=stats, drift=drift)


def _record_drift(conn: duckdb.DuckDBPyConnection, shape: _Shape, run_id: str) -> tuple[str, ...]:
    """Unmapped fields of this batch; each is recorded once in ops.schema_drift (the first sighting wins)."""
    sample = [r[0] for r in conn.execute(DRIFT_SAMPLE_SQL).fetchall()]
    if not sample:
        return ()
    conn.execute(DRIFT_SQL, {"paths": sample, "mapped": list(shape.mapped_fields)})
    fields = tuple(r[0] for r in conn.execute("SELECT field FROM _promote_drift ORDER BY field").fetchall())
    if fields:
        schema_drift.record_drift(conn, shape.spec.table, "_promote_drift", run_id=run_id, recorded_at=_utc_now())
    return fields


def _finish(conn: duckdb.DuckDBPyConnection, shape: _Shape, run_id: str, started_at: dt.datetime, *,
            stats: list[tuple], drift: tuple[str, ...]) -> PromotionResult:
    """Write the ledger rows of the batch (promoted and failed) and build the result."""
    times = {"run_id": run_id, "started_at": started_at, "finished_at": _utc_now()}
    if stats:
        file_ingestions.mark_promoted(conn, "_promote_file_stats", **times)
    file_ingestions.mark_failed(conn, _FILES, **times)
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
