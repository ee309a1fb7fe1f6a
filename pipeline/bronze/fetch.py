"""Fetch Bronze: plan, call the API concurrently, write immutable files, register them in the ledger.

No DuckDB connection is open while requests are in flight: the ledger is read once before fetching (and
orphans of a crashed run are registered then), and new files are registered in short batched transactions
from the collecting thread. A crash between writing a file and registering it is repaired by
`register_orphans` on the next run, through the store's journal.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from pipeline import stopping
from pipeline.bronze import bulk
from pipeline.bronze.budget import (
    Allocation,
    RunBudget,
    allocate,
    day_tickers,
    deferral_summary,
    record_deferred,
)
from pipeline.bronze.bulk_fanout import derived_envelopes
from pipeline.bronze.csv_body import csv_view
from pipeline.bronze.delisted import frozen_tickers
from pipeline.bronze.envelope import BronzeEnvelope, RequestInfo, body_sha256, coverage_of, file_record, new_file_id
from pipeline.bronze.planner import PlanDecision, PlannedRequest, expand_query, plan
from pipeline.bronze.recovery import register_orphans
from pipeline.bronze.refresh import RefreshPolicy, build_policy, due_summary
from pipeline.bronze.refusals import NotSent, RunStops
from pipeline.bronze.report import BronzeRunReport, EntryReport
from pipeline.bronze.store import BronzeStore, StoredFile, validate_part
from pipeline.fmp.client import FetchResult, FmpClient
from pipeline.keymap.model import DatasetIdentity, KeymapEntry
from pipeline.ledger_types import Coverage
from pipeline.ops import file_ingestions, runs
from pipeline.warehouse.connection import Warehouse

log = logging.getLogger("pipeline.bronze")

REGISTER_EVERY_FILES = 500
REGISTER_EVERY_SECONDS = 5.0
STOP_WAIT_S = 3.0  # after SIGTERM/SIGINT, how long requests already in flight may take to end


def _envelope(
    result: FetchResult,
    request: PlannedRequest,
    entry: KeymapEntry,
    run_id: str,
    *,
    page: int | None = None,
    incomplete: str | None = None,
    redact: Callable[[str], str] = str,
) -> BronzeEnvelope:
    content = result.content if result.ok else None
    cov_from, cov_to = coverage_of(content, entry.recipe.date_field)
    file_id = new_file_id()
    csv = csv_view(result, entry, file_id) if result.ok and entry.recipe.format == "csv" else None
    if csv is not None:
        content, cov_from, cov_to = None, csv.coverage_from, csv.coverage_to
    ok = result.ok and (csv is None or csv.problem is None)
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
        file_id=file_id,
        run_id=run_id,
        identity=request.identity,
        request=RequestInfo(
            path=result.path,
            url=result.url,
            params=dict(result.params),
            page=page,
            as_of=request.as_of,
            window_from=request.window_from,
            window_to=request.window_to,
        ),
        fetched_at=result.fetched_at,
        elapsed_ms=result.elapsed_ms,
        attempts=result.attempts,
        status_code=result.status_code,
        headers=dict(result.headers),
        body_sha256=body_sha256(result.body),
        bytes=len(result.body),
        wire_bytes=result.wire_bytes,
        content_format=result.content_format,
        content=content,
        row_count=(csv.rows if csv is not None else result.row_count) if ok else 0,
        coverage_from=cov_from if ok else None,
        coverage_to=cov_to if ok else None,
        error_class=result.error_class if csv is None else csv.error_class,
        error_message=result.error_message if csv is None else csv.problem,
        error_detail=result.error_detail,
        can_promote=ok and incomplete is None,
        body_text=body_text,
        notes=tuple(notes),
        body_file=csv.body_file if csv is not None else None,
        raw_body=result.body if csv is not None and csv.body_file else None,
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
            log.warning(
                "%s: %s rows reached the row cap for %s..%s; splitting the window",
                request.identity,
                result.row_count,
                request.window_from,
                request.window_to,
            )
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
            log.warning(
                "%s: page %s repeats an earlier page; the API ignores %r, stopping",
                request.identity,
                page,
                pagination.param,
            )
            break  # the repeated page is not data: drop it
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


def run_bronze(
    *,
    entries: Sequence[KeymapEntry],
    tickers: Iterable[str],
    warehouse: Warehouse,
    store: BronzeStore,
    client: FmpClient,
    run_id: str,
    today: dt.date,
    fmp_plan: str | None,
    source_mode: str,
    max_concurrency: int = 8,
    job: str | None = None,
    log_fn: Callable[[str], None] | None = None,
    orphan_entries: Sequence[KeymapEntry] | None = None,
    budget: RunBudget | None = None,
    sweep_days: int | None = None,
    universe: Callable[[object], Sequence[str]] | None = None,
) -> BronzeRunReport:
    """Plan, fetch, write and register Bronze for `entries` (× `tickers` for per-ticker entries).

    `orphan_entries` (default `entries`): the entries whose files a crashed process may have left unregistered,
    normally the whole keymap, because the first step after a crash registers the orphans of every step.
    `budget`: send only what the request budget pays for, most valuable work of the whole day first
    (`pipeline.bronze.budget`); the rest is deferred, visibly, to the next run.
    `sweep_days`: plan event-driven and cross-check entries with the refresh policy (`pipeline.bronze.refresh`, the
    safety sweep's period); None plans every entry on its cadence. `universe(conn)`: the day's whole universe (default
    `tickers`), which tells a calendar row of a ticker in another step from one of a symbol outside the universe.
    """
    say = log_fn or log.info
    # before anything is sent or written: a hostile or empty ticker never reaches the wire or the store
    tickers = [validate_part("ticker", t) for t in tickers]
    entries = list(entries)
    by_identity = {e.identity: e for e in [*(orphan_entries or ()), *entries]}

    def silver_table_of(identity: DatasetIdentity) -> str | None:
        entry = by_identity.get(identity.without_ticker())
        return entry.silver.table if entry else None

    # 1. short transaction: refuse a warehouse holding the other source's data, repair, then read the watermarks
    # we plan from. The check is here, where every launch path (UI, daemon, schedule, CLI) fetches.
    # bulk entries planned by another step may replace requests of this one (pipeline.bronze.bulk)
    consulted = [e for e in (orphan_entries or ()) if e.recipe.bulk is not None and e not in entries]
    with warehouse.transaction() as conn:
        runs.check_source(conn, source_mode, warehouse.label)
        orphans = register_orphans(conn, store, silver_table_of)
        frozen = frozen_tickers(conn, today)
        policy = None
        if sweep_days is not None and any(e.per_ticker for e in entries):
            members = list(universe(conn)) if universe is not None else tickers
            keymap_entries = list(orphan_entries or entries)
            policy = build_policy(
                conn, keymap_entries, today, sorted({*tickers, *members}), fmp_plan, sweep_days, members
            )
        if budget is None:
            coverage, allocation = planning_coverage(conn, entries + consulted, today, tickers), None
        else:  # the day's coverage holds this step's
            coverage, allocation = day_allocation(conn, budget, tickers, today, fmp_plan, policy)
        fanout = bulk.fanout_targets(conn, entries, [*entries, *(orphan_entries or ())], today, fmp_plan)
        runs.record_run(conn, run_id, job=job, source_mode=source_mode, status="running")
    if orphans:
        say(f"registered {orphans} Bronze file(s) left unregistered by an earlier crashed run")

    decisions = plan(entries, tickers, coverage, today, fmp_plan, frozen, policy=policy, also=consulted)
    if policy is not None:
        for line in [policy.starter_fallback, *policy.notes(), *due_summary(decisions)]:
            if line:
                say(line)
    reports = {e.asset_name: EntryReport(e) for e in entries}
    tasks: list[tuple[PlannedRequest, KeymapEntry]] = []
    for d in decisions:
        rep = reports[d.entry.asset_name]
        if d.identity.ticker:
            rep.ticker(d.identity.ticker).due += int(d.due)
        if d.due:
            rep.due += 1
            tasks.extend((r, d.entry) for r in d.requests)
        else:
            rep.skipped[d.skip_kind or "not_due"] += 1
            if len(rep.skip_reasons) < 3:
                rep.skip_reasons.append(f"{d.identity.ticker or d.identity.key}: {d.reason}")
    say(
        f"planned {len(tasks)} request(s) for {sum(r.due for r in reports.values())} due identit(ies); "
        f"{sum(sum(r.skipped.values()) for r in reports.values())} skipped (as of {today}, source {source_mode})"
    )
    meter = None
    if allocation is not None:
        tasks, deferred, meter = allocation.split(tasks)
        record_deferred(reports, tasks, deferred)
        if deferred:
            say(f"request budget: {len(deferred)} request(s) deferred to the next run: {allocation.binding}")

    # 2. fetch concurrently; write files in the workers; register from this thread in short batches
    journal = store.journal_name(run_id)
    pending: list[dict] = []
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal pending, last_flush
        if pending:
            with warehouse.transaction() as conn:
                file_ingestions.register_files(conn, pending)
            pending = []
        last_flush = time.monotonic()

    # A refused key, an exhausted quota or a plan that lacks a symbol or an endpoint refuses every similar
    # request alike: what they make pointless is not sent (reported as skipped), instead of hundreds of refusals.
    stops = RunStops(unreachable=lambda: client.unreachable)

    def work(
        request: PlannedRequest, entry: KeymapEntry
    ) -> NotSent | tuple[list[tuple[BronzeEnvelope, StoredFile, str | None]], list[str]]:
        not_sent = stops.not_sent(request, entry) or (meter.not_sent(entry) if meter else None)
        if not_sent is not None:
            return not_sent
        envelopes = fetch_request(client, request, entry, run_id)
        news = stops.observe(request, entry, envelopes)
        if meter:
            meter.observe(envelopes)
        written = [(env, store.write(env, journal), entry.silver.table) for env in envelopes]
        if entry.asset_name in fanout:  # a bulk day's rows as the per-ticker files it replaces (bulk_fanout)
            replaced, eligible, newest = fanout[entry.asset_name]
            for env in envelopes if request.window_from == newest else ():  # only the newest day is as traded
                for derived in derived_envelopes(env, env.raw_body or b"", entry, replaced, eligible):
                    written.append((derived, store.write(derived, journal), None))
        return written, news

    done_tasks = 0

    def fanout_name(entry: KeymapEntry) -> str:
        return fanout[entry.asset_name][0].asset_name

    def collect(fut: Future) -> None:
        """Account for one finished request: its skip, its stop messages, its files (registered at the next flush)."""
        nonlocal done_tasks
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
        derived = 0
        for env, stored, table in written:
            if table is None:  # derived from a bulk file: the replaced entry's table, not a request of this entry
                derived += 1
                table = fanout[entry.asset_name][0].silver.table
            else:
                rep.add_file(env)
            pending.append(file_record(env, stored.relative, table, stored.md5))
        if derived:
            say(f"{entry.asset_name}: {derived} per-ticker file(s) derived from the bulk day for {fanout_name(entry)}")
        done_tasks += 1

    pool = ThreadPoolExecutor(max_workers=max(1, max_concurrency), thread_name_prefix="bronze")
    futures: dict[Future, tuple[PlannedRequest, KeymapEntry]] = {}
    queue = iter(tasks)
    abandoned = 0
    try:
        for _ in range(max(1, max_concurrency) * 2):
            item = next(queue, None)
            if item is None:
                break
            futures[pool.submit(work, *item)] = item
        while futures:
            finished, _ = wait(futures, timeout=REGISTER_EVERY_SECONDS, return_when=FIRST_COMPLETED)
            for fut in finished:
                collect(fut)
                item = next(queue, None)
                if item is not None:
                    futures[pool.submit(work, *item)] = item
            if len(pending) >= REGISTER_EVERY_FILES or time.monotonic() - last_flush >= REGISTER_EVERY_SECONDS:
                flush()
                if tasks:
                    say(f"progress: {done_tasks}/{len(tasks)} request(s) done")
    except BaseException as exc:
        if isinstance(exc, Exception):
            raise  # a bug: the requests in flight end, what they wrote is registered (below), the error stands
        # SIGTERM / SIGINT (through Dagster, or a `Stopped`), or a run terminated from the UI
        why = stopping.reason() or f"interrupted ({type(exc).__name__})"
        stops.stop_all(NotSent("not_sent_stopped", f"not sent: the run was {why}"))
        client.stop_retrying()
        abandoned = _wind_down(futures, collect)
        flush()
        with warehouse.transaction() as conn:
            runs.record_run(
                conn,
                run_id,
                job=job,
                source_mode=source_mode,
                status="failed",
                finished=True,
                message=f"{why}: {done_tasks} of {len(tasks)} request(s) done, the files written are registered",
            )
        say(
            f"{why}: {done_tasks} of {len(tasks)} request(s) done, their files registered; nothing more sent"
            + (f"; {abandoned} request(s) in flight abandoned" if abandoned else "")
        )
        raise
    finally:
        pool.shutdown(wait=not abandoned, cancel_futures=True)
        flush()
    store.close_journal(journal)  # only once everything written is registered: after a stop or an error the next
    # run registers from the journal what a request still in flight wrote
    for name, rep in reports.items():
        not_sent = {kind: n for kind, n in rep.skipped.items() if kind.startswith("not_sent_")}
        if not_sent:
            say(f"{name}: not sent this run: {', '.join(f'{n} {kind}' for kind, n in sorted(not_sent.items()))}")

    report = BronzeRunReport(run_id, source_mode, reports, orphans, stop=stops.run_stop)
    failed = report.hard_failures
    deferred_count, deferred_line = deferral_summary(reports)
    if deferred_line:
        log.warning("%s", deferred_line)
    with warehouse.transaction() as conn:
        runs.record_run(
            conn,
            run_id,
            job=job,
            source_mode=source_mode,
            status="partial" if failed else "success",
            requests=report.requests,
            skipped=sum(sum(r.skipped.values()) for r in reports.values()),
            files=sum(r.files for r in reports.values()),
            rows=sum(r.rows for r in reports.values()),
            errors=sum(sum(r.failed.values()) for r in reports.values()),
            message=deferred_line or (None if report.requests else "nothing due: every dataset is within its cadence"),
            finished=True,
            deferred=deferred_count,
        )
    return report


def _wind_down(futures: dict[Future, object], collect: Callable[[Future], None]) -> int:
    """After a stop: cancel the requests not started, give those in flight STOP_WAIT_S to end (their files are
    collected for registration), and return how many are abandoned."""
    for fut in list(futures):
        if fut.cancel():
            futures.pop(fut)
    deadline = time.monotonic() + STOP_WAIT_S
    while futures and (left := deadline - time.monotonic()) > 0:
        finished, _ = wait(futures, timeout=left, return_when=FIRST_COMPLETED)
        for fut in finished:
            collect(fut)
    return len(futures)


def day_allocation(
    conn,
    budget: RunBudget,
    tickers: Sequence[str],
    today: dt.date,
    fmp_plan: str | None,
    policy: RefreshPolicy | None = None,
) -> tuple[dict[DatasetIdentity, Coverage], Allocation]:
    """The whole day's remaining work (every keymap entry; this step's tickers and the rest of the universe, sampled
    when large), in the budget's order, and the prefix of it the budget pays for (`pipeline.bronze.budget`); with
    the coverage it was planned from (this step's included)."""
    planned, weights = day_tickers(budget.universe(conn), tickers)
    coverage = planning_coverage(conn, budget.entries, today, planned)
    day = plan(budget.entries, planned, coverage, today, fmp_plan, frozen_tickers(conn, today), policy=policy)
    return coverage, allocate(conn, budget.limits, day, budget.now(), weights)


def dry_run(
    *,
    entries: Sequence[KeymapEntry],
    tickers: Iterable[str],
    conn,
    today: dt.date,
    fmp_plan: str | None,
    policy: RefreshPolicy | None = None,
) -> list[PlanDecision]:
    """What is due, and why not, without fetching anything (read-only connection is enough)."""
    tickers = list(tickers)
    coverage = planning_coverage(conn, entries, today, tickers)
    return plan(entries, tickers, coverage, today, fmp_plan, frozen_tickers(conn, today), policy=policy)


def planning_coverage(
    conn, entries: Sequence[KeymapEntry], today: dt.date, tickers: Sequence[str] | None = None
) -> dict[DatasetIdentity, Coverage]:
    """Good coverage of every identity of `entries` (every ticker of per-ticker entries, or only `tickers`) as of
    `today`: what planning reads (nothing dated ahead of `today` counts). One scan of the ledger for all entries:
    on a large ledger that costs half of one scan per entry."""
    by_identity = {e.identity: e for e in entries}
    found = file_ingestions.latest_bronze_coverage(conn, today=today, tickers=tickers)
    return {
        ident: cov
        for ident, cov in found.items()
        if (entry := by_identity.get(ident.without_ticker())) is not None and entry.matches_identity(ident)
    }
