"""The environment Dagster reads for the project's event log, set in every process the project starts.

Why: a run over a range of N tickers plans each asset once per ticker unless
`DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS` is set in the process that creates the run (13 assets × 5,000
tickers: 65,000 planned events written before a UI backfill's first run was queued). The process that creates a
run is `pipeline run` for the CLI, and the webserver and the daemon for the UI, the schedule, the sensors and
backfills; so `pipeline run` and `pipeline ui` (what `make ui` runs) set it before Dagster starts, and `dg dev`
hands it to its webserver, daemon, code servers and run workers. The cost, as Dagster documents it at the
variable: the partitions of a run that fails show as missing, not failed (the run and the backfill still show it).

`DAGSTER_EVENT_BATCH_SIZE` makes a step hand the partition events of one output to the event log in batches: the
PostgreSQL storage (deploy/) writes a batch as one multi-row insert; the stock SQLite storage writes the events one
by one, as it does without the variable.

Both are environment variables Dagster reads at each use; nothing here reaches into Dagster's internals (an earlier
version subclassed the SQLite event log storage to write a batch per transaction: see the README for its cost).
A deployment that starts `dagster-webserver` / `dagster-daemon` itself sets them in their environment
(deploy/pipeline.env.example).
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

EVENT_LOG_ENV = {
    "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS": "1",
    "DAGSTER_EVENT_BATCH_SIZE": "1000",
}


def apply_event_log_env(environ: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set the variables above in `environ` (this process's environment by default) unless already set."""
    target = os.environ if environ is None else environ
    for name, value in EVENT_LOG_ENV.items():
        target.setdefault(name, value)
    return target
