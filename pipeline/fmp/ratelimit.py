"""A sliding-window rate limiter shared by every FMP request of the process.

FMP enforces a per-minute ceiling per API key, and a key is shared by everything a process does, so the
limiter is too: `process_limiter()` hands out one instance per process. A sliding window (a deque of send
timestamps) rather than a token bucket is used because it gives a hard guarantee that is easy to check
from the outside: no 60-second window ever holds more than `calls_per_minute` sends.

The window is slightly longer than 60 s (`margin_s`): a send is stamped before it goes on the wire, and
two requests can take different times to reach the server, so a small margin keeps the *server's* count
inside the limit too. Clock and sleep are injectable so unit tests run on a fake clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

DEFAULT_WINDOW_S = 60.0
DEFAULT_MARGIN_S = 0.5


class RateLimiter:
    """Blocks `acquire()` until one more send keeps every window of `window_s` at <= `calls_per_minute` sends."""

    def __init__(
        self,
        calls_per_minute: int,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        margin_s: float = DEFAULT_MARGIN_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls_per_minute < 1:
            raise ValueError(f"calls_per_minute must be >= 1, got {calls_per_minute}")
        self._limit = calls_per_minute
        self._span = window_s + margin_s
        self._clock = clock
        self._sleep = sleep
        self._sends: deque[float] = deque()
        self._lock = threading.Lock()

    @property
    def calls_per_minute(self) -> int:
        return self._limit

    def reconfigure(self, calls_per_minute: int) -> None:
        """Change the ceiling; the send history is kept, so the new ceiling applies to the current window at once."""
        if calls_per_minute < 1:
            raise ValueError(f"calls_per_minute must be >= 1, got {calls_per_minute}")
        with self._lock:
            self._limit = calls_per_minute

    def acquire(self) -> float:
        """Wait for a free slot, record the send, and return how many seconds were spent waiting."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._sends and self._sends[0] <= now - self._span:
                    self._sends.popleft()
                if len(self._sends) < self._limit:
                    self._sends.append(now)
                    return waited
                # The oldest sends that must leave the window before one more fits.
                pause = self._sends[len(self._sends) - self._limit] + self._span - now
            pause = max(pause, 1e-3)
            self._sleep(pause)  # outside the lock: other threads may check (and also wait) meanwhile
            waited += pause

    def __repr__(self) -> str:
        return f"RateLimiter(calls_per_minute={self._limit}, window_s={self._span:g})"


_process_limiter: RateLimiter | None = None
_process_lock = threading.Lock()


def process_limiter(calls_per_minute: int) -> RateLimiter:
    """The one limiter of this process, created on first use.

    Asked again with a different rate, the shared limiter is reconfigured to that rate (last caller wins)
    rather than a second limiter being made: two limiters would let the process exceed the key's ceiling.
    """
    global _process_limiter
    with _process_lock:
        if _process_limiter is None:
            _process_limiter = RateLimiter(calls_per_minute)
        elif _process_limiter.calls_per_minute != calls_per_minute:
            _process_limiter.reconfigure(calls_per_minute)
        return _process_limiter
