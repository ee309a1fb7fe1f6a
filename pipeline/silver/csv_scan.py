"""The scan of a batch of CSV-backed Bronze files (bulk endpoints): DuckDB's CSV reader over the bodies kept as
served, joined to their envelopes, giving the same staged rows the JSON scan gives (`pipeline.silver.sql.scan_sql`),
so vetting, merge, history and the ledger are the same code for both formats.

- The envelope (`<file_id>.json`) is read as for JSON files (its fields and its file digest, verified by vetting);
  its `content` is null and `body_file` names the CSV (`<file_id>.csv`, beside it).
- The CSV is read by column name (`union_by_name`), so a column FMP adds or moves never shifts a value; Bronze
  refused files that lack a column the keymap reads (`pipeline.bronze.csv_body`).
- Every value is read as text, explicitly (`all_varchar`), never sniffed: FMP's bulk CSV writes every value as a
  string (fmp_api.md 3.2), and the keymap's type is applied by the same casting rules as JSON (`cast_sql`), where a
  value that cannot be cast is NULL. Reading `DOUBLE` straight from the CSV would fail the whole batch on one "N/A"
  (or drop the row with `ignore_errors`).
- `rows_read` counts the CSV's rows, and the body's SHA-256 is computed as it is read and vetted against the one
  the ledger recorded, so a body changed after Bronze wrote it is quarantined, naming the file.
"""

from __future__ import annotations

import json
import os

import fsspec

from pipeline.silver.cast import cast_sql
from pipeline.silver.shape import TableShape
from pipeline.silver.sql import ENVELOPE_COLUMNS, ROWS, _classified, future_sql
from pipeline.warehouse.dialect import literal, quote

CSV_ENVELOPE = {**ENVELOPE_COLUMNS, "body_file": "VARCHAR"}


def body_paths(envelope_paths: list[str]) -> list[str]:
    """The CSV bodies of a batch's envelopes that exist (`<file_id>.json` -> `<file_id>.csv`); an envelope without
    one (FMP's JSON `[]`) has no rows."""
    out = []
    for path in envelope_paths:
        body = path[: -len(".json")] + ".csv"
        if "://" in body:  # an object store (few bulk files per batch: one look-up each is cheap)
            fs, key = fsspec.core.url_to_fs(body)
            if fs.exists(key):
                out.append(body)
        elif os.path.isfile(body):
            out.append(body)
    return out


def csv_scan_sql(shape: TableShape, max_bytes: int, with_bodies: bool) -> str:
    """`CREATE TEMP TABLE _promote_rows` for a batch of CSV-backed files: parameters `$paths` (envelopes) and, when
    `with_bodies`, `$csv_paths` (their CSV bodies, `body_paths`)."""
    exprs = {c.name: cast_sql(c, f"c.{quote(c.api)}", "VARCHAR") for c in shape.payload_columns}
    if shape.envelope_ticker_column:
        exprs[shape.envelope_ticker_column] = "nullif(trim(e.d.ticker), '')"
    if not with_bodies:  # no CSV body in the batch: every file has no rows
        exprs = {name: "NULL" for name in exprs}
    select = ",\n                   ".join(f"{exprs[c.name]} AS {quote(c.name)}" for c in shape.spec.columns)
    # the body's own digest stands in for the envelope's: vetting compares it with the ledger's, so a CSV changed
    # after it was written is quarantined by name like a changed envelope
    envelope = ", ".join(
        f"{quote(k)} := " + ("coalesce(h.sha, e.d.body_sha256)" if k == "body_sha256" else f"e.d.{quote(k)}")
        for k in ENVELOPE_COLUMNS
    )
    envelope += ", file_md5 := e.file_md5"
    structure = literal(json.dumps(CSV_ENVELOPE))
    bodies = (
        """(
            SELECT *, row_number() OVER w - 1 AS _ord_in_file, count(*) OVER w AS _rows_in_file
            FROM read_csv($csv_paths, header = true, all_varchar = true, union_by_name = true, filename = true,
                          delim = ',', quote = '"', escape = '"', strict_mode = true)
            WINDOW w AS (PARTITION BY filename)
        )"""
        if with_bodies
        else "(SELECT NULL::VARCHAR AS filename, NULL::BIGINT AS _ord_in_file, NULL::BIGINT AS _rows_in_file "
        "WHERE false)"
    )
    digests = (
        "(SELECT filename, sha256(content) AS sha FROM read_blob($csv_paths))"
        if with_bodies
        else "(SELECT NULL::VARCHAR AS filename, NULL::VARCHAR AS sha WHERE false)"
    )
    ok = " AND ".join(f"{quote(n)} IS NOT NULL" for n in shape.required)
    staged = f"""
        SELECT *, NOT ({ok}) OR _future AS _rejected
        FROM (
          SELECT *, {future_sql(shape)} AS _future
          FROM (
            SELECT b.file_id AS _file_id, b.fetched_at AS _fetched_at, c._ord_in_file AS _ord,
                   CASE WHEN coalesce(c._ord_in_file, 0) = 0
                        THEN to_json(struct_pack({envelope}, rows_read := coalesce(c._rows_in_file, 0))) END AS _env,
                   {select}
            FROM (
                SELECT filename, json_transform(json, {structure}) AS d, md5(json) AS file_md5
                FROM read_ndjson_objects($paths, filename = true, ignore_errors = true,
                                         maximum_object_size = {max_bytes})
            ) AS e
            JOIN _promote_batch b ON b.filename = e.filename
            LEFT JOIN {bodies} AS c
                   ON e.d.body_file IS NOT NULL AND c.filename = regexp_replace(e.filename, '\\.json$', '.csv')
            LEFT JOIN {digests} AS h
                   ON e.d.body_file IS NOT NULL AND h.filename = regexp_replace(e.filename, '\\.json$', '.csv')
          )
        )"""
    return f"CREATE TEMP TABLE {ROWS} AS {_classified(shape, staged)}"
