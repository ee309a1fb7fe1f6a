"""The keymap's bulk scope: which unit one request of a whole-market (`*-bulk`) recipe covers.

FMP's bulk endpoints answer the whole market for one unit at a time (fmp_api.md 2.5 and 3.2): `eod-bulk` one
trading day (`date`), `profile-bulk` one part of the symbol list (`part` 0-3; a part past the end is a 400), and the
statement bulks one fiscal year and period (`year`, `period` FY or Q1-Q4; `quarter` is refused). A recipe says which
of these it is with `recipe.bulk`, and the planner (`pipeline.bronze.bulk`) expands one request per unit:

    bulk: {scope: date}                                        query: {date: __date__}
    bulk: {scope: part, parts: 4}                              query: {part: __part__}
    bulk: {scope: year_period, first_year: 2019, periods: [FY, Q1, Q2, Q3, Q4]}
                                                               query: {year: __year__, period: __period__}

`replaces` (date scope only) names the per-ticker entry (`dataset` or `dataset__discriminator`) whose daily requests
this bulk day makes unnecessary once a ticker's history is backfilled.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SCOPES = ("date", "part", "year_period")
BULK_PERIODS = ("FY", "Q1", "Q2", "Q3", "Q4")  # fmp_api.md 2.5: bulk endpoints do not accept `quarter`
FIELDS = {"scope", "parts", "first_year", "periods", "max_days", "replaces"}
# The placeholder each scope must send, and may not be sent without it.
SCOPE_PLACEHOLDERS = {"date": ("__date__",), "part": ("__part__",), "year_period": ("__year__", "__period__")}


@dataclass(frozen=True)
class BulkScope:
    """One request of a bulk recipe covers one date, one part, or one (year, period)."""

    scope: str
    parts: int = 0  # part scope: parts 0..parts-1
    first_year: int | None = None  # year_period scope: the oldest fiscal year a backfill requests
    periods: tuple[str, ...] = BULK_PERIODS
    max_days: int = 5  # date scope: bulk days fetched back from today; an older gap is left to per-ticker requests
    replaces: str | None = None  # date scope: asset name of the per-ticker entry whose daily requests stop


def parse_bulk(
    raw: Any, error: Callable[[str, str], Exception], query_values: str, per_ticker: bool
) -> BulkScope | None:
    """Validate `recipe.bulk` (None when absent). `error(field, problem)` builds the loader's error naming the
    entry; `query_values` is the recipe's query values joined, to check the scope's placeholders."""
    used = {token for tokens in SCOPE_PLACEHOLDERS.values() for token in tokens if token in query_values}
    if raw is None:
        stray = sorted(used - {"__date__"})  # __date__ alone is the planning day, also for a non-bulk recipe
        if stray:
            raise error("recipe.query", f"{stray[0]} needs recipe.bulk with the scope that sends it")
        return None
    if not isinstance(raw, dict):
        raise error("recipe.bulk", f"must be a mapping {{scope, ...}}, got {type(raw).__name__}")
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise error(f"recipe.bulk.{unknown[0]}", f"unknown field (allowed: {', '.join(sorted(FIELDS))})")
    if per_ticker:
        raise error("recipe.bulk", "a bulk recipe answers the whole market: its entry must be ticker_scope: global")
    scope = raw.get("scope")
    if scope not in SCOPES:
        raise error("recipe.bulk.scope", f"{scope!r} is not a bulk scope; use one of {', '.join(SCOPES)}")
    for token in SCOPE_PLACEHOLDERS[scope]:
        if token not in query_values:
            raise error("recipe.query", f"a bulk recipe with scope {scope} must send {token}")
    for other, tokens in SCOPE_PLACEHOLDERS.items():
        if other != scope and other != "date" and any(t in used for t in tokens):
            raise error("recipe.query", f"{tokens[0]} belongs to bulk scope {other}, not {scope}")

    def integer(name: str, minimum: int, default: int | None) -> int | None:
        value = raw.get(name, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise error(f"recipe.bulk.{name}", f"must be an integer >= {minimum}, got {value!r}")
        return value

    only = {
        "parts": "part",
        "first_year": "year_period",
        "periods": "year_period",
        "max_days": "date",
        "replaces": "date",
    }
    for name, owner in only.items():
        if name in raw and owner != scope:
            raise error(f"recipe.bulk.{name}", f"only a bulk recipe with scope {owner} takes {name}")
    parts = integer("parts", 1, None) if scope == "part" else 0
    if scope == "part" and parts is None:
        raise error("recipe.bulk.parts", "a part scope needs the number of parts (profile-bulk has 4: 0-3)")
    first_year = integer("first_year", 1900, None) if scope == "year_period" else None
    if scope == "year_period" and first_year is None:
        raise error("recipe.bulk.first_year", "a year_period scope needs the oldest fiscal year to request")
    periods = raw.get("periods", list(BULK_PERIODS))
    if not isinstance(periods, list) or not periods or any(p not in BULK_PERIODS for p in periods):
        raise error("recipe.bulk.periods", f"must be a non-empty list of {', '.join(BULK_PERIODS)}, got {periods!r}")
    replaces = raw.get("replaces")
    if replaces is not None and (not isinstance(replaces, str) or not replaces):
        raise error("recipe.bulk.replaces", f"must be the asset name of a per_ticker entry, got {replaces!r}")
    return BulkScope(
        scope=scope,
        parts=parts or 0,
        first_year=first_year,
        periods=tuple(dict.fromkeys(periods)),
        max_days=integer("max_days", 1, 5) or 5,
        replaces=replaces,
    )
