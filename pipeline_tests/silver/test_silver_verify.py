"""Bronze is verified on read (issue 18): promotion and replay check each file against what the ledger recorded
when it was written, quarantine a file that fails, keep the rows it had promoted, and never lose Silver rows that
no valid file contradicts; a replay that changed Silver moves Gold's input state of exactly the identities it
changed.

What a user depends on: a truncated or hand-edited Bronze file is named, never promoted (again), and its rows
stay in Silver and history as they were; a transient read problem is retried, not quarantined; Gold rebuilds
what a replay changed and nothing else.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pipeline.gold import models
from pipeline.gold.build import current_states, plan_build
from pipeline.ops import file_ingestions
from pipeline.silver import batch, quality
from pipeline.silver.promote import PromotionError
from pipeline.silver.replay import replay
from pipeline_tests.silver.test_silver import Lake, day, eod

TABLE = "fmp_price_eod"


@pytest.fixture
def file_lake(tmp_path: Path) -> Lake:
    """The DuckDB file only: the tests whose SQL paths the two-backend tests below already cover on a DuckLake."""
    return Lake(tmp_path)


def _edit_close(lake: Lake, path: str, close: float) -> None:
    """Change one value inside a Bronze file and keep it valid JSON, compact, on one line (a hand edit)."""
    doc = json.loads((lake.root / path).read_bytes())
    doc["content"][0]["close"] = close
    (lake.root / path).write_bytes(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())


def _truncate(lake: Lake, path: str) -> None:
    data = (lake.root / path).read_bytes()
    (lake.root / path).write_bytes(data[: len(data) // 2])


def _silver_and_history(lake: Lake) -> dict[str, list[tuple]]:
    return {
        name: lake.rows(f"SELECT * EXCLUDE (run_id, promoted_at) FROM silver.{name} ORDER BY ALL")
        for name in (TABLE, f"{TABLE}__history")
    }


def _two_tickers(lake: Lake) -> dict[str, str]:
    """AAPL in two overlapping fetches (the second revises a close), MSFT in one; promoted one by one."""
    _, aapl_1 = lake.add(
        "historical-price-eod", [eod("AAPL", "2024-11-01", 10), eod("AAPL", "2024-11-04", 11)], day(0), ticker="AAPL"
    )
    _, msft = lake.add("historical-price-eod", [eod("MSFT", "2024-11-01", 20)], day(0), ticker="MSFT")
    lake.promote(TABLE, run_id="promote-1")
    _, aapl_2 = lake.add(
        "historical-price-eod", [eod("AAPL", "2024-11-04", 11.5), eod("AAPL", "2024-11-05", 12)], day(1), ticker="AAPL"
    )
    lake.promote(TABLE, run_id="promote-2")
    return {"aapl_1": aapl_1, "aapl_2": aapl_2, "msft": msft}


# ---- promotion: a file that fails to verify is quarantined, never offered again -----------------------------------


def test_the_store_records_the_digest_of_the_bytes_it_wrote(file_lake: Lake) -> None:
    env, path = file_lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    digest = file_lake.ledger(env.file_id)["file_md5"]
    assert digest == hashlib.md5((file_lake.root / path).read_bytes()).hexdigest()


def test_an_edited_value_is_quarantined_and_never_promoted(file_lake: Lake) -> None:
    edited, path = file_lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    good, _ = file_lake.add("historical-price-eod", [eod("MSFT", "2024-11-01", 20)], day(0), ticker="MSFT")
    _edit_close(file_lake, path, 999999)  # valid JSON, same envelope, same body_sha256: only the bytes tell

    result = file_lake.promote(TABLE)

    assert result.files == 1 and [f.file_id for f in result.quarantined] == [edited.file_id]
    assert "changed after it was written" in result.quarantined[0].error
    assert file_lake.rows(f"SELECT ticker, close FROM silver.{TABLE}") == [("MSFT", 20.0)]
    row = file_lake.ledger(edited.file_id)
    assert row["quarantined_at"] is not None and "changed after it was written" in row["quarantine_reason"]
    with file_lake.warehouse.connect() as conn:  # never offered again (a failed file would be)
        assert file_ingestions.promotable_files(conn, tables=[TABLE]) == []
    assert file_lake.promote(TABLE).per_file == ()
    assert file_lake.ledger(good.file_id)["silver_status"] == "promoted"


def test_a_truncated_file_is_quarantined_and_kept_on_disk(file_lake: Lake) -> None:
    env, path = file_lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    _truncate(file_lake, path)
    before = (file_lake.root / path).read_bytes()

    result = file_lake.promote(TABLE)

    assert [f.file_id for f in result.quarantined] == [env.file_id]
    assert result.quarantined[0].error.startswith("not valid JSON")
    assert file_lake.ledger(env.file_id)["quarantine_reason"].startswith("not valid JSON")
    assert (file_lake.root / path).read_bytes() == before  # Bronze is append-only: kept untouched
    with file_lake.warehouse.connect() as conn:
        assert file_ingestions.promotable_files(conn, tables=[TABLE]) == []


def test_a_file_registered_without_a_digest_gets_it_on_first_read(file_lake: Lake) -> None:
    """Files registered before the ledger had digests: verified for what the envelope carries, and their digest is
    recorded by the first successful read, so a later edit is caught."""
    env, path = file_lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    with file_lake.warehouse.transaction() as conn:
        conn.execute("UPDATE ops.file_ingestions SET file_md5 = NULL")
    assert file_lake.promote(TABLE).files == 1
    assert file_lake.ledger(env.file_id)["file_md5"] == hashlib.md5((file_lake.root / path).read_bytes()).hexdigest()

    _edit_close(file_lake, path, 999999)
    replay(file_lake.warehouse, file_lake.keymap, file_lake.root, "replay-run", tables=[TABLE])
    assert file_lake.rows(f"SELECT close FROM silver.{TABLE}") == [(10.0,)]
    assert file_lake.ledger(env.file_id)["quarantined_at"] is not None


def test_a_transient_read_problem_is_retried_not_quarantined(file_lake: Lake, monkeypatch: pytest.MonkeyPatch) -> None:
    env, path = file_lake.add("historical-price-eod", [eod("AAPL", "2024-11-01", 10)], day(0), ticker="AAPL")
    real_check = batch._path_problem

    def io_error(root: str, bronze_path: str):
        checked = real_check(root, bronze_path)
        if bronze_path == path:
            return checked[0], f"Bronze file {bronze_path} cannot be read: Input/output error", 0, True
        return checked

    monkeypatch.setattr(batch, "_path_problem", io_error)
    result = file_lake.promote(TABLE)
    assert result.quarantined == () and [f.file_id for f in result.failed] == [env.file_id]
    assert file_lake.ledger(env.file_id)["quarantined_at"] is None
    monkeypatch.undo()
    assert file_lake.promote(TABLE).files == 1  # offered again, and promotes once it can be read


# ---- replay: never loses rows that no valid file contradicts ------------------------------------------------------


def test_replay_keeps_the_rows_and_history_of_a_truncated_file(lake: Lake) -> None:
    paths = _two_tickers(lake)
    before = _silver_and_history(lake)
    assert len(before[f"{TABLE}__history"]) == 5  # AAPL 11-04 has two versions
    _truncate(lake, paths["aapl_1"])

    results = replay(lake.warehouse, lake.keymap, lake.root, "replay-run", tables=[TABLE])

    quarantined = [f for r in results for f in r.quarantined]
    assert [q.error.split(":")[0] for q in quarantined] == ["not valid JSON"]
    assert quarantined[0].inserted == 2  # the two versions it had promoted, kept
    assert _silver_and_history(lake) == before  # nothing lost, history included
    with lake.warehouse.connect() as conn:
        assert quality.reconciliation(conn, TABLE).passed
    # a second replay: the quarantined file is not read again, its rows still stay
    results = replay(lake.warehouse, lake.keymap, lake.root, "replay-again", tables=[TABLE])
    assert _silver_and_history(lake) == before
    assert [f.error.split(":")[:2] for r in results for f in r.quarantined] == [
        ["quarantined earlier", " not valid JSON"]
    ]


def test_replay_of_an_edited_file_keeps_the_values_it_promoted(file_lake: Lake) -> None:
    paths = _two_tickers(file_lake)
    before = _silver_and_history(file_lake)
    _edit_close(file_lake, paths["aapl_2"], 999999)

    results = replay(file_lake.warehouse, file_lake.keymap, file_lake.root, "replay-run", tables=[TABLE])

    assert [f.error for r in results for f in r.quarantined if "changed after it was written" in f.error]
    assert _silver_and_history(file_lake) == before
    assert file_lake.rows(f"SELECT count(*) FROM silver.{TABLE}__history WHERE close = 999999") == [(0,)]


def test_replay_stops_on_a_transient_read_problem_and_changes_nothing(
    file_lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _two_tickers(file_lake)
    before = _silver_and_history(file_lake)
    real_check = batch._path_problem

    def io_error(root: str, bronze_path: str):
        checked = real_check(root, bronze_path)
        if bronze_path == paths["msft"]:
            return checked[0], f"Bronze file {bronze_path} cannot be read: Input/output error", 0, True
        return checked

    monkeypatch.setattr(batch, "_path_problem", io_error)
    with pytest.raises(PromotionError, match=rf"replay stopped: Bronze file {paths['msft']} cannot be read"):
        replay(file_lake.warehouse, file_lake.keymap, file_lake.root, "replay-run", tables=[TABLE])
    assert _silver_and_history(file_lake) == before
    assert file_lake.rows("SELECT count(*) FROM ops.file_ingestions WHERE quarantined_at IS NOT NULL") == [(0,)]


# ---- replay and Gold: move exactly what changed -----------------------------------------------------------------


def _state(lake: Lake) -> dict[str, str]:
    """Gold's input state of the table, per identity key."""
    with lake.warehouse.connect() as conn:
        states = current_states(conn, [(TABLE,)])[(TABLE,)]
    return {s.partition("@")[0]: s for s in states}


def test_replay_moves_gold_input_state_of_exactly_the_changed_identities(lake: Lake) -> None:
    _two_tickers(lake)
    start = _state(lake)
    every_column = {name: f"SELECT * FROM silver.{name} ORDER BY ALL" for name in (TABLE, f"{TABLE}__history")}
    rows = {name: lake.rows(sql) for name, sql in every_column.items()}
    replay(lake.warehouse, lake.keymap, lake.root, "replay-1", tables=[TABLE])
    assert _state(lake) == start  # a replay that changed nothing moves nothing
    assert {name: lake.rows(sql) for name, sql in every_column.items()} == rows  # run_id, promoted_at included

    with lake.warehouse.transaction() as conn:  # AAPL's Silver as a wrong cast rule left it: replay repairs it
        conn.execute(f"UPDATE silver.{TABLE} SET close = close * 100 WHERE ticker = 'AAPL'")
    replay(lake.warehouse, lake.keymap, lake.root, "replay-2", tables=[TABLE])

    after = _state(lake)
    repaired = lake.rows(f"SELECT ticker, run_id FROM silver.{TABLE} ORDER BY ALL")
    assert repaired == [("AAPL", "replay-2")] * 3 + [("MSFT", "promote-1")]  # only the rows it changed are new
    moved = sorted(k for k in start if after[k] != start[k])
    assert moved == ["prices|fmp|historical-price-eod||AAPL"] and after.keys() == start.keys()
    model = models.MODELS["fact_price_daily"]
    plan = plan_build(
        model, list(start.values()), list(after.values()), full=False, table_ready=True, model_version=model.version
    )
    assert (plan.mode, plan.tickers) == ("incremental", ["AAPL"])
    replay(lake.warehouse, lake.keymap, lake.root, "replay-3", tables=[TABLE])
    assert _state(lake) == after  # and the next replay, which changes nothing, moves nothing again
