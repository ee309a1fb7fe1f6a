-- Schema drift seen by Silver promotion: API fields present in Bronze payloads that no keymap column maps.
-- One row per (table, field), the first sighting wins; the WARN check `schema_drift` reads it and ignores
-- fields the keymap has mapped since. This file must never change once applied: add a new migration instead.
CREATE TABLE IF NOT EXISTS ops.schema_drift (
    silver_table        VARCHAR   NOT NULL,
    field               VARCHAR   NOT NULL,          -- the API field name as the payload spells it
    first_seen_file_id  VARCHAR   NOT NULL,          -- Bronze file (oldest fetch) where it was first seen
    first_seen_at       TIMESTAMP NOT NULL,          -- fetched_at of that file (UTC)
    recorded_at         TIMESTAMP NOT NULL,          -- when promotion recorded it (UTC)
    run_id              VARCHAR,                     -- the promotion run that recorded it
    PRIMARY KEY (silver_table, field)
);
