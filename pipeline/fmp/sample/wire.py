"""What the sample source puts on the wire: responses shaped like FMP's, and FMP's query-parameter rules."""

from __future__ import annotations

import datetime as dt
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

JSON_CONTENT_TYPE = "application/json; charset=utf-8"

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class SampleResponse:
    status_code: int
    body: bytes
    headers: dict[str, str]


class QueryError(Exception):
    """A missing or malformed parameter: FMP answers 400 with a plain-text body labelled JSON."""

    def __init__(self, param: str) -> None:
        super().__init__(param)
        self.param = param


def response(status: int, body: bytes) -> SampleResponse:
    etag = f'W/"{len(body):x}-{zlib.crc32(body):08x}"'
    return SampleResponse(status, body, {"content-type": JSON_CONTENT_TYPE, "etag": etag})


def json_response(rows: list[dict[str, Any]], status: int = 200) -> SampleResponse:
    return response(status, json.dumps(rows, indent=2, allow_nan=False).encode())


def limited(rows: list[dict[str, Any]], limit: int | None) -> SampleResponse:
    """The first `limit` rows (all of them when there is no limit) as a JSON response."""
    return json_response(rows[:limit] if limit is not None else rows)


def parse_date(params: Mapping[str, str], name: str) -> dt.date | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _DATE_RE.match(raw):
        raise QueryError(name)
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise QueryError(name) from None


def parse_range(params: Mapping[str, str]) -> tuple[dt.date | None, dt.date | None]:
    """The optional `from` and `to` dates of a request."""
    return parse_date(params, "from"), parse_date(params, "to")


def parse_limit(params: Mapping[str, str], default: int | None) -> int | None:
    raw = params.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError("limit") from None
    if value < 0:
        raise QueryError("limit")
    return value
