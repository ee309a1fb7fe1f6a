"""Read-only access to the ledger for the CLI reports (`pipeline status`, `pipeline coverage`).

Why it is shaped like this: while a run holds the DuckDB file read-write, no other process can even open it
read-only. A report that waited would look hung exactly when people look at it (during a run), and one that
opened the file read-write would block the run or migrate it. So the reports open the warehouse read-only once,
fail fast with a clear message and their own exit code when it is busy, and never run migrations. The text
helpers they print with live here too, so both reports look alike.

Exit codes (shared by both reports):
  0  printed
  1  nothing to show: the warehouse does not exist yet (run `pipeline demo` or `pipeline run`), it has no
     ledger yet, or the report matched nothing
  2  configuration error (bad environment variable; raised by the CLI)
  3  busy: a run is writing the warehouse; the report does not wait, try again in a moment
"""

from __future__ import annotations

import datetime as dt
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

import duckdb

from pipeline.keymap.model import DatasetIdentity
from pipeline.settings import Settings
from pipeline.warehouse.connection import Warehouse, WarehouseBusy, WarehouseMissing

EXIT_OK = 0
EXIT_NOTHING = 1
EXIT_BUSY = 3

WIDTH = 100
BUSY_MESSAGE = "the warehouse is being written by a run; {what} is read-only and will not wait — try again in a moment"


class NoLedger(RuntimeError):
    """The warehouse file exists but its ops schema was never migrated (no run has written it yet)."""


@contextmanager
def ledger_reader(settings: Settings) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to a warehouse that has a ledger; raises WarehouseBusy/WarehouseMissing/NoLedger."""
    with Warehouse.from_settings(settings).reader() as conn:
        have = conn.execute("""
            SELECT count(*) FROM information_schema.tables
            WHERE table_schema = 'ops' AND table_name IN ('runs', 'file_ingestions')
        """).fetchone()[0]
        if have < 2:
            raise NoLedger(f"warehouse {settings.warehouse_label} has no ops ledger yet")
        yield conn


def run_readonly(
    settings: Settings, what: str, body: Callable[[duckdb.DuckDBPyConnection], int], out: TextIO | None = None
) -> int:
    """Run `body` on a read-only ledger connection and map the ways that can fail to exit codes.

    One place for the busy/missing behaviour, so status and coverage cannot drift apart.
    """
    out = out or sys.stdout
    try:
        with ledger_reader(settings) as conn:
            return body(conn)
    except WarehouseBusy:
        print(f"pipeline {what}: " + BUSY_MESSAGE.format(what=what), file=sys.stderr)
        return EXIT_BUSY
    except (WarehouseMissing, NoLedger):
        print(
            f"pipeline {what}: no warehouse at {settings.warehouse_label} yet.\n"
            f"  Create it with `pipeline demo` (bundled sample data, no API key) or `pipeline run`\n"
            f"  (set PIPELINE_DATA_DIR to look elsewhere).",
            file=out,
        )
        return EXIT_NOTHING


FUTURE_DATED_SQL = """
    SELECT domain, source, dataset, discriminator, ticker, count(*) AS files, max(as_of) AS as_of,
           max(coverage_to) AS coverage_to
    FROM ops.file_ingestions
    WHERE error_class IS NULL AND can_promote
      AND (as_of > $today
           OR (coverage_to > coalesce(as_of, $today)
               AND coalesce(silver_table, '') NOT IN (SELECT unnest($future_tables))))
    GROUP BY ALL
    ORDER BY ALL
"""


def future_dated_files(
    conn: duckdb.DuckDBPyConnection, today: dt.date, future_tables: Sequence[str] = ()
) -> list[tuple[DatasetIdentity, int, dt.date | None, dt.date | None]]:
    """Good files planned for a day after `today`, or holding rows after their own planning day, per identity:
    (identity, files, latest planning date, latest row date). Tables in `future_tables` list coming events by
    design (keymap `allow_future_dates`) and are left out. Planning ignores what these files hold ahead of time
    (`file_ingestions.latest_bronze_coverage`); `pipeline status` names them."""
    rows = conn.execute(FUTURE_DATED_SQL, {"today": today, "future_tables": list(future_tables)}).fetchall()
    return [(DatasetIdentity(*r[:5]), r[5], r[6], r[7]) for r in rows]


# ---- text helpers -------------------------------------------------------------------------------------------


def clip(text: object, width: int) -> str:
    """Fit text into a column: long values end in an ellipsis instead of breaking the table."""
    s = "" if text is None else str(text)
    return s if len(s) <= width else s[: max(0, width - 1)] + "…"


def entry_label(dataset: str, discriminator: str | None) -> str:
    """`income-statement [annual]`: how a keymap entry is named in tables."""
    return f"{dataset} [{discriminator}]" if discriminator else dataset


def wrap(text: str, indent: int) -> list[str]:
    # never inside a name such as historical-price-eod: a reader (or a grep) must find it whole
    lines = textwrap.wrap(
        text, WIDTH, initial_indent=" " * indent, subsequent_indent=" " * (indent + 2), break_on_hyphens=False
    )
    return lines or [""]
