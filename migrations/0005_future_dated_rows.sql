-- Silver promotion rejects rows dated after the New York date of their fetch (unless the keymap entry sets
-- silver.allow_future_dates). They are counted in silver_rejected, and this column says how many of those were
-- rejected for that reason. This file must never change once applied: add a new migration instead.
ALTER TABLE ops.file_ingestions ADD COLUMN silver_future_rows BIGINT;
