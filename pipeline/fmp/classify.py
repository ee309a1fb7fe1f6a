"""How an FMP response is classified: by status first, then (on a 2xx) by body.

FMP's failure modes do not map onto HTTP status codes: a throttled bulk call is a 200 with an error object, an
unknown indicator is a 200 with the text `Invalid name`, an unknown path is a 404 with `[]`. Every outcome gets one
of `ERROR_CLASSES` (None = success) and, for quota and plan refusals, one of `ERROR_DETAILS`, which tells a run
what is no longer worth sending.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE_CHARS = 300

ERROR_CLASSES = (
    "transport",
    "http_status",
    "rate_limited",
    "plan_restricted",
    "auth",
    "api_error_body",
    "invalid_body",
    "empty",
)
# Finer reasons inside `rate_limited` and `plan_restricted`, for the run to decide what is still worth sending.
QUOTA_EXHAUSTED = "quota_exhausted"  # daily or bandwidth quota: nothing helps until it resets
SYMBOL_NOT_IN_PLAN = "symbol_not_in_plan"  # 402 Premium Query Parameter on 'symbol': skip that ticker
PARAMETER_NOT_IN_PLAN = "parameter_not_in_plan"  # 402 Premium Query Parameter on another one: skip the dataset
ENDPOINT_NOT_IN_PLAN = "endpoint_not_in_plan"  # 402 Restricted Endpoint (or an unrecognised 402): skip the path
API_UNREACHABLE = "api_unreachable"  # inside `transport`: nothing ever answered (see FmpClient.unreachable)
ERROR_DETAILS = (QUOTA_EXHAUSTED, SYMBOL_NOT_IN_PLAN, PARAMETER_NOT_IN_PLAN, ENDPOINT_NOT_IN_PLAN, API_UNREACHABLE)


@dataclass(frozen=True)
class Verdict:
    """How one attempt ended: its class (None = success), whether to retry, and the parsed payload."""

    error_class: str | None
    message: str | None = None
    retryable: bool = False
    content: Any = None
    content_format: str | None = None
    detail: str | None = None


def _snippet(body: bytes) -> str:
    text = " ".join(body.decode("utf-8", errors="replace").split())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


def _error_message_of(parsed: Any) -> str | None:
    if isinstance(parsed, dict) and "Error Message" in parsed:
        return str(parsed["Error Message"])
    return None


def _parse_json(body: bytes) -> tuple[bool, Any]:
    try:
        return True, json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False, None


def _parse_csv(body: bytes) -> list[dict[str, str]]:
    text = body.decode("utf-8-sig")
    return [dict(row) for row in csv.DictReader(io.StringIO(text))]


def _limit_verdict(text: str, message: str) -> Verdict | None:
    """A "Limit Reach" refusal on a 429 or a 200 (FMP sends 200 + JSON error on bulk paths and for quotas).

    "Bandwidth Limit Reach" is the bandwidth quota: retrying cannot help before it resets, so it is final at once.
    Plain "Limit Reach" is also the per-minute answer, so it is retried; if it outlasts every retry the fetch
    marks it as quota exhaustion (see `FmpClient._fetch`).
    """
    if "bandwidth limit reach" in text.lower():
        return Verdict("rate_limited", message, detail=QUOTA_EXHAUSTED)
    if text.lstrip().lower().startswith("limit reach"):
        return Verdict("rate_limited", message, retryable=True)
    return None


def _plan_detail(text: str) -> str:
    """Which part of the plan a 402 refuses: the symbol, another query parameter, or the endpoint."""
    lowered = text.lower()
    if "premium query parameter" in lowered:
        return SYMBOL_NOT_IN_PLAN if "'symbol'" in lowered else PARAMETER_NOT_IN_PLAN
    return ENDPOINT_NOT_IN_PLAN  # "Restricted Endpoint", and any 402 we cannot read: stop asking this path


def classify_response(status: int, body: bytes, expect: str = "json") -> Verdict:
    """Classify one HTTP response by status first, then (on 2xx) by body: FMP answers errors with any status,
    even 200."""
    if not 200 <= status < 300:
        is_json, parsed = _parse_json(body)
        detail = (_error_message_of(parsed) if is_json else None) or _snippet(body) or "(no body)"
        message = f"HTTP {status}: {detail[:MAX_MESSAGE_CHARS]}"
        if status == 429:
            return _limit_verdict(detail, message) or Verdict("rate_limited", message, retryable=True)
        if status in (401, 403):
            return Verdict("auth", message)
        if status == 402:
            return Verdict("plan_restricted", message, detail=_plan_detail(detail))
        return Verdict("http_status", message, retryable=status >= 500)

    if not body.strip():
        return Verdict("empty", f"HTTP {status}: empty body")
    looks_json = expect != "csv" or body.lstrip()[:1] in (b"{", b"[")
    is_json, parsed = _parse_json(body) if looks_json else (False, None)
    error_text = _error_message_of(parsed) if is_json else None
    if error_text is not None:
        message = f"HTTP {status} with error body: {error_text[:MAX_MESSAGE_CHARS]}"
        limited = _limit_verdict(error_text, message)
        if limited is not None:
            return limited
        if "invalid api key" in error_text.lower():
            return Verdict("auth", message)
        return Verdict("api_error_body", message)
    if is_json:
        return Verdict(None, content=parsed, content_format="json")
    if expect == "csv":
        try:
            return Verdict(None, content=_parse_csv(body), content_format="csv")
        except (csv.Error, UnicodeDecodeError) as exc:
            return Verdict("invalid_body", f"HTTP {status} with unreadable CSV ({exc}): {_snippet(body)}")
    return Verdict("invalid_body", f"HTTP {status} with a non-JSON body: {_snippet(body)}")
