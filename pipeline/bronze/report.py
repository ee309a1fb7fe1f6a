"""What a Bronze step did, per keymap entry: requests, files, rows, skips and failures, for the asset metadata."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field

from pipeline.bronze.envelope import BronzeEnvelope
from pipeline.bronze.refusals import UNREACHABLE_STOP, NotSent
from pipeline.keymap.model import KeymapEntry

# Error classes that fail the step (after everything that succeeded is persisted): the API or our
# configuration is refusing us. A per-ticker answer such as an "Error Message" body or an empty body is
# counted and reported, and does not fail the run. A 402 (`plan_restricted`) does not fail it either: the plan
# lacks a symbol or an endpoint, which no rerun changes; the run skips what the plan lacks and says so.
FAILING_ERRORS = frozenset({"transport", "rate_limited", "http_status", "auth", "invalid_body"})
MAX_SKIP_REASONS = 5


@dataclass
class TickerCounts:
    """What one entry did for one ticker: the counts its Dagster partition is materialized with."""

    due: int = 0  # identities due (0 or 1: one identity per entry and ticker)
    requests: int = 0
    files: int = 0
    rows: int = 0
    failed: int = 0

    def as_metadata(self) -> dict[str, int]:
        return {
            "due": self.due,
            "requests": self.requests,
            "files": self.files,
            "rows": self.rows,
            "failed": self.failed,
        }

    @property
    def anything(self) -> bool:
        """Whether something was due or written for this ticker (a partition worth materializing)."""
        return bool(self.due or self.files)


@dataclass
class EntryReport:
    """What happened to one keymap entry (one Bronze asset) in one run."""

    entry: KeymapEntry
    requests: int = 0
    files: int = 0
    rows: int = 0
    bytes: int = 0
    due: int = 0
    skipped: Counter = field(default_factory=Counter)  # skip kind -> identities
    skip_reasons: list[str] = field(default_factory=list)  # a few examples for the UI
    failed: Counter = field(default_factory=Counter)  # error class -> files
    failures: list[str] = field(default_factory=list)  # a few key-free messages
    coverage_from: dt.date | None = None
    coverage_to: dt.date | None = None
    tickers_with_data: set[str] = field(default_factory=set)
    by_ticker: dict[str, TickerCounts] = field(default_factory=dict)  # per-ticker entries only

    def ticker(self, ticker: str) -> TickerCounts:
        return self.by_ticker.setdefault(ticker, TickerCounts())

    @property
    def hard_failures(self) -> int:
        return sum(n for cls, n in self.failed.items() if cls in FAILING_ERRORS)

    @property
    def refused(self) -> bool:
        """Whether the plan or a refusal kept requests of this entry from being sent (worth a warning)."""
        return any(k == "plan" or k.startswith("not_sent_") for k in self.skipped)

    def add_skip_reason(self, reason: str) -> None:
        """A refusal's reason goes first: it explains more than the "not due" examples planning leaves."""
        if reason not in self.skip_reasons:
            self.skip_reasons.insert(0, reason)
            del self.skip_reasons[MAX_SKIP_REASONS:]

    def add_file(self, env: BronzeEnvelope) -> None:
        """One response written to Bronze (one request: a page or a window is a file of its own)."""
        own = self.ticker(env.identity.ticker) if env.identity.ticker else None
        self.requests += 1
        self.files += 1
        self.bytes += env.bytes
        if own:
            own.requests += 1
            own.files += 1
        if env.error_class:
            self.failed[env.error_class] += 1
            if own:
                own.failed += 1
            if len(self.failures) < 5:
                who = env.identity.ticker or env.identity.discriminator or env.identity.dataset
                self.failures.append(f"{who}: {env.error_class}: {env.error_message}")
            return
        self.rows += env.row_count
        if own:
            own.rows += env.row_count
        if env.can_promote and env.identity.ticker and env.row_count:
            self.tickers_with_data.add(env.identity.ticker)
        if env.coverage_from and (self.coverage_from is None or env.coverage_from < self.coverage_from):
            self.coverage_from = env.coverage_from
        if env.coverage_to and (self.coverage_to is None or env.coverage_to > self.coverage_to):
            self.coverage_to = env.coverage_to


@dataclass
class BronzeRunReport:
    run_id: str
    source_mode: str
    entries: dict[str, EntryReport]
    orphans_registered: int = 0
    stop: NotSent | None = None  # what stopped the run from sending the rest (a refused key, the API unreachable...)

    @property
    def unreachable(self) -> bool:
        """Whether the API could not be reached at all: retrying the step later would only repeat that."""
        return self.stop is not None and self.stop.kind == UNREACHABLE_STOP

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.entries.values())

    @property
    def hard_failures(self) -> int:
        return sum(r.hard_failures for r in self.entries.values())

    @property
    def failure_kinds(self) -> set[str]:
        """The error classes that fail the step, among those seen in this run."""
        return {cls for r in self.entries.values() for cls, n in r.failed.items() if n and cls in FAILING_ERRORS}

    def first_failures(self, limit: int = 10) -> list[str]:
        """A few failure messages across entries, for the step's error."""
        return [f for r in self.entries.values() for f in r.failures][:limit]
