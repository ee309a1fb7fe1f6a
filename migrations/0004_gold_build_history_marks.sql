-- A daily refresh builds the big Gold tables by date: a ticker whose history did not change gets only its new days.
-- What changed is read from Silver's history tables (every row version, with the time it was promoted); each Gold
-- build records, per Silver input table, the newest promotion it saw (`<table>@<promoted_at>`), so the next build
-- reads exactly the versions promoted since.
ALTER TABLE ops.gold_builds ADD COLUMN input_promoted_to VARCHAR[];
-- The version (hash) of the table's SQL and columns: a build whose model changed since the last successful build
-- recomputes the whole table, so a corrected formula reaches every row, not only the tickers that move.
ALTER TABLE ops.gold_builds ADD COLUMN model_version VARCHAR;
