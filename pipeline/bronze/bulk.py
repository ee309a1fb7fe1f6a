"""The bulk path: where the plan has FMP's whole-market CSV endpoints, a few requests replace thousands.

Hooked into `pipeline.bronze.planner.plan` at two points, and nowhere else:
- `plan_bulk` plans an entry with `recipe.bulk` (pipeline.keymap.bulk): one request per unit its scope names.
  - date (`eod-bulk`): one request per NYSE session not yet held, at most `max_days` back from today. A hole (fewer
    good files than sessions between the first and last day held, or a quarantined file) refetches the window.
  - part (`profile-bulk`): every part, once `min_age_days` have passed since the last good fetch.
  - year_period (statement bulks): the first fetch requests every (year, period) from `first_year` to this year
    (the backfill); later fetches only this fiscal year and the last, where new filings land.
- `replaced_by_bulk` turns the daily request of a per-ticker entry that a date bulk `replaces` into a skip
  ("bulk"), for each ticker whose own history reaches the day before the bulk's first day: its later days come
  from the bulk files. A ticker without history (a backfill) or with a gap before that day keeps its own request.
A bulk entry runs only on a plan known to include its path (`pipeline.fmp.plans`, fmp_api.md 3.1/3.2: eod-bulk is
Ultimate only, 402 on Premium). With FMP_PLAN unset or on another plan it is skipped with a reason, and nothing
else changes: per-ticker planning stays exactly as it was.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from pipeline import market_calendar
from pipeline.bronze.planner import PlanDecision, PlannedRequest, expand_query
from pipeline.fmp.plans import has_bulk_path
from pipeline.keymap.bulk import BULK_PERIODS
from pipeline.keymap.model import DatasetIdentity, KeymapEntry
from pipeline.ledger_types import Coverage


def active(entry: KeymapEntry, fmp_plan: str | None) -> bool:
    """A bulk entry is fetched only on a plan known to include its path."""
    return entry.recipe.bulk is not None and has_bulk_path(fmp_plan, entry.recipe.path)


def _request(entry: KeymapEntry, day: dt.date, today: dt.date, a: dt.date, b: dt.date, **units: str) -> PlannedRequest:
    params = expand_query(entry, entry.identity, day, window_from=a, window_to=b)
    for name, value in units.items():
        params = {k: v.replace(f"__{name}__", value) for k, v in params.items()}
    return PlannedRequest(entry.identity, entry.recipe.path, params, today, a, b)


def _sessions(start: dt.date, end: dt.date) -> list[dt.date]:
    if start > end:
        return []
    return [d.astype(dt.date) for d in market_calendar.sessions(start, end)]


def _latest_session(day: dt.date) -> dt.date | None:
    recent = _sessions(day - dt.timedelta(days=10), day)
    return recent[-1] if recent else None


def bulk_days(
    entry: KeymapEntry, coverage: Coverage | None, today: dt.date, ticker_coverage: Sequence[Coverage]
) -> tuple[list[dt.date], dt.date | None]:
    """(the sessions to request, the bulk day whose rows replace the tickers' own requests: the newest of them, else
    the session after the bulk's last day; None when there is none) for a date-scoped bulk entry.

    Only the newest day: fmp_api.md 3.2 says the bulk `close` of the newest date is the as-traded close because
    adjustments only apply to dates before a split, so an older day fetched later (a catch-up after missed runs) may
    be split-adjusted. Older days land in the bulk's own table; a ticker whose history does not reach the session
    before the newest day fills its gap with its own (as-traded) request."""
    scope = entry.recipe.bulk
    assert scope is not None
    window = _sessions(today - dt.timedelta(days=scope.max_days), today)
    if coverage is not None and coverage.coverage_to is not None and coverage.coverage_from is not None:
        held = _sessions(coverage.coverage_from, coverage.coverage_to)
        if coverage.files < len(held) or coverage.quarantined:
            days = [d for d in window if d >= coverage.coverage_from]
        else:
            days = [d for d in window if d > coverage.coverage_to]
        # nothing new (a weekend, or the bulk step already ran today): the next bulk day is the next session, so a
        # ticker held to the bulk's last day needs no request of its own either
        return days, days[-1] if days else market_calendar.next_session(coverage.coverage_to)
    # first bulk fetch: from the day after the least recent ticker history inside the window, else today
    ends = [c.coverage_to for c in ticker_coverage if c.coverage_to is not None]
    after = min(ends) if ends else None
    days = [d for d in window if after is None or d > after] if after else window[-1:]
    return days, days[-1] if days else None


def plan_bulk(
    entry: KeymapEntry,
    coverage: Coverage | None,
    today: dt.date,
    fmp_plan: str | None,
    ticker_coverage: Sequence[Coverage] = (),
) -> PlanDecision:
    """The decision for one bulk entry (see the module docstring)."""
    scope, recipe, ident = entry.recipe.bulk, entry.recipe, entry.identity
    assert scope is not None
    if not active(entry, fmp_plan):
        why = "FMP_PLAN is unset" if fmp_plan is None else f"FMP_PLAN={fmp_plan} does not include it"
        return PlanDecision(entry, ident, False, f"skipped: bulk path {recipe.path}: {why}", skip_kind="plan")
    if scope.scope == "date":
        days, _ = bulk_days(entry, coverage, today, ticker_coverage)
        if not days:
            return PlanDecision(entry, ident, False, f"nothing new: bulk days held to {today}", skip_kind="nothing_new")
        requests = tuple(_request(entry, d, today, d, d) for d in days)
        return PlanDecision(entry, ident, True, f"due: {len(days)} bulk day(s) {days[0]}..{days[-1]}", requests)

    last = coverage.last_as_of if coverage else None
    if last is not None and not (coverage and coverage.quarantined) and (today - last).days < recipe.min_age_days:
        return PlanDecision(
            entry,
            ident,
            False,
            f"not due: last good fetch for {last}, min_age_days={recipe.min_age_days}",
            skip_kind="not_due",
        )
    if scope.scope == "part":
        requests = tuple(_request(entry, today, today, None, None, part=str(p)) for p in range(scope.parts))
        return PlanDecision(entry, ident, True, f"due: {scope.parts} part(s)", requests)
    first = scope.first_year or today.year
    years = range(first if last is None else max(first, today.year - 1), today.year + 1)
    requests = tuple(
        _request(entry, today, today, dt.date(y, 1, 1), dt.date(y, 12, 31), year=str(y), period=p)
        for y in years
        for p in scope.periods
        if p in BULK_PERIODS
    )
    why = "backfill" if last is None else "refresh of the recent fiscal years"
    return PlanDecision(entry, ident, True, f"due: {why}, {len(requests)} (year, period) file(s)", requests)


def _ticker_coverage(
    bulk: KeymapEntry,
    entries: Sequence[KeymapEntry],
    tickers: Sequence[str],
    coverage: Mapping[DatasetIdentity, Coverage],
) -> list[Coverage]:
    """The coverage of the tickers' histories of the per-ticker entry a date bulk replaces."""
    scope = bulk.recipe.bulk
    name = scope.replaces if scope is not None else None
    replaced = next((e for e in entries if e.per_ticker and e.asset_name == name), None)
    if replaced is None:
        return []
    return [c for t in tickers if (c := coverage.get(replaced.identity.with_ticker(t))) is not None]


def plan_entry(
    entry: KeymapEntry,
    entries: Sequence[KeymapEntry],
    tickers: Sequence[str],
    coverage: Mapping[DatasetIdentity, Coverage],
    today: dt.date,
    fmp_plan: str | None,
) -> PlanDecision:
    """`plan_bulk` with the coverage it reads taken from the planner's."""
    covs = _ticker_coverage(entry, entries, tickers, coverage)
    return plan_bulk(entry, coverage.get(entry.identity), today, fmp_plan, covs)


def replacements(
    entries: Sequence[KeymapEntry],
    tickers: Sequence[str],
    coverage: Mapping[DatasetIdentity, Coverage],
    today: dt.date,
    fmp_plan: str | None,
) -> dict[str, tuple[KeymapEntry, dt.date]]:
    """Per-ticker asset name -> (the active date bulk that replaces its daily requests, the bulk's first day)."""
    out: dict[str, tuple[KeymapEntry, dt.date]] = {}
    for bulk in entries:
        scope = bulk.recipe.bulk
        if scope is None or scope.scope != "date" or not scope.replaces or not active(bulk, fmp_plan):
            continue
        covs = _ticker_coverage(bulk, entries, tickers, coverage)
        _, start = bulk_days(bulk, coverage.get(bulk.identity), today, covs)
        if start is not None:
            out[scope.replaces] = (bulk, start)
    return out


def continuous(held_to: dt.date | None, start: dt.date) -> bool:
    """A ticker's history held to `held_to` continues into bulk days from `start`: it reaches the session before."""
    if held_to is None:
        return False
    previous = _sessions(start - dt.timedelta(days=10), start - dt.timedelta(days=1))
    return not previous or held_to >= previous[-1]


def fanout_targets(
    conn, entries: Sequence[KeymapEntry], keymap_entries: Sequence[KeymapEntry], today: dt.date, fmp_plan: str | None
) -> dict[str, tuple[KeymapEntry, dict[str, dt.date], dt.date]]:
    """Bulk asset name -> (the per-ticker entry it replaces, ticker -> day held to for every ticker whose history
    reaches the session before the newest bulk day, that day), for the active date bulks among `entries`
    (`pipeline.bronze.bulk_fanout`).
    Every ticker with history counts, not only a step's: the bulk step is global. One read of the ledger."""
    from pipeline.ops.file_ingestions import latest_bronze_coverage

    wanted = [e for e in entries if e.recipe.bulk is not None and e.recipe.bulk.replaces and active(e, fmp_plan)]
    if not wanted:
        return {}
    found = latest_bronze_coverage(conn, today=today, tickers=None)
    out: dict[str, tuple[KeymapEntry, dict[str, dt.date], dt.date]] = {}
    for bulk in wanted:
        name = bulk.recipe.bulk.replaces if bulk.recipe.bulk else None
        replaced = next((e for e in keymap_entries if e.per_ticker and e.asset_name == name), None)
        if replaced is None:
            continue
        covs = [c for ident, c in found.items() if ident.ticker and ident.without_ticker() == replaced.identity]
        days, start = bulk_days(bulk, found.get(bulk.identity), today, covs)
        if not days or start is None:
            continue  # no bulk day to fetch: nothing to fan out
        if start != _latest_session(today):
            continue  # the newest session is held already: older days are never fanned out (see bulk_days)
        eligible = {
            c.identity.ticker: c.coverage_to
            for c in covs
            if c.coverage_to is not None and not c.quarantined and continuous(c.coverage_to, start)
        }
        out[bulk.asset_name] = (replaced, eligible, start)
    return out


def replaced_by_bulk(
    decision: PlanDecision, coverage: Coverage | None, replaced: Mapping[str, tuple[KeymapEntry, dt.date]]
) -> PlanDecision:
    """A due per-ticker decision becomes a skip when a bulk feeds its days (see the module docstring)."""
    found = replaced.get(decision.entry.asset_name)
    if not decision.due or found is None or coverage is None or coverage.coverage_to is None:
        return decision
    bulk, start = found
    if coverage.quarantined or not continuous(coverage.coverage_to, start):
        return decision  # a gap before the bulk's first day: the ticker's own request fills it
    return PlanDecision(
        decision.entry,
        decision.identity,
        False,
        f"skipped: its days from {start} come from {bulk.asset_name} (history held to {coverage.coverage_to})",
        skip_kind="bulk",
    )
