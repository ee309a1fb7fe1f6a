"""FMP's plans in one table: calls per minute, calls per day and the bandwidth of the trailing 30 days.

The figures are FMP's published ones, as the team's reference notes on the FMP API record them (section 3.1 for the
plans and their bandwidth, section 2.3 for the rate limits and how sure each figure is). Every default the budget
uses is written here once: the settings read `FMP_PLAN` and take their defaults from this table, and an explicit
variable wins (`FMP_CALLS_PER_MINUTE`, `FMP_BANDWIDTH_30D`, `FMP_DAILY_REQUEST_CAP`, `FMP_DAILY_BYTE_CAP`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.keymap.model import PLAN_ORDER

# FMP writes "20 GB" and "500 MB"; decimal units are the smaller reading, so a budget in them never overruns.
KB, MB, GB, TB = 1000, 1000**2, 1000**3, 1000**4
UNITS = {"": 1, "B": 1, "KB": KB, "MB": MB, "GB": GB, "TB": TB}
BANDWIDTH_WINDOW_DAYS = 30  # FMP counts bandwidth over the trailing 30 days
DEFAULT_CALLS_PER_MINUTE = 300  # without FMP_PLAN (and on Basic, which publishes a daily figure only)


# Budget figure -> the variable that sets it explicitly (the plan gives the default).
VARIABLES = {
    "calls_per_minute": "FMP_CALLS_PER_MINUTE",
    "bandwidth_30d": "FMP_BANDWIDTH_30D",
    "daily_requests": "FMP_DAILY_REQUEST_CAP",
    "daily_bytes": "FMP_DAILY_BYTE_CAP",
}


ULTIMATE_BULK = frozenset(
    {"eod-bulk", "profile-bulk", "income-statement-bulk", "balance-sheet-statement-bulk", "cash-flow-statement-bulk"}
)


@dataclass(frozen=True)
class Plan:
    name: str
    calls_per_minute: int | None  # None: no per-minute figure published
    calls_per_day: int | None  # None: no daily figure published
    bandwidth_30d: int  # bytes over the trailing 30 days
    # The bulk CSV paths the plan is known to include (fmp_api.md 3.1, 3.2): eod-bulk is Ultimate only (402 on
    # Premium); profile-bulk varies by key on Premium (402, then 200 on a re-probe), so it is not counted on.
    bulk_paths: frozenset[str] = frozenset()


PLANS: dict[str, Plan] = {
    p.name: p
    for p in (
        Plan("basic", None, 250, 500 * MB),
        Plan("starter", 300, None, 20 * GB),  # 300/min is FMP's pricing page; an older report says 250/min
        Plan("premium", 750, None, 50 * GB),
        Plan("ultimate", 3000, None, 150 * GB, ULTIMATE_BULK),
    )
}
assert tuple(PLANS) == PLAN_ORDER, "the plan table and the keymap's plan order must name the same plans"


@dataclass(frozen=True)
class BudgetLimits:
    """What the runs of one API key may spend, beyond the per-minute rate the client's limiter keeps.

    None means no limit of that kind. `origins` says where each figure came from (`FMP_PLAN=premium`, the
    variable that set it, or `default`), for `pipeline plan` and `pipeline status`."""

    plan: str | None = None
    bandwidth_30d: int | None = None
    daily_requests: int | None = None
    daily_bytes: int | None = None
    origins: Mapping[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether any limit applies: then Bronze steps plan within the budget, most valuable work first."""
        return any(v is not None for v in (self.bandwidth_30d, self.daily_requests, self.daily_bytes))


def has_bulk_path(plan: str | None, path: str) -> bool:
    """Whether FMP_PLAN names a plan known to include this bulk path; unset means unknown, so no."""
    return plan is not None and plan in PLANS and path in PLANS[plan].bulk_paths


def plan_calls_per_minute(plan: str | None) -> int:
    """The per-minute ceiling the plan publishes, else the default."""
    per_minute = PLANS[plan].calls_per_minute if plan else None
    return per_minute or DEFAULT_CALLS_PER_MINUTE


def budget_limits(
    plan: str | None,
    *,
    bandwidth_30d: int | None = None,
    daily_requests: int | None = None,
    daily_bytes: int | None = None,
    origins: Mapping[str, str] | None = None,
) -> BudgetLimits:
    """The plan's limits with explicit values (not None) winning. `origins` (for display) says where figures not
    computed here came from; an explicit figure is labelled with its variable, unless it is the plan's own."""
    own = PLANS[plan] if plan else None
    out: dict[str, str] = {}

    def pick(name: str, explicit: int | None, from_plan: int | None) -> int | None:
        if explicit is not None and explicit != from_plan:
            out[name] = VARIABLES[name]
            return explicit
        if from_plan is not None:
            out[name] = f"FMP_PLAN={plan}"
            return from_plan
        return None

    return BudgetLimits(
        plan=plan,
        bandwidth_30d=pick("bandwidth_30d", bandwidth_30d, own.bandwidth_30d if own else None),
        daily_requests=pick("daily_requests", daily_requests, own.calls_per_day if own else None),
        daily_bytes=pick("daily_bytes", daily_bytes, None),
        origins={**(origins or {}), **out},
    )


_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?B)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes from `1234`, `500MB`, `20 GB`, `1.5gb` (decimal units, as FMP writes them); ValueError otherwise."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(text)
    size = int(float(match.group(1)) * UNITS[(match.group(2) or "").upper()])
    if size < 1:
        raise ValueError(text)
    return size


def format_bytes(n: float | None) -> str:
    """`1.2 MB`: decimal units, one decimal from kB up."""
    if n is None:
        return "-"
    for unit, size in (("TB", TB), ("GB", GB), ("MB", MB), ("kB", KB)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
