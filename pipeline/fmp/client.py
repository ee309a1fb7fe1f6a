"""The one HTTP client every FMP request goes through.

Why it exists: FMP's failure modes do not map onto HTTP status codes (a throttled bulk call is a 200 with an
error object, an unknown indicator is a 200 with the text `Invalid name`, an unknown path is a 404 with `[]`),
and the key travels in the URL, where it leaks into logs and exception texts. This module owns those facts:
it retries what is worth retrying, classifies every outcome into one of `ERROR_CLASSES` (plus, for quota and
plan refusals, one of `ERROR_DETAILS`, which tells a run what is no longer worth sending), returns results
instead of raising for HTTP or transport problems, and keeps the key out of everything it hands back.
"""

from __future__ import annotations

import csv
import datetime as dt
import email.utils
import io
import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx

from pipeline.fmp.ratelimit import RateLimiter, process_limiter
from pipeline.redact import redact

if TYPE_CHECKING:
    from pipeline.settings import Settings

log = logging.getLogger("pipeline.fmp")

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
ERROR_DETAILS = (QUOTA_EXHAUSTED, SYMBOL_NOT_IN_PLAN, PARAMETER_NOT_IN_PLAN, ENDPOINT_NOT_IN_PLAN)
KEPT_HEADERS = ("content-type", "etag", "date", "retry-after", "content-length")
SAMPLE_BASE_URL = "https://sample.fmp.invalid/stable"
MAX_MESSAGE_CHARS = 300


class FmpClientError(RuntimeError):
    """An unexpected failure inside the client (never an HTTP or transport problem); its text is key-free."""


@dataclass(frozen=True)
class FetchResult:
    path: str
    params: dict[str, str]
    url: str
    status_code: int | None
    headers: dict[str, str]
    body: bytes
    content: Any
    content_format: str | None
    error_class: str | None
    error_message: str | None
    elapsed_ms: float
    attempts: int
    fetched_at: dt.datetime
    error_detail: str | None = None  # one of ERROR_DETAILS, or None

    @property
    def ok(self) -> bool:
        return self.error_class is None

    @property
    def row_count(self) -> int:
        if isinstance(self.content, list):
            return len(self.content)
        if isinstance(self.content, dict) and self.content:
            return 1
        return 0


@dataclass(frozen=True)
class _Verdict:
    """How one attempt ended: its class (None = success), whether to retry, and the parsed payload."""

    error_class: str | None
    message: str | None = None
    retryable: bool = False
    content: Any = None
    content_format: str | None = None
    detail: str | None = None


class _RedactApiKeyFilter(logging.Filter):
    """Rewrites `apikey=...` out of records logged by httpx/httpcore (httpx logs every request URL at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "apikey" in message.lower():
            record.msg = redact(message)
            record.args = ()
        return True


_THIRD_PARTY_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def _install_log_filter() -> None:
    """Idempotent. Logger filters do not apply to records of child loggers, so each httpcore child gets one."""
    for name in _THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactApiKeyFilter) for f in logger.filters):
            logger.addFilter(_RedactApiKeyFilter())


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None when absent, <= 0 or garbage."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


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


def _limit_verdict(text: str, message: str) -> _Verdict | None:
    """A "Limit Reach" refusal on a 429 or a 200 (FMP sends 200 + JSON error on bulk paths and for quotas).

    "Bandwidth Limit Reach" is the bandwidth quota: retrying cannot help before it resets, so it is final at once.
    Plain "Limit Reach" is also the per-minute answer, so it is retried; if it outlasts every retry the fetch
    marks it as quota exhaustion (see `FmpClient._fetch`).
    """
    if "bandwidth limit reach" in text.lower():
        return _Verdict("rate_limited", message, detail=QUOTA_EXHAUSTED)
    if text.lstrip().lower().startswith("limit reach"):
        return _Verdict("rate_limited", message, retryable=True)
    return None


def _plan_detail(text: str) -> str:
    """Which part of the plan a 402 refuses: the symbol, another query parameter, or the endpoint."""
    lowered = text.lower()
    if "premium query parameter" in lowered:
        return SYMBOL_NOT_IN_PLAN if "'symbol'" in lowered else PARAMETER_NOT_IN_PLAN
    return ENDPOINT_NOT_IN_PLAN  # "Restricted Endpoint", and any 402 we cannot read: stop asking this path


def classify_response(status: int, body: bytes, expect: str = "json") -> _Verdict:
    """Classify one HTTP response by status first, then (on 2xx) by body: FMP answers errors with any status,
    even 200."""
    if not 200 <= status < 300:
        is_json, parsed = _parse_json(body)
        detail = (_error_message_of(parsed) if is_json else None) or _snippet(body) or "(no body)"
        message = f"HTTP {status}: {detail[:MAX_MESSAGE_CHARS]}"
        if status == 429:
            return _limit_verdict(detail, message) or _Verdict("rate_limited", message, retryable=True)
        if status in (401, 403):
            return _Verdict("auth", message)
        if status == 402:
            return _Verdict("plan_restricted", message, detail=_plan_detail(detail))
        return _Verdict("http_status", message, retryable=status >= 500)

    if not body.strip():
        return _Verdict("empty", f"HTTP {status}: empty body")
    looks_json = expect != "csv" or body.lstrip()[:1] in (b"{", b"[")
    is_json, parsed = _parse_json(body) if looks_json else (False, None)
    error_text = _error_message_of(parsed) if is_json else None
    if error_text is not None:
        message = f"HTTP {status} with error body: {error_text[:MAX_MESSAGE_CHARS]}"
        limited = _limit_verdict(error_text, message)
        if limited is not None:
            return limited
        if "invalid api key" in error_text.lower():
            return _Verdict("auth", message)
        return _Verdict("api_error_body", message)
    if is_json:
        return _Verdict(None, content=parsed, content_format="json")
    if expect == "csv":
        try:
            return _Verdict(None, content=_parse_csv(body), content_format="csv")
        except (csv.Error, UnicodeDecodeError) as exc:
            return _Verdict("invalid_body", f"HTTP {status} with unreadable CSV ({exc}): {_snippet(body)}")
    return _Verdict("invalid_body", f"HTTP {status} with a non-JSON body: {_snippet(body)}")


def _is_retryable_exception(exc: httpx.HTTPError) -> bool:
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return False
    return isinstance(exc, (httpx.TransportError, httpx.DecodingError))


class FmpClient:
    """Fetches FMP paths with retries, one shared rate limiter, bounded concurrency and a key-free record.

    Without an explicit `limiter` the process limiter is used (reconfigured to `calls_per_minute`), so every
    client of the process shares one ceiling. Thread-safe: `fetch` may be called from many threads at once.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        calls_per_minute: int = 300,
        max_concurrency: int = 8,
        timeout_s: float = 30.0,
        max_retries: int = 4,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        retry_after_cap_s: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        limiter: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key or None
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.retry_after_cap_s = retry_after_cap_s
        self.limiter = limiter if limiter is not None else process_limiter(calls_per_minute)
        self._sleep = sleep
        self._random = random.Random()
        # Held from the limiter stamp until the response: a stamped send goes on the wire at once.
        self._slots = threading.BoundedSemaphore(max_concurrency)
        _install_log_filter()
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout_s, pool=None),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency),
            transport=transport,
            headers={"Accept-Encoding": "gzip", "User-Agent": "pipeline-fmp/0.1"},
            follow_redirects=False,
        )

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> FmpClient:
        """Real API when a key is set; otherwise the bundled sample source through an in-process transport."""
        kwargs: dict[str, Any] = {
            "calls_per_minute": settings.calls_per_minute,
            "max_concurrency": settings.max_concurrency,
        }
        if settings.uses_sample_source:
            from pipeline.fmp.sample import SAMPLE_TICKERS, sample_transport

            kwargs["transport"] = sample_transport(settings.today(), settings.tickers or SAMPLE_TICKERS)
            # The sample source is local: FMP's per-minute budget does not apply to it.
            kwargs["limiter"] = RateLimiter(1_000_000)
            base_url = SAMPLE_BASE_URL
            log.info("FMP_API_KEY is unset: fetching from the bundled sample source, not the network")
        else:
            base_url = settings.fmp_base_url
        kwargs.update(overrides)
        return cls(base_url, settings.fmp_api_key, **kwargs)

    # -- key hygiene ---------------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        """Remove this client's key (raw and URL-encoded) and any `apikey=...` value from a text."""
        return redact(text, self._api_key)

    def __repr__(self) -> str:
        key = "set" if self._api_key else "unset"
        return f"FmpClient(base_url={self.base_url!r}, api_key=<{key}>, max_concurrency={self.max_concurrency})"

    # -- fetching ------------------------------------------------------------------------------------
    def fetch(self, path: str, params: Mapping[str, str], *, expect: str = "json") -> FetchResult:
        """Fetch one path; HTTP and transport problems come back as a classified result, never as exceptions."""
        if expect not in ("json", "csv"):
            raise ValueError(f"expect must be 'json' or 'csv', got {expect!r}")
        try:
            return self._fetch(path.strip("/"), params, expect)
        except FmpClientError:
            raise
        except Exception as exc:  # a bug or an unforeseen library error: re-raise without the key in it
            raise FmpClientError(self.redact(f"{type(exc).__name__}: {exc}")) from None

    def _fetch(self, path: str, params: Mapping[str, str], expect: str) -> FetchResult:
        sent = {str(k): str(v) for k, v in params.items() if str(k).lower() != "apikey"}
        endpoint = f"{self.base_url}/{path}"
        recorded_url = f"{endpoint}?{urlencode(sent)}" if sent else endpoint
        wire_params = {**sent, "apikey": self._api_key} if self._api_key else sent
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            response, verdict = self._attempt(endpoint, wire_params, expect)
            log.debug(
                "GET %s attempt %d: %s",
                recorded_url,
                attempts,
                response.status_code if response is not None else verdict.error_class,
            )
            if not verdict.retryable or attempts > self.max_retries:
                break
            retry_after = parse_retry_after(response.headers.get("retry-after")) if response is not None else None
            delay = self._backoff(attempts - 1, retry_after, floor=verdict.error_class == "rate_limited")
            log.info(
                "GET %s: %s, retry %d/%d in %.2fs",
                recorded_url,
                self.redact(verdict.message or ""),
                attempts,
                self.max_retries,
                delay,
            )
            self._sleep(delay)
        fetched_at = dt.datetime.now(dt.UTC)
        error_detail = verdict.detail
        if verdict.error_class == "rate_limited" and verdict.retryable:
            # "Limit Reach" through every retry, backoff included: read as the daily quota, not the minute's
            error_detail = QUOTA_EXHAUSTED
        message = verdict.message
        if message is not None:
            message = self.redact(message if attempts == 1 else f"{message} (after {attempts} attempts)")
            log.info("GET %s failed: %s [%s]", recorded_url, message, verdict.error_class)
        return FetchResult(
            path=path,
            params=sent,
            url=recorded_url,
            status_code=response.status_code if response is not None else None,
            headers={k: response.headers[k] for k in KEPT_HEADERS if k in response.headers}
            if response is not None
            else {},
            body=response.content if response is not None else b"",
            content=verdict.content,
            content_format=verdict.content_format,
            error_class=verdict.error_class,
            error_message=message,
            elapsed_ms=(time.monotonic() - started) * 1000.0,
            attempts=attempts,
            fetched_at=fetched_at,
            error_detail=error_detail,
        )

    def _attempt(self, endpoint: str, params: Mapping[str, str], expect: str) -> tuple[httpx.Response | None, _Verdict]:
        """One request through the concurrency slots and the limiter; transport errors become a verdict."""
        with self._slots:
            self.limiter.acquire()
            try:
                response = self._http.get(endpoint, params=params)
            except httpx.HTTPError as exc:
                detail = str(exc).strip()
                message = self.redact(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)
                return None, _Verdict("transport", message, retryable=_is_retryable_exception(exc))
            except httpx.InvalidURL as exc:
                return None, _Verdict("transport", self.redact(f"InvalidURL: {exc}"))
        return response, classify_response(response.status_code, response.content, expect)

    def _backoff(self, retry_number: int, retry_after: float | None, *, floor: bool) -> float:
        """Full jitter, never below a sane Retry-After (capped), and at least the base after a throttle."""
        delay = self._random.uniform(0.0, min(self.backoff_cap_s, self.backoff_base_s * 2**retry_number))
        if floor:
            delay = max(delay, self.backoff_base_s)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_cap_s))
        return delay

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FmpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
