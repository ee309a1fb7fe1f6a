"""`pipeline coverage`: per dataset and ticker, what we hold, what failed, and where the real holes are.

Read-only, with the same busy/missing behaviour and exit codes as `pipeline status` (pipeline.ops.status):
0 printed (gaps are reported, not an error), 1 no warehouse yet or unknown `--dataset`, 3 busy.

Where the numbers come from:
- first/last date, files and error files: the ledger (`ops.file_ingestions`); first/last is *good* coverage
  (successful, promotable files), the same rule the planner uses for watermarks.
- gaps: the Silver table, because that is what analysis reads. Each Silver row is attributed to its keymap
  entry through its lineage (`bronze_file_id` -> ledger identity), so entries sharing a table (annual and
  quarterly statements, one economic indicator per discriminator) are checked separately.

Gap rules (one per series, chosen from the keymap and the data, so a new dataset needs no code):
- `trading`: daily series (median spacing of row dates <= 4 days: EOD prices, the Treasury curve, daily
  snapshots). Expected = every weekday between the first and last Silver date that is not a US market or
  federal holiday (NYSE full-day closures by rule: New Year, MLK, Presidents, Good Friday, Memorial,
  Juneteenth, Independence, Labor, Thanksgiving, Christmas, with weekend observance; plus the federal
  Columbus and Veterans days, when the Treasury publishes no curve; plus a short list of special closures).
  The union errs towards silence: a missing EOD price on Columbus Day is not reported, but no holiday is
  ever reported as a gap. Every missing expected day counts; consecutive days are shown as one range.
- `fiscal-q` / `fiscal-y`: statements (discriminator `quarter`/`annual`). Periods are numbered by
  (fiscal_year, period) when the table has those columns (else by the calendar quarter/year of the row
  date); a number missing between the first and last period held is a gap ("FY2023 Q2", "FY2021").
- `monthly` / `quarterly`: calendar series (all row dates on the same day of the month, spacing ~1 or ~3
  months: economic indicators); a missing month or quarter is a gap.
- `events` (dividends, splits: irregular dates) and `snapshot` (no row date): no expected cadence, so no
  gaps; the heatmap shows the months that have rows.

The HTML report is one self-contained file (inline CSS and SVG, no scripts, fonts or remote assets) so it
opens from disk, mails as an attachment and survives offline.
"""

from __future__ import annotations

import datetime as dt
import html
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import duckdb
import numpy as np
import pandas as pd

from pipeline.keymap.loader import load_keymap
from pipeline.keymap.model import DatasetIdentity, Keymap, KeymapEntry
from pipeline.ops.status import EXIT_NOTHING, EXIT_OK, clip, entry_label, run_readonly, wrap
from pipeline.settings import Settings
from pipeline.silver.schema import quote

GAP_RULES = ("trading", "fiscal-q", "fiscal-y", "monthly", "quarterly")
MAX_HEATMAP_ROWS = 400
SHOW_GAP_RANGES = 4

# Full-day US market closures that no rule predicts (national days of mourning, hurricane Sandy).
SPECIAL_CLOSURES = frozenset(dt.date.fromisoformat(d) for d in (
    "2012-10-29", "2012-10-30", "2018-12-05", "2025-01-09"))


# ---- the holiday calendar -----------------------------------------------------------------------------------

def easter(year: int) -> dt.date:
    """Gregorian Easter Sunday (anonymous algorithm): Good Friday is two days before."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month = (h + l_ - 7 * m + 114) // 31
    day = (h + l_ - 7 * m + 114) % 31 + 1
    return dt.date(year, month, day)


def nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    """The n-th `weekday` (0 = Monday) of a month; n = -1 is the last one."""
    if n > 0:
        first = dt.date(year, month, 1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    nxt = dt.date(year + month // 12, month % 12 + 1, 1)
    last = nxt - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def observed(day: dt.date) -> dt.date:
    """Saturday holidays are observed on Friday, Sunday ones on Monday."""
    if day.weekday() == 5:
        return day - dt.timedelta(days=1)
    if day.weekday() == 6:
        return day + dt.timedelta(days=1)
    return day


def us_holidays(year: int) -> set[dt.date]:
    """NYSE full-day holidays plus US federal holidays of one year (see the module docstring for why the union)."""
    days = {
        observed(dt.date(year, 1, 1)),
        nth_weekday(year, 1, 0, 3),             # Martin Luther King Jr. Day
        nth_weekday(year, 2, 0, 3),             # Washington's Birthday
        easter(year) - dt.timedelta(days=2),    # Good Friday (NYSE)
        nth_weekday(year, 5, 0, -1),            # Memorial Day
        observed(dt.date(year, 7, 4)),
        nth_weekday(year, 9, 0, 1),             # Labor Day
        nth_weekday(year, 10, 0, 2),            # Columbus Day (federal: no Treasury curve)
        observed(dt.date(year, 11, 11)),        # Veterans Day (federal)
        nth_weekday(year, 11, 3, 4),            # Thanksgiving
        observed(dt.date(year, 12, 25)),
    }
    if year >= 2021:
        days.add(observed(dt.date(year, 6, 19)))  # Juneteenth (federal 2021, NYSE 2022)
    return days


def holidays_between(start: dt.date, end: dt.date) -> np.ndarray:
    days: set[dt.date] = set(SPECIAL_CLOSURES)
    for year in range(start.year - 1, end.year + 2):
        days |= us_holidays(year)
    return np.array(sorted(d for d in days if start <= d <= end), dtype="datetime64[D]")


def trading_days(start: dt.date, end: dt.date) -> np.ndarray:
    """Expected observation days of a daily series between start and end (inclusive), as datetime64[D]."""
    if end < start:
        return np.array([], dtype="datetime64[D]")
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    return days[np.is_busday(days, holidays=holidays_between(start, end))]


# ---- the model ---------------------------------------------------------------------------------------------

Month = tuple[int, int]


@dataclass
class SeriesCoverage:
    """One keymap entry × ticker (or the entry itself when global): ledger facts plus Silver gaps."""

    entry: KeymapEntry
    ticker: str
    first: dt.date | None = None          # good coverage, from the ledger
    last: dt.date | None = None
    files: int = 0
    error_files: int = 0
    last_fetch: dt.datetime | None = None
    silver_rows: int = 0
    silver_first: dt.date | None = None
    silver_last: dt.date | None = None
    rule: str = "snapshot"
    missing: int = 0
    missing_labels: list[str] = field(default_factory=list)
    months: dict[Month, tuple[int, int]] = field(default_factory=dict)   # month -> (expected, present)

    @property
    def label(self) -> str:
        return entry_label(self.entry.dataset, self.entry.discriminator)

    @property
    def has_gaps(self) -> bool:
        return self.rule in GAP_RULES and self.missing > 0


# ---- reading the warehouse -----------------------------------------------------------------------------------

LEDGER_SQL = """
    SELECT domain, source, dataset, discriminator, ticker,
           min(coverage_from) FILTER (WHERE error_class IS NULL AND can_promote)  AS first_date,
           max(coverage_to)   FILTER (WHERE error_class IS NULL AND can_promote)  AS last_date,
           count(*)                                                               AS files,
           count(*) FILTER (WHERE error_class IS NOT NULL)                        AS error_files,
           max(fetched_at)    FILTER (WHERE error_class IS NULL AND can_promote)  AS last_fetch
    FROM ops.file_ingestions
    GROUP BY ALL
"""

SILVER_ROWS_SQL = """
    SELECT f.domain, f.source, f.dataset, f.discriminator, f.ticker,
           s.{row_date} AS d{fiscal}
    FROM silver.{table} AS s
    JOIN ops.file_ingestions AS f ON f.file_id = s.bronze_file_id
    WHERE s.{row_date} IS NOT NULL
"""


def silver_columns(conn: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Existing Silver tables and their columns (a table appears after its first promotion)."""
    rows = conn.execute("""
        SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'silver'
    """).fetchall()
    out: dict[str, set[str]] = {}
    for table, column in rows:
        out.setdefault(table, set()).add(column)
    return out


def ledger_series(conn: duckdb.DuckDBPyConnection, keymap: Keymap, entries: Sequence[KeymapEntry]) -> dict:
    """Series keyed by (asset name, ticker) with the ledger's facts; files of unknown identities are ignored."""
    wanted = {e.asset_name for e in entries}
    series: dict[tuple[str, str], SeriesCoverage] = {}
    for dom, src, ds, disc, ticker, first, last, files, errors, last_fetch in conn.execute(LEDGER_SQL).fetchall():
        entry = keymap.find(DatasetIdentity(dom, src, ds, disc, ticker))
        if entry is None or entry.asset_name not in wanted:
            continue
        series[(entry.asset_name, ticker or "")] = SeriesCoverage(
            entry, ticker or "", first, last, int(files), int(errors), last_fetch)
    return series


def silver_dates(conn: duckdb.DuckDBPyConnection, table: str, row_date: str, fiscal: bool) -> pd.DataFrame:
    extra = ", s.fiscal_year AS fy, s.period AS period" if fiscal else ""
    sql = SILVER_ROWS_SQL.format(row_date=quote(row_date), table=quote(table), fiscal=extra)
    return conn.execute(sql).df()


# ---- gap rules ---------------------------------------------------------------------------------------------

def months_of(days: np.ndarray) -> dict[Month, int]:
    """Count of days per (year, month)."""
    if len(days) == 0:
        return {}
    months, counts = np.unique(days.astype("datetime64[M]"), return_counts=True)
    return {(int(str(m)[:4]), int(str(m)[5:7])): int(n) for m, n in zip(months, counts)}


def day_ranges(days: np.ndarray, expected: np.ndarray) -> list[str]:
    """Missing days as ranges of consecutive *expected* days ("2024-03-04..2024-03-08 (5)")."""
    position = {d: i for i, d in enumerate(expected.tolist())}
    ranges: list[list[dt.date]] = []
    for day in days.tolist():
        if ranges and position[day] == position[ranges[-1][-1]] + 1:
            ranges[-1].append(day)
        else:
            ranges.append([day])
    return [f"{r[0]}" if len(r) == 1 else f"{r[0]}..{r[-1]} ({len(r)})" for r in ranges]


def classify(entry: KeymapEntry, days: np.ndarray, fiscal: bool) -> str:
    """Pick the gap rule of one series from the keymap and the spacing of its row dates."""
    if entry.silver.row_date is None:
        return "snapshot"
    if fiscal and entry.discriminator in ("quarter", "annual"):
        return "fiscal-q" if entry.discriminator == "quarter" else "fiscal-y"
    if len(days) < 2:
        return "trading" if entry.recipe.min_age_days <= 1 and entry.recipe.is_windowed else "events"
    spacing = float(np.median(np.diff(days).astype(int)))
    if spacing <= 4:
        return "trading"
    same_day = len({d.day for d in days.tolist()}) == 1
    if same_day and 27 <= spacing <= 32:
        return "monthly"
    if same_day and 88 <= spacing <= 93:
        return "quarterly"
    return "events"


def apply_trading(s: SeriesCoverage, days: np.ndarray) -> None:
    expected = trading_days(s.silver_first, s.silver_last)
    missing = np.setdiff1d(expected, days)
    present = np.intersect1d(expected, days)
    have = months_of(present)
    s.months = {m: (n, have.get(m, 0)) for m, n in months_of(expected).items()}
    s.missing = len(missing)
    s.missing_labels = day_ranges(missing, expected)


def add_months(day: dt.date, months: int) -> Month:
    index = day.year * 12 + day.month - 1 + months
    return index // 12, index % 12 + 1


def apply_periods(s: SeriesCoverage, numbered: dict[int, dt.date], step_months: int, name) -> None:
    """Shared by fiscal and calendar periods: `numbered` maps a consecutive period number to its row date."""
    if not numbered:
        return
    lo, hi = min(numbered), max(numbered)
    anchor_n = lo
    months: dict[Month, list[int]] = {}
    labels: list[str] = []
    for n in range(lo, hi + 1):
        if n in numbered:
            anchor_n = n
            month = (numbered[n].year, numbered[n].month)
        else:
            month = add_months(numbered[anchor_n], step_months * (n - anchor_n))
            labels.append(name(n))
        cell = months.setdefault(month, [0, 0])
        cell[0] += 1
        cell[1] += n in numbered
    s.months = {m: (e, p) for m, (e, p) in months.items()}
    s.missing = len(labels)
    s.missing_labels = labels


def fiscal_numbers(frame: pd.DataFrame, quarterly: bool) -> dict[int, dt.date]:
    """Period number -> row date: fy*4 + q for quarters, fy for years; falls back to the calendar of the date."""
    out: dict[int, dt.date] = {}
    blank = [None] * len(frame)
    for day, fy, period in zip(frame["d"], frame.get("fy", blank), frame.get("period", blank)):
        day = pd.Timestamp(day).date()
        period = str(period or "").upper()
        year = int(fy) if fy is not None and not pd.isna(fy) else day.year
        if quarterly:
            named = len(period) == 2 and period[0] == "Q" and period[1] in "1234"
            q = int(period[1]) if named else (day.month - 1) // 3 + 1
            out[year * 4 + q - 1] = day
        elif period in ("", "FY"):
            out[year] = day
    return out


def fill_silver(s: SeriesCoverage, frame: pd.DataFrame, fiscal: bool) -> None:
    """Attach the Silver facts and the gaps of one series to it."""
    days = np.unique(pd.to_datetime(frame["d"]).values.astype("datetime64[D]"))
    s.silver_rows = len(frame)
    s.silver_first, s.silver_last = days[0].item(), days[-1].item()
    s.rule = classify(s.entry, days, fiscal)
    if s.rule == "trading":
        apply_trading(s, days)
    elif s.rule in ("fiscal-q", "fiscal-y"):
        quarterly = s.rule == "fiscal-q"
        apply_periods(s, fiscal_numbers(frame, quarterly), 3 if quarterly else 12,
                      (lambda n: f"FY{n // 4} Q{n % 4 + 1}") if quarterly else (lambda n: f"FY{n}"))
    elif s.rule in ("monthly", "quarterly"):
        step = 1 if s.rule == "monthly" else 3
        numbered = {(d.year * 12 + d.month - 1) // step: d for d in days.tolist()}
        apply_periods(s, numbered, step, lambda n: f"{n * step // 12}-{n * step % 12 + 1:02d}")
    else:
        s.months = {m: (0, n) for m, n in months_of(days).items()}


def collect(conn: duckdb.DuckDBPyConnection, keymap: Keymap, entries: Sequence[KeymapEntry]) -> list[SeriesCoverage]:
    """Every series of `entries`, in keymap order then ticker order."""
    series = ledger_series(conn, keymap, entries)
    tables = silver_columns(conn)
    done: set[str] = set()
    for entry in entries:
        spec = entry.silver
        if spec.row_date is None or spec.table not in tables or spec.table in done:
            continue
        done.add(spec.table)
        fiscal = {"fiscal_year", "period"} <= tables[spec.table]
        frame = silver_dates(conn, spec.table, spec.row_date, fiscal)
        identity_columns = ["domain", "source", "dataset", "discriminator", "ticker"]
        for (dom, src, ds, disc, ticker), part in frame.groupby(identity_columns):
            owner = keymap.find(DatasetIdentity(dom, src, ds, disc, ticker))
            if owner is None or owner not in entries:
                continue
            s = series.setdefault((owner.asset_name, ticker or ""), SeriesCoverage(owner, ticker or ""))
            fill_silver(s, part, fiscal)
    for s in series.values():
        if s.entry.silver.row_date is not None and s.silver_rows == 0:
            # not promoted yet (no table), or only empty answers (a ticker without splits): nothing to judge
            s.rule = "no rows" if s.entry.silver.table in tables else "no silver"
    order = {e.asset_name: i for i, e in enumerate(entries)}
    return sorted(series.values(), key=lambda s: (order[s.entry.asset_name], s.ticker))


def select_entries(keymap: Keymap, name: str | None) -> list[KeymapEntry]:
    """`--dataset` accepts a dataset (all its discriminators), an asset name, `dataset/discriminator` or a table."""
    if not name:
        return list(keymap.entries)
    return [e for e in keymap.entries if name in (
        e.dataset, e.asset_name, f"{e.dataset}/{e.discriminator}", e.silver.table, f"silver.{e.silver.table}")]


# ---- terminal table ----------------------------------------------------------------------------------------

HEADER = (f"{'dataset':40} {'ticker':6} {'first':10} {'last':10} {'files':>5} {'err':>4} {'rule':9} "
          f"{'missing':>7}")


def fmt_date(d: dt.date | None) -> str:
    return d.isoformat() if d else "-"


def missing_cell(s: SeriesCoverage) -> str:
    return str(s.missing) if s.rule in GAP_RULES else "-"


def format_table(rows: Sequence[SeriesCoverage]) -> list[str]:
    lines = [HEADER, "-" * len(HEADER)]
    for s in rows:
        first, last = s.first, s.last
        if first is None and s.entry.silver.row_date is None and s.last_fetch:
            first = last = s.last_fetch.date()        # snapshots: the date of the newest good fetch
        lines.append(f"{clip(s.label, 40):40} {clip(s.ticker or '-', 6):6} {fmt_date(first):10} {fmt_date(last):10} "
                     f"{s.files:>5,} {s.error_files:>4,} {s.rule:9} {missing_cell(s):>7}")
        if s.has_gaps:
            shown = ", ".join(s.missing_labels[:SHOW_GAP_RANGES])
            more = len(s.missing_labels) - SHOW_GAP_RANGES
            lines.extend(wrap(f"missing: {shown}" + (f" (+{more} more)" if more > 0 else ""), 4))
    return lines


def summary_line(rows: Sequence[SeriesCoverage]) -> str:
    gappy = [s for s in rows if s.has_gaps]
    days = sum(s.missing for s in gappy if s.rule == "trading")
    periods = sum(s.missing for s in gappy if s.rule != "trading")
    errors = sum(s.error_files for s in rows)
    return (f"{len(rows)} series, {len(gappy)} with gaps ({days} missing trading day(s), {periods} missing "
            f"period(s)), {errors} error file(s)")


# ---- HTML + SVG heatmap ---------------------------------------------------------------------------------------

CELL_W, CELL_H, LABEL_W, TOP = 7, 12, 250, 28


def share_colour(expected: int, present: int) -> str:
    """Red (nothing) through yellow to green (everything expected is there); blue = rows without a cadence."""
    if expected == 0:
        return "#9ecae1" if present else "#eeeeee"
    share = min(1.0, present / expected)
    red, yellow, green = (215, 48, 39), (254, 224, 139), (26, 152, 80)
    lo, hi, t = (red, yellow, share * 2) if share < 0.5 else (yellow, green, (share - 0.5) * 2)
    r, g, b = (round(a + (c - a) * t) for a, c in zip(lo, hi))
    return f"#{r:02x}{g:02x}{b:02x}"


def month_axis(rows: Iterable[SeriesCoverage]) -> list[Month]:
    months = [m for s in rows for m in s.months]
    if not months:
        return []
    (y0, m0), (y1, m1) = min(months), max(months)
    return [((i // 12), i % 12 + 1) for i in range(y0 * 12 + m0 - 1, y1 * 12 + m1)]


def heatmap_rows(rows: Sequence[SeriesCoverage], cap: int = MAX_HEATMAP_ROWS) -> tuple[list[SeriesCoverage], int]:
    """Series that have months to draw; beyond `cap`, series with gaps are kept first (the picture stays small)."""
    drawable = [s for s in rows if s.months]
    if len(drawable) <= cap:
        return drawable, 0
    keep = {id(s) for s in drawable if s.has_gaps}
    for s in drawable:
        if len(keep) >= cap:
            break
        keep.add(id(s))
    kept = [s for s in drawable if id(s) in keep][:cap]
    return kept, len(drawable) - len(kept)


def heatmap_svg(rows: Sequence[SeriesCoverage]) -> str:
    """Inline SVG: rows = dataset × ticker, columns = months, colour = share of expected days/periods present."""
    axis = month_axis(rows)
    col = {m: i for i, m in enumerate(axis)}
    width, height = LABEL_W + CELL_W * max(1, len(axis)) + 10, TOP + CELL_H * len(rows) + 10
    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="coverage heatmap" font-family="sans-serif" font-size="10">']
    for (year, month), i in col.items():
        if month == 1 or i == 0:
            x = LABEL_W + i * CELL_W
            out.append(f'<line x1="{x}" y1="{TOP - 10}" x2="{x}" y2="{height - 10}" stroke="#bbb" stroke-width="0.5"/>')
            out.append(f'<text x="{x + 1}" y="{TOP - 14}">{year}</text>')
    for r, s in enumerate(rows):
        y = TOP + r * CELL_H
        full = f"{s.label} {s.ticker}".strip()
        name = html.escape(full)
        out.append(f'<text x="{LABEL_W - 4}" y="{y + CELL_H - 3}" text-anchor="end">{html.escape(clip(full, 42))}</text>')
        for month, (expected, present) in sorted(s.months.items()):
            what = (f"{present}/{expected} expected" if expected else f"{present} row(s), no cadence")
            out.append(f'<rect x="{LABEL_W + col[month] * CELL_W}" y="{y}" width="{CELL_W - 1}" height="{CELL_H - 1}" '
                       f'fill="{share_colour(expected, present)}"><title>{name} {month[0]}-{month[1]:02d}: '
                       f'{what}</title></rect>')
    out.append("</svg>")
    return "\n".join(out)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 2px 8px; border-bottom: 1px solid #e4e4e4; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.gap td { background: #fff4e5; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px; vertical-align: middle; }
.scroll { overflow-x: auto; border: 1px solid #ddd; padding: 4px; }
small { color: #666; }
"""


def html_table(rows: Sequence[SeriesCoverage]) -> str:
    head = ("<tr><th>dataset</th><th>ticker</th><th>first</th><th>last</th><th>files</th><th>error files</th>"
            "<th>rule</th><th>missing</th><th>where</th></tr>")
    body = []
    for s in rows:
        link = (f'<a href="{html.escape(s.entry.docs_url)}">{html.escape(s.label)}</a>'
                if s.entry.docs_url.startswith("https://") else html.escape(s.label))
        where = html.escape(", ".join(s.missing_labels[:12]) + (" …" if len(s.missing_labels) > 12 else ""))
        body.append(f'<tr class="{"gap" if s.has_gaps else ""}"><td>{link}</td><td>{html.escape(s.ticker or "-")}</td>'
                    f"<td>{fmt_date(s.first)}</td><td>{fmt_date(s.last)}</td><td class=n>{s.files:,}</td>"
                    f"<td class=n>{s.error_files:,}</td><td>{s.rule}</td><td class=n>{missing_cell(s)}</td>"
                    f"<td>{where}</td></tr>")
    return f"<table>{head}{''.join(body)}</table>"


def render_html(rows: Sequence[SeriesCoverage], *, warehouse: Path | str, as_of: dt.date) -> str:
    drawn, omitted = heatmap_rows(rows)
    legend = "".join(f'<span style="background:{c}"></span>{t}' for c, t in (
        (share_colour(1, 0), "none present"), (share_colour(2, 1), "half"), (share_colour(1, 1), "all present"),
        (share_colour(0, 1), "rows, no cadence"), (share_colour(0, 0), "nothing expected")))
    note = (f"<p><small>{omitted} fully covered series not drawn (limit {MAX_HEATMAP_ROWS} rows).</small></p>"
            if omitted else "")
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Coverage report</title><style>{STYLE}</style></head>
<body>
<h1>Coverage</h1>
<p>{html.escape(summary_line(rows))}.<br><small>Warehouse {html.escape(str(warehouse))}; as of {as_of};
generated {generated}. First/last = good coverage in the ledger; gaps are computed from Silver (rules in
<code>pipeline/ops/coverage.py</code>: trading = weekdays minus US market and federal holidays; fiscal-q/-y =
fiscal periods; monthly/quarterly = calendar periods; events/snapshot have no expected cadence).</small></p>
<h2>Heatmap</h2>
<p class="legend">share of expected days/periods present per month:{legend}</p>
<div class="scroll">{heatmap_svg(drawn)}</div>{note}
<h2>Per dataset and ticker</h2>
{html_table(rows)}
</body></html>
"""


# ---- the command ---------------------------------------------------------------------------------------------

def coverage(settings: Settings, *, html_path: str | Path | None = None, dataset: str | None = None,
             out: TextIO | None = None) -> int:
    """`pipeline coverage`: the aligned table on stdout and the HTML report on disk (see the module docstring)."""
    out = out or sys.stdout
    keymap = load_keymap(settings.keymap_path)
    entries = select_entries(keymap, dataset)
    if not entries:
        known = ", ".join(sorted({e.dataset for e in keymap.entries}))
        message = f"pipeline coverage: no keymap entry matches --dataset {dataset!r}; known datasets: {known}"
        for line in wrap(message, 0):
            print(line, file=out)
        return EXIT_NOTHING
    target = Path(html_path) if html_path else settings.data_dir / "coverage.html"

    def body(conn: duckdb.DuckDBPyConnection) -> int:
        rows = collect(conn, keymap, entries)
        for line in format_table(rows):
            print(line, file=out)
        if not rows:
            print("(no Bronze files recorded for these datasets yet)", file=out)
        print(f"\n{summary_line(rows)}", file=out)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render_html(rows, warehouse=settings.warehouse_label, as_of=settings.today()),
                          encoding="utf-8")
        print(f"HTML report: {target}", file=out)
        return EXIT_OK

    return run_readonly(settings, "coverage", body, out)
