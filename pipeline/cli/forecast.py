"""`pipeline plan`: before any request, what the next run would request per dataset, what that costs, and how long
it takes at the plan's rate; the bandwidth used over the trailing 30 days and what is left; what the request budget
would defer. With `--plans starter,premium,ultimate`, the same day on each plan's published figures, side by side.

No network call: the requests come from the Bronze planner on the ledger (the dry run `pipeline status` shows), the
bytes are estimated from the ledger's history of each dataset's responses (`pipeline.bronze.budget.estimate`, with
its documented fallback where a dataset has none yet). It opens the warehouse read-only like `pipeline status`:
never migrates, never waits, and shares its exit codes (`pipeline.ops.reader`). It lives outside `pipeline.ops`
because it asks the Bronze planner, which the ledger package never imports.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

import duckdb

from pipeline.bronze import planner, refresh
from pipeline.bronze.budget import FALLBACK_BYTES_PER_REQUEST, FALLBACK_BYTES_PER_WINDOW_DAY, Allocation, allocation
from pipeline.bronze.delisted import frozen_tickers
from pipeline.bronze.fetch import planning_coverage
from pipeline.fmp.plans import BudgetLimits, budget_limits, format_bytes, plan_calls_per_minute
from pipeline.keymap.loader import load_keymap
from pipeline.ops.reader import EXIT_OK, entry_label, run_readonly, wrap
from pipeline.ops.usage import Usage, size_history, usage
from pipeline.settings import Settings
from pipeline.text_table import text_table
from pipeline.universe import resolve_universe


@dataclass(frozen=True)
class DatasetForecast:
    dataset: str  # `domain/dataset [discriminator]`
    priority: str
    requests: float
    bytes: float
    from_history: bool  # False: some of its requests are estimated with the fallback figures
    deferred_requests: float
    deferred_bytes: float


@dataclass(frozen=True)
class Forecast:
    """The next run on one plan's figures."""

    as_of: dt.date
    plan: str | None
    calls_per_minute: int
    limits: BudgetLimits
    used: Usage
    tickers: int
    universe: str
    datasets: list[DatasetForecast]
    deferral: str  # why the budget defers what it defers ("" when it defers nothing)
    refresh: str = ""  # how per-ticker datasets are refreshed on this plan (pipeline.bronze.refresh)

    @property
    def requests(self) -> float:
        return sum(d.requests for d in self.datasets)

    @property
    def bytes(self) -> float:
        return sum(d.bytes for d in self.datasets)

    @property
    def deferred_requests(self) -> float:
        return sum(d.deferred_requests for d in self.datasets)

    @property
    def minutes(self) -> float:
        """The rate floor: requests at the plan's calls per minute (fetching cannot be faster)."""
        return self.requests / self.calls_per_minute

    @property
    def bandwidth_share(self) -> float | None:
        """The estimated bytes as a share of the plan's 30-day bandwidth (None: no bandwidth known)."""
        return self.bytes / self.limits.bandwidth_30d if self.limits.bandwidth_30d else None

    def as_dict(self) -> dict:
        return {
            "as_of": self.as_of.isoformat(),
            "plan": self.plan,
            "calls_per_minute": self.calls_per_minute,
            "tickers": self.tickers,
            "requests": round(self.requests),
            "bytes": round(self.bytes),
            "minutes": round(self.minutes, 2),
            "bandwidth_30d": self.limits.bandwidth_30d,
            "bandwidth_share": self.bandwidth_share,
            "daily_request_cap": self.limits.daily_requests,
            "daily_byte_cap": self.limits.daily_bytes,
            "deferred_requests": round(self.deferred_requests),
            "deferral": self.deferral,
            "refresh": self.refresh,
            "datasets": [{**vars(d), "requests": round(d.requests), "bytes": round(d.bytes)} for d in self.datasets],
        }


def forecasts(
    settings: Settings, conn: duckdb.DuckDBPyConnection, plans: Sequence[str] | None = None
) -> list[Forecast]:
    """The next run on the configured plan and limits (`plans` None), or on each of `plans`' own published figures
    (explicit overrides ignored): what a user of each plan can expect from this warehouse's next run."""
    keymap = load_keymap(settings.keymap_path)
    tickers, why = resolve_universe(settings, lambda: contextlib.nullcontext(conn))
    used, history = usage(conn, dt.datetime.now(dt.UTC)), size_history(conn)
    today = settings.today()
    coverage = planning_coverage(conn, keymap.entries, today, tickers)
    frozen = frozen_tickers(conn, today)
    facts = refresh.load_facts(conn, keymap.entries, today, tickers, tickers, settings.sweep_days)
    out = []
    for plan in plans or [settings.fmp_plan]:
        if plans:
            limits, per_minute = budget_limits(plan), plan_calls_per_minute(plan)
        else:
            limits, per_minute = settings.budget, settings.calls_per_minute
        policy = refresh.for_plan(facts, keymap.entries, plan, settings.sweep_days)
        day = planner.plan(keymap.entries, tickers, coverage, today, plan, frozen, policy=policy)  # as `dry_run`
        spend = allocation(limits, used, history, day)
        out.append(
            Forecast(
                today,
                plan,
                per_minute,
                limits,
                used,
                len(tickers),
                why,
                _datasets(spend),
                spend.binding,
                "; ".join([policy.describe(), *policy.notes()]),
            )
        )
    return out


def _datasets(spend: Allocation) -> list[DatasetForecast]:
    """Per keymap entry with something due: requests and bytes, and what of it the budget defers."""
    rows: dict[str, list[float]] = {}
    meta: dict[str, tuple[str, bool]] = {}
    for n, item in enumerate(spend.items):
        e = item.entry
        name = f"{e.domain}/{entry_label(e.dataset, e.discriminator)}"
        row = rows.setdefault(name, [0.0, 0.0, 0.0, 0.0])
        row[0] += item.requests
        row[1] += item.bytes
        if n >= spend.admitted:
            row[2] += item.requests
            row[3] += item.bytes
        _, known = meta.get(name, (e.priority, True))
        meta[name] = (e.priority, known and item.cost.from_history)
    return [DatasetForecast(name, meta[name][0], r[0], r[1], meta[name][1], r[2], r[3]) for name, r in rows.items()]


# ---- text ---------------------------------------------------------------------------------------------------------


def budget_lines(limits: BudgetLimits, used: Usage, calls_per_minute: int, calls_origin: str) -> list[str]:
    """The budget and what is spent of it: what `pipeline plan` starts with and `pipeline status` shows."""
    origin = limits.origins
    lines = [f"  rate: {calls_per_minute:,} calls per minute ({calls_origin})"]
    if limits.bandwidth_30d is not None:
        left = max(0, limits.bandwidth_30d - used.bytes_30d)
        lines.append(
            f"  bandwidth, last 30 days: {format_bytes(used.bytes_30d)} used of {format_bytes(limits.bandwidth_30d)} "
            f"({origin.get('bandwidth_30d')}), {format_bytes(left)} left"
        )
    else:
        lines.append(f"  bandwidth, last 30 days: {format_bytes(used.bytes_30d)} used (no limit: FMP_PLAN is unset)")
    today = f"  today ({used.day}, New York): {used.requests_today:,} request(s)"
    if limits.daily_requests is not None:
        today += f" of {limits.daily_requests:,} ({origin.get('daily_requests')})"
    today += f", {format_bytes(used.bytes_today)}"
    if limits.daily_bytes is not None:
        today += f" of {format_bytes(limits.daily_bytes)} ({origin.get('daily_bytes')})"
    if limits.daily_requests is None and limits.daily_bytes is None:
        today += "; no daily cap"
    return lines + [today]


def format_forecast(f: Forecast) -> list[str]:
    lines = wrap(
        f"Next run as of {f.as_of} (FMP_PLAN={f.plan or 'unset'}, {f.tickers:,} ticker(s): {f.universe}), before any "
        "request",
        0,
    )
    if f.refresh:
        lines += wrap(f.refresh, 0)
    cells = [
        [
            d.dataset,
            d.priority,
            f"{d.requests:,.0f}",
            format_bytes(d.bytes),
            "history" if d.from_history else "fallback",
            f"{d.deferred_requests:,.0f}" if d.deferred_requests else "-",
        ]
        for d in f.datasets
    ]
    cells.append(["total", "", f"{f.requests:,.0f}", format_bytes(f.bytes), "", f"{f.deferred_requests:,.0f}"])
    lines += text_table(cells, ["dataset", "priority", "requests", "est. bytes", "estimate", "deferred"], "llrrlr")
    if not f.datasets:
        lines.append("(nothing due: every dataset is within its cadence)")
    share = f"{f.bandwidth_share:.2%} of the 30-day bandwidth" if f.bandwidth_share is not None else "no bandwidth set"
    lines += wrap(
        f"At {f.calls_per_minute:,} calls per minute the requests take {f.minutes:,.1f} min; the bytes are {share}.", 0
    )
    if f.limits.daily_requests and f.requests > f.limits.daily_requests:
        lines += wrap(
            f"At {f.limits.daily_requests:,} requests a day they take "
            f"{f.requests / f.limits.daily_requests:,.1f} days.",
            0,
        )
    if f.deferred_requests:
        lines += wrap(
            f"The request budget defers {f.deferred_requests:,.0f} request(s) to a later run: {f.deferral}.", 0
        )
    elif f.limits.active:
        lines.append("The request budget pays for all of it.")
    return lines


def format_comparison(found: Sequence[Forecast]) -> list[str]:
    cells = [
        [
            f.plan or "unset",
            f"{f.calls_per_minute:,}",
            f"{f.requests:,.0f}",
            format_bytes(f.bytes),
            f"{f.minutes:,.1f}",
            "-" if f.bandwidth_share is None else f"{f.bandwidth_share:.2%}",
            f"{f.deferred_requests:,.0f}",
        ]
        for f in found
    ]
    head = wrap(
        f"The next run (as of {found[0].as_of}, {found[0].tickers:,} ticker(s)) on each plan's published figures:", 0
    )
    headers = ["plan", "calls/min", "requests", "est. bytes", "minutes", "of 30-day bandwidth", "deferred"]
    return head + text_table(cells, headers, "lrrrrrr")


ESTIMATE_NOTE = (
    "Estimates: bytes from each dataset's past responses in the ledger (per day of window for date windows, the "
    f"median answer otherwise); 'fallback' where it has none yet ({format_bytes(FALLBACK_BYTES_PER_WINDOW_DAY)} a "
    f"day of window, {format_bytes(FALLBACK_BYTES_PER_REQUEST)} a request)."
)


def plan_report(
    settings: Settings, *, plans: Sequence[str] | None = None, as_json: bool = False, out: TextIO | None = None
) -> int:
    """`pipeline plan`: see the module docstring."""
    out = out or sys.stdout

    def body(conn: duckdb.DuckDBPyConnection) -> int:
        found = forecasts(settings, conn, plans)
        if as_json:
            used = found[0].used
            doc = {"used": {k: str(v) if isinstance(v, dt.date) else v for k, v in vars(used).items()}}
            print(json.dumps({**doc, "forecasts": [f.as_dict() for f in found]}, indent=2), file=out)
            return EXIT_OK
        print(f"Warehouse {settings.warehouse_label}", file=out)
        f = found[0]
        calls_origin = settings.budget.origins.get("calls_per_minute", "default")
        for line in ["Budget:", *budget_lines(settings.budget, f.used, settings.calls_per_minute, calls_origin)]:
            print(line, file=out)
        for forecast in found:
            print(file=out)
            for line in format_forecast(forecast):
                print(line, file=out)
        if len(found) > 1:
            print(file=out)
            for line in format_comparison(found):
                print(line, file=out)
        print(file=out)
        for line in wrap(ESTIMATE_NOTE, 0):
            print(line, file=out)
        return EXIT_OK

    return run_readonly(settings, "plan", body, out)
