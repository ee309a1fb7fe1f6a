"""The one HTTP client every FMP request goes through.

Why it exists: FMP's failure modes do not map onto HTTP status codes (a throttled bulk call is a 200 with an
error object, an unknown indicator is a 200 with the text `Invalid name`, an unknown path is a 404 with `[]`),
and the key travels in the URL, where it leaks into logs and exception texts. This module owns those facts:
it retries what is worth retrying, classifies every outcome (`pipeline.fmp.classify`), returns results instead
of raising for HTTP or transport problems, and keeps the key out of everything it hands back.
"""

from __future__ import annotations

import datetime as dt
import email.utils
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

from pipeline.fmp.classify import API_UNREACHABLE, QUOTA_EXHAUSTED, Verdict, classify_response
from pipeline.fmp.ratelimit import RateLimiter, process_limiter
from pipeline.redact import redact

if TYPE_CHECKING:
    from pipeline.settings import Settings

log = logging.getLogger("pipeline.fmp")

KEPT_HEADERS = ("content-type", "etag", "date", "retry-after", "content-length")
# Attempts that failed in transport (refused, timed out, no route, reset), one after another, before anything ever
# answered: the API is unreachable from here. Retrying each request would take minutes to say the same thing.
UNREACHABLE_AFTER = 8
SAMPLE_BASE_URL = "https://sample.fmp.invalid/stable"


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
    wire_bytes: int = 0  # the response bodies as they crossed the wire (compressed as sent), every attempt

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
        sleep: Callable[[float], None] | None = None,
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
        self._no_more_retries = threading.Event()
        self._sleep = sleep or self._no_more_retries.wait  # a backoff wait ends early once retrying is pointless
        self._random = random.Random()
        # Held from the limiter stamp until the response: a stamped send goes on the wire at once.
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._health = threading.Lock()
        self._answered = False  # any HTTP answer at all since this client was made
        self._transport_streak = 0
        self.unreachable: str | None = None  # why the API is unreachable, once UNREACHABLE_AFTER attempts said so
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
        """The real API, or the bundled sample source through an in-process transport when the settings chose it
        (`Settings.uses_sample_source`)."""
        kwargs: dict[str, Any] = {
            "calls_per_minute": settings.calls_per_minute,
            "max_concurrency": settings.max_concurrency,
        }
        if settings.uses_sample_source:
            from pipeline.fmp.sample import SAMPLE_TICKERS, sample_transport

            # The sample source's own universe, never PIPELINE_TICKERS: like FMP it answers `[]` for any other
            # symbol instead of inventing prices for it (fmp_api.md section 2.4).
            if settings.sample_market:
                from pipeline.fmp.sample.synthetic_market import SyntheticMarket

                market = SyntheticMarket(settings.sample_market)
                kwargs["transport"] = sample_transport(
                    settings.today(), market.tickers, catalogue=market.company, plan=settings.fmp_plan
                )
            else:
                kwargs["transport"] = sample_transport(settings.today(), SAMPLE_TICKERS, plan=settings.fmp_plan)
            # The sample source is local: FMP's per-minute budget does not apply to it.
            kwargs["limiter"] = RateLimiter(1_000_000)
            base_url = SAMPLE_BASE_URL
            log.info("fetching from the %s, not the network", settings.source_label)
        else:
            base_url = settings.fmp_base_url
        kwargs.update(overrides)
        return cls(base_url, None if settings.uses_sample_source else settings.fmp_api_key, **kwargs)

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
        attempts = wire_bytes = 0
        while True:
            attempts += 1
            response, verdict = self._attempt(endpoint, wire_params, expect)
            wire_bytes += response.num_bytes_downloaded if response is not None else 0
            log.debug(
                "GET %s attempt %d: %s",
                recorded_url,
                attempts,
                response.status_code if response is not None else verdict.error_class,
            )
            if not verdict.retryable or attempts > self.max_retries or self._no_more_retries.is_set():
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
            if self._no_more_retries.is_set():
                break
        fetched_at = dt.datetime.now(dt.UTC)
        error_detail = verdict.detail
        if verdict.error_class == "transport" and self.unreachable:
            error_detail = API_UNREACHABLE
        if verdict.error_class == "rate_limited" and verdict.retryable and attempts > self.max_retries:
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
            wire_bytes=wire_bytes,
        )

    def _attempt(self, endpoint: str, params: Mapping[str, str], expect: str) -> tuple[httpx.Response | None, Verdict]:
        """One request through the concurrency slots and the limiter; transport errors become a verdict."""
        with self._slots:
            self.limiter.acquire()
            try:
                response = self._http.get(endpoint, params=params)
            except httpx.HTTPError as exc:
                detail = str(exc).strip()
                message = self.redact(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)
                self._transport_failed(message)
                return None, Verdict("transport", message, retryable=_is_retryable_exception(exc))
            except httpx.InvalidURL as exc:
                return None, Verdict("transport", self.redact(f"InvalidURL: {exc}"))
        with self._health:
            self._answered, self._transport_streak = True, 0
        return response, classify_response(response.status_code, response.content, expect)

    def _transport_failed(self, message: str) -> None:
        """Count an attempt that got no answer; the UNREACHABLE_AFTER-th in a row, before any answer ever came,
        makes the API unreachable for this client: no more retries (the run stops sending, see RunStops)."""
        with self._health:
            self._transport_streak += 1
            if self._answered or self.unreachable or self._transport_streak < UNREACHABLE_AFTER:
                return
            self.unreachable = (
                f"the FMP API at {self.base_url} is unreachable: {self._transport_streak} consecutive transport "
                f"failures and no answer since the run started (last: {message})"
            )
        log.warning("%s", self.unreachable)
        self.stop_retrying()

    def stop_retrying(self) -> None:
        """From now on every request ends after the attempt in progress: no retry, no backoff wait (the API is
        unreachable, or the run is stopping)."""
        self._no_more_retries.set()

    def _backoff(self, retry_number: int, retry_after: float | None, *, floor: bool) -> float:
        """Full jitter, never below a sane Retry-After (capped), and at least the base after a throttle.

        Hand-written rather than the `backoff` library the warehouse uses: each wait depends on the response
        (Retry-After, a throttle floor), and the client records every attempt in the result it returns."""
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
