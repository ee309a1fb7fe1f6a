"""Fetch Bronze: plan, call the API concurrently, write immutable files, register them in the ledger.

No DuckDB connection is open while requests are in flight: the ledger is read once before fetching (and
orphans of a crashed run are registered then), and new files are registered in short batched transactions
from the collecting thread. A crash between writing a file and registering it is repaired by
`register_orphans` on the next run, through the store's journal.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from pipeline.bronze.envelope import BronzeEnvelope, RequestInfo, body_sha256, coverage_of, new_file_id
from pipeline.bronze.planner import PlanDecision, PlannedRequest, expand_query, plan
from pipeline.bronze.store import BronzeStore, validate_part
from pipeline.fmp.client import (
    ENDPOINT_NOT_IN_PLAN, PARAMETER_NOT_IN_PLAN, QUOTA_EXHAUSTED, SYMBOL_NOT_IN_PLAN, FetchResult, FmpClient,
)
from pipeline.keymap.model import DatasetIdentity, KeymapEntry
from pipeline.ops import repository
from pipeline.process import pid_alive
from pipeline.warehouse.connection import Warehouse

log = logging.getLogger("pipeline.bronze")

# Error classes that fail the step (after everything that succeeded is persisted): the API or our
# configuration is refusing us. A per-ticker answer such as an "Error Message" body or an empty body is
# counted and reported, and does not fail the run. A 402 (`plan_restricted`) does not fail it either: the plan
# lacks a symbol or an endpoint, which no rerun changes; the run skips what the plan lacks and says so.
FAILING_ERRORS = frozenset({"transport", "rate_limited", "http_status", "auth", "invalid_body"})
AUTH_REFUSALS_TO_STOP = 3
QUOTA_REFUSALS_TO_STOP = 3       # consecutive: one success in between means the quota is not gone
MAX_SKIP_REASONS = 5
REGISTER_EVERY_FILES = 500
REGISTER_EVERY_SECONDS = 5.0


@dataclass
class EntryReport:
    """What happened to one keymap entry (one Bronze asset) in one run."""

    entry: KeymapEntry
    requests: int = 0
    files: int = 0
    rows: int = 0
    bytes: int = 0
    due: int = 0
    skipped: Counter = field(default_factory=Counter)          # skip kind -> identities
    skip_reasons: list[str] = field(default_factory=list)      # a few examples for the UI
    failed: Counter = field(default_factory=Counter)           # error class -> files
    failures: list[str] = field(default_factory=list)          # a few key-free messages
    coverage_from: dt.date | None = None
    coverage_to: dt.date | None = None
    tickers_with_data: set[str] = field(default_factory=set)

    @property
    def hard_failures(self) -> int:
        return sum(n for cls, n in self.failed.items() if cls in FAILING_ERRORS)

    def add_skip_reason(self, reason: str) -> None:
        """A refusal's reason goes first: it explains more than the "not due" examples planning leaves."""
        if reason not in self.skip_reasons:
            self.skip_reasons.insert(0, reason)
            del self.skip_reasons[MAX_SKIP_REASONS:]

    def add_file(self, env: BronzeEnvelope) -> None:
        self.files += 1
        self.bytes += env.bytes
        if env.error_class:
            self.failed[env.error_class] += 1
            if len(self.failures) < 5:
                who = env.identity.ticker or env.identity.discriminator or env.identity.dataset
                self.failures.append(f"{who}: {env.error_class}: {env.error_message}")
            return
        self.rows += env.row_count
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

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.entries.values())

    @property
    def hard_failures(self) -> int:
        return sum(r.hard_failures for r in self.entries.values())


def _envelope(result: FetchResult, request: PlannedRequest, entry: KeymapEntry, run_id: str, *,
              page: int | None = None, incomplete: str | None = None,
              redact: Callable[[str], str] = str) -> BronzeEnvelope:
    content = result.content if result.ok else None
    cov_from, cov_to = coverage_of(content, entry.recipe.date_field)
    notes: list[str] = []
    if result.ok and entry.recipe.row_cap and result.row_count >= entry.recipe.row_cap:
        notes.append(f"row cap {entry.recipe.row_cap} reached: the API may have dropped rows; lower max_window_days")
    if incomplete:
        notes.append(incomplete)
    body_text = None
    if not result.ok and result.body:
        # redacted: an error page may echo the request URL, key included
        body_text = redact(result.body[:4000].decode("utf-8", errors="replace"))[:2000]
    return BronzeEnvelope(
        file_id=new_file_id(),
        run_id=run_id,
        identity=request.identity,
        request=RequestInfo(path=result.path, url=result.url, params=dict(result.params), page=page, as_of=request.as_of,
                            window_from=request.window_from, window_to=request.window_to),
        fetched_at=result.fetched_at,
        elapsed_ms=result.elapsed_ms,
        attempts=result.attempts,
        status_code=result.status_code,
        headers=dict(result.headers),
        body_sha256=body_sha256(result.body),
        bytes=len(result.body),
        content_format=result.content_format,
        content=content,
        row_count=result.row_count if result.ok else 0,
        coverage_from=cov_from,
        coverage_to=cov_to,
        error_class=result.error_class,
        error_message=result.error_message,
        error_detail=result.error_detail,
        can_promote=result.ok and incomplete is None,
        body_text=body_text,
        notes=tuple(notes),
    )


def fetch_request(client: FmpClient, request: PlannedRequest, entry: KeymapEntry, run_id: str) -> list[BronzeEnvelope]:
    """One planned request: a single call, or a page set walked until an empty or repeated page or the limit.

    A page set is all-or-nothing: if any page fails, every page of the set is kept but marked unpromotable,
    so a partial snapshot can never reach Silver as if it were complete. A date window whose answer reaches
    the recipe's row cap (FMP drops the oldest rows silently) is split in half and fetched again.
    """
    expect = entry.recipe.format
    pagination = entry.recipe.pagination
    if not request.paginated or pagination is None:
        result = client.fetch(request.path, request.params, expect=expect)
        halves = _split_capped(result, request, entry)
        if halves:
            log.warning("%s: %s rows reached the row cap for %s..%s; splitting the window", request.identity,
                        result.row_count, request.window_from, request.window_to)
            return [env for half in halves for env in fetch_request(client, half, entry, run_id)]
        return [_envelope(result, request, entry, run_id, redact=client.redact)]

    results: list[tuple[int, FetchResult]] = []
    seen_hashes: set[str] = set()
    failure: str | None = None
    page = pagination.start
    for page in range(pagination.start, pagination.start + pagination.max_pages):
        params = dict(request.params)
        params[pagination.param] = str(page)
        result = client.fetch(request.path, params, expect=expect)
        if not result.ok:
            results.append((page, result))
            failure = f"page set incomplete: page {page} failed ({result.error_class})"
            break
        digest = body_sha256(result.body)
        if result.row_count == 0:
            results.append((page, result))
            break
        if digest in seen_hashes:
            log.warning("%s: page %s repeats an earlier page; the API ignores %r, stopping", request.identity, page,
                        pagination.param)
            break   # the repeated page is not data: drop it
        seen_hashes.add(digest)
        results.append((page, result))
    else:
        log.warning("%s: stopped at the page limit (%s pages)", request.identity, pagination.max_pages)
    return [_envelope(r, request, entry, run_id, page=p, incomplete=failure, redact=client.redact) for p, r in results]


def _split_capped(result: FetchResult, request: PlannedRequest, entry: KeymapEntry) -> list[PlannedRequest]:
    """Two half windows when a windowed answer reached the row cap, else []."""
    cap = entry.recipe.row_cap
    if not (result.ok and cap and result.row_count >= cap and request.window_from and request.window_to):
        return []
    days = (request.window_to - request.window_from).days
    if days < 1:
        return []
    middle = request.window_from + dt.timedelta(days=days // 2)
    out = []
    for a, b in ((request.window_from, middle), (middle + dt.timedelta(days=1), request.window_to)):
        params = expand_query(entry, request.identity, request.as_of, window_from=a, window_to=b)
        out.append(PlannedRequest(request.identity, request.path, params, request.as_of, a, b))
    return out


def register_orphans(conn, store: BronzeStore, silver_table_of: Callable[[DatasetIdentity], str | None]) -> int:
    """Register files that a crashed process wrote but never recorded; returns how many were registered."""
    registered = 0
    for journal in store.journals():
        parts = journal.split(".")
        pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
        if pid != os.getpid() and pid > 0 and pid_alive(pid):
            continue   # a live process is still writing this journal
        paths = store.journal_paths(journal)
        envelopes = {}
        for rel in paths:
            try:
                envelopes[rel] = store.read(rel)
            except (OSError, ValueError, KeyError) as exc:
                log.error("Bronze file %s named in journal %s is unreadable, left unregistered: %s", rel, journal, exc)
        known = repository.registered_file_ids(conn, [e.file_id for e in envelopes.values()])
        records = [repository.file_record(env, rel, silver_table_of(env.identity))
                   for rel, env in envelopes.items() if env.file_id not in known]
        repository.register_files(conn, records)
        registered += len(records)
        store.remove_journal_temp_files(journal)   # a write cut between its temp file and the link
        store.close_journal(journal)
    return registered


@dataclass(frozen=True)
class NotSent:
    """A planned request the run did not send, the skip kind it is counted under, and why."""

    kind: str
    reason: str


class RunStops:
    """What a run has stopped sending, and why: refusals that make the same requests pointless for the rest of it.

    - a refused key (`auth`, AUTH_REFUSALS_TO_STOP answers): every remaining request, `not_sent_key_refused`;
    - an exhausted quota (QUOTA_REFUSALS_TO_STOP consecutive quota refusals): every remaining request,
      `not_sent_quota_exhausted`; a later run, once the quota has reset, plans them again;
    - a 402 on one symbol: that ticker's remaining requests, `not_sent_symbol_not_in_plan`;
    - a 402 on an endpoint: that path's remaining requests, `not_sent_endpoint_not_in_plan`;
    - a 402 on another query parameter: that keymap entry's remaining requests, `not_sent_parameter_not_in_plan`.

    Thread-safe: workers ask `not_sent` before sending and `observe` each answer, so a stop takes effect for
    every request not yet on the wire. The refusals themselves stay Bronze error envelopes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key_refusals = 0
        self._quota_streak = 0
        self._run: NotSent | None = None
        self._tickers: dict[str, NotSent] = {}
        self._paths: dict[str, NotSent] = {}
        self._entries: dict[str, NotSent] = {}

    def not_sent(self, request: PlannedRequest, entry: KeymapEntry) -> NotSent | None:
        with self._lock:
            return (self._run or self._tickers.get(request.identity.ticker) or self._paths.get(request.path)
                    or self._entries.get(entry.asset_name))

    def observe(self, request: PlannedRequest, entry: KeymapEntry, envelopes: Sequence[BronzeEnvelope]) -> list[str]:
        """Record one request's answers; returns a message for each stop they trigger (to log and report)."""
        refused = next((env for env in envelopes if env.error_class), None)
        quota = next((env for env in envelopes if env.error_detail == QUOTA_EXHAUSTED), None)
        news: list[str] = []
        with self._lock:
            self._quota_streak = self._quota_streak + 1 if quota else 0
            if refused is None:
                return news
            if refused.error_class == "auth":
                self._key_refusals += 1
                if self._key_refusals >= AUTH_REFUSALS_TO_STOP and self._run is None:
                    self._run = NotSent("not_sent_key_refused",
                                        f"not sent: FMP refused the API key {self._key_refusals} times "
                                        f"({refused.error_message})")
                    news.append(self._run.reason)
            elif quota and self._quota_streak >= QUOTA_REFUSALS_TO_STOP and self._run is None:
                self._run = NotSent("not_sent_quota_exhausted",
                                    f"not sent: the FMP quota is exhausted ({self._quota_streak} consecutive "
                                    f"refusals, last: {quota.error_message}); a run after the quota resets fetches "
                                    "them")
                news.append(self._run.reason)
            detail, message = refused.error_detail, refused.error_message
            ticker = request.identity.ticker
            if detail == SYMBOL_NOT_IN_PLAN and ticker and ticker not in self._tickers:
                self._tickers[ticker] = NotSent("not_sent_symbol_not_in_plan",
                                                f"{ticker}: not sent: the FMP plan does not cover symbol {ticker} "
                                                f"({message})")
                news.append(self._tickers[ticker].reason)
            elif detail == ENDPOINT_NOT_IN_PLAN and request.path not in self._paths:
                self._paths[request.path] = NotSent("not_sent_endpoint_not_in_plan",
                                                    f"{request.path}: not sent: the FMP plan does not include this "
                                                    f"endpoint ({message})")
                news.append(self._paths[request.path].reason)
            elif detail == PARAMETER_NOT_IN_PLAN and entry.asset_name not in self._entries:
                self._entries[entry.asset_name] = NotSent("not_sent_parameter_not_in_plan",
                                                          f"{entry.asset_name}: not sent: the FMP plan refuses a query "
                                                          f"parameter of this dataset ({message})")
                news.append(self._entries[entry.asset_name].reason)
        return news


UNREADABLE_RUN_ID = "bronze-scan"


def _unreadable_record(store: BronzeStore, rel: str, file_id: str, reason: str,
                       silver_table_of: Callable[[DatasetIdentity], str | None]) -> dict:
    """The ledger row of a Bronze file that cannot be read as its envelope: identity from its path, unpromotable,
    so it is listed (with the reason) and never promoted and never counted as coverage, and stays on disk."""
    parts = rel.split("/")   # <source>/<domain>/<dataset>[__<disc>]/<ticker or _global>/<day>/<file_id>.json
    source, domain, dataset_dir, ticker_dir = parts[:4] if len(parts) == 6 else ("unknown", "unknown", "unknown", "")
    dataset, _, discriminator = dataset_dir.partition("__")
    ticker = "" if ticker_dir == "_global" else ticker_dir
    identity = DatasetIdentity(domain, source, dataset, discriminator, ticker)
    try:
        size, mtime = store.size(rel) or 0, store.modified(rel) or dt.datetime.now(dt.UTC)
    except OSError:
        size, mtime = 0, dt.datetime.now(dt.UTC)
    return {
        "run_id": UNREADABLE_RUN_ID, "file_id": file_id, "domain": domain, "source": source, "dataset": dataset,
        "discriminator": discriminator, "ticker": ticker, "bronze_path": rel, "request_path": None, "page": None,
        "as_of": None, "window_from": None, "window_to": None, "status_code": None, "error_class": "invalid_body",
        "error_message": f"unreadable Bronze file {rel}: {reason}"[:2000], "bronze_rows": 0, "bytes": size,
        "body_sha256": None, "coverage_from": None, "coverage_to": None,
        "fetched_at": mtime.replace(tzinfo=None), "elapsed_ms": None,
        "can_promote": False, "silver_table": silver_table_of(identity),
    }


def register_unknown_files(conn, store: BronzeStore, silver_table_of: Callable[[DatasetIdentity], str | None],
                           batch: int = 5000, problems: list[str] | None = None) -> int:
    """Full scan: register every Bronze file the ledger does not know (a restored Bronze folder, a lost ledger).

    A file that is not a readable envelope, or whose envelope names another file id, is registered too, as an
    unpromotable `invalid_body` row whose message names the file and the reason (appended to `problems`): it
    stays on disk and in the ledger for an operator to look at. Costs a walk of the whole Bronze tree, so it
    belongs to repair and replay, not to every run.
    """
    known = {r[0] for r in conn.execute("SELECT file_id FROM ops.file_ingestions").fetchall()}
    records: list[dict] = []
    registered = 0
    for rel in store.iter_files():
        file_id = rel.rsplit("/", 1)[-1].removesuffix(".json")
        if file_id in known:
            continue
        try:
            env = store.read(rel)
            reason = None if env.file_id == file_id else f"its envelope names file id {env.file_id!r}, not its own name"
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            empty = store.size(rel) == 0
            reason = "empty file (0 bytes)" if empty else f"not a readable Bronze envelope ({type(exc).__name__}: {exc})"
        if reason is not None:
            record = _unreadable_record(store, rel, file_id, reason, silver_table_of)
            log.error("%s; registered as unpromotable", record["error_message"])
            if problems is not None:
                problems.append(record["error_message"])
            records.append(record)
            continue
        records.append(repository.file_record(env, rel, silver_table_of(env.identity)))
        if len(records) >= batch:
            registered += repository.register_files(conn, records)
            records = []
    registered += repository.register_files(conn, records)
    return registered


def run_bronze(*, entries: Sequence[KeymapEntry], tickers: Iterable[str], warehouse: Warehouse, store: BronzeStore,
               client: FmpClient, run_id: str, today: dt.date, fmp_plan: str | None, source_mode: str,
               max_concurrency: int = 8, job: str | None = None,
               log_fn: Callable[[str], None] | None = None,
               orphan_entries: Sequence[KeymapEntry] | None = None) -> BronzeRunReport:
    """Plan, fetch, write and register Bronze for `entries` (× `tickers` for per-ticker entries).

    `orphan_entries` (default `entries`): the entries whose files a crashed process may have left unregistered,
    normally the whole keymap, because the first step after a crash registers the orphans of every step.
    """
    say = log_fn or log.info
    # before anything is sent or written: a hostile or empty ticker never reaches the wire or the store
    tickers = [validate_part("ticker", t) for t in tickers]
    entries = list(entries)
    by_identity = {e.identity: e for e in [*(orphan_entries or ()), *entries]}

    def silver_table_of(identity: DatasetIdentity) -> str | None:
        entry = by_identity.get(identity.without_ticker())
        return entry.silver.table if entry else None

    # 1. short transaction: repair, then read the watermarks we plan from
    with warehouse.transaction() as conn:
        orphans = register_orphans(conn, store, silver_table_of)
        coverage = planning_coverage(conn, entries)
        repository.record_run(conn, run_id, job=job, source_mode=source_mode, status="running")
    if orphans:
        say(f"registered {orphans} Bronze file(s) left unregistered by an earlier crashed run")

    decisions = plan(entries, tickers, coverage, today, fmp_plan)
    reports = {e.asset_name: EntryReport(e) for e in entries}
    tasks: list[tuple[PlannedRequest, KeymapEntry]] = []
    for d in decisions:
        rep = reports[d.entry.asset_name]
        if d.due:
            rep.due += 1
            tasks.extend((r, d.entry) for r in d.requests)
        else:
            rep.skipped[d.skip_kind or "not_due"] += 1
            if len(rep.skip_reasons) < 3:
                rep.skip_reasons.append(f"{d.identity.ticker or d.identity.key}: {d.reason}")
    say(f"planned {len(tasks)} request(s) for {sum(r.due for r in reports.values())} due identit(ies); "
        f"{sum(sum(r.skipped.values()) for r in reports.values())} skipped (as of {today}, source {source_mode})")

    # 2. fetch concurrently; write files in the workers; register from this thread in short batches
    journal = store.journal_name(run_id)
    pending: list[dict] = []
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal pending, last_flush
        if pending:
            with warehouse.transaction() as conn:
                repository.register_files(conn, pending)
            pending = []
        last_flush = time.monotonic()

    # A refused key, an exhausted quota or a plan that lacks a symbol or an endpoint refuses every similar
    # request alike: what they make pointless is not sent (reported as skipped), instead of hundreds of refusals.
    stops = RunStops()

    def work(request: PlannedRequest, entry: KeymapEntry) -> NotSent | tuple[list[tuple[BronzeEnvelope, str]], list[str]]:
        not_sent = stops.not_sent(request, entry)
        if not_sent is not None:
            return not_sent
        envelopes = fetch_request(client, request, entry, run_id)
        news = stops.observe(request, entry, envelopes)
        return [(env, store.write(env, journal)) for env in envelopes], news

    done_tasks = 0
    with ThreadPoolExecutor(max_workers=max(1, max_concurrency), thread_name_prefix="bronze") as pool:
        futures: dict[Future, tuple[PlannedRequest, KeymapEntry]] = {}
        queue = iter(tasks)
        for _ in range(max(1, max_concurrency) * 2):
            item = next(queue, None)
            if item is None:
                break
            futures[pool.submit(work, *item)] = item
        try:
            while futures:
                finished, _ = wait(futures, timeout=REGISTER_EVERY_SECONDS, return_when=FIRST_COMPLETED)
                for fut in finished:
                    request, entry = futures.pop(fut)
                    rep = reports[entry.asset_name]
                    outcome = fut.result()
                    if isinstance(outcome, NotSent):
                        rep.skipped[outcome.kind] += 1
                        rep.add_skip_reason(outcome.reason)
                        outcome = ([], [])
                    written, news = outcome
                    for message in news:
                        log.warning("%s: %s", entry.asset_name, message)
                        say(f"{entry.asset_name}: {message}")
                        rep.add_skip_reason(message)
                    for env, rel in written:
                        rep.requests += 1
                        rep.add_file(env)
                        pending.append(repository.file_record(env, rel, entry.silver.table))
                    done_tasks += 1
                    item = next(queue, None)
                    if item is not None:
                        futures[pool.submit(work, *item)] = item
                if len(pending) >= REGISTER_EVERY_FILES or time.monotonic() - last_flush >= REGISTER_EVERY_SECONDS:
                    flush()
                    if tasks:
                        say(f"progress: {done_tasks}/{len(tasks)} request(s) done")
        finally:
            flush()
    store.close_journal(journal)
    for name, rep in reports.items():
        not_sent = {kind: n for kind, n in rep.skipped.items() if kind.startswith("not_sent_")}
        if not_sent:
            say(f"{name}: not sent this run: {', '.join(f'{n} {kind}' for kind, n in sorted(not_sent.items()))}")

    report = BronzeRunReport(run_id, source_mode, reports, orphans)
    failed = report.hard_failures
    with warehouse.transaction() as conn:
        repository.record_run(
            conn, run_id, job=job, source_mode=source_mode,
            status="partial" if failed else "success",
            requests=report.requests,
            skipped=sum(sum(r.skipped.values()) for r in reports.values()),
            files=sum(r.files for r in reports.values()),
            rows=sum(r.rows for r in reports.values()),
            errors=sum(sum(r.failed.values()) for r in reports.values()),
            message=None if report.requests else "nothing due: every dataset is within its cadence",
            finished=True,
        )
    return report


def dry_run(*, entries: Sequence[KeymapEntry], tickers: Iterable[str], conn, today: dt.date,
            fmp_plan: str | None) -> list[PlanDecision]:
    """What is due, and why not, without fetching anything (read-only connection is enough)."""
    return plan(entries, tickers, planning_coverage(conn, entries), today, fmp_plan)


def planning_coverage(conn, entries: Sequence[KeymapEntry]) -> dict[DatasetIdentity, repository.Coverage]:
    """Good coverage of every identity of `entries` (every ticker of per-ticker entries): what planning reads."""
    coverage: dict[DatasetIdentity, repository.Coverage] = {}
    for entry in entries:
        coverage.update(repository.latest_bronze_coverage(conn, entry.identity, ticker_wildcard=entry.per_ticker))
    return coverage
