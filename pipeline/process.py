"""Process helpers shared by crash recovery (Bronze journals, abandoned Dagster runs, pool slots of dead steps)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists on this host (a process we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state first); [] where there is no /proc entry."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def start_ticks(pid: int) -> str:
    """When the process started, in clock ticks since boot (Linux /proc); '' where that cannot be read.

    With the pid it names one process for the lifetime of the host: a pid the kernel gave to a new process
    after the first one died has another start time."""
    fields = _stat(pid)
    return fields[19] if len(fields) > 19 else ""


@dataclass(frozen=True)
class ProcessId:
    """One process on one host, written as `host pid start` (in a Dagster run tag) so another process can tell
    whether it still runs."""

    host: str
    pid: int
    started: str = ""  # start_ticks(pid); '' when unknown (then only the pid is compared)

    @classmethod
    def current(cls) -> ProcessId:
        pid = os.getpid()
        return cls(socket.gethostname(), pid, start_ticks(pid))

    @classmethod
    def parse(cls, text: str | None) -> ProcessId | None:
        parts = (text or "").split()
        if len(parts) not in (2, 3) or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2] if len(parts) == 3 else "")

    def __str__(self) -> str:
        return f"{self.host} {self.pid} {self.started}".strip()

    def is_dead(self) -> bool:
        """True only when this process is known to be gone: it ran on this host and its pid is unused, or used by
        a process that started at another time. A process on another host is never known dead."""
        if self.host != socket.gethostname():
            return False
        if not pid_alive(self.pid):
            return True
        fields = _stat(self.pid)
        if fields and fields[0] in ("Z", "X"):  # killed, not yet reaped by its parent
            return True
        return bool(self.started) and len(fields) > 19 and fields[19] != self.started
