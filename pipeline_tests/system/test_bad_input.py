"""Bad input through the entry points a user has (issue 7): malformed Bronze files found on disk, hostile ticker
names, broken keymap files and a tampered migration. Each must be refused or quarantined with a message that
names the culprit, lose nothing, and leave everything else working.

Not repeated here (already covered): `run_bronze(tickers=...)` with hostile names and the store's path checks
(test_bronze.py), `PIPELINE_TICKERS` parsing (test_settings.py), 34 broken keymap documents through the loader
(test_keymap.py), checksum / missing / duplicate migration files through `Warehouse` (test_warehouse.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from pipeline.bronze.envelope import (
    BronzeEnvelope,
    file_record,
    new_file_id,
)
from pipeline.bronze.store import BronzeStore
from pipeline.cli.commands import main
from pipeline.keymap import KeymapEntry, load_keymap
from pipeline.ops import file_ingestions
from pipeline.orchestration.assets import bronze_key
from pipeline.orchestration.definitions import build_definitions
from pipeline.orchestration.partitions import tickers_partitions
from pipeline.settings import PROJECT_ROOT, get_settings, load_settings
from pipeline.silver import batch
from pipeline.warehouse import MigrationError, Warehouse, connection, migrations
from pipeline_tests import support
from pipeline_tests.support import eod_row

KEYMAP = load_keymap(PROJECT_ROOT / "dataset_keymap.yaml")
EOD_ENTRY: KeymapEntry = next(e for e in KEYMAP if e.dataset == "historical-price-eod" and not e.discriminator)
DAY = dt.date(2024, 6, 28)
FETCHED = dt.datetime(2024, 6, 28, 21, 0, tzinfo=dt.UTC)


def envelope(ticker: str, content: Any) -> BronzeEnvelope:
    """A good EOD envelope for one ticker on DAY, with `content` as its payload."""
    return support.envelope(
        EOD_ENTRY.identity.with_ticker(ticker),
        content,
        run_id="fetch-run",
        coverage=(DAY, DAY),
        as_of=DAY,
        fetched_at=FETCHED,
        path=EOD_ENTRY.recipe.path,
    )


def ledger(root: Path, where: str = "true", params: list | None = None) -> list[dict]:
    with Warehouse(root / "warehouse.duckdb").connect() as conn:
        cur = conn.execute(f"SELECT * FROM ops.file_ingestions WHERE {where} ORDER BY bronze_path", params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def files_under(root: Path) -> dict[str, str]:
    """Every file below root -> sha256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# -- (a) malformed Bronze files found on disk, registered through `pipeline replay` -----------------------------


def _truncated(folder: Path) -> tuple[str, str]:
    name = f"{new_file_id()}.json"
    (folder / name).write_bytes(envelope("AAPL", [eod_row("AAPL", DAY.isoformat(), 1.0)]).to_json_bytes()[:150])
    return name, "not a readable Bronze envelope (JSONDecodeError"


def _not_an_envelope(folder: Path) -> tuple[str, str]:
    name = f"{new_file_id()}.json"
    # a raw API answer dropped in by hand
    (folder / name).write_text(json.dumps([eod_row("AAPL", DAY.isoformat(), 99.0)]))
    return name, "not a Bronze envelope"


def _other_file_id(folder: Path) -> tuple[str, str]:
    stray = envelope("NVDA", [eod_row("NVDA", DAY.isoformat(), 99.0)])  # a copy saved under another name
    name = f"{new_file_id()}.json"
    (folder / name).write_bytes(stray.to_json_bytes())
    return name, f"its envelope names file id {stray.file_id!r}, not its own name"


def _content_is_an_object(folder: Path) -> tuple[str, str]:
    env = envelope("AAPL", eod_row("AAPL", DAY.isoformat(), 99.0))
    name = f"{env.file_id}.json"
    (folder / name).write_bytes(env.to_json_bytes())
    return name, "content is not an array"


def _zero_bytes(folder: Path) -> tuple[str, str]:
    name = f"{new_file_id()}.json"
    (folder / name).write_bytes(b"")
    return name, "empty file (0 bytes)"


MALFORMED = {
    "truncated-json": _truncated,
    "not-an-envelope": _not_an_envelope,
    "envelope-names-another-file-id": _other_file_id,
    "content-is-an-object": _content_is_an_object,
    "zero-byte-file": _zero_bytes,
}


@pytest.mark.parametrize("make_bad", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_bronze_file_is_reported_kept_and_the_good_files_promote(
    data_dir: Path, capsys: pytest.CaptureFixture[str], make_bad: Any
) -> None:
    store = BronzeStore(data_dir / "bronze")
    good = {t: envelope(t, [eod_row(t, DAY.isoformat(), 10.0 + i)]) for i, t in enumerate(("AAPL", "MSFT"))}
    good_paths = {t: store.write(env, "restored").relative for t, env in good.items()}  # a restored Bronze folder
    store.close_journal("restored")
    bad_name, reason = make_bad((store.root / good_paths["AAPL"]).parent)
    bad_rel = f"{Path(good_paths['AAPL']).parent.as_posix()}/{bad_name}"
    before = files_under(store.root)

    assert main(["replay"]) == 1  # the good files promote, and the exit code says one file could not
    out = capsys.readouterr().out
    # reported, naming the file and the reason
    lines = [line for line in out.splitlines() if bad_rel in line]
    assert len(lines) == 1 and reason in lines[0], out
    assert "registered 3 Bronze file(s)" in out

    # the good files promote
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:
        silver = conn.execute("SELECT ticker, date, close FROM silver.fmp_price_eod ORDER BY ticker").fetchall()
        coverage = file_ingestions.latest_bronze_coverage(conn, EOD_ENTRY.identity, ticker_wildcard=True)
    assert silver == [("AAPL", DAY, 10.0), ("MSFT", DAY, 11.0)]
    # nothing is lost: every file stays on disk unchanged and has exactly one ledger row
    assert files_under(store.root) == before
    rows = ledger(data_dir)
    assert sorted(r["bronze_path"] for r in rows) == sorted(store.iter_files())
    assert [r["silver_status"] for r in rows if r["bronze_path"] in good_paths.values()] == ["promoted", "promoted"]
    (bad,) = [r for r in rows if r["bronze_path"] == bad_rel]
    assert bad["file_id"] == bad_name.removesuffix(".json")
    assert (bad["dataset"], bad["ticker"], bad["silver_table"]) == ("historical-price-eod", "AAPL", "fmp_price_eod")
    aapl = coverage[EOD_ENTRY.identity.with_ticker("AAPL")]
    if make_bad is _content_is_an_object:  # a readable envelope: promotion quarantines it and says why
        assert bad["can_promote"] and bad["silver_status"] == "failed" and reason in bad["silver_error"]
        assert bad["quarantined_at"] is not None and reason in bad["quarantine_reason"]
        # its window is due again: coverage held before it, and due now (no good file fetched later covers it)
        assert (aapl.coverage_to, aapl.last_as_of, aapl.quarantined) == (DAY - dt.timedelta(days=1), None, 1)
    else:  # unreadable: quarantined at registration, never offered to Silver
        assert not bad["can_promote"] and bad["error_class"] == "invalid_body" and bad["silver_status"] is None
        assert bad_rel in bad["error_message"] and reason in bad["error_message"]
        # and an unreadable file moves no watermark: AAPL's coverage is its good file's
        assert (aapl.coverage_from, aapl.coverage_to, aapl.quarantined) == (DAY, DAY, 0)
    assert aapl.files == 1

    # a second replay registers nothing new, duplicates nothing, and gives the same Silver
    assert main(["replay"]) == (1 if make_bad is _content_is_an_object else 0)
    out = capsys.readouterr().out
    assert "registered" not in out
    again = ledger(data_dir)
    assert [(r["file_id"], r["bronze_path"], r["can_promote"], r["error_class"]) for r in again] == [
        (r["file_id"], r["bronze_path"], r["can_promote"], r["error_class"]) for r in rows
    ]
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:
        assert conn.execute("SELECT ticker, date, close FROM silver.fmp_price_eod ORDER BY ticker").fetchall() == silver


# -- (a2) a promoted Bronze file corrupted on disk, found by `pipeline replay` (issue 18) ----------------------------


def _truncate(path: Path) -> str:
    path.write_bytes(path.read_bytes()[:300])
    return "not valid JSON"


def _edit_a_close(path: Path) -> str:
    doc = json.loads(path.read_bytes())
    doc["content"][0]["close"] = 999999  # still valid JSON, same envelope, same body_sha256
    path.write_bytes(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode())
    return "the file changed after it was written"


@pytest.mark.parametrize("corrupt", [_truncate, _edit_a_close], ids=["truncated", "edited-value"])
def test_a_corrupted_promoted_file_keeps_its_silver_rows_and_is_reported(
    data_dir: Path, capsys: pytest.CaptureFixture[str], corrupt: Any
) -> None:
    store = BronzeStore(data_dir / "bronze")
    days = [(DAY - dt.timedelta(days=i)).isoformat() for i in range(3)]
    written = {t: envelope(t, [eod_row(t, d, 10.0 + i) for i, d in enumerate(days)]) for t in ("AAPL", "MSFT")}
    with Warehouse(data_dir / "warehouse.duckdb").transaction() as conn:  # as the fetch step writes and registers
        for env in written.values():
            stored = store.write(env, "fetch")
            file_ingestions.register_files(conn, [file_record(env, stored.relative, "fmp_price_eod", stored.md5)])
    store.close_journal("fetch")
    assert main(["replay"]) == 0
    capsys.readouterr()
    silver_sql = "SELECT * EXCLUDE (run_id, promoted_at) FROM silver.{} ORDER BY ALL"
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:
        before = [conn.execute(silver_sql.format(t)).fetchall() for t in ("fmp_price_eod", "fmp_price_eod__history")]
    (aapl,) = [r["bronze_path"] for r in ledger(data_dir, "ticker = 'AAPL'")]
    reason = corrupt(store.root / aapl)
    corrupted = files_under(store.root)

    assert main(["replay"]) == 1  # a cron or CI caller sees it
    out = capsys.readouterr().out
    (line,) = [line for line in out.splitlines() if aapl in line]
    assert line.startswith(f"  quarantined {aapl}: {reason}")
    assert "3 row version(s) it had promoted stay in Silver; its window is due for a refetch" in line
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:  # nothing lost, nothing invented
        after = [conn.execute(silver_sql.format(t)).fetchall() for t in ("fmp_price_eod", "fmp_price_eod__history")]
        due = file_ingestions.latest_bronze_coverage(conn, EOD_ENTRY.identity.with_ticker("AAPL"))
    assert after == before and len(before[0]) == 6
    assert due == {}  # AAPL has no good file left: its window is fetched again from the history start
    assert files_under(store.root) == corrupted  # the file stays, untouched

    assert main(["coverage"]) == 0
    out = capsys.readouterr().out
    assert "1 error file(s) (1 quarantined, waiting for a refetch)" in out
    assert main(["replay"]) == 1  # still waiting for its refetch: still reported
    assert f"still quarantined {aapl}" in capsys.readouterr().out


def test_a_file_that_cannot_be_read_now_stops_pipeline_replay_and_changes_nothing(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = BronzeStore(data_dir / "bronze")
    with Warehouse(data_dir / "warehouse.duckdb").transaction() as conn:
        for t in ("AAPL", "MSFT"):
            env = envelope(t, [eod_row(t, DAY.isoformat(), 10.0)])
            stored = store.write(env, "fetch")
            file_ingestions.register_files(conn, [file_record(env, stored.relative, "fmp_price_eod", stored.md5)])
    store.close_journal("fetch")
    assert main(["replay"]) == 0
    before = ledger(data_dir)
    (aapl,) = [r["bronze_path"] for r in before if r["ticker"] == "AAPL"]
    real_check = batch._path_problem

    def io_error(root: str, bronze_path: str) -> tuple[str, str | None, int, bool]:
        checked = real_check(root, bronze_path)
        if bronze_path == aapl:  # what an EIO from a failing disk looks like to the file-system check
            return checked[0], f"Bronze file {bronze_path} cannot be read: Input/output error", 0, True
        return checked

    monkeypatch.setattr(batch, "_path_problem", io_error)
    capsys.readouterr()
    assert main(["replay"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"pipeline replay: replay stopped: Bronze file {aapl} cannot be read")
    assert ledger(data_dir) == before  # rolled back: nothing quarantined, nothing lost
    with Warehouse(data_dir / "warehouse.duckdb").connect() as conn:
        assert conn.execute("SELECT ticker FROM silver.fmp_price_eod ORDER BY 1").fetchall() == [("AAPL",), ("MSFT",)]


# -- (b) hostile tickers through every entry point ---------------------------------------------------------------

HOSTILE = ["../evil", "A/B", "..", "/etc/passwd", "A\\B", "AAPL,../evil"]


@pytest.mark.parametrize("ticker", HOSTILE)
def test_hostile_pipeline_tickers_stops_the_cli_before_anything_is_written(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ticker: str
) -> None:
    monkeypatch.setenv("PIPELINE_TICKERS", ticker)
    get_settings.cache_clear()
    assert main(["replay"]) == 2
    err = capsys.readouterr().err
    bad = ticker.split(",")[-1]
    assert err.startswith("pipeline: configuration error: PIPELINE_TICKERS:") and repr(bad) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not data_dir.exists()


@pytest.mark.parametrize("ticker", HOSTILE)
def test_hostile_replay_tickers_option_is_refused_naming_it(
    data_dir: Path, capsys: pytest.CaptureFixture[str], ticker: str
) -> None:
    assert main(["replay", "--tickers", ticker]) == 2
    err = capsys.readouterr().err
    bad = ticker.split(",")[-1]
    assert err.startswith("pipeline: configuration error: --tickers:") and repr(bad) in err
    assert "Traceback" not in err
    assert not (data_dir / "warehouse.duckdb").exists() and not (data_dir / "bronze").exists()


def test_hostile_dagster_partition_key_fails_the_step_naming_it_and_writes_nothing(tmp_path: Path) -> None:
    settings = load_settings(
        {"PIPELINE_DATA_DIR": str(tmp_path / "data"), "PIPELINE_AS_OF": DAY.isoformat(), "PIPELINE_TICKERS": "AAPL"}
    )
    defs = build_definitions(settings, KEYMAP)
    (tmp_path / "dagster_home").mkdir()
    outside = set(tmp_path.parent.iterdir())
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        for key in ("../evil", "A/B", ".."):
            instance.add_dynamic_partitions(tickers_partitions.name, [key])  # e.g. added by hand in the UI
            result = dg.materialize(
                [*defs.assets, *defs.asset_checks],
                instance=instance,
                resources=defs.resources,
                selection=[bronze_key(EOD_ENTRY)],
                partition_key=key,
                raise_on_error=False,
            )
            assert not result.success
            failures = [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
            assert failures

            def chain(err: Any) -> str:
                text = ""
                while err is not None:
                    text += f"{err.cls_name}: {err.message}\n"
                    err = err.cause or err.context
                return text

            text = "".join(chain(f) for f in failures)
            assert "UnsafeNameError" in text and f"ticker {key!r} is not allowed" in text
    # nothing fetched or written: no Bronze file, nothing next to the data folder
    bronze = tmp_path / "data" / "bronze"
    assert not bronze.exists() or not [p for p in bronze.rglob("*") if p.is_file()]
    assert set(tmp_path.parent.iterdir()) == outside
    assert not [p for p in tmp_path.rglob("*evil*")]


# -- (c) a keymap file that is not YAML / not a mapping / badly indented, through the real CLI ----------------------

BROKEN_KEYMAPS = {
    "not-yaml": "version: 1\ndatasets: [\n  - {domain: prices\n",
    "not-a-mapping": "- historical-price-eod\n- profile\n",
    "tab-indented": "version: 1\ndatasets:\n\t- domain: prices\n\t  dataset: historical-price-eod\n",
}


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "pipeline"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipeline.cli.commands"]


@pytest.mark.parametrize(("kind", "command"), [(k, "replay") for k in BROKEN_KEYMAPS] + [("tab-indented", "run")])
def test_broken_keymap_gives_one_line_naming_the_file(tmp_path: Path, kind: str, command: str) -> None:
    keymap = tmp_path / f"{kind}.yaml"
    keymap.write_text(BROKEN_KEYMAPS[kind])
    env = {k: v for k, v in os.environ.items() if k not in support.PRODUCT_ENV_VARS}
    env.update(
        PIPELINE_DATA_DIR=str(tmp_path / "data"),
        PIPELINE_KEYMAP=str(keymap),
        DAGSTER_HOME=str(tmp_path / "dagster_home"),
        DAGSTER_DISABLE_TELEMETRY="1",
    )
    proc = subprocess.run([*_cli(), command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pipeline: keymap error: ") and str(keymap) in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "data" / "bronze").exists()


# -- (d) a tampered migration stops the process naming the file, and the database is untouched ----------------------


def _counts(db: Path) -> dict[str, Any]:
    conn = duckdb.connect(str(db), read_only=True)
    try:
        tables = [
            f"{s}.{t}"
            for s, t in conn.execute(
                "SELECT table_schema, table_name FROM information_schema.tables ORDER BY ALL"
            ).fetchall()
        ]
        return {
            "tables": tables,
            **{t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables},
            "migrations": conn.execute("SELECT * FROM ops.schema_migrations ORDER BY version").fetchall(),
        }
    finally:
        conn.close()


def test_tampered_shipped_migration_stops_warehouse_and_cli_with_data_untouched(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """test_warehouse.py tampers with toy migrations on an empty database; this is the shipped set, a ledger with
    rows, a pending migration that must not run, and the CLI's one-line message."""
    folder = tmp_path / "migrations"
    shutil.copytree(migrations.default_migrations_dir(), folder)
    db = data_dir / "warehouse.duckdb"
    data_dir.mkdir(parents=True)
    store = BronzeStore(data_dir / "bronze")
    with Warehouse(db, migrations_dir=folder).transaction() as conn:
        for t in ("AAPL", "MSFT"):
            env = envelope(t, [eod_row(t, DAY.isoformat(), 1.0)])
            file_ingestions.register_files(conn, [file_record(env, store.write(env, "j").relative, "fmp_price_eod")])
    store.close_journal("j")
    before = _counts(db)
    assert before["ops.file_ingestions"] == 2

    first = sorted(folder.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- tidied up after release\n")
    (folder / "9999_new_table.sql").write_text("CREATE TABLE ops.should_not_exist (a INTEGER);\n")
    connection._migrated.clear()
    with pytest.raises(MigrationError, match=rf"{first.name}.*changed after it was applied"):
        with Warehouse(db, migrations_dir=folder).connect():
            pass
    assert _counts(db) == before  # nothing applied, nothing removed, no row changed

    # the CLI, pointed at the same folder, says so on one line and exits non-zero
    monkeypatch.setattr(migrations, "default_migrations_dir", lambda: folder)
    connection._migrated.clear()
    assert main(["replay"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pipeline: migration error: ") and first.name in err and len(err.splitlines()) == 1
    assert _counts(db) == before
