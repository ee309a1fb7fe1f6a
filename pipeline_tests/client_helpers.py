"""Test and benchmark helpers around the FMP client (production fetching goes through pipeline.bronze.fetch)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from pipeline.fmp.client import FetchResult, FmpClient


def fetch_many(
    client: FmpClient, requests: Iterable[tuple[str, Mapping[str, str], str]]
) -> Iterator[tuple[int, FetchResult]]:
    """Fetch concurrently (at most client.max_concurrency in flight), yielding (index, result) as each completes.

    Requests are pulled from the iterable lazily, so a long plan is never materialised as futures at once.
    """
    pending: dict[Future[FetchResult], int] = {}
    source = iter(enumerate(requests))
    executor = ThreadPoolExecutor(max_workers=client.max_concurrency, thread_name_prefix="fmp-fetch")
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < 2 * client.max_concurrency:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                index, (path, params, expect) = item
                pending[executor.submit(client.fetch, path, params, expect=expect)] = index
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
