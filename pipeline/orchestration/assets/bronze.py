"""Bronze assets: one per keymap entry (`bronze/<domain>/<dataset>[__<disc>]`), in two multi-assets (per ticker,
partitioned by `tickers`; global, unpartitioned), so that one step fetches many datasets and tickers concurrently
through one client, instead of one process per asset and ticker. The fetching is `pipeline.bronze.fetch`."""

# no `from __future__ import annotations`: Dagster reads the step's parameter annotations at runtime
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext

import dagster as dg
import httpx
from dagster import AssetExecutionContext

from pipeline.bronze.budget import RunBudget
from pipeline.bronze.fetch import run_bronze
from pipeline.bronze.refusals import UNREACHABLE_STOP
from pipeline.bronze.report import BronzeRunReport
from pipeline.bronze.store import BronzeStore
from pipeline.keymap.model import Keymap, KeymapEntry
from pipeline.orchestration.assets.keys import (
    bronze_key,
    code_version,
    daily_freshness,
    entry_description,
    entry_fingerprint,
    entry_tags,
    layer_group,
)
from pipeline.orchestration.assets.metadata import bronze_metadata
from pipeline.orchestration.assets.steps import (
    close_abandoned,
    interrupts_end_the_step,
    materialize_partitions,
    partition_tickers,
)
from pipeline.orchestration.partitions import TICKER_BACKFILL_POLICY, tickers_partitions
from pipeline.orchestration.pools import pool_slot, pool_tags
from pipeline.orchestration.resources import FmpResource
from pipeline.orchestration.warehouse_resource import WarehouseResource
from pipeline.settings import Settings
from pipeline.universe import resolve_universe
from pipeline.warehouse.connection import WarehouseBusy

FMP_POOL = "fmp_api"  # fetching steps: two runs together cannot exceed the rate limit

# A Bronze step fails after the client's own per-request retries. When every failure was transient (network,
# rate limit, busy warehouse) the step is retried after a growing pause; only what is still due is fetched again.
BRONZE_RETRY = dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
TRANSIENT_ERRORS = frozenset({"transport", "rate_limited"})
# In the step failure's metadata when the API could not be reached at all: `pipeline run` starts no further fetch.
UNREACHABLE_FAILURE = {"stopped": "api_unreachable"}


def build_bronze_asset(
    name: str,
    entries: Sequence[KeymapEntry],
    settings: Settings,
    per_ticker: bool,
    all_entries: Sequence[KeymapEntry] = (),
) -> dg.AssetsDefinition:
    specs = [
        dg.AssetSpec(
            bronze_key(e),
            group_name=layer_group("bronze", e.domain),
            freshness_policy=daily_freshness([e]),
            description=entry_description(e),
            kinds={"fmp", "json"},
            tags={"layer": "bronze", **entry_tags(e)},
            skippable=True,
            code_version=code_version(entry_fingerprint(e)),
            metadata={
                "fmp_path": e.recipe.path,
                "docs_url": dg.MetadataValue.url(e.docs_url),
                "min_age_days": e.recipe.min_age_days,
                "ticker_scope": e.ticker_scope,
            },
        )
        for e in entries
    ]
    by_key = {bronze_key(e): e for e in entries}

    @dg.multi_asset(
        name=name,
        specs=specs,
        can_subset=True,
        op_tags=pool_tags(FMP_POOL),  # claimed in the step body (orchestration/pools.py), which sleeps while it waits
        partitions_def=tickers_partitions if per_ticker else None,
        backfill_policy=TICKER_BACKFILL_POLICY if per_ticker else None,
        retry_policy=BRONZE_RETRY,
    )
    def _bronze(
        context: AssetExecutionContext, warehouse: WarehouseResource, fmp: FmpResource
    ) -> Iterator[dg.MaterializeResult]:
        selected = [by_key[k] for k in sorted(context.selected_asset_keys, key=str) if k in by_key]
        tickers = partition_tickers(context) or []
        if fmp.uses_sample_source:
            context.log.info("fetching from the bundled sample source (no network, no key)")
        with (
            interrupts_end_the_step(),
            pool_slot(context, lambda dead: close_abandoned(warehouse.warehouse, dead)),
            fmp.client(settings) as client,
            _only_transient_errors_retry(),
        ):
            report = run_bronze(
                entries=selected,
                tickers=tickers,
                warehouse=warehouse.warehouse,
                store=BronzeStore.at(settings.bronze_location),
                client=client,
                run_id=context.run_id,
                today=settings.today(),
                fmp_plan=fmp.plan,
                source_mode=fmp.source_mode,
                max_concurrency=fmp.max_concurrency,
                job=context.job_name,
                log_fn=context.log.info,
                orphan_entries=list(all_entries) or None,  # a crash may leave files of the other Bronze step
                budget=day_budget(fmp, settings, all_entries or entries),
                sweep_days=settings.sweep_days,  # event-driven refresh (pipeline.bronze.refresh)
                universe=lambda conn: resolve_universe(settings, lambda: nullcontext(conn))[0],
            )
        for entry in selected:
            rep = report.entries[entry.asset_name]
            if rep.refused:
                context.log.warning(f"{bronze_key(entry).to_user_string()}: {rep.skip_reasons[0]}")
            if not per_ticker:
                yield dg.MaterializeResult(asset_key=bronze_key(entry), metadata=bronze_metadata(rep, fmp))
                continue
            counts = {t: rep.ticker(t).as_metadata() for t in tickers}
            changed = {t for t in tickers if rep.ticker(t).anything}
            context.log.info(
                f"{bronze_key(entry).to_user_string()}: due for {len(changed)} of {len(tickers)} ticker(s); "
                f"{rep.requests} request(s), {rep.files} file(s), {rep.rows} row(s), {sum(rep.failed.values())} failed"
            )
            result = materialize_partitions(context, bronze_key(entry), counts, changed, {"source": fmp.source_label})
            if result is not None:
                yield result
        if report.unreachable:
            raise dg.Failure(description=unreachable_message(report), allow_retries=False, metadata=UNREACHABLE_FAILURE)
        if report.hard_failures:
            kinds = report.failure_kinds
            transient = kinds <= TRANSIENT_ERRORS
            raise dg.Failure(
                description=f"{report.hard_failures} Bronze request(s) failed after retries "
                f"({', '.join(sorted(kinds))}); "
                "everything that succeeded was written and registered"
                + ("; the step is retried later" if transient else "")
                + ". First failures:\n"
                + "\n".join(report.first_failures(10)),
                allow_retries=transient,
            )

    return _bronze


def day_budget(fmp: FmpResource, settings: Settings, entries: Sequence[KeymapEntry]) -> RunBudget | None:
    """The request budget of a Bronze step (`pipeline.bronze.budget`), None when no limit applies: the limits of the
    `fmp` resource, planned over the whole keymap and the whole universe, whichever step this is."""
    limits = fmp.budget_limits()
    if not limits.active:
        return None
    return RunBudget(limits, lambda conn: resolve_universe(settings, lambda: nullcontext(conn))[0], entries)


def unreachable_message(report: BronzeRunReport) -> str:
    """The one message of a step that found the API unreachable: which API, why, and what was kept."""
    not_sent = sum(r.skipped[UNREACHABLE_STOP] for r in report.entries.values())
    why = report.stop.reason.removeprefix("not sent: ") if report.stop else "the FMP API is unreachable"
    return (
        f"{why}. Nothing more was sent: {not_sent} request(s) not sent; the {report.requests} error envelope(s) "
        "written are registered. Check the network and FMP_BASE_URL, then run again."
    )


@contextmanager
def _only_transient_errors_retry() -> Iterator[None]:
    """Let the step's retry policy act on transient errors only: anything else is a bug or bad input, and
    fails the step for good (with the original error as its cause)."""
    try:
        yield
    except dg.Failure:
        raise
    except (WarehouseBusy, httpx.TransportError):
        raise
    except Exception as exc:
        raise dg.Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc


def build_bronze_assets(keymap: Keymap, settings: Settings) -> list[dg.AssetsDefinition]:
    out = []
    per_ticker = list(keymap.per_ticker_entries())
    global_ = list(keymap.global_entries())
    everything = list(keymap)
    if per_ticker:
        out.append(
            build_bronze_asset("bronze_per_ticker", per_ticker, settings, per_ticker=True, all_entries=everything)
        )
    if global_:
        out.append(build_bronze_asset("bronze_global", global_, settings, per_ticker=False, all_entries=everything))
    return out
