"""Value types the layers exchange with the ops ledger, kept apart from both sides.

Bronze builds a `FileRecord` from its envelope and `pipeline.ops.file_ingestions` stores it; the ledger
computes `Coverage` and the Bronze planner plans with it. Living here, neither `bronze` nor `ops` imports the
other for a type: Bronze calls the ledger, the ledger never imports Bronze.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pipeline.keymap.model import DatasetIdentity


@dataclass(frozen=True)
class FileRecord:
    """The Bronze columns of one `ops.file_ingestions` row (the `silver_*` columns are written by promotion)."""

    run_id: str
    file_id: str
    domain: str
    source: str
    dataset: str
    discriminator: str
    ticker: str
    bronze_path: str
    request_path: str | None
    page: int | None
    as_of: dt.date | None
    window_from: dt.date | None
    window_to: dt.date | None
    status_code: int | None
    error_class: str | None
    error_message: str | None
    bronze_rows: int | None
    bytes: int | None  # the body as decoded (what the envelope parsed)
    body_sha256: str | None
    coverage_from: dt.date | None
    coverage_to: dt.date | None
    fetched_at: dt.datetime  # naive UTC, as the ledger stores it
    elapsed_ms: float | None
    can_promote: bool
    silver_table: str | None
    file_md5: str | None = None  # digest of the file's bytes as written (None: unknown, recorded on first read)
    wire_bytes: int | None = None  # the response bodies as they crossed the wire, every attempt (None: unknown)
    attempts: int | None = None  # HTTP calls the request took, retries included (None: unknown)


@dataclass(frozen=True)
class Coverage:
    """The dates of one identity the ledger holds good files for (Bronze) or promoted (Silver)."""

    identity: DatasetIdentity
    coverage_from: dt.date | None
    coverage_to: dt.date | None
    last_fetched_at: dt.datetime | None
    files: int
    last_as_of: dt.date | None = None  # planning date of the newest good fetch: cadence compares with this
    first_window_from: dt.date | None = None  # start of the oldest good date window (a hole before it is missing)
    quarantined: int = 0  # quarantined files no good refetch has replaced yet: the identity is due now
