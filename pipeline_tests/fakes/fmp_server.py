"""A fake FMP server on a real loopback socket, for client tests and the benchmark.

Why real sockets rather than an httpx MockTransport: timeouts, connection resets, bodies cut short,
connection reuse, gzip and concurrency only behave like production when bytes cross a socket. The fake copies
FMP's wire conventions (fmp_api.md 2.4, 2.8, 2.10): key in the query or an `apikey` header, 401 JSON for a bad
key, 403 "Legacy Endpoint" under /api/v3, 429 with the exact "Limit Reach ." body, gzip-encoded pretty JSON.
Faults are queued per path glob and consumed one per matching request, then normal service resumes.
Plan and quota refusals are standing modes instead (`exhaust_quota`, `restrict_symbols`, `restrict_paths`):
they answer every matching request until switched off, as FMP does until the quota resets or the plan changes.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

DataFn = Callable[[str, Mapping[str, str]], tuple[int, bytes, dict[str, str]]]

JSON_TYPE = "application/json; charset=utf-8"
INVALID_KEY_MESSAGE = (
    "Invalid API KEY. Please retry or visit our documentation to create one FREE "
    "https://financialmodelingprep.com/developer/docs"
)
LIMIT_REACH_MESSAGE = (
    "Limit Reach . Please upgrade your plan or visit our documentation for more details at "
    "https://site.financialmodelingprep.com/"
)
# Quota and plan refusals. Evidence: a captured 429 "Limit Reach ." body (blocksense-network/blocksense
# PR #1275, the exact text above); quota exhaustion, daily or bandwidth, answered with 429 or with 200 and that
# JSON body, retries not helping until the quota resets (published client issues and probes). The bandwidth
# text is only known to start "Bandwidth Limit Reach"; the rest here mirrors the daily one.
BANDWIDTH_LIMIT_MESSAGE = (
    "Bandwidth Limit Reach . Please upgrade your plan or visit our documentation for more "
    "details at https://site.financialmodelingprep.com/"
)
# 402 for an endpoint outside the plan, JSON (fmpdotnet error-handling guide; public client test fixtures), and
# 402 plain text for a symbol outside the plan (moremeds/argon #302), labelled JSON like FMP's other text errors.
RESTRICTED_ENDPOINT_MESSAGE = "Restricted Endpoint: This endpoint is not available under your current subscription"
PREMIUM_SYMBOL_TEXT = (
    "Premium Query Parameter: This value set for 'symbol' is not available under your current subscription"
)
# On the free plan a symbol outside its allow-list is refused everywhere symbol-scoped except these paths.
SYMBOL_FREE_PATHS = frozenset({"profile", "shares-float"})
QUOTA_MODES = ("429", "200", "bandwidth")
# fmp_api.md 3.2 traps and 2.10 item 3: a throttled bulk call answers HTTP 200 with this JSON body, not CSV.
BULK_LIMIT_MESSAGE = (
    "Limit Reach. This is a bulk endpoint, please upgrade your plan or visit our documentation for more details"
)
# fmp_api.md 3.4: on Starter (and below) the historical index constituents are 402, and so is every page of
# delisted-companies but the first. The body of the page refusal is not recorded: a parameter value outside the plan
# answers "Premium Query Parameter" (fmp_api.md 2.4), so the fake says that, naming `page`.
BELOW_PREMIUM = frozenset({"basic", "starter"})
PREMIUM_ENDPOINTS = ("historical-sp500-constituent", "historical-nasdaq-constituent", "historical-dowjones-constituent")
PREMIUM_PAGE_TEXT = (
    "Premium Query Parameter: This value set for 'page' is not available under your current subscription"
)
LEGACY_MESSAGE = (
    "Legacy Endpoint : Due to Legacy endpoints being no longer supported - This endpoint is only "
    "available for legacy users who have valid subscriptions prior August 31, 2025."
)


CORPORATE_CALENDARS = frozenset({"splits-calendar", "dividends-calendar", "earnings-calendar"})


def error_body(message: str) -> bytes:
    return json.dumps({"Error Message": message}, indent=2).encode()  # FMP pretty-prints: 150 bytes for Limit Reach


# -- faults ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour. `kind` is respond | reset | timeout | truncated."""

    kind: str
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    declare_full_length: bool = True


def status(code: int, body: bytes | str = b"", headers: Mapping[str, str] | None = None) -> Fault:
    raw = body.encode() if isinstance(body, str) else body
    return Fault("respond", code, raw, {"Content-Type": JSON_TYPE, **(headers or {})})


def rate_limit(retry_after: str | None = None) -> Fault:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return status(429, error_body(LIMIT_REACH_MESSAGE), headers)


def reset() -> Fault:
    """Close the connection with a TCP RST and no response."""
    return Fault("reset")


def timeout(seconds: float) -> Fault:
    """Sleep before answering normally (a client with a shorter read timeout gives up first)."""
    return Fault("timeout", seconds=seconds)


def truncated(declare_full_length: bool = True) -> Fault:
    """Cut the JSON body half-way. By default Content-Length announces the whole body and the connection closes
    early (a short read); with declare_full_length=False the cut body is sent complete (200 with broken JSON)."""
    return Fault("truncated", declare_full_length=declare_full_length)


def error_message_200(text: str) -> Fault:
    return status(200, error_body(text))


def plain_text_200(text: str) -> Fault:
    return status(200, text)  # FMP labels these JSON too


def html(code: int = 200) -> Fault:
    page = b"<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Bad gateway</h1></body></html>"
    return status(code, page, {"Content-Type": "text/html; charset=utf-8"})


# -- default data ------------------------------------------------------------------------------------

_BUILTIN_PRICES = [
    {
        "symbol": "AAPL",
        "date": "2025-01-03",
        "open": 243.36,
        "high": 244.18,
        "low": 241.89,
        "close": 243.36,
        "volume": 40244100,
        "change": 0.0,
        "changePercent": 0.0,
        "vwap": 243.2,
    },
    {
        "symbol": "AAPL",
        "date": "2025-01-02",
        "open": 248.93,
        "high": 249.1,
        "low": 241.82,
        "close": 243.85,
        "volume": 55740731,
        "change": -5.08,
        "changePercent": -2.04,
        "vwap": 245.9,
    },
]


def builtin_data(path: str, params: Mapping[str, str]) -> tuple[int, bytes, dict[str, str]]:
    """A tiny provider so the fake works without the sample source: a few FMP-shaped answers, else 404 []."""
    symbol = params.get("symbol", "")
    if path == "historical-price-eod/full":
        rows = [dict(row, symbol=symbol) for row in _BUILTIN_PRICES] if symbol else []
        return 200, json.dumps(rows, indent=2).encode(), {}
    if path == "profile":
        rows = [{"symbol": symbol, "companyName": f"{symbol} Inc.", "marketCap": 1.0e9}] if symbol else []
        return 200, json.dumps(rows, indent=2).encode(), {}
    if path == "eod-bulk":
        text = (
            "symbol,date,open,low,high,close,adjClose,volume\n"
            "AAPL,2025-01-03,243.36,241.89,244.18,243.36,243.36,40244100\n"
        )
        return 200, text.encode(), {"Content-Type": "text/csv; charset=utf-8"}
    return 404, b"[]", {}


def sample_data(source) -> DataFn:
    """Serve a `pipeline.fmp.sample.SampleSource` (its `respond` returns a SampleResponse)."""

    def respond(path: str, params: Mapping[str, str]) -> tuple[int, bytes, dict[str, str]]:
        answer = source.respond(path, params)
        return answer.status_code, bytes(answer.body), dict(answer.headers or {})

    return respond


def _default_data() -> DataFn:
    """The bundled sample source as of today."""
    from pipeline.fmp.sample import SampleSource

    return sample_data(SampleSource(as_of=date.today()))


# -- server ------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    monotonic: float  # arrival, time.monotonic()
    wall: float  # arrival, time.time()
    path: str  # relative to /stable (or the raw path when outside it)
    params: dict[str, str]  # apikey removed
    had_key: bool
    status: int | None = None  # None when no response was sent (reset, truncated)
    body_bytes: int = 0  # bytes of the body sent on the wire (gzip-compressed when the client accepts it)


def max_in_window(times: Sequence[float], window_s: float = 60.0) -> int:
    """The largest number of timestamps inside any closed window of `window_s` seconds."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] > window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up on timeouts and resets are expected here


class FakeFmpServer:
    """Serve FMP-like responses on 127.0.0.1:<free port>/stable in a daemon thread; use as a context manager."""

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        data: DataFn | None = None,
        latency_s: float = 0.0,
        calls_per_minute: int | None = None,
        retry_after: str | None = None,
        plan: str = "ultimate",
        window_s: float = 60.0,
        bulk_calls_per_minute: int | None = None,
    ) -> None:
        self.api_key = api_key
        self.data = data or _default_data()
        self.latency_s = latency_s
        self.calls_per_minute = calls_per_minute
        self.retry_after = retry_after
        self.plan = plan
        self.window_s = window_s
        self.bulk_calls_per_minute = bulk_calls_per_minute  # fmp_api.md 2.10 item 3: bulk paths have their own bucket
        self._bulk_served: deque[float] = deque()
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: list[tuple[str, deque[Fault]]] = []
        self._served: deque[float] = deque()
        self._quota_left: int | None = None  # None: no quota mode
        self._quota_mode = "429"
        self.restricted_symbols: frozenset[str] = frozenset()
        self.restricted_paths: tuple[str, ...] = ()  # path globs
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/stable"
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> FakeFmpServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-fmp", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FakeFmpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # controls
    def add_faults(self, path_glob: str, *faults: Fault) -> None:
        with self._lock:
            self._faults.append((path_glob, deque(faults)))

    def exhaust_quota(self, after: int, mode: str = "429") -> None:
        """Answer the first `after` keyed requests from now on normally, then refuse every one as an exhausted
        quota: `429` Limit Reach, `200` with the Limit Reach JSON, or `bandwidth` (429 Bandwidth Limit Reach)."""
        if mode not in QUOTA_MODES:
            raise ValueError(f"mode must be one of {QUOTA_MODES}, got {mode!r}")
        with self._lock:
            self._quota_left, self._quota_mode = after, mode

    def reset_quota(self) -> None:
        """The quota has reset (a new day): normal service again."""
        with self._lock:
            self._quota_left = None

    def restrict_symbols(self, *symbols: str) -> None:
        """The plan lacks these symbols: 402 Premium Query Parameter on every symbol-scoped path but the free ones."""
        self.restricted_symbols = frozenset(symbols)

    def restrict_paths(self, *globs: str) -> None:
        """The plan lacks these endpoints: 402 Restricted Endpoint."""
        self.restricted_paths = tuple(globs)

    def request_times(self) -> list[float]:
        with self._lock:
            return [r.monotonic for r in self.requests]

    # internals
    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            for glob, queue in self._faults:
                if queue and fnmatch.fnmatchcase(path, glob):
                    return queue.popleft()
        return None

    def _over_limit(self, now: float) -> bool:
        if self.calls_per_minute is None:
            return False
        with self._lock:
            while self._served and self._served[0] <= now - self.window_s:
                self._served.popleft()
            if len(self._served) >= self.calls_per_minute:
                return True
            self._served.append(now)
            return False

    def _bulk_over_limit(self, path: str, now: float) -> bool:
        """A `*-bulk` call over the bulk bucket (answered 200 + JSON Limit Reach, fmp_api.md 3.2)."""
        if self.bulk_calls_per_minute is None or not path.endswith("-bulk"):
            return False
        with self._lock:
            while self._bulk_served and self._bulk_served[0] <= now - self.window_s:
                self._bulk_served.popleft()
            if len(self._bulk_served) >= self.bulk_calls_per_minute:
                return True
            self._bulk_served.append(now)
            return False

    def _quota_refusal(self) -> tuple[int, bytes] | None:
        with self._lock:
            if self._quota_left is None:
                return None
            if self._quota_left > 0:
                self._quota_left -= 1
                return None
            mode = self._quota_mode
        if mode == "bandwidth":
            return 429, error_body(BANDWIDTH_LIMIT_MESSAGE)
        return (200 if mode == "200" else 429), error_body(LIMIT_REACH_MESSAGE)

    def _plan_refusal(self, path: str, params: Mapping[str, str]) -> tuple[int, bytes] | None:
        if any(fnmatch.fnmatchcase(path, glob) for glob in self.restricted_paths):
            return 402, error_body(RESTRICTED_ENDPOINT_MESSAGE)
        if params.get("symbol") in self.restricted_symbols and path not in SYMBOL_FREE_PATHS:
            return 402, PREMIUM_SYMBOL_TEXT.encode()
        if path in CORPORATE_CALENDARS and self.plan in ("basic", "starter"):
            # fmp_api.md 3.1/3.3: Starter has no corporate calendars
            return 402, error_body(RESTRICTED_ENDPOINT_MESSAGE)
        if path.endswith("-bulk") and self.plan != "ultimate":
            return 402, error_body(RESTRICTED_ENDPOINT_MESSAGE)
        if self.plan in BELOW_PREMIUM and path in PREMIUM_ENDPOINTS:
            return 402, error_body(RESTRICTED_ENDPOINT_MESSAGE)
        page = params.get("page", "0")
        if self.plan in BELOW_PREMIUM and path == "delisted-companies" and page.isdigit() and int(page) >= 1:
            return 402, PREMIUM_PAGE_TEXT.encode()
        if self.plan == "basic" and params.get("limit", "").isdigit() and int(params["limit"]) > 5:
            return 402, b"Premium Query Parameter: 'limit'"
        return None

    def _answer(
        self, path: str, params: Mapping[str, str], key_ok: bool, now: float
    ) -> tuple[int, bytes, dict[str, str]]:
        if not key_ok:
            return 401, error_body(INVALID_KEY_MESSAGE), {}
        if path.startswith("/api/"):
            return 403, error_body(LEGACY_MESSAGE), {}
        quota = self._quota_refusal()
        if quota is not None:
            return quota[0], quota[1], {}
        if self._over_limit(now):
            return 429, error_body(LIMIT_REACH_MESSAGE), ({"Retry-After": self.retry_after} if self.retry_after else {})
        refusal = self._plan_refusal(path, params)
        if refusal is not None:
            return refusal[0], refusal[1], {}
        if self._bulk_over_limit(path, now):
            return 200, error_body(BULK_LIMIT_MESSAGE), {}
        if self.latency_s:
            time.sleep(self.latency_s)
        return self.data(path, params)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is real
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                fake._handle(self)

        return Handler

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        arrived, wall = time.monotonic(), time.time()
        split = urlsplit(handler.path)
        params = dict(parse_qsl(split.query, keep_blank_values=True))
        key = params.pop("apikey", None) or handler.headers.get("apikey")
        path = split.path[len("/stable/") :] if split.path.startswith("/stable/") else split.path
        # Recorded on arrival, status filled in before any byte of the answer leaves: a client that has its
        # response can always see the record of it.
        record = RecordedRequest(arrived, wall, path, params, had_key=key is not None)
        with self._lock:
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._serve(handler, record, key)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _serve(self, handler: BaseHTTPRequestHandler, record: RecordedRequest, key: str | None) -> None:
        path, params, arrived = record.path, record.params, record.monotonic
        fault = self._next_fault(path)
        if fault is not None and fault.kind == "reset":
            _reset_connection(handler)
            return
        if fault is not None and fault.kind == "timeout":
            time.sleep(fault.seconds)
            fault = None
        key_ok = key == self.api_key
        if fault is not None and fault.kind == "truncated":
            _, body, _ = self._answer(path, params, key_ok, arrived)
            record.status = None if fault.declare_full_length else 200
            _send_truncated(handler, body or b'[{"symbol": "AAPL", "close": 1.0}]', fault.declare_full_length)
            return
        if fault is not None:
            code, body, headers = fault.status, fault.body, dict(fault.headers)
        else:
            code, body, headers = self._answer(path, params, key_ok, arrived)
        record.status = code
        record.body_bytes = _send(handler, code, body, headers, chunked=code == 200 and path in NO_LENGTH_PATHS)


# fmp_api.md 2.7: profile-bulk, etf-holder-bulk and eod-bulk send no Content-Length (the body comes chunked).
NO_LENGTH_PATHS = frozenset({"profile-bulk", "etf-holder-bulk", "eod-bulk"})


def _send(
    handler: BaseHTTPRequestHandler, code: int, body: bytes, headers: Mapping[str, str], *, chunked: bool = False
) -> int:
    """Send one answer (`chunked`: without a Content-Length); returns the body's length on the wire."""
    names = {k.lower() for k in headers}
    accepts_gzip = "gzip" in (handler.headers.get("Accept-Encoding") or "")
    payload = gzip.compress(body, compresslevel=5) if body and accepts_gzip else body
    try:
        handler.send_response(code)
        if "content-type" not in names:
            handler.send_header("Content-Type", JSON_TYPE)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "content-encoding"):  # computed here
                handler.send_header(name, value)
        if payload is not body:
            handler.send_header("Content-Encoding", "gzip")
        if "etag" not in names:
            handler.send_header("ETag", f'W/"{len(body):x}-{hashlib.sha1(body).hexdigest()[:16]}"')
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            handler.wfile.write(
                f"{len(payload):x}\r\n".encode() + payload + b"\r\n0\r\n\r\n" if payload else b"0\r\n\r\n"
            )
        else:
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
    except OSError:
        handler.close_connection = True  # the client went away (e.g. its read timeout fired)
    return len(payload)


def _send_truncated(handler: BaseHTTPRequestHandler, body: bytes, declare_full_length: bool) -> None:
    cut = body[: max(1, len(body) // 2)]
    try:
        handler.send_response(200)
        handler.send_header("Content-Type", JSON_TYPE)
        handler.send_header("Content-Length", str(len(body) if declare_full_length else len(cut)))
        handler.end_headers()
        handler.wfile.write(cut)
    except OSError:
        pass
    handler.close_connection = True


def _reset_connection(handler: BaseHTTPRequestHandler) -> None:
    """Abort with RST: SO_LINGER 0, and close every file object so the descriptor really closes now."""
    connection: socket.socket = handler.connection  # type: ignore[assignment]
    try:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    handler.close_connection = True
    handler.rfile.close()
    handler.wfile.close()
    connection.close()
