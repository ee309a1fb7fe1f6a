"""How runs cover ranges of ticker partitions: one helper for the runner, the schedule and the Silver sensor."""

from pipeline.orchestration.partitions import contiguous_ranges, covering_range


def test_contiguous_ranges_cover_only_wanted_keys_in_runs_of_at_most_size() -> None:
    keys = ["A", "B", "C", "D", "E", "F", "G"]
    assert contiguous_ranges(keys, set(keys), size=3) == [("A", "C"), ("D", "F"), ("G", "G")]
    assert contiguous_ranges(keys, {"A", "B", "D", "E", "F", "G"}, size=3) == [("A", "B"), ("D", "F"), ("G", "G")]
    assert contiguous_ranges(keys, {"C"}) == [("C", "C")]
    assert contiguous_ranges(keys, set()) == []


def test_covering_range_spans_every_wanted_key() -> None:
    keys = ["A", "B", "C", "D"]
    assert covering_range(keys, {"D", "B"}) == ("B", "D")
    assert covering_range(keys, {"Z"}) is None
