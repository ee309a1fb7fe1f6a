"""Bronze on an S3-compatible object store (PIPELINE_BRONZE_URL=s3://...), against a real S3 server on loopback:
the moto server, started by these tests in its own process, reached through s3fs over HTTP.

What the local store guarantees with temp file + fsync + link, the object store must guarantee with write-once
keys: a file is visible whole or not at all, never overwritten, and a writer killed mid-write leaves nothing a
reader could take for data, while the next run registers every file that did become visible.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from pipeline.bronze.recovery import register_orphans, register_unknown_files
from pipeline.bronze.store import BronzeStore, ObjectBronzeStore, UnsafeNameError
from pipeline.settings import PROJECT_ROOT, SettingsError, load_settings
from pipeline.warehouse.connection import Warehouse
from pipeline_tests.fakes.s3_server import S3_ENV
from pipeline_tests.support import eod_row
from pipeline_tests.system.test_bad_input import DAY, envelope

BUCKET = "bronze-test"


@pytest.fixture()
def s3_url(s3_endpoint, monkeypatch):
    """A fresh prefix in the bucket, with the S3 client configured the way a user configures it: the environment."""
    import s3fs

    for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if not fs.exists(BUCKET):
        fs.mkdir(BUCKET)
    yield f"s3://{BUCKET}/run-{uuid.uuid4().hex[:8]}/bronze"
    s3fs.S3FileSystem.clear_instance_cache()


def big_envelope(ticker: str, rows: int):
    return envelope(ticker, [eod_row(ticker, DAY.isoformat(), 100.0 + i / 100) for i in range(rows)])


def test_the_setting_selects_the_object_store(s3_url, tmp_path):
    settings = load_settings({"PIPELINE_DATA_DIR": str(tmp_path), "PIPELINE_BRONZE_URL": s3_url})
    assert settings.bronze_location == s3_url
    assert isinstance(BronzeStore.at(settings.bronze_location), ObjectBronzeStore)
    default = load_settings({"PIPELINE_DATA_DIR": str(tmp_path)})
    assert default.bronze_location == str(tmp_path / "bronze")
    assert type(BronzeStore.at(default.bronze_location)) is BronzeStore
    with pytest.raises(SettingsError, match="PIPELINE_BRONZE_URL.*nosuchproto"):
        load_settings({"PIPELINE_DATA_DIR": str(tmp_path), "PIPELINE_BRONZE_URL": "nosuchproto://x/y"})


def test_write_once_read_back_and_journal(s3_url):
    store = BronzeStore.at(s3_url)
    env = big_envelope("AAPL", 3)
    journal = store.journal_name("run-1")
    stored = store.write(env, journal)
    rel = stored.relative
    assert rel.endswith(f"/AAPL/{env.fetched_at.date().isoformat()}/{env.file_id}.json")
    assert stored.md5 == hashlib.md5(store.read_bytes(rel)).hexdigest()  # the digest Silver verifies on read
    assert store.read(rel) == env
    assert list(store.iter_files()) == [rel]  # the journal is not Bronze data
    assert store.size(rel) == len(env.to_json_bytes()) and store.modified(rel) is not None
    # append-only: the same key is refused, by the existence check and by the exclusive PUT behind it
    with pytest.raises(FileExistsError, match="append-only"):
        store.write(env, journal)
    key = store.absolute(rel)
    with pytest.raises(OSError):
        store.fs.pipe_file(key, b"overwritten", mode="create")
    assert store.read(rel) == env
    # the journal names what this process wrote, until it is closed
    assert store.journals() == [journal] and store.journal_paths(journal) == [rel]
    store.close_journal(journal)
    assert store.journals() == []
    for hostile in ("../escape.json", "a/../../b.json", "/abs.json", ""):
        with pytest.raises(UnsafeNameError):
            store.absolute(hostile)


def test_full_scan_registers_a_restored_bucket(s3_url, tmp_path):
    """`pipeline replay`'s repair scan works on the object store: every object is registered once, an unreadable
    one as unpromotable with its reason."""
    store = BronzeStore.at(s3_url)
    good = [store.write(big_envelope(t, 2), "restored").relative for t in ("AAPL", "MSFT")]
    store.close_journal("restored")
    bad_rel = good[0].rsplit("/", 1)[0] + f"/{uuid.uuid4().hex}.json"
    store.fs.pipe_file(store.absolute(bad_rel), b"")
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    problems: list[str] = []
    with warehouse.transaction() as conn:
        assert register_unknown_files(conn, store, lambda ident: "fmp_price_eod", problems=problems) == 3
        rows = conn.execute("SELECT bronze_path, can_promote FROM ops.file_ingestions ORDER BY 1").fetchall()
        digests = dict(conn.execute("SELECT bronze_path, file_md5 FROM ops.file_ingestions").fetchall())
    assert sorted(rows) == sorted([(g, True) for g in good] + [(bad_rel, False)])
    assert all(digests[g] == hashlib.md5(store.read_bytes(g)).hexdigest() for g in good)
    assert len(problems) == 1 and "empty file (0 bytes)" in problems[0] and bad_rel in problems[0]
    with warehouse.transaction() as conn:
        assert register_unknown_files(conn, store, lambda ident: "fmp_price_eod") == 0


WRITER = textwrap.dedent("""
    import sys
    from pipeline.bronze.store import BronzeStore
    from pipeline_tests.support import eod_row
    from pipeline_tests.system.test_bad_input import DAY, envelope

    store = BronzeStore.at(sys.argv[1])
    journal = store.journal_name("killed-run")
    rows = int(sys.argv[2])
    envs = [envelope(t, [eod_row(t, DAY.isoformat(), 100.0 + j / 100) for j in range(rows)])
            for t in (f"T{i:03d}" for i in range(200))]
    print(journal, flush=True)
    for env in envs:
        store.write(env, journal)
""")


def test_a_writer_killed_mid_write_leaves_no_partial_object_and_the_next_run_recovers(s3_url, tmp_path):
    """SIGKILL a process that writes multi-megabyte envelopes. Every visible object is a whole envelope; the write
    the kill cut (journalled, never visible) leaves nothing; the next run registers exactly the visible files."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    cut_mid_write = False
    for attempt in range(4):
        url = f"{s3_url}/attempt-{attempt}"
        attempt_store = BronzeStore.at(url)
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, url, "30000"], env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True
        )
        journal = proc.stdout.readline().strip()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            markers = attempt_store.fs.find(f"{attempt_store.prefix}/_journal/{journal}")
            if len(markers) >= 3 + attempt:
                break
            time.sleep(0.02)
        time.sleep(0.05 * attempt)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL

        attempt_store.fs.invalidate_cache()
        markers = attempt_store.fs.find(f"{attempt_store.prefix}/_journal/{journal}")
        visible = list(attempt_store.iter_files())
        assert visible, "the writer was killed before its first file became visible"
        for rel in visible:  # whole envelopes only: no partial object is ever visible
            assert attempt_store.read(rel).row_count == 30000
        cut_mid_write |= len(markers) > len(visible)

        # the next run: the dead writer's journal is found, its visible files registered once, the journal closed
        warehouse = Warehouse(tmp_path / f"warehouse-{attempt}.duckdb")
        with warehouse.transaction() as conn:
            assert register_orphans(conn, attempt_store, lambda ident: "fmp_price_eod") == len(visible)
            registered = sorted(r[0] for r in conn.execute("SELECT bronze_path FROM ops.file_ingestions").fetchall())
        assert registered == sorted(visible)
        assert attempt_store.journals() == []
        with warehouse.transaction() as conn:
            assert register_orphans(conn, attempt_store, lambda ident: "fmp_price_eod") == 0
        if cut_mid_write:
            break
    assert cut_mid_write, "no kill landed between a journal entry and its object becoming visible"


def test_sample_graph_bronze_and_silver_on_the_object_store(s3_url, tmp_path):
    """Through Dagster, with PIPELINE_BRONZE_URL set: Bronze envelopes land in the bucket (nothing in the local
    Bronze folder), Silver promotes them (DuckDB reads the s3:// URLs through the store's filesystem), and a
    second promotion changes nothing."""
    import dagster as dg
    import duckdb

    from pipeline.keymap import load_keymap
    from pipeline.orchestration.assets import bronze_key, silver_key
    from pipeline.orchestration.definitions import build_definitions
    from pipeline.orchestration.partitions import tickers_partitions
    from pipeline_tests.support import E2E_TICKERS as TICKERS
    from pipeline_tests.support import make_env, range_tags

    settings = load_settings(make_env(tmp_path, PIPELINE_BRONZE_URL=s3_url))
    keymap = load_keymap(settings.keymap_path)
    defs = build_definitions(settings, keymap)
    eod = next(e for e in keymap if e.dataset == "historical-price-eod")
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        instance.add_dynamic_partitions(tickers_partitions.name, TICKERS)

        def run(keys):
            return dg.materialize(
                list(defs.assets),
                instance=instance,
                resources=defs.resources,
                selection=keys,
                tags=range_tags("AAPL", "NVDA"),
                raise_on_error=False,
            )

        assert run([bronze_key(eod)]).success
        assert run([silver_key("fmp_price_eod")]).success
        again = run([silver_key("fmp_price_eod")])
        assert again.success

    store = BronzeStore.at(s3_url)
    in_bucket = list(store.iter_files())
    assert len(in_bucket) == len(TICKERS) and store.journals() == []
    assert not settings.bronze_dir.exists()
    con = duckdb.connect(str(settings.warehouse_path), read_only=True)
    try:
        ledger = con.execute("SELECT bronze_path, silver_status FROM ops.file_ingestions ORDER BY 1").fetchall()
        rows, tickers = con.execute("SELECT count(*), count(DISTINCT ticker) FROM silver.fmp_price_eod").fetchone()
    finally:
        con.close()
    assert ledger == [(rel, "promoted") for rel in sorted(in_bucket)]
    expected = sum(store.read(rel).row_count for rel in in_bucket)
    assert (rows, tickers) == (expected, len(TICKERS))
