"""The request budget: a layer over the planner's output that decides what a Bronze step may send, most valuable
work first, when the plan's bandwidth or a daily cap cannot pay for everything that is due.

Why it looks at the whole day, not at the step: a day's Bronze work is several steps (the global datasets, then the
per-ticker datasets in chunks of tickers, each a run of its own), and a step that spent the budget on its own
statements could leave the next chunk's prices unfetched. So every step plans the whole remaining day (every keymap
entry for the whole universe, as the ledger shows it now), puts it in one global order (the entry's priority:
prices, calendars, statements, metrics, the rest; then keymap order, ticker, window), estimates each request's cost,
and admits the longest prefix of that order that the budget left today pays for. The step sends only its own
requests inside that prefix: everything before it in the order, its own or another step's, is reserved. What the
earlier steps of the day fetched is in the ledger, so it is neither planned again nor forgotten in the spending.

Deferred requests are simply not sent (counted as skipped, `not_sent_budget`, with the reason): their watermarks
did not move, so the next run plans them again. Estimates can be wrong, so the step also meters what it really
receives and stops sending once it has spent what was left for it (in priority order: the least valuable goes first).

Estimates come from the ledger's history of the dataset (`pipeline.ops.usage.size_history`): bytes per calendar
day of window for windowed requests (a new day's bar costs what a day cost before), the median response for the
others, times its pages. Without history: FALLBACK_BYTES_PER_WINDOW_DAY per day of window (a daily bar as FMP's
pretty-printed JSON is about 350 bytes, on about 250 of 365 days), FALLBACK_BYTES_PER_REQUEST for the others.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import duckdb

from pipeline.bronze.envelope import BronzeEnvelope
from pipeline.bronze.planner import PlanDecision, PlannedRequest
from pipeline.bronze.refusals import NotSent
from pipeline.bronze.report import EntryReport
from pipeline.fmp.plans import BudgetLimits, format_bytes
from pipeline.keymap.model import PRIORITIES, DatasetIdentity, KeymapEntry
from pipeline.ops.usage import SizeHistory, Usage, size_history, usage

BUDGET_SKIP = "not_sent_budget"
FALLBACK_BYTES_PER_REQUEST = 20_000
FALLBACK_BYTES_PER_WINDOW_DAY = 250
SAMPLE_TICKERS = 500  # beyond this many tickers outside a step, the step plans the rest of the day on a sample


@dataclass(frozen=True)
class Cost:
    requests: float
    bytes: float
    from_history: bool  # False: the fallback figures (no good response of the dataset yet)


def estimate(request: PlannedRequest, history: SizeHistory | None) -> Cost:
    """What one planned request will cost, from its dataset's history (see the module docstring)."""
    days = (request.window_to - request.window_from).days + 1 if request.window_from and request.window_to else None
    if history is None:
        return Cost(1.0, float(FALLBACK_BYTES_PER_WINDOW_DAY * days if days else FALLBACK_BYTES_PER_REQUEST), False)
    if days and history.bytes_per_day is not None:
        return Cost(1.0, history.bytes_per_day * days, True)
    pages = history.files_per_set if request.paginated else 1.0
    return Cost(pages, history.median_bytes * pages, True)


@dataclass(frozen=True)
class Item:
    """One planned request of the day, with its cost and its place in the budget's order."""

    request: PlannedRequest
    entry: KeymapEntry
    cost: Cost
    weight: float = 1.0  # how many tickers it stands for (a sampled ticker of a large universe: its share)

    @property
    def requests(self) -> float:
        return self.cost.requests * self.weight

    @property
    def bytes(self) -> float:
        return self.cost.bytes * self.weight

    @property
    def key(self) -> tuple[DatasetIdentity, dt.date | None, dt.date | None]:
        return request_key(self.request)

    @property
    def order(self) -> tuple:
        r = self.request
        return (
            self.entry.priority_rank,
            self.entry.index,
            r.identity.ticker,
            r.identity.key,
            r.window_from or dt.date.min,
        )


def request_key(request: PlannedRequest) -> tuple[DatasetIdentity, dt.date | None, dt.date | None]:
    """Names a planned request across plannings of the same day: its identity and window."""
    return request.identity, request.window_from, request.window_to


@dataclass(frozen=True)
class Room:
    """What is left of the budget: requests and bytes (None: no such limit), each with the limit that leaves it."""

    requests: float | None
    bytes: float | None
    requests_why: str = ""
    bytes_why: str = ""


def room(limits: BudgetLimits, used: Usage) -> Room:
    """What the limits leave after what the ledger shows spent (today, and over the trailing 30 days)."""
    origin = limits.origins
    requests = requests_why = None
    if limits.daily_requests is not None:
        requests = max(0, limits.daily_requests - used.requests_today)
        requests_why = (
            f"the daily request cap ({origin.get('daily_requests', 'cap')}: {limits.daily_requests:,}, "
            f"{used.requests_today:,} used today)"
        )
    candidates = []
    if limits.bandwidth_30d is not None:
        candidates.append(
            (
                limits.bandwidth_30d - used.bytes_30d,
                f"the 30-day bandwidth ({origin.get('bandwidth_30d', 'limit')}: {format_bytes(limits.bandwidth_30d)}, "
                f"{format_bytes(used.bytes_30d)} used)",
            )
        )
    if limits.daily_bytes is not None:
        candidates.append(
            (
                limits.daily_bytes - used.bytes_today,
                f"the daily byte cap ({origin.get('daily_bytes', 'cap')}: {format_bytes(limits.daily_bytes)}, "
                f"{format_bytes(used.bytes_today)} used today)",
            )
        )
    left, why = min(candidates, key=lambda c: c[0]) if candidates else (None, "")
    return Room(requests, None if left is None else max(0, left), requests_why or "", why)


@dataclass
class Allocation:
    """The day's remaining work in the budget's order, and how much of it the budget pays for (a prefix)."""

    limits: BudgetLimits
    used: Usage
    room: Room
    items: list[Item]  # sorted by Item.order
    admitted: int  # items[:admitted] fit the budget
    binding: str = ""  # why the first item that does not fit does not (empty: everything fits)

    def totals(self, items: Sequence[Item]) -> tuple[float, float]:
        return sum(i.requests for i in items), sum(i.bytes for i in items)

    def split(
        self, tasks: Sequence[tuple[PlannedRequest, KeymapEntry]]
    ) -> tuple[list[tuple[PlannedRequest, KeymapEntry]], list[tuple[PlannedRequest, KeymapEntry, NotSent]], Meter]:
        """This step's tasks: (admitted, in the budget's order; deferred, each with why; the meter for sending).

        A task the day's plan does not hold (its entry is not among those the budget plans) is deferred: the budget
        cannot place it."""
        position = {item.key: n for n, item in enumerate(self.items)}
        mine = {request_key(r) for r, _ in tasks}
        reserved_req, reserved_bytes = self.totals([i for i in self.items[: self.admitted] if i.key not in mine])
        admitted, deferred = [], []
        for request, entry in sorted(tasks, key=lambda t: position.get(request_key(t[0]), len(self.items))):
            at = position.get(request_key(request))
            if at is not None and at < self.admitted:
                admitted.append((request, entry))
                continue
            why = self.binding if at is not None else "the day's plan does not hold this dataset"
            deferred.append((request, entry, NotSent(BUDGET_SKIP, deferral_reason(entry, why))))
        meter = Meter(
            None if self.room.requests is None else self.room.requests - reserved_req,
            None if self.room.bytes is None else self.room.bytes - reserved_bytes,
            self.room,
        )
        return admitted, deferred, meter


def deferral_reason(entry: KeymapEntry, why: str) -> str:
    """The reason a deferred request of `entry` is counted with (the summary of a run reads it back)."""
    return f"{entry.asset_name}: deferred by the request budget: {why}; the next run fetches it"


def allocate(
    conn: duckdb.DuckDBPyConnection,
    limits: BudgetLimits,
    day: Sequence[PlanDecision],
    now: dt.datetime,
    weights: Mapping[str, float] | None = None,
) -> Allocation:
    """Cost and order the day's remaining work (`day`: the planner's decisions for every entry and the universe,
    `weights` for sampled tickers, see `day_tickers`) and admit what the budget left now pays for."""
    return allocation(limits, usage(conn, now), size_history(conn), day, weights)


def allocation(
    limits: BudgetLimits,
    used: Usage,
    history: Mapping[DatasetIdentity, SizeHistory],
    day: Sequence[PlanDecision],
    weights: Mapping[str, float] | None = None,
) -> Allocation:
    """`allocate` on data already read (what `pipeline plan` shows for several plans at once)."""
    weights = weights or {}
    items = sorted(
        (
            Item(r, d.entry, estimate(r, history.get(r.identity.without_ticker())), weights.get(r.identity.ticker, 1.0))
            for d in day
            if d.due
            for r in d.requests
        ),
        key=lambda i: i.order,
    )
    left = room(limits, used)
    requests = spent = 0.0
    for n, item in enumerate(items):
        requests, spent = requests + item.requests, spent + item.bytes
        over_requests = left.requests is not None and requests > left.requests
        if over_requests or (left.bytes is not None and spent > left.bytes):
            ahead = _by_priority(items[:n])
            if over_requests:
                binding = f"{left.requests_why} leaves {left.requests:,.0f} request(s)"
            else:
                binding = f"{left.bytes_why} leaves {format_bytes(left.bytes)}"
            binding += f"; work ranked before it needs {ahead}" if ahead else ", less than this request needs"
            return Allocation(limits, used, left, items, n, binding)
    return Allocation(limits, used, left, items, len(items))


def _by_priority(items: Sequence[Item]) -> str:
    """`5 request(s), ~1.2 MB (prices 4, calendars 1)`."""
    counts: dict[str, float] = {}
    for item in items:
        counts[item.entry.priority] = counts.get(item.entry.priority, 0) + item.requests
    if not counts:
        return ""
    parts = ", ".join(f"{p} {counts[p]:,.0f}" for p in PRIORITIES if p in counts)
    total = sum(i.bytes for i in items)
    return f"{sum(i.requests for i in items):,.0f} request(s), ~{format_bytes(total)} ({parts})"


def day_tickers(
    universe: Sequence[str], own: Sequence[str], sample: int = SAMPLE_TICKERS
) -> tuple[list[str], dict[str, float]]:
    """The tickers a step plans the day with: its own and the rest of the universe; beyond `sample` others, an
    evenly spaced sample of them, each standing for its share of the rest (the weights). Planning the whole
    universe in every step of a day would cost each step as much as the universe: the sample keeps the
    reservation for the other steps' work at the cost of planning `sample` tickers."""
    mine = set(own)
    others = sorted(set(universe) - mine)
    if len(others) <= sample:
        return sorted(mine | set(others)), {}
    picked = [others[int(i * len(others) / sample)] for i in range(sample)]
    return sorted(mine | set(picked)), dict.fromkeys(picked, len(others) / sample)


@dataclass
class Meter:
    """What a step may still spend (after what the work ranked elsewhere reserved), checked before each request.

    Thread-safe: the step's workers ask `not_sent` before sending and report each answer to `observe`. Requests
    already in flight when the allowance runs out still land, so a step can pass it by those (at most the step's
    concurrency)."""

    requests: float | None
    bytes: float | None
    room: Room
    spent_requests: int = 0
    spent_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def not_sent(self, entry: KeymapEntry) -> NotSent | None:
        with self._lock:
            if self.requests is not None and self.spent_requests >= self.requests:
                why = f"{self.room.requests_why}: this step's share is spent"
            elif self.bytes is not None and self.spent_bytes >= self.bytes:
                why = f"{self.room.bytes_why}: this step's share is spent ({format_bytes(self.spent_bytes)} received)"
            else:
                return None
        return NotSent(BUDGET_SKIP, deferral_reason(entry, why))

    def observe(self, envelopes: Sequence[BronzeEnvelope]) -> None:
        with self._lock:
            for env in envelopes:
                self.spent_requests += env.attempts
                self.spent_bytes += max(env.bytes, env.wire_bytes or 0)


@dataclass(frozen=True)
class RunBudget:
    """What a Bronze step needs to spend within the budget: the limits, and how to see the whole day's work (every
    keymap entry, the whole universe) from the ledger connection the step plans with."""

    limits: BudgetLimits
    universe: Callable[[duckdb.DuckDBPyConnection], Sequence[str]]  # every ticker of the day
    entries: Sequence[KeymapEntry]  # the whole keymap
    now: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))


def record_deferred(
    reports: Mapping[str, EntryReport],
    admitted: Sequence[tuple[PlannedRequest, KeymapEntry]],
    deferred: Sequence[tuple[PlannedRequest, KeymapEntry, NotSent]],
) -> None:
    """Count the deferred requests as skipped, with the reason; a ticker none of whose requests of an entry was
    admitted is no longer due for it (its partition is not materialized for a fetch that did not happen)."""
    kept = {(entry.asset_name, request.identity.ticker) for request, entry in admitted}
    for request, entry, why in deferred:
        rep = reports[entry.asset_name]
        rep.skipped[why.kind] += 1
        rep.add_skip_reason(why.reason)
        ticker = request.identity.ticker
        if ticker and (entry.asset_name, ticker) not in kept:
            rep.ticker(ticker).due = 0


def deferral_summary(reports: Mapping[str, EntryReport]) -> tuple[int, str | None]:
    """(requests deferred by the budget in this step, one line saying which and why; None when none were)."""
    counts = {name: rep.skipped[BUDGET_SKIP] for name, rep in reports.items() if rep.skipped[BUDGET_SKIP]}
    if not counts:
        return 0, None
    total = sum(counts.values())
    marker = "deferred by the request budget: "
    why = next((r for rep in reports.values() for r in rep.skip_reasons if marker in r), marker + "see the skips")
    listed = ", ".join(f"{name} {n}" for name, n in counts.items())
    reason = why.split(marker, 1)[1].removesuffix("; the next run fetches it")
    return total, f"deferred by the request budget: {total} request(s) ({listed}): {reason}; the next run fetches them"
