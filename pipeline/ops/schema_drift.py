"""`ops.schema_drift`: API fields that no Silver column maps, recorded once per (table, field).

The first sighting wins: a later batch that sees the same unmapped field changes nothing, so the row keeps
the file and time the field first appeared.
"""

from __future__ import annotations

import datetime as dt

import duckdb


def record_drift(
    conn: duckdb.DuckDBPyConnection, silver_table: str, drift_table: str, *, run_id: str, recorded_at: dt.datetime
) -> None:
    """Record the unmapped fields of `drift_table` (field, first_seen_file_id, first_seen_at; filled by the
    caller) for `silver_table`; fields already recorded for that table are left as they are."""
    conn.execute(
        f"""
        INSERT INTO ops.schema_drift (silver_table, field, first_seen_file_id, first_seen_at, recorded_at, run_id)
        SELECT $table, field, first_seen_file_id, first_seen_at, $recorded_at, $run_id FROM {drift_table} AS d
        WHERE NOT EXISTS (SELECT 1 FROM ops.schema_drift AS s WHERE s.silver_table = $table AND s.field = d.field)
    """,
        {"table": silver_table, "recorded_at": recorded_at, "run_id": run_id},
    )
