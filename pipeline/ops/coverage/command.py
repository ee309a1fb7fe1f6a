"""`pipeline coverage`: per dataset and ticker, what we hold, what failed, and where the real holes are.

Read-only, with the same busy/missing behaviour and exit codes as `pipeline status` (pipeline.ops.reader):
0 printed (gaps are reported, not an error), 1 no warehouse yet or unknown `--dataset`, 3 busy.
The ledger and Silver are read by `readers`, gaps found by `gaps`, and the table and HTML drawn by `report`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import duckdb

from pipeline.keymap.loader import load_keymap
from pipeline.keymap.model import DatasetIdentity, Keymap, KeymapEntry
from pipeline.ops.coverage.gaps import fill_silver
from pipeline.ops.coverage.model import SeriesCoverage
from pipeline.ops.coverage.readers import IDENTITY_COLUMNS, ledger_series, silver_columns, silver_dates
from pipeline.ops.coverage.report import format_table, render_html, summary_line
from pipeline.ops.reader import EXIT_NOTHING, EXIT_OK, run_readonly, wrap
from pipeline.settings import Settings
from pipeline.storage_errors import describe_os_error


def collect(conn: duckdb.DuckDBPyConnection, keymap: Keymap, entries: Sequence[KeymapEntry]) -> list[SeriesCoverage]:
    """Every series of `entries`, in keymap order then ticker order, with its Silver gaps."""
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
        for (dom, src, ds, disc, ticker), part in frame.groupby(IDENTITY_COLUMNS):
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
    return [
        e
        for e in keymap.entries
        if name
        in (e.dataset, e.asset_name, f"{e.dataset}/{e.discriminator}", e.silver.table, f"silver.{e.silver.table}")
    ]


def coverage(
    settings: Settings, *, html_path: str | Path | None = None, dataset: str | None = None, out: TextIO | None = None
) -> int:
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
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(
                render_html(rows, warehouse=settings.warehouse_label, as_of=settings.today()), encoding="utf-8"
            )
        except OSError as exc:  # a read-only data folder or a full disk: the table above is the report
            print(f"HTML report: not written, cannot write {target}: {describe_os_error(exc)}", file=out)
            return EXIT_OK
        print(f"HTML report: {target}", file=out)
        return EXIT_OK

    return run_readonly(settings, "coverage", body, out)
