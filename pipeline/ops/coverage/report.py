"""How coverage is shown: an aligned terminal table, and a self-contained HTML page with an SVG heatmap.

The HTML page is one file (inline CSS and SVG, no scripts, fonts or remote assets) so it opens from disk,
mails as an attachment and survives offline. Its layout lives in `templates/` (Jinja2, autoescaped); this
module only computes what goes where.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from pathlib import Path

import jinja2

from pipeline.ops.coverage.model import GAP_RULES, Month, SeriesCoverage
from pipeline.ops.reader import clip, wrap
from pipeline.text_table import text_table

MAX_HEATMAP_ROWS = 400
SHOW_GAP_RANGES = 4  # in the terminal; the HTML table shows more
HTML_GAP_RANGES = 12
CELL_W, CELL_H, LABEL_W, TOP = 7, 12, 250, 28


def fmt_date(d: dt.date | None) -> str:
    return d.isoformat() if d else "-"


def missing_cell(s: SeriesCoverage) -> str:
    return str(s.missing) if s.rule in GAP_RULES else "-"


def shown_dates(s: SeriesCoverage) -> tuple[dt.date | None, dt.date | None]:
    """First/last good coverage; snapshots (no row date) show the date of the newest good fetch instead."""
    if s.first is None and s.entry.silver.row_date is None and s.last_fetch:
        return s.last_fetch.date(), s.last_fetch.date()
    return s.first, s.last


# ---- terminal table ----------------------------------------------------------------------------------------


def format_table(rows: Sequence[SeriesCoverage]) -> list[str]:
    """One line per series; a series with gaps gets its first missing days/periods on the lines below it."""
    cells, details = [], []
    for s in rows:
        first, last = shown_dates(s)
        cells.append(
            [
                clip(s.label, 40),
                clip(s.ticker or "-", 6),
                fmt_date(first),
                fmt_date(last),
                f"{s.files:,}",
                f"{s.error_files:,}",
                s.rule,
                missing_cell(s),
            ]
        )
        below: list[str] = []
        if s.has_gaps:
            shown = ", ".join(s.missing_labels[:SHOW_GAP_RANGES])
            more = len(s.missing_labels) - SHOW_GAP_RANGES
            below = wrap(f"missing: {shown}" + (f" (+{more} more)" if more > 0 else ""), 4)
        if s.quarantined:
            below += wrap(
                f"{s.quarantined} quarantined file(s) waiting for a refetch (`pipeline status` names them)", 4
            )
        details.append(below)
    headers = ["dataset", "ticker", "first", "last", "files", "err", "rule", "missing"]
    return text_table(cells, headers, "llllrrlr", details)


def summary_line(rows: Sequence[SeriesCoverage]) -> str:
    gappy = [s for s in rows if s.has_gaps]
    days = sum(s.missing for s in gappy if s.rule == "trading")
    periods = sum(s.missing for s in gappy if s.rule != "trading")
    errors = sum(s.error_files for s in rows)
    quarantined = sum(s.quarantined for s in rows)
    return (
        f"{len(rows)} series, {len(gappy)} with gaps ({days} missing trading day(s), {periods} missing "
        f"period(s)), {errors} error file(s)"
        + (f" ({quarantined} quarantined, waiting for a refetch)" if quarantined else "")
    )


# ---- heatmap geometry ----------------------------------------------------------------------------------------


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


def heatmap(rows: Sequence[SeriesCoverage]) -> dict:
    """The SVG's geometry: rows = dataset × ticker, columns = months, colour = share of expected present."""
    axis = month_axis(rows)
    col = {m: i for i, m in enumerate(axis)}
    width, height = LABEL_W + CELL_W * max(1, len(axis)) + 10, TOP + CELL_H * len(rows) + 10
    years = [{"x": LABEL_W + i * CELL_W, "year": year} for (year, month), i in col.items() if month == 1 or i == 0]
    drawn = []
    for r, s in enumerate(rows):
        y = TOP + r * CELL_H
        full = f"{s.label} {s.ticker}".strip()
        cells = [
            {
                "x": LABEL_W + col[month] * CELL_W,
                "fill": share_colour(expected, present),
                "title": f"{full} {month[0]}-{month[1]:02d}: "
                + (f"{present}/{expected} expected" if expected else f"{present} row(s), no cadence"),
            }
            for month, (expected, present) in sorted(s.months.items())
        ]
        drawn.append({"y": y, "label": clip(full, 42), "cells": cells})
    return {
        "width": width,
        "height": height,
        "top": TOP,
        "label_w": LABEL_W,
        "cell_w": CELL_W,
        "cell_h": CELL_H,
        "years": years,
        "rows": drawn,
    }


# ---- HTML page -----------------------------------------------------------------------------------------------


@cache
def templates() -> jinja2.Environment:
    """Templates shipped next to this module, read through importlib.resources (works from a wheel too)."""
    folder = resources.files(__package__).joinpath("templates")
    return jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: folder.joinpath(name).read_text("utf-8")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def table_row(s: SeriesCoverage) -> dict:
    first, last = shown_dates(s)
    more = " …" if len(s.missing_labels) > HTML_GAP_RANGES else ""
    return {
        "label": s.label,
        "docs_url": s.entry.docs_url if s.entry.docs_url.startswith("https://") else None,
        "ticker": s.ticker or "-",
        "first": fmt_date(first),
        "last": fmt_date(last),
        "files": f"{s.files:,}",
        "error_files": f"{s.error_files:,}",
        "rule": s.rule,
        "missing": missing_cell(s),
        "where": ", ".join(s.missing_labels[:HTML_GAP_RANGES]) + more,
        "gap": s.has_gaps,
    }


def render_html(rows: Sequence[SeriesCoverage], *, warehouse: Path | str, as_of: dt.date) -> str:
    drawn, omitted = heatmap_rows(rows)
    legend = [
        (share_colour(e, p), text)
        for e, p, text in (
            (1, 0, "none present"),
            (2, 1, "half"),
            (1, 1, "all present"),
            (0, 1, "rows, no cadence"),
            (0, 0, "nothing expected"),
        )
    ]
    return (
        templates()
        .get_template("report.html.j2")
        .render(
            summary=summary_line(rows),
            warehouse=str(warehouse),
            as_of=as_of,
            generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            legend=legend,
            heatmap=heatmap(drawn),
            omitted=omitted,
            max_rows=MAX_HEATMAP_ROWS,
            rows=[table_row(s) for s in rows],
        )
    )
