"""The SQL of one promotion, built from the table's shape: the scan of a batch, its vetting, the merge into
Silver and history, the per-file counts and the schema-drift sample.

Every statement works on the temp tables of one call (TEMP_TABLES); `pipeline.silver.promote` runs them in
order and explains why the promotion is shaped this way.
"""

from __future__ import annotations

import json

from pipeline.bronze.envelope import ENVELOPE_VERSION
from pipeline.silver.cast import cast_sql, ny_date
from pipeline.silver.schema import history_table, qualified
from pipeline.silver.shape import TableShape
from pipeline.warehouse.dialect import literal, quote

# Temp tables of one call; dropped at the start and the end so a connection can promote many batches.
FILES, ROWS = "_promote_files", "_promote_rows"
TEMP_TABLES = (
    "_promote_batch",
    FILES,
    ROWS,
    "_promote_repeated",
    "_promote_chain",
    "_promote_file_stats",
    "_promote_drift",
)

# The envelope fields the scan reads, each as the type it is vetted as.
ENVELOPE_COLUMNS: dict[str, str] = {
    "envelope_version": "VARCHAR",
    "file_id": "VARCHAR",
    "domain": "VARCHAR",
    "source": "VARCHAR",
    "dataset": "VARCHAR",
    "discriminator": "VARCHAR",
    "ticker": "VARCHAR",
    "can_promote": "VARCHAR",
    "row_count": "VARCHAR",
    "body_sha256": "VARCHAR",
    "error": "JSON",
}


def _older(row: str, current_fetched_at: str, current_file_id: str) -> str:
    """SQL: the row's lineage (fetched_at, file_id) is older than the current Silver row's."""
    return (
        f"({row}._fetched_at < {current_fetched_at} OR "
        f"({row}._fetched_at = {current_fetched_at} AND {row}._file_id < {current_file_id}))"
    )


def read_json_sql(shape: TableShape, max_bytes: int) -> str:
    """The read of the scan: per file its name and `d`, the envelope fields and `content` with the table's
    row type.

    Each line is taken as raw JSON and converted by one `json_transform` (the reader's own conversion rules).
    That is half the CPU of `read_json` with the same explicit columns, whose cost grows with every column
    on every file (each file is a chunk of its own).

    `file_md5` is the digest of the record's text as read, which the reader hands over verbatim (only whitespace
    around it trimmed): for a file the store wrote (one compact line) it is the digest of the file's bytes, which
    vetting compares with the ledger's. A file that holds more than that one record is refused anyway.
    """
    structure = json.dumps({**ENVELOPE_COLUMNS, "content": [shape.read_types or {"_none": "VARCHAR"}]})
    return f"""(
        SELECT filename, json_transform(json, {literal(structure)}) AS d, md5(json) AS file_md5
        FROM read_ndjson_objects($paths, filename = true, ignore_errors = true, maximum_object_size = {max_bytes})
    )"""


def scan_sql(shape: TableShape, max_bytes: int) -> str:
    """The one read of the batch: every file's envelope fields, and its rows typed, cast, checked and
    compared with Silver.

    Rows are unnested, cast and classified as they are read, so the payload is never held twice; the rows
    of files that vetting then refuses are deleted (rare). The envelope fields are kept once per file, as
    one JSON value in `_env` on its header row (its first row, or a row of its own with `_ord` NULL when
    `content` has no row), which is all that vetting needs; one mostly-NULL text column costs less to
    store than a struct of a dozen mostly-NULL fields.

    `_action` is what a row does: rejected (NULL in a key or NOT NULL column, or `_future`: dated after the New
    York day of its fetch, unless the table allows future dates; see `future_sql`), insert (key not in Silver),
    stale (older than the Silver row's lineage: never overwrites), update (values differ, NULL-safe) or
    unchanged. This is exact when a key occurs once in the batch, the common case; keys that occur more
    than once are classified again by `chain_sql`.

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
    envelope = ", ".join(f"{quote(k)} := d.{quote(k)}" for k in ENVELOPE_COLUMNS) + ", file_md5 := file_md5"
    ok = " AND ".join(f"{quote(n)} IS NOT NULL" for n in shape.required)
    staged = f"""
            SELECT *, NOT ({ok}) OR _future AS _rejected
            FROM (
              SELECT *, {future_sql(shape)} AS _future
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
                    FROM {read_json_sql(shape, max_bytes)}
                ) AS s
                JOIN _promote_batch b ON b.filename = s.filename
              )
            )"""
    return f"CREATE TEMP TABLE {ROWS} AS {_classified(shape, staged)}"


def _classified(shape: TableShape, staged: str) -> str:
    """The staged rows (lineage, typed columns, `_future`, `_rejected`) with what each does against Silver
    (`_action`)."""
    changed = " OR ".join(f"a.{quote(n)} IS DISTINCT FROM c.{quote(n)}" for n in shape.value_names) or "false"
    return f"""
        WITH staged AS ({staged})
        SELECT *, NULL::TIMESTAMP AS _valid_to, _action IN ('insert', 'update') AS _is_last,
               _action = 'update' AS _close
        FROM (
            SELECT a.*, c.fetched_at AS _cur_fetched_at, c.bronze_file_id AS _cur_file_id,
                   CASE WHEN a._rejected THEN 'rejected'
                        WHEN c.bronze_file_id IS NULL THEN 'insert'
                        WHEN {_older("a", "c.fetched_at", "c.bronze_file_id")} THEN 'stale'
                        WHEN {changed} THEN 'update'
                        ELSE 'unchanged' END AS _action
            FROM staged a LEFT JOIN {qualified(shape.spec.table)} c ON {shape.key_join("a", "c")}
        )
    """


def future_sql(shape: TableShape) -> str:
    """SQL over a staged row: its row date lies after the New York date of its fetch (`_fetched_at`, UTC).

    Nothing dated in the future is stored: such a row was not observed but announced, or invented (a
    PIPELINE_AS_OF ahead of time). It is rejected and counted; the Bronze file keeps it as served, and the
    next fetch's overlap brings it again once its day has come. A table whose keymap entry sets
    `allow_future_dates` (an economic calendar) keeps such rows."""
    row_date = shape.spec.row_date
    if row_date is None or shape.spec.allow_future_dates:
        return "false"
    return f"coalesce({quote(row_date)} > {ny_date('_fetched_at')}, false)"


def empty_rows_sql(shape: TableShape) -> str:
    """The rows of a batch in which no file could be read: none, with the columns the scan would have made."""
    names = ", ".join(f"NULL::{c.duckdb_type} AS {quote(c.name)}" for c in shape.spec.columns)
    staged = f"""
            SELECT NULL::VARCHAR AS _file_id, NULL::TIMESTAMP AS _fetched_at, NULL::BIGINT AS _ord, NULL::JSON AS _env,
                   {names}, false AS _future, false AS _rejected
            WHERE false"""
    return _classified(shape, staged)


def keep_rows_sql(shape: TableShape, kept: str) -> str:
    """Replay: the versions that the batch's unreadable files had promoted (from `kept`, the history rows of the
    table as they were before the replay deleted them) join the batch as those files' rows, so they are chained,
    written and counted exactly as when the files were first promoted. Nothing a file that cannot be read once
    contributed is lost."""
    names = ", ".join(quote(c.name) for c in shape.spec.columns)
    staged = f"""
            SELECT k.bronze_file_id AS _file_id, k.fetched_at AS _fetched_at,
                   row_number() OVER (PARTITION BY k.bronze_file_id) - 1 AS _ord, NULL::JSON AS _env, {names},
                   false AS _future, false AS _rejected
            FROM {kept} k JOIN {FILES} f ON f.file_id = k.bronze_file_id AND f.problem IS NOT NULL"""
    return f"INSERT INTO {ROWS} BY NAME {_classified(shape, staged)}"


def _identity(alias: str) -> str:
    """SQL: a dataset identity as 'domain/source/dataset/discriminator/ticker' (empty parts kept)."""
    parts = ", ".join(f"coalesce({alias}.{c}, '')" for c in ("domain", "source", "dataset", "discriminator", "ticker"))
    return f"concat_ws('/', {parts})"


_ENV_STRUCTURE = json.dumps({**ENVELOPE_COLUMNS, "rows_read": "BIGINT", "file_md5": "VARCHAR"})
VET_SQL = f"""
    CREATE TEMP TABLE {FILES} AS
    SELECT b.ingestion_id, b.file_id, b.filename, b.fetched_at, b.transient, s.env.file_md5,
           CASE
               WHEN b.problem IS NOT NULL THEN b.problem
               WHEN s.records IS DISTINCT FROM 1 OR s.env.envelope_version IS NULL THEN NULL  -- diagnosed one by one
               WHEN s.env.envelope_version <> '{ENVELOPE_VERSION}'
                   THEN 'not a Bronze envelope (envelope_version ' || s.env.envelope_version || ')'
               WHEN s.env.file_id IS DISTINCT FROM b.file_id
                   THEN 'the envelope''s file_id ' || coalesce(s.env.file_id, 'missing')
                        || ' differs from the ledger''s '
                        || b.file_id
               WHEN s.env.can_promote IS DISTINCT FROM 'true'
                   THEN 'the envelope says can_promote = ' || coalesce(s.env.can_promote, 'null')
               WHEN coalesce(json_type(s.env.error), 'NULL') <> 'NULL'
                   THEN 'the envelope records an error: ' || s.env.error::VARCHAR
               WHEN l.ingestion_id IS NOT NULL AND {_identity("s.env")} <> {_identity("l")}
                   THEN 'the envelope is for ' || {_identity("s.env")} || ' but its ledger row says '
                        || {_identity("l")}
               WHEN nullif(s.env.body_sha256, '') <> nullif(l.body_sha256, '')
                   THEN 'the envelope''s body_sha256 ' || s.env.body_sha256 || ' differs from the ledger''s '
                        || l.body_sha256 || ' (the file changed after it was registered)'
               WHEN coalesce(s.env.rows_read, 0) <> coalesce(TRY_CAST(s.env.row_count AS BIGINT), 0)
                   THEN 'content is not an array of ' || coalesce(TRY_CAST(s.env.row_count AS BIGINT), 0)
                        || ' row objects (' || coalesce(s.env.rows_read, 0) || ' read)'
               WHEN s.env.file_md5 IS DISTINCT FROM coalesce(l.file_md5, s.env.file_md5)
                   THEN 'the file changed after it was written: its bytes have md5 ' || s.env.file_md5
                        || ', the ledger recorded ' || l.file_md5 || ' when it was written'
           END AS problem,
           b.problem IS NULL AND (s.records IS DISTINCT FROM 1 OR s.env.envelope_version IS NULL) AS _diagnose,
           coalesce(s.env.rows_read, 0) AS rows_read
    FROM _promote_batch b
    LEFT JOIN (
        -- one header per record; a file with several records is not one envelope (diagnosed, whichever row this is)
        SELECT _file_id, count(*) AS records, json_transform(first(_env), {literal(_ENV_STRUCTURE)}) AS env
        FROM {ROWS} WHERE _env IS NOT NULL GROUP BY _file_id
    ) s ON s._file_id = b.file_id
    LEFT JOIN ops.file_ingestions l ON l.ingestion_id = b.ingestion_id
"""
"""Vetting of the whole batch in one statement, from the scan's header rows and the ledger: a file promotes
only when it is one Bronze envelope of this version, for the ledger's file id and dataset identity, with
the body hash the ledger recorded, that may promote and records no error, whose `content` is an
array of as many rows as the fetch saw (fewer means it was not an array of objects, and such a file must
fail, not promote as empty), and whose bytes have the digest the store recorded when it wrote them (a value
edited inside valid JSON passes every other test). The specific reasons come first, so a problem is named by
what is wrong; a file registered without a digest is verified for the rest, and its digest is recorded by this
read. Files the reader could not take as one JSON document get no verdict here (`_diagnose`)."""


def repeated_keys_sql(shape: TableShape) -> str:
    key = shape.cols(names=shape.spec.key)
    return f"""
        CREATE TEMP TABLE _promote_repeated AS
        SELECT {key} FROM {ROWS} WHERE NOT _rejected GROUP BY ALL HAVING count(*) > 1
    """


def chain_sql(shape: TableShape) -> str:
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
            FROM {ROWS} r JOIN _promote_repeated m ON {shape.key_join("r", "m")}
            WHERE NOT r._rejected
        ),
        dedup AS (
            SELECT *, row_number() OVER (PARTITION BY {key}, _file_id ORDER BY _ord DESC) > 1 AS _dup
            FROM repeated
        ),
        chain AS (
            SELECT l.*, {shape.values_struct("l.")} AS _values,
                   lag({shape.values_struct("l.")}) OVER w AS _prev_values, row_number() OVER w AS _pos,
                   CASE WHEN c.bronze_file_id IS NOT NULL THEN {shape.values_struct("c.")} END AS _cur_values
            FROM dedup l LEFT JOIN {qualified(shape.spec.table)} c ON {shape.key_join("l", "c")}
            WHERE NOT l._dup AND NOT (l._cur_file_id IS NOT NULL
                                      AND {_older("l", "l._cur_fetched_at", "l._cur_file_id")})
            WINDOW w AS (PARTITION BY {key_m.replace("m.", "l.")} ORDER BY l._fetched_at, l._file_id)
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
        WHERE _dup OR (_cur_file_id IS NOT NULL AND {_older("dedup", "_cur_fetched_at", "_cur_file_id")})
    """


def replace_repeated_sql(shape: TableShape) -> tuple[str, str]:
    return (
        f"""
        DELETE FROM {ROWS} AS r USING _promote_repeated AS m
        WHERE {shape.key_join("r", "m")} AND NOT r._rejected
    """,
        f"INSERT INTO {ROWS} BY NAME SELECT * FROM _promote_chain",
    )


def insert_sql(shape: TableShape) -> str:
    """Keys that were not in Silver when the batch was classified: a plain INSERT (the primary key refuses a
    key that appeared meanwhile, so nothing is silently overwritten)."""
    names = [c.name for c in shape.spec.columns]
    return f"""
        INSERT INTO {qualified(shape.spec.table)}
            ({shape.cols(names=names)}, bronze_file_id, run_id, fetched_at, promoted_at)
        SELECT {shape.cols(names=names)}, _file_id, $run_id, _fetched_at, $promoted_at
        FROM {ROWS}
        WHERE _is_last AND _cur_file_id IS NULL
    """


def update_sql(shape: TableShape) -> str:
    """The newest version of each changed key that Silver holds. The guard repeats the lineage rule (never
    older data) and the value comparison, so unchanged rows are never rewritten."""
    sets = ", ".join(f"{quote(n)} = s.{quote(n)}" for n in shape.value_names)
    sets = (sets + ", " if sets else "") + (
        "bronze_file_id = s._file_id, run_id = $run_id, fetched_at = s._fetched_at, promoted_at = $promoted_at"
    )
    changed = " OR ".join(
        [f"t.{quote(n)} IS DISTINCT FROM s.{quote(n)}" for n in shape.value_names]
        + ["t.bronze_file_id IS DISTINCT FROM s._file_id"]
    )
    return f"""
        UPDATE {qualified(shape.spec.table)} AS t
        SET {sets}
        FROM (SELECT * FROM {ROWS} WHERE _is_last AND _cur_file_id IS NOT NULL) AS s
        WHERE {shape.key_join("t", "s")}
          AND NOT {_older("s", "t.fetched_at", "t.bronze_file_id")} AND ({changed})
    """


def close_history_sql(shape: TableShape) -> str:
    """The current history version of a key that changed now ends at the first new version's fetch time."""
    return f"""
        UPDATE {qualified(history_table(shape.spec.table))} AS h
        SET valid_to = r._fetched_at
        FROM (SELECT * FROM {ROWS} WHERE _close) AS r
        WHERE {shape.key_join("h", "r")} AND h.valid_to IS NULL
    """


def insert_history_sql(shape: TableShape) -> str:
    """Every new version, valid until the next version of the same key in this batch (NULL: current)."""
    names = [c.name for c in shape.spec.columns]
    return f"""
        INSERT INTO {qualified(history_table(shape.spec.table))}
            ({shape.cols(names=names)}, bronze_file_id, run_id, fetched_at, promoted_at, valid_from, valid_to)
        SELECT {shape.cols(names=names)}, _file_id, $run_id, _fetched_at, $promoted_at, _fetched_at, _valid_to
        FROM {ROWS}
        WHERE _action IN ('insert', 'update')
    """


def file_stats_sql(shape: TableShape) -> str:
    """Per good file, and per unreadable file whose earlier rows a replay kept: the ledger counts. Every row is
    counted once, in the file it came from."""
    row_date = quote(shape.spec.row_date) if shape.spec.row_date else "NULL::DATE"
    return f"""
        WITH counts AS (
            SELECT _file_id, count(*) AS rows_read,
                   count(*) FILTER (WHERE _action = 'insert') AS inserted,
                   count(*) FILTER (WHERE _action = 'update') AS updated,
                   count(*) FILTER (WHERE _action = 'unchanged') AS unchanged,
                   count(*) FILTER (WHERE _action = 'rejected') AS rejected,
                   count(*) FILTER (WHERE _action IN ('stale', 'duplicate')) AS duplicates,
                   count(*) FILTER (WHERE _action = 'rejected' AND _future) AS future_rows,
                   min({row_date}) FILTER (WHERE NOT _rejected) AS coverage_from,
                   max({row_date}) FILTER (WHERE NOT _rejected) AS coverage_to
            FROM {ROWS} GROUP BY _file_id
        )
        SELECT f.ingestion_id, f.file_id,
               coalesce(c.rows_read, 0) AS rows_read, coalesce(c.inserted, 0) AS inserted,
               coalesce(c.updated, 0) AS updated, coalesce(c.unchanged, 0) AS unchanged,
               coalesce(c.rejected, 0) AS rejected, coalesce(c.duplicates, 0) AS duplicates,
               coalesce(c.future_rows, 0) AS future_rows, c.coverage_from, c.coverage_to, f.file_md5
        FROM {FILES} f LEFT JOIN counts c ON c._file_id = f.file_id
        -- a file with a problem has rows only when a replay kept the versions it had promoted
        WHERE f.problem IS NULL OR c._file_id IS NOT NULL
    """


DRIFT_SAMPLE_SQL = f"""
    SELECT f.filename
    FROM {FILES} f JOIN ops.file_ingestions l ON l.ingestion_id = f.ingestion_id
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
        FROM read_text($paths) t JOIN {FILES} f ON f.filename = t.filename
        WHERE json_type(t.content, '$.content[0]') = 'OBJECT'
    )
    WHERE field NOT IN (SELECT unnest($mapped))
    GROUP BY field
"""
