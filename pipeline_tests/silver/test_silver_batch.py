"""Silver promotion of a whole batch in one scan: bad files among good ones, unchanged re-promotion, a read
that fails under the reader.

What a user depends on: one bad Bronze file never holds back the others of its batch, and it is named in the
ledger with the reason; only the files the reader could not parse are looked at one by one; promoting the
same files again writes nothing (no history version, no rewritten Silver row); and when the read itself
fails, nothing is committed and the message names the file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.bronze.envelope import file_record, new_file_id
from pipeline.ops.file_ingestions import register_files
from pipeline.silver import batch
from pipeline.silver.promote import PromotionError
from pipeline_tests.silver.test_silver import Lake, day, eod


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path)


def _rewrite(lake: Lake, path: str, **changes: Any) -> None:
    """Replace the JSON document of a Bronze file on disk (what a restore gone wrong or a hand edit does)."""
    doc = json.loads((lake.root / path).read_bytes())
    doc.update(changes)
    (lake.root / path).write_text(json.dumps(doc))


def test_one_scan_promotes_the_good_files_and_names_each_bad_one(lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    good = [
        lake.add(
            "historical-price-eod", [eod(t, "2024-11-01", 10 + i), eod(t, "2024-11-04", 11 + i)], day(0), ticker=t
        )[0]
        for i, t in enumerate(("AAPL", "MSFT", "NVDA"))
    ]
    truncated, truncated_path = lake.add("historical-price-eod", [eod("AMZN", "2024-11-01", 1)], day(0), ticker="AMZN")
    (lake.root / truncated_path).write_bytes((lake.root / truncated_path).read_bytes()[:120])
    raw, raw_path = lake.add("historical-price-eod", [eod("META", "2024-11-01", 1)], day(0), ticker="META")
    (lake.root / raw_path).write_text(json.dumps([eod("META", "2024-11-01", 1)]))  # an API answer, no envelope
    other_ticker, other_path = lake.add("historical-price-eod", [eod("TSLA", "2024-11-01", 1)], day(0), ticker="TSLA")
    _rewrite(lake, other_path, ticker="GOOG")  # rows would land under GOOG while the ledger says TSLA
    other_body, body_path = lake.add("historical-price-eod", [eod("NFLX", "2024-11-01", 1)], day(0), ticker="NFLX")
    _rewrite(lake, body_path, body_sha256="0" * 64)  # the file changed after it was registered
    not_array, _ = lake.add("historical-price-eod", eod("AMD", "2024-11-01", 1), day(0), ticker="AMD")

    diagnosed: list[str] = []
    real_diagnose = batch._diagnose
    monkeypatch.setattr(batch, "_diagnose", lambda path: diagnosed.append(Path(path).name) or real_diagnose(path))
    result = lake.promote("fmp_price_eod")

    assert result.files == 3 and result.inserted == 6 and result.balanced
    assert lake.rows("SELECT ticker, count(*) FROM silver.fmp_price_eod GROUP BY ALL ORDER BY 1") == [
        ("AAPL", 2),
        ("MSFT", 2),
        ("NVDA", 2),
    ]
    errors = {f.file_id: f.error for f in result.failed}
    assert set(errors) == {truncated.file_id, raw.file_id, other_ticker.file_id, other_body.file_id, not_array.file_id}
    assert errors[truncated.file_id].startswith("not valid JSON")
    assert errors[raw.file_id] == "not a Bronze envelope (envelope_version missing)"
    assert errors[other_ticker.file_id] == (
        "the envelope is for prices/fmp/historical-price-eod//GOOG but its ledger "
        "row says prices/fmp/historical-price-eod//TSLA"
    )
    assert "body_sha256" in errors[other_body.file_id]
    assert "not an array" in errors[not_array.file_id]
    # only the two files the reader could not parse were opened one by one; the rest was vetted in SQL
    assert sorted(diagnosed) == sorted([Path(truncated_path).name, Path(raw_path).name])
    for file_id, error in errors.items():
        led = lake.ledger(file_id)
        assert (led["silver_status"], led["silver_error"]) == ("failed", error)
    assert all(lake.ledger(e.file_id)["silver_status"] == "promoted" for e in good)


def test_re_promoting_unchanged_files_writes_nothing(lake: Lake) -> None:
    for i, t in enumerate(("AAPL", "MSFT")):
        lake.add("historical-price-eod", [eod(t, "2024-11-01", 10 + i), eod(t, "2024-11-04", 12 + i)], day(0), ticker=t)
    first = lake.promote("fmp_price_eod", run_id="first")
    assert first.inserted == 4
    silver = lake.rows("SELECT * FROM silver.fmp_price_eod ORDER BY ALL")
    history = lake.rows("SELECT * FROM silver.fmp_price_eod__history ORDER BY ALL")

    with lake.warehouse.transaction() as conn:  # offer the same files again, as a replay of the ledger would
        conn.execute("UPDATE ops.file_ingestions SET silver_status = NULL")
    again = lake.promote("fmp_price_eod", run_id="again")

    assert (again.files, again.unchanged, again.inserted, again.updated) == (2, 4, 0, 0) and again.balanced
    assert lake.rows("SELECT * FROM silver.fmp_price_eod ORDER BY ALL") == silver  # run_id, promoted_at kept
    assert lake.rows("SELECT * FROM silver.fmp_price_eod__history ORDER BY ALL") == history
    assert {r[0] for r in lake.rows("SELECT silver_run_id FROM ops.file_ingestions")} == {"again"}


def test_a_late_file_in_a_batch_with_its_successor_keeps_both_versions(lake: Lake) -> None:
    """Two fetches of the same day in one batch: history gets both versions, Silver the newer one."""
    lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10.5)], day(1), ticker="AAPL")
    result = lake.promote("fmp_price_eod")
    assert (result.inserted, result.updated) == (1, 1)
    assert lake.rows("SELECT close FROM silver.fmp_price_eod") == [(10.5,)]
    assert lake.rows("SELECT close, valid_to IS NULL FROM silver.fmp_price_eod__history ORDER BY valid_from") == [
        (10.0, False),
        (10.5, True),
    ]


def test_a_read_that_fails_under_the_reader_names_the_file_and_commits_nothing(
    lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file that vanishes between the file-system check and the read (or a disk error) fails the scan;
    DuckDB aborts the transaction, so the error names the culprit and nothing is written."""
    lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    gone, gone_path = lake.add("historical-price-eod", [eod("MSFT", "2024-11-01", 11)], day(0), ticker="MSFT")
    real_check = batch._path_problem

    def vanishing(root: str, bronze_path: str) -> tuple[str, str | None, int, bool]:
        checked = real_check(root, bronze_path)
        if bronze_path == gone_path:
            Path(checked[0]).unlink()  # checked as present, gone by the time the reader opens it
        return checked

    monkeypatch.setattr(batch, "_path_problem", vanishing)
    with pytest.raises(PromotionError, match=rf"reading the batch failed at .*{gone.file_id}.*nothing was committed"):
        lake.promote("fmp_price_eod")
    assert lake.rows("SELECT count(*) FROM ops.file_ingestions WHERE silver_status IS NOT NULL") == [(0,)]
    monkeypatch.undo()
    retry = lake.promote("fmp_price_eod")  # the retry sees the file missing: it is quarantined alone
    assert retry.files == 1 and [f.file_id for f in retry.quarantined] == [gone.file_id]
    assert "missing" in retry.quarantined[0].error


def test_schema_drift_comes_from_the_newest_file_of_each_dataset(lake: Lake) -> None:
    lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    newest, _ = lake.add("historical-price-eod", [eod("MSFT", "2024-11-01", 11, adjClose=10.9)], day(1), ticker="MSFT")
    result = lake.promote("fmp_price_eod")
    assert result.drift_fields == ("adjClose",)
    assert lake.rows("SELECT field, first_seen_file_id FROM ops.schema_drift") == [("adjClose", newest.file_id)]


def test_a_stray_copy_registered_under_another_id_fails_and_the_original_promotes(lake: Lake) -> None:
    """A Bronze file copied under a new name and registered as if it were its own file: its envelope names
    the original's file id, so the copy fails and the original still promotes."""
    original, path = lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    copy = dataclasses.replace(original, file_id=new_file_id())
    copy_path = lake.store.relative_path(copy.identity, copy.fetched_at, copy.file_id)
    (lake.root / copy_path).write_bytes((lake.root / path).read_bytes())
    with lake.warehouse.transaction() as conn:
        register_files(conn, [file_record(copy, copy_path, "fmp_price_eod")])
    result = lake.promote("fmp_price_eod")
    assert result.files == 1 and lake.ledger(original.file_id)["silver_status"] == "promoted"
    assert [f.file_id for f in result.failed] == [copy.file_id]
    assert f"file_id {original.file_id} differs from the ledger's {copy.file_id}" in result.failed[0].error
