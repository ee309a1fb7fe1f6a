"""Event-driven refresh: which tickers need more than their new bar today, and why.

Polling every ticker's splits, dividends, statements, metrics and profile on a cadence costs the same whether or not
anything happened. FMP publishes what happened in market-wide calendars (fmp_api.md 3.3), so an entry with
`recipe.refresh: events` is requested for a ticker only when
  (a) a calendar it names in `refresh_on` lists the ticker on a day after its last fetch of that entry (a split or
      dividend the calendar lists but the per-ticker answer does not show yet is asked for again on the next runs,
      until RETRY_DAYS after its date: the calendar may be ahead of the per-ticker endpoint);
  (b) its own reporting rhythm says a filing is overdue (`filings` in `refresh_on`): the last period end plus a
      period plus the ticker's usual filing lag, read from its Silver statements, has passed, and no fetch since
      found it (asked again weekly until RHYTHM_GRACE_DAYS later); or
  (c) the slow safety sweep reaches it: every ticker once every PIPELINE_SWEEP_DAYS days, on a weekday picked by a
      stable hash of the ticker, so the sweep spreads evenly over the weekdays and no day spikes.
`recipe.refresh: cross_check` entries (FMP's own derived series) are fetched on the same rotating slice of tickers:
every ticker is cross-checked once per sweep period. A first fetch, a hole or a quarantined file is planned as
before: the policy only ever holds back a refetch.

Without the calendars (a plan that lacks them, such as Starter, or a calendar that has no good fetch for
CALENDAR_STALE_DAYS) an entry falls back to its cadence (`min_age_days`), and the plan says so.
Plain functions and data; no Dagster, and the ledger and Silver are read once per planning (`load_facts`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import duckdb

from pipeline.bronze import planner
from pipeline.bronze.sweep import SweepClock, sweep_order
from pipeline.keymap.model import FILINGS_RHYTHM, DatasetIdentity, KeymapEntry
from pipeline.ledger_types import Coverage
from pipeline.ops import file_ingestions

RETRY_DAYS = 10  # a calendar split/dividend the per-ticker answer lacks is asked for again until this long after it
CALENDAR_STALE_DAYS = 4  # a calendar without a good fetch this long (a long weekend) no longer drives refresh
STAND_IN_DAYS = 7  # a cross-check standing in for an entry with no good fetch this long is fetched on cadence
RHYTHM_SLACK_DAYS = 7  # with a calendar too, the rhythm acts only this long after the expected filing
RHYTHM_RETRY_DAYS = 7
RHYTHM_GRACE_DAYS = 45
QUARTER_DAYS, YEAR_DAYS = 91, 365
DEFAULT_LAG_DAYS = {"quarter": 45, "annual": 75}  # SEC deadlines for large filers when a ticker has no history
SHOW_OUTSIDE = 10  # symbols outside the universe named in the log line


# -- what the warehouse knows -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rhythm:
    """A ticker's filing rhythm for one kind of period (quarter | annual), from its Silver statements."""

    last_end: dt.date
    lag_days: int

    def expected(self, kind: str) -> dt.date:
        """When the next period's filing is expected: the last period end, one period, the usual lag."""
        return self.last_end + dt.timedelta(days=(YEAR_DAYS if kind == "annual" else QUARTER_DAYS) + self.lag_days)


@dataclass
class Facts:
    """What the policy decides from, read once: calendar rows by ticker, the rows the entries' own Silver tables hold
    near the calendars' dates, the calendars' last good fetch, and the filing rhythms."""

    today: dt.date
    events: dict[str, dict[str, list[dt.date]]] = field(default_factory=dict)  # calendar -> ticker -> dates
    held: dict[str, set[tuple[str, dt.date]]] = field(default_factory=dict)  # silver table -> (ticker, date)
    calendar_fetched: dict[str, dt.date | None] = field(default_factory=dict)  # calendar -> last good as_of
    rhythm: dict[tuple[str, str], Rhythm] = field(default_factory=dict)  # (ticker, kind) -> rhythm
    outside: dict[str, list[str]] = field(default_factory=dict)  # calendar -> recent symbols outside the universe
    order: dict[str, int] = field(default_factory=dict)  # sweep_order of the universe


def _silver_tables(conn: duckdb.DuckDBPyConnection) -> set[str]:
    rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'silver'").fetchall()
    return {r[0] for r in rows}


def load_facts(
    conn: duckdb.DuckDBPyConnection,
    keymap_entries: Sequence[KeymapEntry],
    today: dt.date,
    tickers: Sequence[str],
    universe: Iterable[str],
    sweep_days: int,
) -> Facts:
    """Read what the policy needs for `tickers` (a step's, or the whole universe) in a few queries."""
    members = set(universe)
    facts = Facts(today, order=sweep_order(members))
    calendars = {e.dataset: e for e in keymap_entries if not e.per_ticker}
    used = {c for e in keymap_entries if e.recipe.refresh == "events" for c in e.recipe.refresh_on}
    tables = _silver_tables(conn)
    since = today - dt.timedelta(days=max(sweep_days, RHYTHM_GRACE_DAYS) + RETRY_DAYS)
    for name in sorted(used & set(calendars)):
        cal = calendars[name]
        cov = file_ingestions.latest_bronze_coverage(conn, cal.identity, today=today).get(cal.identity)
        facts.calendar_fetched[name] = cov.last_as_of if cov else None
        if cal.silver.table not in tables:
            continue
        rows = conn.execute(
            f"""
            SELECT symbol, date FROM silver.{cal.silver.table}
            WHERE date BETWEEN ? AND ? ORDER BY date
            """,
            [since, today],
        ).fetchall()
        by_ticker: dict[str, list[dt.date]] = {}
        recent_outside: set[str] = set()
        for symbol, day in rows:
            by_ticker.setdefault(symbol, []).append(day)
            if symbol not in members and (today - day).days <= cal.recipe.overlap_days:
                recent_outside.add(symbol)
        facts.events[name] = by_ticker
        facts.outside[name] = sorted(recent_outside)
    for e in keymap_entries:
        own = f"{e.dataset}-calendar"
        if e.recipe.refresh == "events" and own in e.recipe.refresh_on and e.silver.table in tables:
            rows = conn.execute(
                f"""
                SELECT ticker, date FROM silver.{e.silver.table}
                WHERE date >= ? AND ticker IN (SELECT unnest(?))
                """,
                [today - dt.timedelta(days=max(sweep_days, RHYTHM_GRACE_DAYS) + RETRY_DAYS), list(tickers)],
            ).fetchall()
            facts.held[e.silver.table] = {(t, d) for t, d in rows}
    statements = _rhythm_table(keymap_entries)
    if statements is not None and statements in tables:
        rows = conn.execute(
            f"""
            SELECT ticker, CASE WHEN period = 'FY' THEN 'annual' ELSE 'quarter' END AS kind, max(date) AS last_end,
                   median(date_diff('day', date, CAST(coalesce(accepted_date, filing_date) AS DATE))) AS lag
            FROM silver.{statements}
            WHERE ticker IN (SELECT unnest(?))
            GROUP BY ALL
            """,
            [list(tickers)],
        ).fetchall()
        for ticker, kind, last_end, lag in rows:
            days = DEFAULT_LAG_DAYS[kind] if lag is None else min(max(int(lag), 1), 120)
            facts.rhythm[(ticker, kind)] = Rhythm(last_end, days)
    return facts


def _rhythm_table(entries: Sequence[KeymapEntry]) -> str | None:
    """The Silver statements the filing rhythm is read from: the first filings-driven table with a period, a period
    end (its row date) and an acceptance or filing date (the income statement in the shipped keymap)."""
    for e in entries:
        names = {c.name for c in e.silver.columns}
        if FILINGS_RHYTHM in e.recipe.refresh_on and e.silver.row_date == "date" and "period" in names:
            if names & {"accepted_date", "filing_date"} == {"accepted_date", "filing_date"}:
                return e.silver.table
    return None


# -- the decisions ----------------------------------------------------------------------------------------------------


@dataclass
class RefreshPolicy:
    """Decides, per entry and ticker, whether an event-driven or cross-check entry is due (see the module)."""

    facts: Facts
    fmp_plan: str | None
    sweep_days: int
    calendar_plans: Mapping[str, KeymapEntry]  # calendar dataset -> its keymap entry
    per_ticker: Mapping[str, KeymapEntry] = field(default_factory=dict)  # asset name -> entry (cross-check stand-ins)

    @property
    def clock(self) -> SweepClock:
        return SweepClock(self.sweep_days, self.facts.order)

    def fallback(self, entry: KeymapEntry) -> str | None:
        """Why `entry` follows its cadence instead of the calendars (None: it does not)."""
        for name in entry.recipe.refresh_on:
            if name == FILINGS_RHYTHM:
                continue
            cal = self.calendar_plans.get(name)
            if cal is None:
                return f"{name} is not in the keymap"
            if not cal.recipe.allowed_on(self.fmp_plan):
                return f"FMP_PLAN={self.fmp_plan} has no {name} (needs {cal.recipe.min_plan}; fmp_api.md 3.3)"
            stale = self._stale(name)
            if stale:
                return stale
        return None

    @property
    def starter_fallback(self) -> str | None:
        """The plan-wide fallback line (a plan without the corporate calendars), for `pipeline plan` and `status`."""
        missing = sorted(n for n, c in self.calendar_plans.items() if not c.recipe.allowed_on(self.fmp_plan))
        if not missing:
            return None
        return (
            f"refresh: FMP_PLAN={self.fmp_plan} has no corporate calendars ({', '.join(missing)}; fmp_api.md 3.3): "
            "splits, dividends, statements, metrics, profile and the cross-checks follow their cadence (min_age_days)"
        )

    def describe(self) -> str:
        """One line for `pipeline plan` and `pipeline status`: how per-ticker datasets are refreshed on this plan."""
        if not self.calendar_plans:
            return "refresh: on cadence (min_age_days): the keymap has no corporate calendar"
        if self.starter_fallback:
            return self.starter_fallback
        stale = sorted({why for e in self.calendar_plans.values() for why in [self._stale(e.dataset)] if why})
        line = (
            f"refresh: by events ({', '.join(sorted(self.calendar_plans))}, the filing rhythm) and a safety sweep of "
            f"every ticker once in {self.sweep_days} days (PIPELINE_SWEEP_DAYS); FMP's derived series as cross-checks "
            "on the same rotating sample"
        )
        return line + (f"; on cadence until the calendars are current: {'; '.join(stale)}" if stale else "")

    def _stale(self, name: str) -> str | None:
        last = self.facts.calendar_fetched.get(name)
        if last is None or (self.facts.today - last).days > CALENDAR_STALE_DAYS:
            return f"{name} has no good fetch since {last or 'ever'}"
        return None

    def notes(self) -> list[str]:
        """Lines for the run log and the plan: calendar rows naming symbols outside the universe are skipped."""
        out = []
        for name, symbols in sorted(self.facts.outside.items()):
            if symbols:
                shown = ", ".join(symbols[:SHOW_OUTSIDE]) + (", ..." if len(symbols) > SHOW_OUTSIDE else "")
                out.append(f"{name}: skipped recent row(s) of {len(symbols)} symbol(s) outside the universe: {shown}")
        return out

    def plan_identity(
        self,
        entry: KeymapEntry,
        identity: DatasetIdentity,
        coverage: Coverage | None,
        today: dt.date,
        everything: Mapping[DatasetIdentity, Coverage] | None = None,
    ) -> planner.PlanDecision:
        """`everything`: the coverage the planning read (a cross-check's stand-in entries are looked up there)."""
        base = planner.plan_identity
        refresh = entry.recipe.refresh
        if refresh == "cadence" or not entry.per_ticker or not entry.recipe.allowed_on(self.fmp_plan):
            return base(entry, identity, coverage, today, self.fmp_plan)
        if refresh == "events":
            why_cadence = self.fallback(entry)
        else:
            why_cadence = self._cross_check_fallback() or self._stands_in(entry, identity.ticker, everything or {})
        if why_cadence:
            d = base(entry, identity, coverage, today, self.fmp_plan)
            return replace(d, reason=f"{d.reason} (cadence: {why_cadence})")
        if (
            coverage is None
            or coverage.last_as_of is None
            or coverage.quarantined
            or planner.history_missing(entry, coverage)
        ):
            return base(entry, identity, coverage, today, self.fmp_plan)  # first fetch or repair: as before
        ticker, last = identity.ticker, coverage.last_as_of
        why = self._cross_check(ticker, last) if refresh == "cross_check" else self._triggers(entry, ticker, last)
        if not why:
            return planner.PlanDecision(
                entry, identity, False, f"not due: {self._quiet(entry, ticker, last)}", skip_kind="not_due"
            )
        d = base(entry, identity, coverage, today, self.fmp_plan, min_age_days=1)
        return replace(d, reason=f"due ({why}): {d.reason.removeprefix('due: ')}") if d.due else d

    def _cross_check_fallback(self) -> str | None:
        """Cross-checks rotate only where the calendars drive refresh (a Starter keeps today's cadence)."""
        if not self.calendar_plans:
            return "no corporate calendar in the keymap"
        return f"FMP_PLAN={self.fmp_plan} has no corporate calendars" if self.starter_fallback else None

    def _stands_in(self, entry: KeymapEntry, ticker: str, everything: Mapping[DatasetIdentity, Coverage]) -> str | None:
        """A cross-check that stands in for an entry (FMP's /full for the as-traded bars, where a plan lacks them)
        stays on its cadence for a ticker while that entry has no good fetch in the last STAND_IN_DAYS."""
        for name in entry.recipe.refresh_on:
            other = self.per_ticker.get(name)
            cov = everything.get(other.identity.with_ticker(ticker)) if other is not None else None
            last = cov.last_as_of if cov is not None else None
            if last is None or (self.facts.today - last).days > STAND_IN_DAYS:
                return f"{name} has no good fetch for {ticker} since {last or 'ever'}: this is its price source"
        return None

    def _cross_check(self, ticker: str, last: dt.date) -> str | None:
        if self.clock.due(ticker, self.facts.today, last):
            return f"cross-check sample of the day, every ticker once in {self.sweep_days} days"
        return None

    def _triggers(self, entry: KeymapEntry, ticker: str, last: dt.date) -> str | None:
        today = self.facts.today
        for name in entry.recipe.refresh_on:
            if name == FILINGS_RHYTHM:
                continue
            dates = [d for d in self.facts.events.get(name, {}).get(ticker, ()) if d <= today]
            kind = _kind(entry)
            rhythm = self.facts.rhythm.get((ticker, kind))
            if kind == "annual" and rhythm is not None and name == "earnings-calendar":
                # a quarterly report does not change annual figures: only one after the fiscal year ended counts
                dates = [d for d in dates if d > rhythm.last_end + dt.timedelta(days=YEAR_DAYS - 30)]
            newer = [d for d in dates if d > last]
            if newer:
                return f"{name} lists {ticker} on {newer[-1]}, after its last fetch for {last}"
            own = f"{entry.dataset}-calendar" == name
            held = self.facts.held.get(entry.silver.table, set())
            pending = [d for d in dates if own and (today - d).days <= RETRY_DAYS and (ticker, d) not in held]
            if pending:
                return (
                    f"{name} lists {ticker} on {pending[-1]}, which its answer of {last} did not show yet; "
                    f"asking again until {pending[-1] + dt.timedelta(days=RETRY_DAYS)}"
                )
        if FILINGS_RHYTHM in entry.recipe.refresh_on:
            why = self._rhythm_due(entry, ticker, last)
            if why:
                return why
        if self.clock.due(ticker, today, last):
            return f"safety sweep, every ticker once in {self.sweep_days} days"
        return None

    def _rhythm_due(self, entry: KeymapEntry, ticker: str, last: dt.date) -> str | None:
        kind = _kind(entry)
        rhythm = self.facts.rhythm.get((ticker, kind))
        if rhythm is None:
            return None
        slack = RHYTHM_SLACK_DAYS if len(entry.recipe.refresh_on) > 1 else 0
        due_on = rhythm.expected(kind) + dt.timedelta(days=slack)
        today = self.facts.today
        if not (due_on <= today <= due_on + dt.timedelta(days=RHYTHM_GRACE_DAYS)):
            return None
        if last < due_on or (today - last).days >= RHYTHM_RETRY_DAYS:
            return (
                f"filing rhythm: the {kind} period after {rhythm.last_end} was due by {due_on} "
                f"(usual lag {rhythm.lag_days} days)"
            )
        return None

    def _quiet(self, entry: KeymapEntry, ticker: str, last: dt.date) -> str:
        """Why a refetch waits: no calendar row, the rhythm's date, the sweep's date."""
        parts = [f"no row in {', '.join(c for c in entry.recipe.refresh_on if c != FILINGS_RHYTHM) or 'a calendar'}"]
        parts[0] += f" since its last fetch for {last}"
        if FILINGS_RHYTHM in entry.recipe.refresh_on:
            rhythm = self.facts.rhythm.get((ticker, _kind(entry)))
            if rhythm is not None:
                parts.append(f"next {_kind(entry)} filing expected about {rhythm.expected(_kind(entry))}")
        parts.append(f"sweep on {self.clock.next(ticker, self.facts.today)}")
        return "; ".join(parts)


def _kind(entry: KeymapEntry) -> str:
    return "annual" if entry.discriminator in ("annual", "FY") else "quarter"


def build_policy(
    conn: duckdb.DuckDBPyConnection,
    keymap_entries: Sequence[KeymapEntry],
    today: dt.date,
    tickers: Sequence[str],
    fmp_plan: str | None,
    sweep_days: int,
    universe: Iterable[str] | None = None,
) -> RefreshPolicy:
    """The policy for one planning (`tickers`: the step's or the universe; `universe`: default `tickers`)."""
    tickers = list(tickers)
    facts = load_facts(conn, keymap_entries, today, tickers, tickers if universe is None else universe, sweep_days)
    return for_plan(facts, keymap_entries, fmp_plan, sweep_days)


def for_plan(
    facts: Facts, keymap_entries: Sequence[KeymapEntry], fmp_plan: str | None, sweep_days: int
) -> RefreshPolicy:
    """The policy on facts already read, for one plan (`pipeline plan --plans` compares several)."""
    names = _calendar_names(keymap_entries)
    calendars = {e.dataset: e for e in keymap_entries if not e.per_ticker and e.dataset in names}
    per_ticker = {e.asset_name: e for e in keymap_entries if e.per_ticker}
    return RefreshPolicy(facts, fmp_plan, sweep_days, calendars, per_ticker)


def _calendar_names(entries: Sequence[KeymapEntry]) -> set[str]:
    return {c for e in entries for c in e.recipe.refresh_on if c != FILINGS_RHYTHM}


def trigger_of(decision: planner.PlanDecision) -> str:
    """What made a due decision due, in a word or two: a calendar, the filing rhythm, the sweep, the cross-check
    sample, or the cadence / first fetch (the planner's own reasons)."""
    reason = decision.reason
    if not reason.startswith("due ("):
        return "first fetch" if "first fetch" in reason else "cadence"
    inner = reason[len("due (") :]
    for word in ("filing rhythm", "safety sweep", "cross-check sample"):
        if inner.startswith(word) or word in inner.split(",")[0]:
            return word
    return inner.split(" ", 1)[0]


def due_summary(decisions: Sequence[planner.PlanDecision], show: int = 3) -> list[str]:
    """One line per event-driven or cross-check entry with something due: how many tickers, by trigger, with
    examples (the run log's answer to "why is this requested today")."""
    groups: dict[str, dict[str, list[str]]] = {}
    for d in decisions:
        if d.due and d.entry.per_ticker and d.entry.recipe.refresh != "cadence":
            groups.setdefault(d.entry.asset_name, {}).setdefault(trigger_of(d), []).append(d.identity.ticker)
    lines = []
    for name, by in groups.items():
        parts = [
            f"{why} {len(ts)} ({', '.join(ts[:show])}{', ...' if len(ts) > show else ''})" for why, ts in by.items()
        ]
        lines.append(f"refresh {name}: due for {sum(len(t) for t in by.values())} ticker(s): {'; '.join(parts)}")
    return lines
