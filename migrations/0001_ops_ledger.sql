-- Schemas and the ops ledger. Silver tables are created from the keymap at run time (pipeline/silver/schema.py);
-- Gold tables by their build code. This file must never change once applied: add a new migration instead.
CREATE SCHEMA IF NOT EXISTS ops;
CREATE SCHEMA IF NOT EXISTS silver;
CREATE SCHEMA IF NOT EXISTS gold;

-- Registration order of Bronze files: sensors keep their cursor on it.
CREATE SEQUENCE IF NOT EXISTS ops.file_ingestion_seq START 1;

-- One row per Bronze file, written by the step that wrote the file and updated by Silver promotion.
CREATE TABLE ops.file_ingestions (
    ingestion_id        BIGINT    NOT NULL DEFAULT nextval('ops.file_ingestion_seq'),
    run_id              VARCHAR   NOT NULL,
    file_id             VARCHAR   NOT NULL,
    domain              VARCHAR   NOT NULL,
    source              VARCHAR   NOT NULL,
    dataset             VARCHAR   NOT NULL,
    discriminator       VARCHAR   NOT NULL DEFAULT '',
    ticker              VARCHAR   NOT NULL DEFAULT '',
    bronze_path         VARCHAR   NOT NULL,          -- relative to the Bronze root, '/' separated
    request_path        VARCHAR,
    page                INTEGER,
    as_of               DATE,                        -- the planning date (PIPELINE_AS_OF or today, New York) of the fetch
    window_from         DATE,
    window_to           DATE,
    status_code         INTEGER,
    error_class         VARCHAR,                     -- NULL on success; see pipeline.fmp.client.ERROR_CLASSES
    error_message       VARCHAR,
    bronze_rows         BIGINT    NOT NULL DEFAULT 0,
    bytes               BIGINT    NOT NULL DEFAULT 0,
    body_sha256         VARCHAR,
    coverage_from       DATE,
    coverage_to         DATE,
    fetched_at          TIMESTAMP NOT NULL,          -- UTC
    elapsed_ms          DOUBLE,
    can_promote         BOOLEAN   NOT NULL,
    registered_at       TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    silver_table        VARCHAR,
    silver_status       VARCHAR,                     -- NULL (not yet) | promoted | failed
    silver_run_id       VARCHAR,
    silver_rows_read    BIGINT,
    silver_inserted     BIGINT,
    silver_updated      BIGINT,
    silver_unchanged    BIGINT,
    silver_rejected     BIGINT,
    silver_duplicates   BIGINT,
    silver_coverage_from DATE,
    silver_coverage_to  DATE,
    silver_started_at   TIMESTAMP,
    silver_finished_at  TIMESTAMP,
    silver_error        VARCHAR,
    PRIMARY KEY (run_id, file_id)
);
CREATE UNIQUE INDEX file_ingestions_file_id ON ops.file_ingestions (file_id);

-- Every run that touched the warehouse, also runs that fetched nothing (they say why in `message`).
CREATE TABLE ops.runs (
    run_id        VARCHAR   PRIMARY KEY,
    job           VARCHAR,
    source_mode   VARCHAR,                -- fmp | sample
    started_at    TIMESTAMP NOT NULL,
    finished_at   TIMESTAMP,
    status        VARCHAR   NOT NULL,     -- running | success | partial | failed
    requests      BIGINT    NOT NULL DEFAULT 0,
    skipped       BIGINT    NOT NULL DEFAULT 0,
    files         BIGINT    NOT NULL DEFAULT 0,
    rows          BIGINT    NOT NULL DEFAULT 0,
    errors        BIGINT    NOT NULL DEFAULT 0,
    message       VARCHAR
);

CREATE SEQUENCE IF NOT EXISTS ops.gold_build_seq START 1;

-- One row per Gold build, with the Silver watermarks it read.
CREATE TABLE ops.gold_builds (
    build_id          BIGINT    PRIMARY KEY DEFAULT nextval('ops.gold_build_seq'),
    asset             VARCHAR   NOT NULL,
    run_id            VARCHAR,
    input_watermarks  VARCHAR[] NOT NULL,
    mode              VARCHAR,             -- full | incremental
    tickers_touched   BIGINT,
    rows_written      BIGINT,
    status            VARCHAR   NOT NULL,  -- running | success | failed
    started_at        TIMESTAMP NOT NULL,
    finished_at       TIMESTAMP,
    error_message     VARCHAR
);
