-- The request budget (issue 19). This file must never change once applied: add a new migration instead.
-- wire_bytes: bytes of the request's response bodies as they crossed the wire (gzip-compressed when FMP compressed
--   them), every attempt included; `bytes` stays the body as decoded, what the envelope parsed. NULL for files
--   registered before this column. The budget counts the larger of the two (pipeline/ops/usage.py).
-- attempts: the HTTP calls the request took (1 + retries); NULL before this column (counted as 1).
-- ops.runs.deferred: requests a Bronze run did not send because the request budget had no room for them (the next
--   run plans them again: their watermarks did not move).
ALTER TABLE ops.file_ingestions ADD COLUMN wire_bytes BIGINT;
ALTER TABLE ops.file_ingestions ADD COLUMN attempts INTEGER;
ALTER TABLE ops.runs ADD COLUMN deferred BIGINT;
