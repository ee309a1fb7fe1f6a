"""The FMP client's promises (DESIGN sections 5-6), checked over real loopback sockets against FakeFmpServer.

Backoff values are tiny so the whole file runs in seconds; the rate-limit window is either a fake clock or a
scaled-down window, never a real minute.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import socket
import sys
import threading
import time
import types
from collections.abc import Iterator, Mapping

import httpx
import pytest

from pipeline.fmp.classify import ERROR_CLASSES, classify_response
from pipeline.fmp.client import FetchResult, FmpClient, FmpClientError, parse_retry_after
from pipeline.fmp.ratelimit import RateLimiter, process_limiter
from pipeline.settings import Settings
from pipeline_tests.client_helpers import fetch_many
from pipeline_tests.fakes.fmp_server import (
    FakeFmpServer,
    builtin_data,
    error_body,
    error_message_200,
    html,
    max_in_window,
    plain_text_200,
    rate_limit,
    reset,
    status,
    timeout,
    truncated,
)
from pipeline_tests.support import KEY

EOD = "historical-price-eod/full"
AAPL = {"symbol": "AAPL"}


@pytest.fixture
def server() -> Iterator[FakeFmpServer]:
    with FakeFmpServer(api_key=KEY, data=builtin_data) as fake:
        yield fake


class RecordingSleep:
    """Sleeps for real (so server timing stays honest) and remembers every backoff delay."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        time.sleep(seconds)


def make_client(base_url: str, **overrides: object) -> FmpClient:
    options: dict[str, object] = dict(
        max_retries=2,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
        retry_after_cap_s=2.0,
        timeout_s=2.0,
        limiter=RateLimiter(100_000),
    )
    options.update(overrides)
    return FmpClient(base_url, KEY, **options)  # type: ignore[arg-type]


def assert_key_free(*things: object) -> None:
    for thing in things:
        text = repr(dataclasses.asdict(thing)) if isinstance(thing, FetchResult) else repr(thing)
        assert KEY not in text
        if isinstance(thing, FetchResult):
            assert KEY.encode() not in thing.body


# -- retries -------------------------------------------------------------------------------------------


def test_500_500_200_succeeds_on_third_attempt(server: FakeFmpServer) -> None:
    server.add_faults(EOD, status(500, b"oops"), status(500, b"oops"))
    with make_client(server.base_url) as client:
        result = client.fetch(EOD, AAPL)
    assert result.ok and result.attempts == 3 and result.row_count == 2
    assert [r.status for r in server.requests] == [500, 500, 200]
    assert result.url == f"{server.base_url}/{EOD}?symbol=AAPL" and result.params == AAPL


def test_429_without_retry_after_backs_off_at_least_the_base(server: FakeFmpServer) -> None:
    server.add_faults(EOD, rate_limit(), rate_limit())
    sleep = RecordingSleep()
    with make_client(server.base_url, backoff_base_s=0.05, backoff_cap_s=0.1, sleep=sleep) as client:
        result = client.fetch(EOD, AAPL)
    assert result.ok and result.attempts == 3
    assert len(sleep.delays) == 2 and all(d >= 0.05 for d in sleep.delays)


@pytest.mark.parametrize("header", ["0", "soon", "-3", "nan"])
def test_garbage_retry_after_still_backs_off(server: FakeFmpServer, header: str) -> None:
    server.add_faults(EOD, rate_limit(retry_after=header))
    sleep = RecordingSleep()
    with make_client(server.base_url, backoff_base_s=0.03, sleep=sleep) as client:
        assert client.fetch(EOD, AAPL).ok
    assert sleep.delays and sleep.delays[0] >= 0.03


def test_retry_after_is_honoured(server: FakeFmpServer) -> None:
    server.add_faults(EOD, rate_limit(retry_after="1"))
    sleep = RecordingSleep()
    with make_client(server.base_url, sleep=sleep) as client:
        started = time.monotonic()
        result = client.fetch(EOD, AAPL)
    gap = server.requests[1].monotonic - server.requests[0].monotonic
    assert result.ok and sleep.delays[0] >= 1.0 and gap >= 1.0 and time.monotonic() - started >= 1.0


def test_retry_after_is_capped(server: FakeFmpServer) -> None:
    server.add_faults(EOD, rate_limit(retry_after="9999"))
    sleep = RecordingSleep()
    with make_client(server.base_url, retry_after_cap_s=0.2, sleep=sleep) as client:
        result = client.fetch(EOD, AAPL)
    assert result.ok and sleep.delays == [pytest.approx(0.2)]


def test_parse_retry_after_forms() -> None:
    now = dt.datetime(2025, 1, 3, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after("Fri, 03 Jan 2025 12:00:30 GMT", now) == pytest.approx(30.0)
    for junk in (None, "", "0", "-1", "later", "inf", "Fri, 03 Jan 2025 11:00:00 GMT"):
        assert parse_retry_after(junk, now) is None


def test_persistent_503_is_http_status_after_all_retries(server: FakeFmpServer) -> None:
    server.add_faults(EOD, *[status(503, b"<html>busy</html>")] * 10)
    with make_client(server.base_url, max_retries=3) as client:
        result = client.fetch(EOD, AAPL)
    assert result.error_class == "http_status" and result.attempts == 4 and len(server.requests) == 4
    assert result.status_code == 503 and result.error_message.startswith("HTTP 503: <html>busy</html>")
    assert result.content is None and not result.ok


def test_persistent_429_is_rate_limited(server: FakeFmpServer) -> None:
    server.add_faults(EOD, *[rate_limit()] * 3)
    with make_client(server.base_url) as client:
        result = client.fetch(EOD, AAPL)
    assert result.error_class == "rate_limited" and result.attempts == 3 and "Limit Reach" in result.error_message


@pytest.mark.parametrize(
    ("code", "body", "expected"),
    [
        (400, b"Query Error: Invalid or missing query parameter - symbol", "http_status"),
        (401, error_body("Invalid API KEY. Please retry"), "auth"),
        (402, b"Premium Query Parameter: This value set for 'symbol' is not available", "plan_restricted"),
        (403, error_body("Legacy Endpoint : no longer supported"), "auth"),
        (404, b"[]", "http_status"),
        (418, b"teapot", "http_status"),
    ],
)
def test_client_errors_are_not_retried(server: FakeFmpServer, code: int, body: bytes, expected: str) -> None:
    server.add_faults(EOD, status(code, body))
    with make_client(server.base_url) as client:
        result = client.fetch(EOD, AAPL)
    assert result.error_class == expected and result.attempts == 1 and len(server.requests) == 1
    assert result.error_message.startswith(f"HTTP {code}: ")


def test_402_message_keeps_fmp_text(server: FakeFmpServer) -> None:
    server.add_faults("profile", status(402, error_body("Restricted Endpoint: upgrade")))
    with make_client(server.base_url) as client:
        result = client.fetch("profile", AAPL)
    assert result.error_message == "HTTP 402: Restricted Endpoint: upgrade"


# -- transport failures ----------------------------------------------------------------------------------


def test_read_timeout_is_retried_then_transport(server: FakeFmpServer) -> None:
    server.add_faults(EOD, *[timeout(0.6)] * 3)
    with make_client(server.base_url, timeout_s=0.2) as client:
        result = client.fetch(EOD, AAPL)
    assert result.error_class == "transport" and result.attempts == 3 and result.status_code is None
    assert "ReadTimeout" in result.error_message and result.body == b""


def test_one_read_timeout_then_success(server: FakeFmpServer) -> None:
    server.add_faults(EOD, timeout(0.6))
    with make_client(server.base_url, timeout_s=0.2) as client:
        result = client.fetch(EOD, AAPL)
    assert result.ok and result.attempts == 2


def test_connection_reset_is_retried_then_transport(server: FakeFmpServer) -> None:
    server.add_faults(EOD, reset(), reset(), reset())
    with make_client(server.base_url) as client:
        result = client.fetch(EOD, AAPL)
        assert result.error_class == "transport" and result.attempts == 3
        server.add_faults(EOD, reset())
        assert client.fetch(EOD, AAPL).attempts == 2


def test_short_read_is_classified_not_raised(server: FakeFmpServer) -> None:
    server.add_faults(EOD, truncated(), truncated(), truncated())
    with make_client(server.base_url) as client:
        result = client.fetch(EOD, AAPL)
    assert result.error_class == "transport" and result.attempts == 3 and "RemoteProtocolError" in result.error_message


def test_json_cut_midway_is_invalid_body(server: FakeFmpServer) -> None:
    server.add_faults(EOD, truncated(declare_full_length=False))
    with make_client(server.base_url) as client:
        result = client.fetch(EOD, AAPL)
    assert result.error_class == "invalid_body" and result.status_code == 200 and result.attempts == 1
    assert result.body and result.content is None


# -- 200 bodies ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (error_message_200("No Data for this symbol or invalid API call"), "api_error_body"),
        (error_message_200("Invalid API KEY. Please retry"), "auth"),
        (plain_text_200("Invalid name"), "invalid_body"),
        (html(200), "invalid_body"),
        (status(200, b""), "empty"),
        (status(200, b"  \n"), "empty"),
    ],
)
def test_200_bodies_are_classified(server: FakeFmpServer, fault: object, expected: str) -> None:
    server.add_faults("economic-indicators", fault)  # type: ignore[arg-type]
    with make_client(server.base_url) as client:
        result = client.fetch("economic-indicators", {"name": "GDP"})
    assert result.error_class == expected and result.status_code == 200 and result.attempts == 1
    assert result.content is None and result.row_count == 0


def test_200_limit_reach_is_retried_then_rate_limited(server: FakeFmpServer) -> None:
    server.add_faults("eod-bulk", *[error_message_200("Limit Reach. Bulk throttled")] * 3)
    with make_client(server.base_url) as client:
        result = client.fetch("eod-bulk", {"date": "2025-01-03"}, expect="csv")
    assert result.error_class == "rate_limited" and result.attempts == 3


def test_empty_array_is_success_with_zero_rows(server: FakeFmpServer) -> None:
    with make_client(server.base_url) as client:
        result = client.fetch(EOD, {})  # builtin data answers [] without a symbol
    assert result.ok and result.content == [] and result.row_count == 0 and result.content_format == "json"


def test_csv_is_parsed_into_rows_of_strings(server: FakeFmpServer) -> None:
    with make_client(server.base_url) as client:
        result = client.fetch("eod-bulk", {"date": "2025-01-03"}, expect="csv")
    assert result.ok and result.content_format == "csv" and result.row_count == 1
    assert result.content[0]["symbol"] == "AAPL" and result.content[0]["volume"] == "40244100"


def test_json_error_on_csv_endpoint_is_an_error(server: FakeFmpServer) -> None:
    server.add_faults("eod-bulk", error_message_200("Something went wrong"))
    with make_client(server.base_url) as client:
        result = client.fetch("eod-bulk", {}, expect="csv")
    assert result.error_class == "api_error_body"


def test_gzip_and_selected_headers(server: FakeFmpServer) -> None:
    with make_client(server.base_url) as client:
        result = client.fetch(EOD, AAPL)
    assert result.body.startswith(b"[\n  {")  # decoded from gzip, pretty-printed as FMP does
    assert set(result.headers) <= {"content-type", "etag", "date", "retry-after", "content-length"}
    assert result.headers["content-type"] == "application/json; charset=utf-8" and result.headers["etag"].startswith(
        "W/"
    )
    assert result.fetched_at.tzinfo is not None and result.elapsed_ms > 0


def test_wrong_key_and_legacy_path_are_auth(server: FakeFmpServer) -> None:
    with FmpClient(server.base_url, "wrong", limiter=RateLimiter(1000), max_retries=0) as client:
        assert client.fetch(EOD, AAPL).error_class == "auth"
    legacy_base = server.base_url.replace("/stable", "/api/v3")
    with make_client(legacy_base) as client:
        result = client.fetch("profile/AAPL", {})
    assert result.error_class == "auth" and "Legacy Endpoint" in result.error_message


def test_classify_response_status_first() -> None:
    assert classify_response(500, error_body("Limit Reach .")).error_class == "http_status"
    assert classify_response(429, b"").error_class == "rate_limited"
    assert classify_response(200, b"[]").error_class is None
    assert classify_response(200, b'{"symbol": "AAPL"}').content == {"symbol": "AAPL"}
    assert all(classify_response(c, b"x").error_class in ERROR_CLASSES for c in (200, 302, 401, 402, 404, 429, 503))


# -- the key never leaks ---------------------------------------------------------------------------------


def test_key_is_sent_but_never_recorded(server: FakeFmpServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server.add_faults(EOD, status(500, b"x"), reset(), truncated(), error_message_200("bad"))
    server.add_faults("profile", timeout(0.5))
    with make_client(server.base_url, max_retries=3, timeout_s=0.2) as client:
        results = [
            client.fetch(EOD, {**AAPL, "apikey": KEY}),
            client.fetch(EOD, AAPL),
            client.fetch("profile", AAPL),
            client.fetch("eod-bulk", {}, expect="csv"),
        ]
        assert_key_free(client, *results)
        assert client.redact(f"GET /x?apikey={KEY}&symbol=A and {KEY}") == "GET /x?apikey=***&symbol=A and ***"
    assert all(r.had_key for r in server.requests)  # it did go on the wire
    assert all("apikey" not in r.params for r in results)
    assert any(r.name == "httpx" for r in caplog.records)  # httpx logged its URL lines, filtered
    assert KEY not in caplog.text and all(KEY not in r.getMessage() for r in caplog.records)


def test_key_free_when_the_transport_fails(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with make_client(f"http://127.0.0.1:{port}/stable") as client:
        result = client.fetch(EOD, AAPL)
    assert result.error_class == "transport" and result.attempts == 3 and "ConnectError" in result.error_message
    assert_key_free(result)
    assert KEY not in caplog.text


def test_unexpected_exceptions_are_scrubbed() -> None:
    def explode(request: httpx.Request) -> httpx.Response:
        raise RuntimeError(f"cannot handle {request.url}")

    with FmpClient(
        "http://fmp.invalid/stable", KEY, transport=httpx.MockTransport(explode), limiter=RateLimiter(1000)
    ) as client:
        with pytest.raises(FmpClientError) as caught:
            client.fetch(EOD, AAPL)
        with pytest.raises(ValueError) as bad_expect:
            client.fetch(EOD, AAPL, expect="xml")
    assert KEY not in str(caught.value) and "apikey=***" in str(caught.value)
    assert KEY not in str(bad_expect.value) and KEY not in repr(caught.value)


# -- rate limiter ----------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_limiter_never_exceeds_30_in_any_minute_on_a_fake_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(30, clock=clock, sleep=clock.sleep)
    sends = []
    for i in range(200):
        clock.now += 0.7 if i % 7 == 0 else 0.01  # irregular arrivals, mostly bursts
        limiter.acquire()
        sends.append(clock.now)
    assert max_in_window(sends, 60.0) == 30
    # and it is not overly timid: 200 sends need six full windows, not many more
    assert sends[-1] - sends[0] < 7 * 60.5


def test_limiter_is_thread_safe_on_a_short_window() -> None:
    limiter = RateLimiter(5, window_s=0.3, margin_s=0.02)
    sends: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(4):
            limiter.acquire()
            with lock:
                sends.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sends) == 20 and max_in_window(sends, 0.3) <= 5


def test_server_never_sees_more_than_the_limit_in_any_window() -> None:
    """Real sockets, a window scaled from 60 s down to 1.5 s: the server's own arrival stamps must obey it (the
    client keeps a 0.25 s margin for the time between its send stamp and the server's arrival stamp on a loaded
    machine)."""
    window, limit = 1.5, 20
    with FakeFmpServer(api_key=KEY, data=builtin_data, calls_per_minute=limit, window_s=window) as fake:
        limiter = RateLimiter(limit, window_s=window, margin_s=0.25)
        with make_client(fake.base_url, limiter=limiter, max_concurrency=8, max_retries=0) as client:
            results = [r for _, r in fetch_many(client, ((EOD, AAPL, "json") for _ in range(45)))]
    assert all(r.ok for r in results), {r.error_class for r in results}
    assert max_in_window(fake.request_times(), window) <= limit
    assert len(fake.requests) == 45


def test_every_attempt_acquires_the_limiter(server: FakeFmpServer) -> None:
    class Counting(RateLimiter):
        calls = 0

        def acquire(self) -> float:
            Counting.calls += 1
            return super().acquire()

    server.add_faults(EOD, status(502), status(502))
    with make_client(server.base_url, limiter=Counting(1000)) as client:
        assert client.fetch(EOD, AAPL).attempts == 3
    assert Counting.calls == 3


def test_process_limiter_is_shared_and_reconfigurable() -> None:
    first = process_limiter(300)
    second = process_limiter(120)
    assert first is second and second.calls_per_minute == 120
    process_limiter(300)


# -- concurrency -----------------------------------------------------------------------------------------


def test_concurrency_is_bounded_and_used() -> None:
    with FakeFmpServer(api_key=KEY, data=builtin_data, latency_s=0.2) as fake:
        with make_client(fake.base_url, max_concurrency=4) as client:
            client.fetch("profile", AAPL)  # warm up
            started = time.monotonic()
            results = dict(fetch_many(client, ((EOD, {"symbol": f"T{i}"}, "json") for i in range(8))))
            elapsed = time.monotonic() - started
    assert sorted(results) == list(range(8)) and all(r.ok for r in results.values())
    assert results[5].params == {"symbol": "T5"}
    assert 0.38 <= elapsed < 0.75
    assert fake.max_in_flight == 4


def test_fetch_many_turns_failures_into_results(server: FakeFmpServer) -> None:
    server.add_faults(EOD, reset(), reset(), reset(), status(402, b"Premium"))
    with make_client(server.base_url, max_retries=0, max_concurrency=2) as client:
        results = dict(fetch_many(client, [(EOD, AAPL, "json")] * 6))
    classes = sorted(r.error_class or "ok" for r in results.values())
    assert classes == ["ok", "ok", "plan_restricted", "transport", "transport", "transport"]


# -- construction ----------------------------------------------------------------------------------------


def test_from_settings_uses_the_sample_transport_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def sample_transport(as_of: dt.date, tickers: tuple[str, ...], **knobs: object) -> httpx.MockTransport:
        seen.update(as_of=as_of, tickers=tickers, **knobs)
        return httpx.MockTransport(lambda request: httpx.Response(200, json=[{"url": str(request.url)}]))

    fake_module = types.SimpleNamespace(sample_transport=sample_transport, SAMPLE_TICKERS=("AAPL", "MSFT"))
    monkeypatch.setitem(sys.modules, "pipeline.fmp.sample", fake_module)
    settings = Settings(fmp_api_key=None, as_of=dt.date(2025, 1, 3))
    with FmpClient.from_settings(settings, limiter=RateLimiter(1000)) as client:
        result = client.fetch(EOD, AAPL)
    assert seen == {"as_of": dt.date(2025, 1, 3), "tickers": ("AAPL", "MSFT"), "plan": None}  # FMP_PLAN unset
    assert result.ok and result.url.startswith("https://sample.fmp.invalid/stable/")
    assert "apikey" not in result.content[0]["url"]


def test_from_settings_with_a_key_targets_the_configured_url(server: FakeFmpServer) -> None:
    settings = Settings(fmp_api_key=KEY, fmp_base_url=server.base_url, calls_per_minute=1000, max_concurrency=2)
    with FmpClient.from_settings(settings, limiter=RateLimiter(1000)) as client:
        assert client.fetch(EOD, AAPL).ok and KEY not in repr(client)
    assert server.requests[0].had_key


def test_fake_server_plan_and_rate_limit_behaviour() -> None:
    def data(path: str, params: Mapping[str, str]) -> tuple[int, bytes, dict[str, str]]:
        return 200, b"[]", {}

    with FakeFmpServer(api_key=KEY, data=data, plan="basic", calls_per_minute=4, retry_after="1") as fake:
        with make_client(fake.base_url, max_retries=0) as client:
            assert client.fetch("eod-bulk", {}, expect="csv").error_class == "plan_restricted"
            assert client.fetch("income-statement", {"symbol": "AAPL", "limit": "10"}).error_class == "plan_restricted"
            client.fetch("profile", AAPL)
            client.fetch("profile", AAPL)
            limited = client.fetch("profile", AAPL)
    assert limited.error_class == "rate_limited" and limited.headers["retry-after"] == "1"
    assert [r.status for r in fake.requests] == [402, 402, 200, 200, 429]
