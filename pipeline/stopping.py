"""SIGTERM and SIGINT: every `pipeline` command stops within seconds, and says so.

`install()` (the CLI calls it first) makes both signals raise `Stopped` in the main thread, so a transaction in
progress rolls back and the command ends with exit code 128 + the signal number. While Dagster executes a run in
this process, it puts its own handlers in place (the running step is interrupted, the run ends failed); the signal
is still seen here, through the interpreter's wakeup fd, so that `requested()` tells the caller (`pipeline run`
then starts no further phase) and the Bronze fetch can name the signal in its message.

A command that has not ended STOP_GRACE_S seconds after the signal (a step waiting out a retry delay, a request
hanging until its timeout) exits at once, as does any command at a second signal: the warehouse commits are atomic
and Bronze files are journaled, so the next run registers what was written and refetches the rest.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable

STOP_GRACE_S = 10.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Sent by the watcher to the main thread: the kernel may deliver SIGTERM to any thread, and then a main thread
# blocked in a long sleep (a retry delay) runs the Python handler only when that sleep ends. A signal aimed at the
# main thread interrupts the sleep, so the pending handler (ours, or Dagster's while it runs a step) runs at once.
NUDGE = signal.SIGUSR2

_received: list[int] = []
_lock = threading.Lock()
_at_forced_exit: list[Callable[[], None]] = []
_grace_s: list[float] = [STOP_GRACE_S]


class Stopped(BaseException):
    """Raised in the main thread by SIGTERM or SIGINT; a BaseException, like KeyboardInterrupt, so that no
    `except Exception` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


_wakeup: list[int] = []  # the read end of the wakeup fd's pipe, once installed


def install() -> None:
    """Main thread only, once per process: handlers for SIGTERM and SIGINT (also when the shell started this process
    with SIGINT ignored) and a watcher of the wakeup fd."""
    if _wakeup:
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    _wakeup.append(read_fd)
    for signum in SIGNALS:
        signal.signal(signum, _raise_stopped)
    signal.signal(NUDGE, lambda _signum, _frame: None)
    threading.Thread(target=_watch, args=(read_fd,), name="pipeline-signals", daemon=True).start()


def _raise_stopped(signum: int, _frame: object) -> None:
    _drain()  # the interpreter wrote the signal to the wakeup fd before calling this handler
    raise Stopped(signum)


def _watch(read_fd: int) -> None:
    """Record every SIGTERM/SIGINT the interpreter sees, whichever handler (ours, Dagster's) runs for it."""
    while True:
        select.select([read_fd], [], [])
        _drain()


def _drain() -> None:
    """Read the signals waiting in the wakeup fd; at the first, arm the forced exit; at a second, exit now."""
    with _lock:
        try:
            data = os.read(_wakeup[0], 64) if _wakeup else b""
        except BlockingIOError:
            data = b""
        before = len(_received)
        _received.extend(b for b in data if b in SIGNALS)
        new = _received[before:]
    if not new:
        return
    if threading.current_thread() is not threading.main_thread():
        signal.pthread_kill(threading.main_thread().ident, NUDGE)
    if before == 0:
        grace = _grace_s[-1]
        why = f"still running {grace:g} s after {{sig}}"
        timer = threading.Timer(grace, _exit_now, args=(new[0], why))
        timer.daemon = True
        timer.start()
    if before + len(new) > 1:
        _exit_now(new[-1], "{sig} received a second time")


def requested() -> int | None:
    """The first SIGTERM/SIGINT this process received, or None."""
    _drain()
    with _lock:
        return _received[0] if _received else None


def raise_if_requested() -> None:
    """Raise `Stopped` if a signal came (while Dagster's handlers were in place, nothing raised it yet)."""
    signum = requested()
    if signum is not None:
        raise Stopped(signum)


def reason() -> str | None:
    """'stopped by SIGTERM' (or SIGINT) once a signal came, else None."""
    signum = requested()
    return None if signum is None else f"stopped by {signal.Signals(signum).name}"


def exit_code(signum: int) -> int:
    """The shell's convention for a process ended by a signal."""
    return 128 + signum


def exit_now(code: int) -> None:
    """End the process now with `code`, after flushing output and logs, without waiting for threads still blocked
    in a request (their answers are dropped; nothing they would write is lost, see the module docstring)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def set_grace(seconds: float) -> None:
    """How long after the first signal the process is forced to exit (a command that needs longer to stop)."""
    _grace_s.append(seconds)


def at_forced_exit(callback: Callable[[], None]) -> None:
    """Call `callback` before a forced exit (STOP_GRACE_S passed, or a second signal): e.g. kill a child group."""
    _at_forced_exit.append(callback)


def _exit_now(signum: int, why: str) -> None:
    for callback in _at_forced_exit:
        callback()
    print(
        f"pipeline: {why.format(sig=signal.Signals(signum).name)}: exiting now; what was written is kept, the next "
        "run registers it and fetches the rest",
        file=sys.stderr,
    )
    exit_now(exit_code(signum))
