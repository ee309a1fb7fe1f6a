"""Repair the ledger after a crash or a restore: Bronze files on disk that ops.file_ingestions does not know.

- `register_orphans` (every run, cheap): files a crashed process wrote but never registered, found through the
  store's journal.
- `register_unknown_files` (replay and repair, a full scan): every file the ledger lacks; an unreadable one is
  registered as unpromotable with the reason, and stays on disk.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable

from pipeline.bronze.envelope import BronzeEnvelope, file_digest, file_record
from pipeline.bronze.store import BronzeStore
from pipeline.keymap.model import DatasetIdentity
from pipeline.ledger_types import FileRecord
from pipeline.ops import file_ingestions
from pipeline.process import pid_alive

log = logging.getLogger("pipeline.bronze")


def register_orphans(conn, store: BronzeStore, silver_table_of: Callable[[DatasetIdentity], str | None]) -> int:
    """Register files that a crashed process wrote but never recorded; returns how many were registered."""
    registered = 0
    for journal in store.journals():
        parts = journal.split(".")
        pid = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
        if pid != os.getpid() and pid > 0 and pid_alive(pid):
            continue  # a live process is still writing this journal
        paths = store.journal_paths(journal)
        envelopes: dict[str, tuple[BronzeEnvelope, str]] = {}
        for rel in paths:
            try:
                data = store.read_bytes(rel)
                envelopes[rel] = BronzeEnvelope.from_json_bytes(data), file_digest(data)
            except (OSError, ValueError, KeyError) as exc:
                log.error("Bronze file %s named in journal %s is unreadable, left unregistered: %s", rel, journal, exc)
        known = file_ingestions.registered_file_ids(conn, [e.file_id for e, _ in envelopes.values()])
        records = [
            file_record(env, rel, silver_table_of(env.identity), digest)
            for rel, (env, digest) in envelopes.items()
            if env.file_id not in known
        ]
        file_ingestions.register_files(conn, records)
        registered += len(records)
        store.remove_journal_temp_files(journal)  # a write cut between its temp file and the link
        store.close_journal(journal)
    return registered


UNREADABLE_RUN_ID = "bronze-scan"


def _unreadable_record(
    store: BronzeStore, rel: str, file_id: str, reason: str, silver_table_of: Callable[[DatasetIdentity], str | None]
) -> FileRecord:
    """The ledger row of a Bronze file that cannot be read as its envelope: identity from its path, unpromotable,
    so it is listed (with the reason) and never promoted and never counted as coverage, and stays on disk."""
    parts = rel.split("/")  # <source>/<domain>/<dataset>[__<disc>]/<ticker or _global>/<day>/<file_id>.json
    source, domain, dataset_dir, ticker_dir = parts[:4] if len(parts) == 6 else ("unknown", "unknown", "unknown", "")
    dataset, _, discriminator = dataset_dir.partition("__")
    ticker = "" if ticker_dir == "_global" else ticker_dir
    identity = DatasetIdentity(domain, source, dataset, discriminator, ticker)
    try:
        size, mtime = store.size(rel) or 0, store.modified(rel) or dt.datetime.now(dt.UTC)
    except OSError:
        size, mtime = 0, dt.datetime.now(dt.UTC)
    return FileRecord(
        run_id=UNREADABLE_RUN_ID,
        file_id=file_id,
        domain=domain,
        source=source,
        dataset=dataset,
        discriminator=discriminator,
        ticker=ticker,
        bronze_path=rel,
        request_path=None,
        page=None,
        as_of=None,
        window_from=None,
        window_to=None,
        status_code=None,
        error_class="invalid_body",
        error_message=f"unreadable Bronze file {rel}: {reason}"[:2000],
        bronze_rows=0,
        bytes=size,
        body_sha256=None,
        coverage_from=None,
        coverage_to=None,
        fetched_at=mtime.replace(tzinfo=None),
        elapsed_ms=None,
        can_promote=False,
        silver_table=silver_table_of(identity),
    )


def register_unknown_files(
    conn,
    store: BronzeStore,
    silver_table_of: Callable[[DatasetIdentity], str | None],
    batch: int = 5000,
    problems: list[str] | None = None,
) -> int:
    """Full scan: register every Bronze file the ledger does not know (a restored Bronze folder, a lost ledger).

    A file that is not a readable envelope, or whose envelope names another file id, is registered too, as an
    unpromotable `invalid_body` row whose message names the file and the reason (appended to `problems`): it
    stays on disk and in the ledger for an operator to look at. Costs a walk of the whole Bronze tree, so it
    belongs to repair and replay, not to every run.
    """
    known = {r[0] for r in conn.execute("SELECT file_id FROM ops.file_ingestions").fetchall()}
    records: list[FileRecord] = []
    registered = 0
    for rel in store.iter_files():
        file_id = rel.rsplit("/", 1)[-1].removesuffix(".json")
        if file_id in known:
            continue
        try:
            data = store.read_bytes(rel)
            env = BronzeEnvelope.from_json_bytes(data)
            reason = None if env.file_id == file_id else f"its envelope names file id {env.file_id!r}, not its own name"
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            empty = store.size(rel) == 0
            reason = (
                "empty file (0 bytes)" if empty else f"not a readable Bronze envelope ({type(exc).__name__}: {exc})"
            )
        if reason is not None:
            record = _unreadable_record(store, rel, file_id, reason, silver_table_of)
            log.error("%s; registered as unpromotable", record.error_message)
            if problems is not None:
                problems.append(record.error_message)
            records.append(record)
            continue
        # the digest of the file as found: nothing older is known of a file the ledger never had
        records.append(file_record(env, rel, silver_table_of(env.identity), file_digest(data)))
        if len(records) >= batch:
            registered += file_ingestions.register_files(conn, records)
            records = []
    registered += file_ingestions.register_files(conn, records)
    return registered
