"""Refusals that make the rest of a run's similar requests pointless, and what the run stops sending because of them.

FMP refuses a bad key, an exhausted quota and a plan that lacks a symbol or an endpoint on every similar request
alike; sending hundreds of identical refusals costs quota and hides the cause. Each stop is counted as a skip with
its reason, and a later run plans the same requests again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipeline.bronze.envelope import BronzeEnvelope
from pipeline.bronze.planner import PlannedRequest
from pipeline.fmp.classify import (
    API_UNREACHABLE,
    ENDPOINT_NOT_IN_PLAN,
    PARAMETER_NOT_IN_PLAN,
    QUOTA_EXHAUSTED,
    SYMBOL_NOT_IN_PLAN,
)
from pipeline.keymap.model import KeymapEntry

AUTH_REFUSALS_TO_STOP = 3
QUOTA_REFUSALS_TO_STOP = 3  # consecutive: one success in between means the quota is not gone
UNREACHABLE_STOP = "not_sent_api_unreachable"


@dataclass(frozen=True)
class NotSent:
    """A planned request the run did not send, the skip kind it is counted under, and why."""

    kind: str
    reason: str


class RunStops:
    """What a run has stopped sending, and why: refusals that make the same requests pointless for the rest of it.

    - a refused key (`auth`, AUTH_REFUSALS_TO_STOP answers): every remaining request, `not_sent_key_refused`;
    - an exhausted quota (QUOTA_REFUSALS_TO_STOP consecutive quota refusals): every remaining request,
      `not_sent_quota_exhausted`; a later run, once the quota has reset, plans them again;
    - an unreachable API (the client saw UNREACHABLE_AFTER transport failures in a row and never an answer):
      every remaining request, `not_sent_api_unreachable`;
    - a 402 on one symbol: that ticker's remaining requests, `not_sent_symbol_not_in_plan`;
    - a 402 on an endpoint: that path's remaining requests, `not_sent_endpoint_not_in_plan`;
    - a 402 on another query parameter: that keymap entry's remaining requests, `not_sent_parameter_not_in_plan`.

    Thread-safe: workers ask `not_sent` before sending and `observe` each answer, so a stop takes effect for
    every request not yet on the wire. The refusals themselves stay Bronze error envelopes.
    """

    def __init__(self, unreachable: Callable[[], str | None] = lambda: None) -> None:
        """`unreachable`: why the client found the API unreachable (FmpClient.unreachable), for the stop's reason."""
        self._unreachable = unreachable
        self._lock = threading.Lock()
        self._key_refusals = 0
        self._quota_streak = 0
        self._run: NotSent | None = None
        self._tickers: dict[str, NotSent] = {}
        self._paths: dict[str, NotSent] = {}
        self._entries: dict[str, NotSent] = {}

    @property
    def run_stop(self) -> NotSent | None:
        """The stop that keeps every remaining request of the run from being sent, if one came."""
        with self._lock:
            return self._run

    def stop_all(self, stop: NotSent) -> None:
        """Send nothing more this run (the run is stopping), whatever stopped it before."""
        with self._lock:
            self._run = stop

    def not_sent(self, request: PlannedRequest, entry: KeymapEntry) -> NotSent | None:
        with self._lock:
            return (
                self._run
                or self._tickers.get(request.identity.ticker)
                or self._paths.get(request.path)
                or self._entries.get(entry.asset_name)
            )

    def observe(self, request: PlannedRequest, entry: KeymapEntry, envelopes: Sequence[BronzeEnvelope]) -> list[str]:
        """Record one request's answers; returns a message for each stop they trigger (to log and report)."""
        refused = next((env for env in envelopes if env.error_class), None)
        quota = next((env for env in envelopes if env.error_detail == QUOTA_EXHAUSTED), None)
        news: list[str] = []
        with self._lock:
            self._quota_streak = self._quota_streak + 1 if quota else 0
            if refused is None:
                return news
            if refused.error_detail == API_UNREACHABLE and self._run is None:
                why = self._unreachable() or f"the FMP API is unreachable (last: {refused.error_message})"
                self._run = NotSent(UNREACHABLE_STOP, f"not sent: {why}")
                news.append(self._run.reason)
            elif refused.error_class == "auth":
                self._key_refusals += 1
                if self._key_refusals >= AUTH_REFUSALS_TO_STOP and self._run is None:
                    self._run = NotSent(
                        "not_sent_key_refused",
                        f"not sent: FMP refused the API key {self._key_refusals} times ({refused.error_message})",
                    )
                    news.append(self._run.reason)
            elif quota and self._quota_streak >= QUOTA_REFUSALS_TO_STOP and self._run is None:
                self._run = NotSent(
                    "not_sent_quota_exhausted",
                    f"not sent: the FMP quota is exhausted ({self._quota_streak} consecutive "
                    f"refusals, last: {quota.error_message}); a run after the quota resets fetches "
                    "them",
                )
                news.append(self._run.reason)
            detail, message = refused.error_detail, refused.error_message
            ticker = request.identity.ticker
            if detail == SYMBOL_NOT_IN_PLAN and ticker and ticker not in self._tickers:
                self._tickers[ticker] = NotSent(
                    "not_sent_symbol_not_in_plan",
                    f"{ticker}: not sent: the FMP plan does not cover symbol {ticker} ({message})",
                )
                news.append(self._tickers[ticker].reason)
            elif detail == ENDPOINT_NOT_IN_PLAN and request.path not in self._paths:
                self._paths[request.path] = NotSent(
                    "not_sent_endpoint_not_in_plan",
                    f"{request.path}: not sent: the FMP plan does not include this endpoint ({message})",
                )
                news.append(self._paths[request.path].reason)
            elif detail == PARAMETER_NOT_IN_PLAN and entry.asset_name not in self._entries:
                self._entries[entry.asset_name] = NotSent(
                    "not_sent_parameter_not_in_plan",
                    f"{entry.asset_name}: not sent: the FMP plan refuses a query parameter of this dataset ({message})",
                )
                news.append(self._entries[entry.asset_name].reason)
        return news
