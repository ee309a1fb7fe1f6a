-- Bronze is verified on read (issue 18). This file must never change once applied: add a new migration instead.
-- file_md5: MD5 of the envelope file's bytes as the store wrote them (NULL for files registered before this
--   column existed: recorded by their first successful read). Silver promotion compares it with what it reads.
-- quarantined_at / quarantine_reason: the file failed to parse or to verify. It stays on disk untouched, is never
--   promoted again, no longer counts as good coverage (its window is due for a refetch), and the rows it had
--   promoted stay in Silver (silver_status keeps saying what Silver holds from it).
-- silver_revision: bumped by a replay on the files of every identity whose Silver rows it changed, so that Gold's
--   input state of exactly those identities moves (pipeline.ops.file_ingestions.input_revisions).
ALTER TABLE ops.file_ingestions ADD COLUMN file_md5 VARCHAR;
ALTER TABLE ops.file_ingestions ADD COLUMN quarantined_at TIMESTAMP;
ALTER TABLE ops.file_ingestions ADD COLUMN quarantine_reason VARCHAR;
ALTER TABLE ops.file_ingestions ADD COLUMN silver_revision BIGINT;
