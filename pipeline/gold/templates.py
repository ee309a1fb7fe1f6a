"""Render the Gold SQL files (`pipeline/gold/sql/*.sql`) with Jinja.

Each Gold table is one `.sql` file; shared CTEs live in `_*.sql` files that the models include, so every formula
is written once. The helpers below are the few expressions that repeat inside the SQL (the New York date of a UTC
timestamp, and the day a source served a Silver row, which fixes the share basis FMP restated it onto).
"""

from __future__ import annotations

import functools
from importlib import resources

import jinja2

from pipeline.silver.cast import ny_date
from pipeline.warehouse.dialect import literal

SQL_PACKAGE = "pipeline.gold"
SQL_FOLDER = "sql"


def served_on(alias: str) -> str:
    """SQL: the day the source served a Silver row (from the ledger's `served_on` CTE, else the fetch day)."""
    return f"coalesce({alias}_served.served_on, {ny_date(alias + '.fetched_at')})"


def join_served_on(alias: str) -> str:
    """SQL: the join that makes `served_on(alias)` available for a Silver table aliased `alias`."""
    return f"LEFT JOIN served_on {alias}_served ON {alias}_served.file_id = {alias}.bronze_file_id"


def _load(name: str) -> str:
    return resources.files(SQL_PACKAGE).joinpath(SQL_FOLDER, name).read_text(encoding="utf-8")


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.globals.update(ny_date=ny_date, served_on=served_on, join_served_on=join_served_on)
    env.filters["sql_literal"] = literal
    return env


def render(name: str, **variables: object) -> str:
    """The SQL of `sql/<name>.sql` with its includes and variables filled in."""
    return _environment().get_template(f"{name}.sql").render(**variables)
