"""The Bronze envelope: one API response plus the request that produced it, as written to disk.

Everything downstream (Silver promotion, replay, coverage) reads these files, never the API, so the envelope
carries what a rebuild needs: identity, the key-free request, timing, status, a body hash, the parsed content
and the classified error. Error responses are envelopes too, with `can_promote: false`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.keymap.model import DatasetIdentity
from pipeline.ledger_types import FileRecord

ENVELOPE_VERSION = 1
ERROR_BODY_LIMIT = 2000


def new_file_id() -> str:
    """32 hex characters, sortable by creation time (microseconds), then random: unique across processes."""
    return f"{time.time_ns() // 1000:016x}{secrets.token_hex(8)}"


@dataclass(frozen=True)
class RequestInfo:
    path: str
    url: str  # without the API key
    params: dict[str, str]  # without the API key
    page: int | None = None
    as_of: dt.date | None = None  # the planning date the request was made for
    window_from: dt.date | None = None
    window_to: dt.date | None = None


@dataclass(frozen=True)
class BronzeEnvelope:
    file_id: str
    run_id: str
    identity: DatasetIdentity
    request: RequestInfo
    fetched_at: dt.datetime  # UTC, tz-aware
    elapsed_ms: float
    attempts: int
    status_code: int | None
    headers: dict[str, str]
    body_sha256: str
    bytes: int
    content_format: str | None
    content: Any
    row_count: int
    coverage_from: dt.date | None
    coverage_to: dt.date | None
    error_class: str | None
    error_message: str | None
    can_promote: bool
    body_text: str | None = None  # only for bodies that could not be parsed (truncated, key-free)
    notes: tuple[str, ...] = field(default_factory=tuple)
    error_detail: str | None = None  # finer reason inside the class (quota, symbol or endpoint not in the plan)
    wire_bytes: int | None = None  # response bodies as they crossed the wire, every attempt; `bytes` is decoded
    # A CSV response (pipeline.bronze.csv_body): its bytes exactly as served are kept beside the envelope in this
    # file (`<file_id>.csv`), `content` stays null and `body_sha256` is over those bytes. `raw_body` is what the
    # store writes there; it is not part of the envelope's JSON.
    body_file: str | None = None
    raw_body: bytes | None = field(default=None, repr=False, compare=False)

    def to_json_bytes(self) -> bytes:
        doc = {
            "envelope_version": ENVELOPE_VERSION,
            "file_id": self.file_id,
            "run_id": self.run_id,
            "domain": self.identity.domain,
            "source": self.identity.source,
            "dataset": self.identity.dataset,
            "discriminator": self.identity.discriminator,
            "ticker": self.identity.ticker,
            "request": {
                "method": "GET",
                "path": self.request.path,
                "url": self.request.url,
                "params": self.request.params,
                "page": self.request.page,
                "as_of": _iso(self.request.as_of),
                "window_from": _iso(self.request.window_from),
                "window_to": _iso(self.request.window_to),
            },
            "fetched_at": self.fetched_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "elapsed_ms": round(self.elapsed_ms, 3),
            "attempts": self.attempts,
            "status_code": self.status_code,
            "headers": self.headers,
            "body_sha256": self.body_sha256,
            "bytes": self.bytes,
            "wire_bytes": self.wire_bytes,
            "content_format": self.content_format,
            "row_count": self.row_count,
            "coverage_from": _iso(self.coverage_from),
            "coverage_to": _iso(self.coverage_to),
            "error": _error_doc(self.error_class, self.error_message, self.error_detail),
            "can_promote": self.can_promote,
            "notes": list(self.notes),
            "body_text": self.body_text,
            "content": self.content,
        }
        if self.body_file:
            doc["body_file"] = self.body_file
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")

    @classmethod
    def from_json_bytes(cls, data: bytes) -> BronzeEnvelope:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("envelope_version") != ENVELOPE_VERSION:
            raise ValueError("not a Bronze envelope (missing or unknown envelope_version)")
        req = doc["request"]
        error = doc.get("error") or {}
        return cls(
            file_id=doc["file_id"],
            run_id=doc["run_id"],
            identity=DatasetIdentity(
                doc["domain"], doc["source"], doc["dataset"], doc.get("discriminator") or "", doc.get("ticker") or ""
            ),
            request=RequestInfo(
                req["path"],
                req["url"],
                dict(req.get("params") or {}),
                req.get("page"),
                _date(req.get("as_of")),
                _date(req.get("window_from")),
                _date(req.get("window_to")),
            ),
            fetched_at=dt.datetime.fromisoformat(doc["fetched_at"].replace("Z", "+00:00")),
            elapsed_ms=float(doc.get("elapsed_ms") or 0.0),
            attempts=int(doc.get("attempts") or 1),
            status_code=doc.get("status_code"),
            headers=dict(doc.get("headers") or {}),
            body_sha256=doc.get("body_sha256") or "",
            bytes=int(doc.get("bytes") or 0),
            content_format=doc.get("content_format"),
            content=doc.get("content"),
            row_count=int(doc.get("row_count") or 0),
            coverage_from=_date(doc.get("coverage_from")),
            coverage_to=_date(doc.get("coverage_to")),
            error_class=error.get("class"),
            error_message=error.get("message"),
            can_promote=bool(doc.get("can_promote")),
            body_text=doc.get("body_text"),
            notes=tuple(doc.get("notes") or ()),
            error_detail=error.get("detail"),
            wire_bytes=doc.get("wire_bytes"),
            body_file=doc.get("body_file"),
        )


def _error_doc(error_class: str | None, message: str | None, detail: str | None) -> dict | None:
    """The envelope's `error` object; `detail` only when there is one, so older files read the same."""
    if not error_class:
        return None
    doc = {"class": error_class, "message": message}
    if detail:
        doc["detail"] = detail
    return doc


def _iso(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None


def _date(value: str | None) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def file_digest(data: bytes) -> str:
    """The ledger's `file_md5`: MD5 of an envelope file's bytes, as the store wrote them.

    Silver recomputes it with DuckDB's `md5()` over each file it reads, in the same scan (`pipeline.silver.sql`),
    so the function must stay the one DuckDB has. MD5 rather than SHA-256: the digest detects a file that changed
    after it was written (truncated, edited by hand, a bad restore), which needs second-preimage resistance, which
    MD5 still has, not collision resistance; and DuckDB's `md5()` costs a third of its `sha256()` on every byte
    promotion reads (the envelope's own `body_sha256` of the raw response stays SHA-256).
    """
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def coverage_of(content: Any, date_field: str | None) -> tuple[dt.date | None, dt.date | None]:
    """Min and max row date from the recipe's date field; (None, None) when rows carry no dates."""
    if not date_field or not isinstance(content, list):
        return None, None
    dates: list[dt.date] = []
    for row in content:
        if isinstance(row, dict):
            raw = row.get(date_field)
            if isinstance(raw, str) and len(raw) >= 10:
                try:
                    dates.append(dt.date.fromisoformat(raw[:10]))
                except ValueError:
                    continue
    if not dates:
        return None, None
    return min(dates), max(dates)


def file_record(
    envelope: BronzeEnvelope, bronze_path: str, silver_table: str | None, file_md5: str | None = None
) -> FileRecord:
    """The ledger row of one Bronze file (Bronze columns only; `fetched_at` as naive UTC); `file_md5` is the digest
    of the bytes the store wrote (`StoredFile.md5`), None when unknown."""
    ident, request = envelope.identity, envelope.request
    return FileRecord(
        run_id=envelope.run_id,
        file_id=envelope.file_id,
        domain=ident.domain,
        source=ident.source,
        dataset=ident.dataset,
        discriminator=ident.discriminator,
        ticker=ident.ticker,
        bronze_path=bronze_path,
        request_path=request.path,
        page=request.page,
        as_of=request.as_of,
        window_from=request.window_from,
        window_to=request.window_to,
        status_code=envelope.status_code,
        error_class=envelope.error_class,
        error_message=envelope.error_message,
        bronze_rows=envelope.row_count,
        bytes=envelope.bytes,
        body_sha256=envelope.body_sha256,
        coverage_from=envelope.coverage_from,
        coverage_to=envelope.coverage_to,
        fetched_at=envelope.fetched_at.astimezone(dt.UTC).replace(tzinfo=None),
        elapsed_ms=envelope.elapsed_ms,
        can_promote=envelope.can_promote,
        silver_table=silver_table,
        file_md5=file_md5,
        wire_bytes=envelope.wire_bytes,
        attempts=envelope.attempts,
    )
