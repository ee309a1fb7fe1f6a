"""What the API key has spent, read from `ops.file_ingestions`: bytes over the trailing 30 days, requests and bytes
today, and each dataset's history of response sizes (what the request budget estimates the next run from).

What counts, as closely as we can know what FMP counts (the reference notes on the FMP API, section 3.1, say
"bandwidth, trailing 30 days" and nothing about compression): per file, the larger of `bytes` (the body as decoded,
what the envelope parsed) and `wire_bytes` (what crossed the wire for the request, gzip-compressed as FMP sends it,
every attempt included). FMP may count either; the larger never undercounts. Requests are `attempts` (every call FMP
saw, retries included; files registered before the column existed count once). A day is the New York calendar day
of the fetch, the 30 days are counted back from now: both follow the real clock, not PIPELINE_AS_OF, because FMP's
counters do.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb

from pipeline.fmp.plans import BANDWIDTH_WINDOW_DAYS
from pipeline.keymap.model import DatasetIdentity
from pipeline.settings import MARKET_TZ as NEW_YORK

COUNTED_BYTES = "greatest(coalesce(bytes, 0), coalesce(wire_bytes, 0))"
COUNTED_REQUESTS = "coalesce(attempts, 1)"


@dataclass(frozen=True)
class Usage:
    """What the key spent, as of `now`."""

    now: dt.datetime  # UTC, aware
    day: dt.date  # the New York day `now` falls on
    bytes_30d: int
    requests_30d: int
    bytes_today: int
    requests_today: int


USAGE_SQL = f"""
    SELECT coalesce(sum({COUNTED_BYTES}), 0),
           coalesce(sum({COUNTED_REQUESTS}), 0),
           coalesce(sum({COUNTED_BYTES}) FILTER (WHERE fetched_at >= $day_start), 0),
           coalesce(sum({COUNTED_REQUESTS}) FILTER (WHERE fetched_at >= $day_start), 0)
    FROM ops.file_ingestions
    WHERE fetched_at >= least($window_start, $day_start) AND fetched_at <= $now
"""


def usage(conn: duckdb.DuckDBPyConnection, now: dt.datetime) -> Usage:
    """Bytes of the trailing 30 days and requests and bytes of today (New York), counted as the module says."""
    now = now.astimezone(dt.UTC)
    day = now.astimezone(NEW_YORK).date()
    day_start = dt.datetime.combine(day, dt.time(), NEW_YORK).astimezone(dt.UTC)

    def naive(t: dt.datetime) -> dt.datetime:  # the ledger's times are naive UTC
        return t.replace(tzinfo=None)

    row = conn.execute(
        USAGE_SQL,
        {
            "now": naive(now),
            "day_start": naive(day_start),
            "window_start": naive(now - dt.timedelta(days=BANDWIDTH_WINDOW_DAYS)),
        },
    ).fetchone()
    bytes_30d, requests_30d, bytes_today, requests_today = (int(v) for v in row)
    return Usage(now, day, bytes_30d, requests_30d, bytes_today, requests_today)


@dataclass(frozen=True)
class SizeHistory:
    """The sizes of one dataset's good responses so far (every ticker together)."""

    files: int
    median_bytes: float  # per response
    bytes_per_day: float | None  # windowed responses: bytes per calendar day of window; None without windows
    files_per_set: float  # responses per (run, ticker): the pages of a paginated dataset, else about 1


SIZE_HISTORY_SQL = f"""
    WITH good AS (
        SELECT domain, source, dataset, discriminator, ticker, run_id, window_from, window_to,
               {COUNTED_BYTES} AS counted
        FROM ops.file_ingestions
        WHERE error_class IS NULL AND status_code IS NOT NULL AND quarantined_at IS NULL
    ),
    sets AS (
        SELECT domain, source, dataset, discriminator, avg(files) AS files_per_set
        FROM (SELECT domain, source, dataset, discriminator, count(*) AS files FROM good
              WHERE window_from IS NULL GROUP BY domain, source, dataset, discriminator, ticker, run_id)
        GROUP BY ALL
    )
    SELECT domain, source, dataset, discriminator, count(*), median(counted),
           sum(counted) FILTER (WHERE window_from IS NOT NULL)
               / nullif(sum(date_diff('day', window_from, window_to) + 1) FILTER (WHERE window_from IS NOT NULL), 0),
           any_value(coalesce(s.files_per_set, 1))
    FROM good LEFT JOIN sets s USING (domain, source, dataset, discriminator)
    GROUP BY ALL
"""


def size_history(conn: duckdb.DuckDBPyConnection) -> dict[DatasetIdentity, SizeHistory]:
    """Per dataset (the identity without a ticker): the sizes of its good responses. Error answers are left out:
    they say nothing about the size of the data a request brings."""
    rows = conn.execute(SIZE_HISTORY_SQL).fetchall()
    return {
        DatasetIdentity(*r[:4]): SizeHistory(int(r[4]), float(r[5]), None if r[6] is None else float(r[6]), float(r[7]))
        for r in rows
    }
