"""Gold by date: which moved tickers of a (ticker, date) table get only their new days, and which bars they read.

Why: a daily refresh adds one bar per ticker. Recomputing each such ticker over its whole history rewrote about
1,700 Gold rows per new bar (10 million rows per table per day for the whole market). Cost must grow with the news,
not with history (DESIGN section 8): a ticker whose history did not change gets its new days only, computed from
the bars their rolling windows need (`ByDate` in `pipeline.gold.models`); a ticker with a split, a dividend, a
restated statement or a corrected bar is recomputed over its whole history, as before.

What changed is read from Silver's history tables, not from the ledger. Promotion writes every new row version
(an inserted key or an updated value) to `silver.<table>__history` with its `promoted_at`, so the versions
promoted after the table's last build are exactly what changed, row by row, with their dates. The ledger only
has per-file counts and the file's date range: a daily file that re-serves the last 7 days (the fetch overlap)
and adds one looks there like a file that corrects a past bar. Each build records, per Silver input table, the
newest `promoted_at` it saw (`ops.gold_builds.input_promoted_to`, `history_marks`); promotions of one table commit
in that order (one writer at a time on the DuckDB file), so the next build reads what it has not seen yet.

A moved ticker is recomputed over its whole history (correctness first) when:
- the table holds no row of it yet;
- its inputs moved in the ledger but Silver history shows no change for it (something we cannot see changed);
- a split or dividend takes effect in the new days: it re-bases (split) or re-adjusts (dividend) every earlier day;
  or one dated on or before the table's last day changed or arrived late. Splits and dividends dated after the last
  price day are announcements that change nothing yet; the day their date is reached, the first rule applies;
- a bar on or before the last day the table holds changed or arrived (a correction, a backfill);
- (tables that show the statement in force) a quarterly statement changed or arrived whose period is not newer than
  the newest statement the table shows, or that became knowable on or before its last day: a restatement or a late
  filing changes days already built. A new quarter accepted after the last day built only affects new days;
- any other input changed.
Otherwise the ticker is built by date: only rows after its last day are written, computed from `read_from` on.
The write compares with what the table holds (`pipeline.gold.build`), so a wrong "by date" here could only
leave old days stale, never duplicate them; the rules above err on the side of a full recompute.

Without the marks of the last build (none yet, or a build from before this module), every moved ticker is
recomputed over its history.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb

from pipeline.gold import models
from pipeline.gold.models import GoldModel
from pipeline.gold.security_join import SECURITY_INPUTS
from pipeline.gold.templates import render

BAR_TABLES = ("fmp_price_eod_as_traded", "fmp_price_eod")  # daily bars: a change on or before the last day re-bases
EVENT_TABLES = ("fmp_splits", "fmp_dividends")  # take effect on their date and change every earlier day
STATEMENT_TABLES = models.STATEMENT_INPUTS
STATEMENT_COLUMN = "statement_period_end"  # the statement in force, in tables that show it


@dataclass(frozen=True)
class ByDatePlan:
    """The moved tickers of one build, split into those built by date and those recomputed over their history."""

    after: dict[str, dt.date] = field(default_factory=dict)  # by date: ticker -> last day held (write later days)
    read_from: dict[str, dt.date] = field(default_factory=dict)  # by date: ticker -> first bar read
    full: dict[str, str] = field(default_factory=dict)  # ticker -> why it is recomputed over its history

    def bars_from(self) -> list[dict]:
        """The SQL's `$bars_from`."""
        return [{"ticker": t, "read_from": d} for t, d in sorted(self.read_from.items())]

    def describe(self, limit: int = 3) -> str:
        """'2 ticker(s) by date (new days only); 1 recomputed over its history (NVDA: a split or dividend ...)'."""
        parts = []
        if self.after:
            parts.append(f"{len(self.after)} ticker(s) by date (new days only)")
        if self.full:
            why = "; ".join(f"{t}: {r}" for t, r in list(sorted(self.full.items()))[:limit])
            more = f"; +{len(self.full) - limit} more" if len(self.full) > limit else ""
            parts.append(f"{len(self.full)} recomputed over their history ({why}{more})")
        return "; ".join(parts)


def _history_tables(conn: duckdb.DuckDBPyConnection, tables: tuple[str, ...]) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'silver' AND table_name IN "
        "(SELECT unnest(?) || '__history')",
        [list(tables)],
    ).fetchall()
    have = {r[0] for r in rows}
    return [t for t in tables if f"{t}__history" in have]


def history_marks(conn: duckdb.DuckDBPyConnection, tables: tuple[str, ...]) -> list[str]:
    """`<table>@<newest promoted_at>` per Silver table of `tables` whose history has rows, sorted: what a build saw.
    The security master's inputs are left out, as by-date planning leaves them out (`plan_sql`)."""
    present = _history_tables(conn, tuple(t for t in tables if t not in SECURITY_INPUTS))
    if not present:
        return []
    union = "\nUNION ALL\n".join(
        f"SELECT '{t}' AS silver_table, max(promoted_at) AS promoted_to FROM silver.{t}__history" for t in present
    )
    rows = conn.execute(union).fetchall()
    return sorted(f"{t}@{at.isoformat()}" for t, at in rows if at is not None)


def _since(marks: list[str]) -> list[dict]:
    out = []
    for mark in marks:
        table, _, at = mark.partition("@")
        out.append({"silver_table": table, "promoted_after": dt.datetime.fromisoformat(at)})
    return out


def _kind(table: str, model: GoldModel) -> str:
    if table in BAR_TABLES:
        return "bar"
    if table in EVENT_TABLES:
        return "event"
    if table in STATEMENT_TABLES and STATEMENT_COLUMN in model.column_names:
        return "statement"
    return "other"


def plan_sql(model: GoldModel, inputs: list[str]) -> str:
    """The classification query for `model` over the input tables that have a history table."""
    if model.by_date is None:
        raise ValueError(f"gold.{model.name} is not built by date")
    # the security master's inputs only name each row's security_id: a global one that moved makes the build full,
    # and a profile refresh (weekly, for every ticker) must not recompute every history
    kinds = [(t, _kind(t, model)) for t in inputs if t not in SECURITY_INPUTS]
    return render(
        "by_date_plan",
        table=model.name,
        inputs=kinds,
        bar_tables=[t for t in inputs if t in BAR_TABLES],
        event_tables=[t for t in inputs if t in EVENT_TABLES],
        lookback_rows=model.by_date.rows,
        lookback_days=model.by_date.days,
        statement_column=STATEMENT_COLUMN if any(k == "statement" for _, k in kinds) else None,
        periods=list(model.periods or ()),
    )


def plan_by_date(
    conn: duckdb.DuckDBPyConnection, model: GoldModel, tickers: list[str], since: list[str] | None
) -> ByDatePlan:
    """Split the moved `tickers` of a by-date model into by-date and full recomputes; `since` are the history marks
    of the model's last successful build (None: unknown, so every ticker is recomputed over its history)."""
    if since is None:
        return ByDatePlan(full=dict.fromkeys(tickers, "no record of what its last build saw"))
    inputs = _history_tables(conn, model.inputs)
    missing = sorted(set(model.inputs) - set(inputs))
    if missing:
        return ByDatePlan(full=dict.fromkeys(tickers, f"no Silver history table for {', '.join(missing)}"))
    rows = conn.execute(plan_sql(model, inputs), {"tickers": tickers, "since": _since(since)}).fetchall()
    return ByDatePlan(
        after={ticker: held_to for ticker, held_to, _, why in rows if why is None},
        read_from={ticker: read_from for ticker, _, read_from, why in rows if why is None},
        full={ticker: why for ticker, _, _, why in rows if why is not None},
    )
