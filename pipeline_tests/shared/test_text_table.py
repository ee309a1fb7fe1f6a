"""The aligned CLI tables (status, coverage, replay, demo summary) share one layout."""

from __future__ import annotations

from pipeline.text_table import text_table


def test_columns_align_and_details_follow_their_row() -> None:
    lines = text_table(
        [["historical-price-eod", "AAPL", "1,424"], ["treasury-rates", "-", "7"]],
        ["dataset", "ticker", "rows"],
        "llr",
        details=[["    missing: 2024-03-04"], []],
    )
    assert lines == [
        "dataset              ticker  rows",
        "-------------------- ------ -----",
        "historical-price-eod AAPL   1,424",
        "    missing: 2024-03-04",
        "treasury-rates       -          7",
    ]


def test_an_empty_table_keeps_its_header() -> None:
    assert text_table([], ["run", "took"], "lr") == ["run took", "--- ----"]
