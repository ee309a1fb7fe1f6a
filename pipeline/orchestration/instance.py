"""The project's Dagster instance: the stock one, except that the SQLite event log writes event batches in one go.

Why: a ticker-range run materializes every asset once per ticker, and Dagster records each of those
materializations (and, for a backfill, each planned one) as an event. The stock SQLite event log stores an
event with a fresh SQLAlchemy engine and one committed transaction in the run's file, and another in the
cross-run index file: about 7 ms each here, 36 s for the 5,000 events of a 500-ticker Bronze + Silver load
that does its actual work in 15 s.

Dagster already hands the partition events of one step output (and the planned events of a new run) to
`EventLogStorage.store_event_batch` when `DAGSTER_EVENT_BATCH_SIZE` is set; the PostgreSQL storage answers
with one multi-row insert, the SQLite one stores them one by one. `BatchingSqliteEventLogStorage` writes the
rows `store_event` writes for each event (run file, index file, asset tags, asset entry, asset check state),
in two transactions per batch instead of two per event. Same files, same layout: stock Dagster reads them.

The project's dagster.yaml names the instance class (`instance_class:`), which makes this storage the default
(in DAGSTER_HOME, where the stock one would be) and turns batching on in every process that opens the instance:
`pipeline`, the webserver, the daemon and the run workers. A `storage:` block (PostgreSQL, deploy/) still wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import yaml
from dagster import DagsterInstance
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS
from dagster._core.events.log import EventLogEntry
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData

# Events per batch: the partitions of one step output (one per ticker) are written together, up to this many.
EVENT_BATCH_SIZE = "1000"


def enable_event_batches() -> None:
    """Ask Dagster to hand partition events to `store_event_batch` (Dagster reads the variable at every event)."""
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """SQLite event log whose `store_event_batch` writes a batch in one transaction per database file."""

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        run_ids = {event.run_id for event in events}
        if len(run_ids) != 1:
            super().store_event_batch(events)
            return
        statements = [self.prepare_insert_event(event) for event in events]
        with self.run_connection(run_ids.pop()) as conn:
            for statement in statements:
                conn.execute(statement)

        asset_events = [(e, s) for e, s in zip(events, statements) if e.dagster_event_type in ASSET_EVENTS]
        if asset_events:
            with self.index_transaction() as conn:
                ids = []
                for _event, statement in asset_events:
                    with db_result(conn, statement) as result:
                        ids.append(result.inserted_primary_key[0])
                self._store_asset_event_tags(conn, [e for e, _ in asset_events], ids)
                # The asset entry keeps the latest event of each kind: writing the last one per asset and kind
                # leaves the row that writing each in turn leaves, without serializing every event again.
                latest = {}
                for (event, _statement), event_id in zip(asset_events, ids):
                    kind = (event.dagster_event.asset_key, event.dagster_event_type)
                    latest.pop(kind, None)  # keep the order of last occurrence: the last write still wins
                    latest[kind] = (event, event_id)
                for event, event_id in latest.values():
                    self._store_asset_event(conn, event, event_id)

        # asset check state is written through its own connection, as `store_event` does
        for event, statement in zip(events, statements):
            if event.dagster_event_type in ASSET_CHECK_EVENTS:
                with self.index_connection() as conn, db_result(conn, statement) as result:
                    event_id = result.inserted_primary_key[0]
                self.store_asset_check_event(event, event_id)


class BatchingSqliteStorage(DagsterSqliteStorage):
    """The stock SQLite instance storage (runs, event logs, schedules under one base_dir), with the event log above."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = BatchingSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls.from_local(inst_data=inst_data, **config_value)


class ProjectInstance(DagsterInstance):
    """`instance_class` of the project's dagster.yaml: batching on, and the storage above as the default."""

    def __init__(self, *args, **kwargs) -> None:
        enable_event_batches()
        super().__init__(*args, **kwargs)

    @classmethod
    def config_schema(cls) -> dict:
        return {}

    @staticmethod
    def config_defaults(base_dir: str) -> Mapping[str, ConfigurableClassData | None]:
        return {
            **InstanceRef.config_defaults(base_dir),
            "storage": ConfigurableClassData(
                __name__, BatchingSqliteStorage.__name__, yaml.dump({"base_dir": base_dir}, default_flow_style=False)
            ),
        }
