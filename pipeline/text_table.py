"""Aligned plain-text tables for the CLI (`tabulate`), with room for detail lines under a row."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import DataRow, TableFormat, tabulate

# tabulate's "simple" layout with one space between columns instead of two: the status and coverage
# tables must fit 100 characters. The header goes in as the first row because tabulate widens every
# column by two characters beyond its header otherwise; the rule under it is then drawn here.
COMPACT = TableFormat(
    lineabove=None,
    linebelowheader=None,
    linebetweenrows=None,
    linebelow=None,
    headerrow=DataRow("", " ", ""),
    datarow=DataRow("", " ", ""),
    padding=0,
    with_header_hide=None,
)


def text_table(
    rows: Sequence[Sequence[object]], headers: Sequence[str], align: str, details: Sequence[Sequence[str]] | None = None
) -> list[str]:
    """Lines of a table; `align` has one letter per column (l/r), `details[i]` are printed under row i.

    Cells are shown as given (no number parsing), so callers format numbers ("1,234", "-") themselves.
    """
    cells = [list(headers)] + [[("" if c is None else str(c)) for c in row] for row in rows]
    colalign = ["right" if a == "r" else "left" for a in align]
    text = tabulate(cells, tablefmt=COMPACT, colalign=colalign, disable_numparse=True)
    lines = [line.rstrip() for line in text.splitlines()]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    out = [lines[0], " ".join("-" * w for w in widths)]
    for i, line in enumerate(lines[1:]):
        out.append(line)
        if details is not None:
            out.extend(details[i])
    return out
