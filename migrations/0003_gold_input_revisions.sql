-- Coverage watermarks do not move when Silver revises a row inside a range it already covered (a restated
-- statement, a corrected price). Gold builds therefore also record, per input identity, the newest ledger entry
-- that changed Silver rows, and rebuild the tickers whose entry moved.
ALTER TABLE ops.gold_builds ADD COLUMN input_revisions VARCHAR[];
