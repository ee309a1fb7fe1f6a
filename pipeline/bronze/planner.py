"""Request planning: from a keymap recipe and the ledger's watermark to the exact requests to send.

Planning is where incremental fetching silently loses data, so the rules are explicit:
- placeholders are expanded here, from the watermark, so the window on the wire is the incremental one:
  next `from` = last good coverage end minus `overlap_days`; the first run starts at the history start;
- cadence compares the planning date of the last good fetch with today using `<`: with `min_age_days: 1`
  every day is due, so no day is ever skipped;
- only good (successful, promotable, not quarantined) files count as coverage: the caller passes coverage computed
  that way; an identity with a quarantined file no refetch replaced yet is due now (`Coverage.quarantined`);
- windows are split at `max_window_days` so that no request reaches the API's silent row cap.
Every decision carries a reason, which the dry-run planner shows ("what is due, and why not").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.keymap.model import DatasetIdentity, KeymapEntry
from pipeline.ledger_types import Coverage

if TYPE_CHECKING:
    from pipeline.bronze.refresh import RefreshPolicy


@dataclass(frozen=True)
class PlannedRequest:
    identity: DatasetIdentity
    path: str
    params: dict[str, str]
    as_of: dt.date
    window_from: dt.date | None = None
    window_to: dt.date | None = None
    paginated: bool = False  # params hold the first page; the fetcher walks the pages


@dataclass(frozen=True)
class PlanDecision:
    entry: KeymapEntry
    identity: DatasetIdentity
    due: bool
    reason: str
    requests: tuple[PlannedRequest, ...] = ()
    skip_kind: str | None = None  # not_due | plan | nothing_new | frozen (None when due)


def expand_query(
    entry: KeymapEntry,
    identity: DatasetIdentity,
    today: dt.date,
    *,
    window_from: dt.date | None = None,
    window_to: dt.date | None = None,
    page: int | None = None,
) -> dict[str, str]:
    values = {
        "__ticker__": identity.ticker,
        "__from__": window_from.isoformat() if window_from else "",
        "__to__": window_to.isoformat() if window_to else "",
        "__date__": today.isoformat(),
        "__discriminator__": identity.discriminator,
        "__limit__": str(entry.recipe.row_limit or ""),
        "__page__": "" if page is None else str(page),
    }
    params: dict[str, str] = {}
    for name, template in entry.recipe.query:
        text = template
        for token, value in values.items():
            text = text.replace(token, value)
        params[name] = text
    if entry.recipe.pagination is not None and page is not None:
        params[entry.recipe.pagination.param] = str(page)
    return params


def split_window(start: dt.date, end: dt.date, max_days: int | None) -> list[tuple[dt.date, dt.date]]:
    """Inclusive windows of at most `max_days` days covering start..end, oldest first."""
    if start > end:
        return []
    if not max_days:
        return [(start, end)]
    windows = []
    cursor = start
    while cursor <= end:
        stop = min(end, cursor + dt.timedelta(days=max_days - 1))
        windows.append((cursor, stop))
        cursor = stop + dt.timedelta(days=1)
    return windows


def first_window_start(entry: KeymapEntry, today: dt.date) -> dt.date:
    recipe = entry.recipe
    if recipe.history_start is not None:
        return recipe.history_start
    return today - dt.timedelta(days=recipe.history_days or 0)


def history_missing(entry: KeymapEntry, coverage: Coverage | None) -> bool:
    """The oldest good window starts after the recipe's history start: a run killed while its first window was in
    flight (after later windows landed), or a history_start moved earlier. Due now, whatever the cadence: the later
    windows' files look like a fresh fetch, and waiting min_age_days would leave the hole in Silver meanwhile."""
    first = coverage.first_window_from if coverage else None
    start = entry.recipe.history_start
    return entry.recipe.is_windowed and start is not None and first is not None and start < first


def plan_identity(
    entry: KeymapEntry,
    identity: DatasetIdentity,
    coverage: Coverage | None,
    today: dt.date,
    plan: str | None,
    *,
    min_age_days: int | None = None,
) -> PlanDecision:
    """Decide whether one dataset identity is due today and which requests to send. `min_age_days` overrides the
    recipe's cadence (the refresh policy passes 1 when an event makes the identity due before its cadence)."""
    recipe = entry.recipe
    min_age = recipe.min_age_days if min_age_days is None else min_age_days
    if not recipe.allowed_on(plan):
        return PlanDecision(
            entry, identity, False, f"skipped: needs the FMP {recipe.min_plan} plan, FMP_PLAN={plan}", skip_kind="plan"
        )

    last_as_of = coverage.last_as_of if coverage else None
    if last_as_of is not None and not history_missing(entry, coverage):
        age = (today - last_as_of).days
        if age < min_age:
            return PlanDecision(
                entry,
                identity,
                False,
                f"not due: last good fetch for {last_as_of} is {age} day(s) old, "
                f"min_age_days={min_age} (next on {last_as_of + dt.timedelta(days=min_age)})",
                skip_kind="not_due",
            )

    if recipe.is_windowed:
        history_start = first_window_start(entry, today)
        missing_start: list[tuple[dt.date, dt.date]] = []
        if coverage is not None and coverage.coverage_to is not None:
            start = coverage.coverage_to - dt.timedelta(days=recipe.overlap_days)
            why = (
                f"incremental from {start} (coverage to {coverage.coverage_to} minus {recipe.overlap_days} "
                "overlap day(s))"
            )
            first = coverage.first_window_from
            if recipe.history_start is not None and first is not None and history_start < first:
                # the oldest window never arrived (a run killed while later windows finished) or history_start moved
                # earlier: fetch the history before the oldest good window too
                missing_start = split_window(
                    history_start,
                    min(first - dt.timedelta(days=1), start - dt.timedelta(days=1)),
                    recipe.max_window_days,
                )
                why = f"history from {history_start} to {first} is missing; {why}"
        else:
            start = history_start
            why = f"first fetch from history start {start}"
        if coverage is not None and coverage.quarantined:
            why = f"{coverage.quarantined} quarantined file(s) to fetch again; {why}"
        windows = missing_start + split_window(start, today, recipe.max_window_days)
        if not windows:
            return PlanDecision(
                entry, identity, False, f"nothing new: coverage already reaches {today}", skip_kind="nothing_new"
            )
        requests = tuple(
            PlannedRequest(
                identity, recipe.path, expand_query(entry, identity, today, window_from=a, window_to=b), today, a, b
            )
            for a, b in windows
        )
        return PlanDecision(entry, identity, True, f"due: {why}, {len(requests)} window(s) to {today}", requests)

    page = recipe.pagination.start if recipe.pagination else None
    request = PlannedRequest(
        identity,
        recipe.path,
        expand_query(entry, identity, today, page=page),
        today,
        paginated=recipe.pagination is not None,
    )
    why = "first fetch" if last_as_of is None else f"last good fetch for {last_as_of}, min_age_days={min_age}"
    if coverage is not None and coverage.quarantined:
        why = f"{coverage.quarantined} quarantined file(s) to fetch again"
    return PlanDecision(entry, identity, True, f"due: {why}", (request,))


def frozen_decision(
    entry: KeymapEntry, identity: DatasetIdentity, coverage: Coverage | None, delisted_on: dt.date | None
) -> PlanDecision | None:
    """A delisted ticker fetched once after its delisting is complete (FMP keeps its history, ending on the
    delisting day: fmp_api.md 3.4): skipped as `frozen`, for every dataset. Until that fetch it is planned as usual."""
    last = coverage.last_as_of if coverage else None
    if delisted_on is None or last is None or last <= delisted_on:
        return None
    return PlanDecision(
        entry,
        identity,
        False,
        f"frozen: delisted on {delisted_on}, history fetched on {last} after the delisting; no further requests",
        skip_kind="frozen",
    )


def plan(
    entries: Iterable[KeymapEntry],
    tickers: Iterable[str],
    coverage: Mapping[DatasetIdentity, Coverage],
    today: dt.date,
    fmp_plan: str | None,
    frozen: Mapping[str, dt.date] | None = None,
    *,
    policy: RefreshPolicy | None = None,
    also: Iterable[KeymapEntry] = (),
) -> list[PlanDecision]:
    """Decisions for every (entry, ticker) pair; global entries get one decision each.

    `frozen`: delisted tickers and their delisting day (`pipeline.bronze.delisted.frozen_tickers`): once their last
    history is in, they are skipped. With `policy`, event-driven and cross-check entries are due only when it
    says so (`pipeline.bronze.refresh`); without it, on cadence. Entries with a bulk scope, and the per-ticker requests
    a bulk replaces, are decided by `pipeline.bronze.bulk`; `also`: other keymap entries that decide nothing here but
    are consulted (a bulk entry planned by another step replaces requests of this one; `coverage` must hold theirs)."""
    from pipeline.bronze import bulk  # the bulk path builds on this module

    tickers, entries = list(tickers), list(entries)
    frozen = frozen or {}
    consulted = entries + [e for e in also if e not in entries]
    replaced = bulk.replacements(consulted, tickers, coverage, today, fmp_plan)
    decisions: list[PlanDecision] = []
    for entry in entries:
        if entry.recipe.bulk is not None:
            decisions.append(bulk.plan_entry(entry, consulted, tickers, coverage, today, fmp_plan))
            continue
        identities = [entry.identity.with_ticker(t) for t in tickers] if entry.per_ticker else [entry.identity]
        for identity in identities:
            cov = coverage.get(identity)
            skip = frozen_decision(entry, identity, cov, frozen.get(identity.ticker)) if frozen else None
            if skip is not None:  # a frozen delisted ticker: nothing to fetch, by bulk or otherwise
                decisions.append(skip)
                continue
            if policy is not None:
                decision = policy.plan_identity(entry, identity, cov, today, coverage)
            else:
                decision = plan_identity(entry, identity, cov, today, fmp_plan)
            decisions.append(bulk.replaced_by_bulk(decision, cov, replaced) if replaced else decision)
    return decisions
