"""Casting rules of Silver: how a payload value becomes a column of its keymap type, the same for JSON and CSV.

Types come from the keymap, never from DuckDB sniffing a sample: the rows get an explicit type (READ_TYPES)
and the rest is cast in SQL (`cast_sql`): `"164000"` is a number; `""`, `"."`, `"null"` and blanks are NULL;
booleans stay three-valued; a fractional value is not rounded into an integer column; a timestamp's UTC offset
is applied. A value that cannot be cast is NULL; promotion then rejects a row with a NULL in a key or NOT NULL
column.
"""

from __future__ import annotations

from pipeline.keymap.model import Column
from pipeline.silver.errors import PromotionError
from pipeline.warehouse.dialect import literal

# Text that means "no value" in a text column (compared after trimming whitespace and lower-casing); the
# other types get NULL for these from their cast anyway.
NULL_TOKENS = ("", ".", "null")
WHITESPACE = " \t\r\n"

# How each keymap type is read from the payload (the explicit `json_transform` types; nothing is sniffed).
# DOUBLE and DATE are converted by DuckDB's JSON conversion itself (the one `read_json` uses): a value it
# cannot convert ("", ".", "null", "n/a") becomes NULL, exactly like TRY_CAST, and numeric text ("164000")
# and timestamps for dates ("2024-11-01 06:01:36", "...T06:01:36Z") convert. The other types are read as
# text and cast in SQL, because the conversion would round 12.7 into an integer, call 164000 a boolean and
# drop a UTC offset.
READ_TYPES: dict[str, str] = {
    "varchar": "VARCHAR",
    "double": "DOUBLE",
    "date": "DATE",
    "integer": "VARCHAR",
    "bigint": "VARCHAR",
    "boolean": "VARCHAR",
    "timestamp": "VARCHAR",
    "json": "JSON",
}


def ny_date(column: str) -> str:
    """SQL: the New York date of a UTC timestamp column (the market's day: the one Silver and Gold date by)."""
    return f"CAST(timezone('America/New_York', timezone('UTC', {column})) AS DATE)"


def cast_sql(column: Column, raw: str, read_type: str | None = None) -> str:
    """SQL turning `raw`, read as `read_type` (default READ_TYPES), into the column's type; NULL when it cannot."""
    kind = column.type
    read_type = read_type or READ_TYPES[kind]
    if read_type != "VARCHAR":
        return raw  # converted by the reader (JSON null is SQL NULL)
    if kind == "varchar":
        blank = f"lower(trim({raw}, {literal(WHITESPACE)})) IN ({', '.join(literal(t) for t in NULL_TOKENS)})"
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
        return (
            f"CASE WHEN regexp_matches({raw}, '[+-][0-9][0-9]:?[0-9][0-9]$') "
            f"THEN timezone('UTC', TRY_CAST(trim({raw}) AS TIMESTAMPTZ)) ELSE TRY_CAST(trim({raw}) AS TIMESTAMP) END"
        )
    if kind == "json":
        return f"CASE WHEN json_valid({raw}) THEN {raw}::JSON ELSE to_json({raw}) END"
    raise PromotionError(f"column {column.name!r} has unknown keymap type {kind!r}")
