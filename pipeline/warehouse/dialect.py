"""The two warehouse backends speak one SQL, except for what DuckLake does not have.

DuckLake has no PRIMARY KEY, UNIQUE, indexes or sequences. The DDL the project writes (migrations, Silver and
Gold tables) is written once, for the DuckDB file, and `portable_ddl` strips those clauses when the connection's
current database is a DuckLake. Key uniqueness on DuckLake then rests on the MERGE that writes each table, on
writers of one key scope being serialized (pipeline.warehouse.connection), and on the ERROR key checks; ids that
a sequence hands out on the file come from `max(id) + n`, under the write lock that serializes their writers.
"""

from __future__ import annotations

import re

import duckdb

_SEQUENCE = re.compile(r"CREATE\s+SEQUENCE\b[^;]*;", re.IGNORECASE)
_UNIQUE_INDEX = re.compile(r"CREATE\s+UNIQUE\s+INDEX\b[^;]*;", re.IGNORECASE)
_NEXTVAL_DEFAULT = re.compile(r"\s+DEFAULT\s+nextval\(\s*'[^']*'\s*\)", re.IGNORECASE)
_TABLE_KEY = re.compile(r",([ \t]*--[^\n]*)?\s*PRIMARY\s+KEY\s*\([^)]*\)", re.IGNORECASE)
_COLUMN_KEY = re.compile(r"\s+PRIMARY\s+KEY\b(?!\s*\()", re.IGNORECASE)


def is_lake(conn: duckdb.DuckDBPyConnection) -> bool:
    """True when the connection's current database is a DuckLake (the `Warehouse` USEs the lake it attached)."""
    row = conn.execute("SELECT type FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return bool(row) and row[0] == "ducklake"


def lake_ddl(sql: str) -> str:
    """`sql` without the constraints, indexes and sequences DuckLake refuses; comments and the rest unchanged."""
    sql = _TABLE_KEY.sub(lambda m: m.group(1) or "", sql)  # keep a comment that followed the last column
    for pattern in (_SEQUENCE, _UNIQUE_INDEX, _NEXTVAL_DEFAULT, _COLUMN_KEY):
        sql = pattern.sub("", sql)
    return sql


def portable_ddl(conn: duckdb.DuckDBPyConnection, sql: str) -> str:
    """The DDL as written on the DuckDB file; its DuckLake form on a lake."""
    return lake_ddl(sql) if is_lake(conn) else sql


def next_id_sql(conn: duckdb.DuckDBPyConnection, sequence: str, table: str, column: str) -> str:
    """SQL for the next id of `table.column`: the sequence on the file, `max + 1` on a lake (whose writers of the
    table hold the exclusive write lock, so ids grow in commit order, which the sensors' cursors need)."""
    if is_lake(conn):
        return f"(SELECT coalesce(max({column}), 0) + 1 FROM {table})"
    return f"nextval('{sequence}')"


def quote(name: str) -> str:
    """`name` as a double-quoted SQL identifier (a keymap column or table name may be any text)."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: object) -> str:
    """`value` as a single-quoted SQL string literal, for the few places a value is written into SQL text (DDL,
    ATTACH/LOAD paths, JSON structures, template constants) rather than bound as a parameter."""
    return "'" + str(value).replace("'", "''") + "'"
