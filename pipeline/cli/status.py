"""`pipeline status`: recent runs, one run's files, quarantined Bronze files still waiting for their refetch, and
what is due next (and why not). Read-only.

It prints from the ledger (`ops.runs`, `ops.file_ingestions`) and the Bronze dry-run planner, on a read-only
connection that fails fast while a run writes the warehouse (see `pipeline.ops.reader` for why, and for the
exit codes it shares with `pipeline coverage`). It lives outside `pipeline.ops` because it asks the Bronze
planner what is due, and the ledger package never imports Bronze.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sys
from collections.abc import Sequence
from typing import TextIO

import duckdb

from pipeline.bronze.fetch import dry_run
from pipeline.bronze.planner import PlanDecision
from pipeline.bronze.refresh import build_policy
from pipeline.cli.forecast import budget_lines
from pipeline.keymap.loader import load_keymap
from pipeline.keymap.model import KeymapEntry
from pipeline.ops.file_ingestions import file_ingestions_for_run
from pipeline.ops.quarantine import QuarantinedFile, quarantined_files
from pipeline.ops.reader import (
    EXIT_NOTHING,
    EXIT_OK,
    clip,
    entry_label,
    future_dated_files,
    run_readonly,
    wrap,
)
from pipeline.ops.runs import get_run, run_overviews
from pipeline.ops.survivorship import survivorship_section
from pipeline.ops.usage import usage
from pipeline.settings import Settings
from pipeline.text_table import text_table
from pipeline.universe import resolve_universe

# ---- formatting helpers -----------------------------------------------------------------------------------


def fmt_duration(started: dt.datetime | None, finished: dt.datetime | None) -> str:
    if started is None or finished is None:
        return "-"
    seconds = (finished - started).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"


def fmt_ts(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def fmt_int(value: object) -> str:
    return "-" if value is None else f"{int(value):,}"


# ---- (a) recent runs ----------------------------------------------------------------------------------------


def job_name(job: str | None) -> str:
    """Dagster's ad-hoc materializations run as `__ephemeral_asset_job__`: say so in fewer characters."""
    if not job:
        return "-"
    return "asset job" if job == "__ephemeral_asset_job__" else job


def run_duration(run: dict) -> str:
    """finished - started; when the run record has no finish time, the last file it registered (marked ~)."""
    if run["status"] == "running":
        return "running"
    if run["finished_at"] is not None:
        return fmt_duration(run["started_at"], run["finished_at"])
    if run.get("last_registered") is not None:
        return "~" + fmt_duration(run["started_at"], run["last_registered"])
    return "-"


def with_last_registered(conn: duckdb.DuckDBPyConnection, runs: list[dict]) -> list[dict]:
    """Add the time the run's last file was registered: the best end time for runs without `finished_at`."""
    ids = [r["run_id"] for r in runs]
    rows = (
        dict(
            conn.execute(
                """
        SELECT run_id, max(registered_at)
        FROM ops.file_ingestions
        WHERE run_id IN (SELECT unnest($ids))
        GROUP BY run_id
    """,
                {"ids": ids},
            ).fetchall()
        )
        if ids
        else {}
    )
    return [{**r, "last_registered": rows.get(r["run_id"])} for r in runs]


def format_runs(runs: Sequence[dict]) -> list[str]:
    """One line per run (newest first, as the read model returns them); the message goes on its own line."""
    cells, details = [], []
    for r in runs:
        errors = max(int(r["errors"] or 0), int(r["file_errors"] or 0))
        cells.append(
            [
                r["run_id"][:8],
                clip(job_name(r["job"]), 16),
                clip(r["source_mode"] or "-", 6),
                clip(r["status"], 8),
                fmt_ts(r["started_at"]),
                run_duration(r),
                fmt_int(r["requests"]),
                fmt_int(r["files"]),
                fmt_int(r["bronze_rows"]),
                f"{errors:,}",
                fmt_int(r["skipped"]),
            ]
        )
        details.append(wrap(f"↳ {r['message']}", 9) if r.get("message") else [])
    headers = ["run", "job", "mode", "status", "started (UTC)", "took", "req", "files", "rows", "err", "skip"]
    lines = text_table(cells, headers, "lllllrrrrrr", details)
    if not runs:
        lines.append("(no runs recorded yet)")
    return lines


# ---- (b) one run's files ------------------------------------------------------------------------------------


def find_runs(conn: duckdb.DuckDBPyConnection, prefix: str) -> list[str]:
    """Run ids starting with `prefix` (Bronze runs, and Silver runs known only from the ledger)."""
    rows = conn.execute(
        """
        SELECT run_id FROM ops.runs WHERE starts_with(run_id, $p)
        UNION
        SELECT run_id FROM ops.file_ingestions WHERE starts_with(run_id, $p)
        UNION
        SELECT silver_run_id FROM ops.file_ingestions WHERE starts_with(silver_run_id, $p)
        ORDER BY 1
    """,
        {"p": prefix},
    ).fetchall()
    return [r[0] for r in rows]


def fmt_coverage(start: dt.date | None, end: dt.date | None) -> str:
    if start is None and end is None:
        return "-"
    return f"{start or '?'}..{end or '?'}"


def silver_cell(f: dict) -> str:
    """What Silver did with a file: `ok 400/0/0/0` (inserted/updated/unchanged/rejected), pending, failed,
    quarantined, never."""
    if f.get("quarantine_reason"):
        return "quarantined"
    if f["silver_status"] == "promoted":
        counts = "/".join(
            fmt_int(f[c] or 0) for c in ("silver_inserted", "silver_updated", "silver_unchanged", "silver_rejected")
        )
        return f"ok {counts}"
    return f["silver_status"] or ("pending" if f["can_promote"] else "never")


def format_files(files: Sequence[dict]) -> list[str]:
    """One line per Bronze file of the run, grouped by dataset and series, with what Silver did with it."""
    order = sorted(
        files,
        key=lambda f: (
            f["dataset"],
            f["discriminator"] or "",
            f["ticker"] or "",
            f["coverage_from"] or dt.date.min,
            f["ingestion_id"],
        ),
    )
    cells = [
        [
            clip(f["dataset"], 20),
            clip(" ".join(p for p in (f["ticker"], f["discriminator"]) if p) or "-", 13),
            fmt_int(f["status_code"]),
            clip(f["error_class"] or "", 11),
            fmt_int(f["bronze_rows"]),
            fmt_coverage(f["coverage_from"], f["coverage_to"]),
            clip(silver_cell(f), 16),
        ]
        for f in order
    ]
    headers = ["dataset", "ticker/series", "http", "error", "rows", "coverage", "silver i/u/=/rej"]
    return text_table(cells, headers, "llrlrll")


def print_run(conn: duckdb.DuckDBPyConnection, prefix: str, out: TextIO) -> int:
    matches = find_runs(conn, prefix)
    if not matches:
        print(f"no run id starts with {prefix!r}; `pipeline status` lists recent runs", file=out)
        return EXIT_NOTHING
    if len(matches) > 1 and prefix not in matches:
        print(f"{len(matches)} runs start with {prefix!r}; give more characters:", file=out)
        for run_id in matches[:10]:
            print(f"  {run_id}", file=out)
        return EXIT_NOTHING
    run_id = prefix if prefix in matches else matches[0]
    run = get_run(conn, run_id)
    if run:
        run = with_last_registered(conn, [run])[0]
    files = file_ingestions_for_run(conn, run_id)
    print(f"Run {run_id}", file=out)
    if run:
        print(
            f"  job {job_name(run['job'])}, source {run['source_mode'] or '-'}, status {run['status']}, "
            f"started {fmt_ts(run['started_at'])} UTC, took {run_duration(run)}",
            file=out,
        )
        print(
            f"  {fmt_int(run['requests'])} request(s), {fmt_int(run['files'])} file(s), {fmt_int(run['rows'])} "
            f"row(s), {fmt_int(run['errors'])} error(s), {fmt_int(run['skipped'])} skipped",
            file=out,
        )
        if run["message"]:
            for line in wrap(f"message: {run['message']}", 2):
                print(line, file=out)
    else:
        print("  (no run record: a Silver promotion run, known from the files it promoted)", file=out)
    print(f"\nFiles ({len(files)}): Bronze files written by this run or promoted to Silver by it", file=out)
    legend = "silver: ok inserted/updated/unchanged/rejected | pending | failed | quarantined | never (an error file)"
    for line in wrap(legend, 2):
        print(line, file=out)
    for line in format_files(files):
        print(line, file=out)
    return EXIT_OK


# ---- (b2) files dated ahead of time -----------------------------------------------------------------------------


def future_section(settings: Settings, conn: duckdb.DuckDBPyConnection, *, show: int = 10) -> list[str]:
    """Bronze files planned for a day after today, or with rows after their planning day (none: no lines).

    Planning ignores what they hold ahead of time and Silver rejects rows dated after their fetch day, so
    nothing is lost or stuck; they are named because a wrong PIPELINE_AS_OF or a source serving dates ahead of
    time is worth knowing about."""
    keymap = load_keymap(settings.keymap_path)
    future_tables = sorted({e.silver.table for e in keymap if e.silver.allow_future_dates})
    today = settings.today()
    found = future_dated_files(conn, today, future_tables)
    if not found:
        return []
    total = sum(files for _ident, files, _as_of, _to in found)
    lines = wrap(
        f"Future-dated Bronze files: {total} file(s) planned for a day after {today} or holding rows after their "
        "planning day; planning ignores what lies ahead, and Silver rejects rows dated after their fetch day",
        0,
    )
    for ident, files, as_of, cov_to in found[:show]:
        name = f"{ident.domain}/{entry_label(ident.dataset, ident.discriminator)}"
        where = f"{name} {ident.ticker}".rstrip()
        lines.append(f"  {where}: {files} file(s), planned for {as_of or '-'}, rows to {cov_to or '-'}")
    if len(found) > show:
        lines.append(f"  … {len(found) - show} more dataset/ticker pair(s)")
    return lines


# ---- (c) quarantined Bronze files ------------------------------------------------------------------------------

SHOW_QUARANTINED = 20


def format_quarantined(files: Sequence[QuarantinedFile]) -> list[str]:
    """The quarantined files still waiting for a refetch, each with its reason; nothing when there are none."""
    if not files:
        return []
    lines = wrap(
        f"Quarantined Bronze files waiting for a refetch ({len(files)}): kept on disk, never promoted again; the rows "
        "they had promoted (if any) stay in Silver; the next run requests their windows again",
        0,
    )
    for q in files[:SHOW_QUARANTINED]:
        lines.append(f"  {q.bronze_path}")
        lines.extend(wrap(f"since {q.quarantined_at:%Y-%m-%d %H:%M} UTC: {q.reason}", 6))
    if len(files) > SHOW_QUARANTINED:
        lines.append(f"  … {len(files) - SHOW_QUARANTINED} more (ops.file_ingestions.quarantine_reason)")
    return lines


# ---- (d) what is due next, and why not ------------------------------------------------------------------------


def universe(settings: Settings, conn: duckdb.DuckDBPyConnection) -> tuple[list[str], str]:
    """The tickers the next run would use, read through the connection we already hold (never a second open)."""
    return resolve_universe(settings, lambda: contextlib.nullcontext(conn))


def group_reasons(decisions: Sequence[PlanDecision]) -> list[tuple[str, list[str]]]:
    """(reason, tickers) groups, largest first: tickers with the same watermark share one explanation."""
    groups: dict[str, list[str]] = {}
    for d in decisions:
        groups.setdefault(d.reason, []).append(d.identity.ticker)
    return sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))


def fmt_tickers(tickers: Sequence[str], show: int = 4) -> str:
    head = ", ".join(tickers[:show])
    return head + (f" +{len(tickers) - show}" if len(tickers) > show else "")


def format_plan(entries: Sequence[KeymapEntry], decisions: Sequence[PlanDecision], *, max_groups: int = 3) -> list[str]:
    """Per keymap entry: how many identities are due and why; reasons grouped across tickers."""
    by_entry: dict[str, list[PlanDecision]] = {}
    for d in decisions:
        by_entry.setdefault(d.entry.asset_name, []).append(d)
    lines: list[str] = []
    for entry in entries:
        ds = by_entry.get(entry.asset_name, [])
        name = f"{entry.domain}/{entry_label(entry.dataset, entry.discriminator)}"
        if not entry.per_ticker:
            d = ds[0] if ds else None
            lines.extend(wrap(f"{name}: {d.reason if d else 'not planned'}", 2))
            continue
        due = [d for d in ds if d.due]
        skipped = [d for d in ds if not d.due]
        requests = sum(len(d.requests) for d in due)
        lines.append(f"  {name}: {len(due)} due ({requests} request(s)), {len(skipped)} not due")
        groups = group_reasons(due) + group_reasons(skipped)
        for reason, tickers in groups[:max_groups]:
            lines.extend(wrap(f"{fmt_tickers(tickers)}: {reason}", 6))
        if len(groups) > max_groups:
            lines.append(f"      … {len(groups) - max_groups} more distinct reason(s)")
    return lines


def plan_section(settings: Settings, conn: duckdb.DuckDBPyConnection) -> list[str]:
    keymap = load_keymap(settings.keymap_path)
    tickers, why = universe(settings, conn)
    today = settings.today()
    policy = build_policy(conn, keymap.entries, today, tickers, settings.fmp_plan, settings.sweep_days)
    decisions = dry_run(
        entries=keymap.entries, tickers=tickers, conn=conn, today=today, fmp_plan=settings.fmp_plan, policy=policy
    )
    due = sum(1 for d in decisions if d.due)
    requests = sum(len(d.requests) for d in decisions if d.due)
    head = wrap(
        f"What is due next (as of {today}, FMP_PLAN={settings.fmp_plan or 'unset'}, {len(tickers)} ticker(s): {why})", 0
    )
    head += [f"  {due} of {len(decisions)} dataset/ticker pair(s) due, {requests} request(s) planned"]
    for line in [policy.describe(), *policy.notes()]:
        head += wrap(line, 2)
    if not tickers:
        head.append("  (the universe is empty: per-ticker datasets have nothing to plan; set PIPELINE_TICKERS)")
    return head + format_plan(keymap.entries, decisions)


# ---- the command ---------------------------------------------------------------------------------------------


def status(
    settings: Settings, *, run_id: str | None = None, limit: int = 10, show_plan: bool = True, out: TextIO | None = None
) -> int:
    """`pipeline status`: see the module docstring for what it prints and its exit codes."""
    out = out or sys.stdout

    def body(conn: duckdb.DuckDBPyConnection) -> int:
        if run_id:
            return print_run(conn, run_id, out)
        runs = with_last_registered(conn, run_overviews(conn, limit=max(1, limit)))
        print(f"Warehouse {settings.warehouse_label}", file=out)
        print(f"\nRecent runs (newest first, up to {max(1, limit)}; `--run ID` shows a run's files)", file=out)
        for line in format_runs(runs):
            print(line, file=out)
        print("\nBudget (pipeline plan forecasts the next run):", file=out)
        calls_origin = settings.budget.origins.get("calls_per_minute", "default")
        used = usage(conn, dt.datetime.now(dt.UTC))
        for line in budget_lines(settings.budget, used, settings.calls_per_minute, calls_origin):
            print(line, file=out)
        future = future_section(settings, conn)
        if future:
            print(file=out)
            for line in future:
                print(line, file=out)
        quarantined = format_quarantined(quarantined_files(conn))
        if quarantined:
            print(file=out)
            for line in quarantined:
                print(line, file=out)
        print(file=out)
        keymap = load_keymap(settings.keymap_path)
        for line in survivorship_section(keymap.entries, conn, settings.today(), settings.fmp_plan):
            print(line, file=out)
        if show_plan:
            print(file=out)
            for line in plan_section(settings, conn):
                print(line, file=out)
        return EXIT_OK

    return run_readonly(settings, "status", body, out)
