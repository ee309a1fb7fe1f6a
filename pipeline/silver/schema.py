"""Silver table schemas derived from the keymap: typed columns, a primary key, lineage, and a history table.

Adding a nullable column to the keymap adds it to the table here, with no hand-written SQL. Changing a key or
a column type is refused with instructions, because silently rewriting a typed table loses information.
"""

from __future__ import annotations

import duckdb

from pipeline.keymap.model import SilverSpec
from pipeline.warehouse.dialect import portable_ddl, quote

LINEAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("bronze_file_id", "VARCHAR NOT NULL"),
    ("run_id", "VARCHAR NOT NULL"),
    ("fetched_at", "TIMESTAMP NOT NULL"),
    ("promoted_at", "TIMESTAMP NOT NULL"),
)
HISTORY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("valid_from", "TIMESTAMP NOT NULL"),  # fetch time of the file that first carried this version
    ("valid_to", "TIMESTAMP"),  # fetch time of the file that replaced it; NULL = current
)


class SchemaChangeRefused(RuntimeError):
    """The keymap asks for a change that cannot be applied in place."""


def qualified(table: str) -> str:
    return f"silver.{quote(table)}"


def row_count(conn: duckdb.DuckDBPyConnection, table: str) -> int:
    """Rows in the Silver table now (what the asset reports as its row count)."""
    return int(conn.execute(f"SELECT count(*) FROM {qualified(table)}").fetchall()[0][0])


def history_table(table: str) -> str:
    return f"{table}__history"


def table_ddl(spec: SilverSpec) -> str:
    cols = [f"    {quote(c.name)} {c.duckdb_type}{'' if c.nullable else ' NOT NULL'}" for c in spec.columns]
    cols += [f"    {quote(name)} {decl}" for name, decl in LINEAGE_COLUMNS]
    key = ", ".join(quote(k) for k in spec.key)
    return (
        f"CREATE TABLE IF NOT EXISTS {qualified(spec.table)} (\n" + ",\n".join(cols) + f",\n    PRIMARY KEY ({key})\n)"
    )


def history_ddl(spec: SilverSpec) -> str:
    """Every version of every row: key + values + lineage + validity (no primary key: a key has many versions)."""
    cols = [f"    {quote(c.name)} {c.duckdb_type}" for c in spec.columns]
    cols += [f"    {quote(name)} {decl}" for name, decl in LINEAGE_COLUMNS + HISTORY_COLUMNS]
    return f"CREATE TABLE IF NOT EXISTS {qualified(history_table(spec.table))} (\n" + ",\n".join(cols) + "\n)"


def existing_columns(conn: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'silver' AND table_name = ? ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return {name: dtype for name, dtype in rows}


def existing_key(conn: duckdb.DuckDBPyConnection, table: str) -> tuple[str, ...]:
    rows = conn.execute(
        """
        SELECT constraint_column_names FROM duckdb_constraints()
        WHERE schema_name = 'silver' AND table_name = ? AND constraint_type = 'PRIMARY KEY'
    """,
        [table],
    ).fetchall()
    return tuple(rows[0][0]) if rows else ()


def ensure_table(conn: duckdb.DuckDBPyConnection, spec: SilverSpec) -> list[str]:
    """Create the table and its history table, or evolve them by adding new nullable columns.

    Returns the columns added. Raises SchemaChangeRefused for a changed key or type, or a new NOT NULL column.
    """
    conn.execute("CREATE SCHEMA IF NOT EXISTS silver")
    have = existing_columns(conn, spec.table)
    if not have:
        conn.execute(portable_ddl(conn, table_ddl(spec)))  # no PRIMARY KEY on a DuckLake
        conn.execute(history_ddl(spec))
        return []
    key = existing_key(conn, spec.table)
    if key and key != spec.key:
        raise SchemaChangeRefused(
            f"silver.{spec.table}: the keymap changed the key from {list(key)} to {list(spec.key)}. A key change "
            f"cannot be applied in place: rename or drop the table (DROP TABLE silver.{spec.table}; DROP TABLE "
            f"silver.{history_table(spec.table)}) and run `pipeline replay --table {spec.table}` "
            "to rebuild it from Bronze."
        )
    added: list[str] = []
    for col in spec.columns:
        current = have.get(col.name)
        if current is None:
            if not col.nullable:
                raise SchemaChangeRefused(
                    f"silver.{spec.table}: new column {col.name!r} is declared nullable: false, but existing rows have "
                    "no value for it. Declare it nullable, or drop the table and "
                    f"`pipeline replay --table {spec.table}`."
                )
            for target in (spec.table, history_table(spec.table)):
                conn.execute(
                    f"ALTER TABLE {qualified(target)} ADD COLUMN IF NOT EXISTS {quote(col.name)} {col.duckdb_type}"
                )
            added.append(col.name)
        elif current.upper() != col.duckdb_type:
            raise SchemaChangeRefused(
                f"silver.{spec.table}: column {col.name!r} is {current} in the warehouse but {col.duckdb_type} in the "
                f"keymap. Types are not changed in place: add a new column with the new type, or drop the table and "
                f"`pipeline replay --table {spec.table}` to rebuild it from Bronze."
            )
    return added
