"""pipeline.log.get_logger: level by ENV, one set of handlers, a dated file under the data folder, no key in output."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from pathlib import Path

import pytest
import yaml

from pipeline.cli.commands import main
from pipeline.log import FILE_ONLY, get_logger
from pipeline.settings import PROJECT_ROOT, Settings
from pipeline_tests.support import KEY


@pytest.fixture
def name() -> str:
    """A fresh logger name per test, cleaned up afterwards so handlers never leak between tests."""
    # not under "pipeline": handlers another test configured there (with another key) would also see the records
    logger_name = f"test_log.{uuid.uuid4().hex}"
    yield logger_name
    logger = logging.getLogger(logger_name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def settings(tmp_path: Path, env: str = "PROD", key: str | None = KEY) -> Settings:
    return Settings(fmp_api_key=key, data_dir=tmp_path / "data", env=env)


def log_file(tmp_path: Path) -> Path:
    return tmp_path / "data" / "logs" / f"pipeline-{dt.date.today().isoformat()}.log"


def flush(logger: logging.Logger) -> None:
    for handler in logger.handlers:
        handler.flush()


@pytest.mark.parametrize(
    ("env", "console"), [("DEV", logging.INFO), ("PROD", logging.WARNING), ("TEST", logging.WARNING)]
)
def test_console_level_follows_env_the_file_keeps_info(tmp_path: Path, name: str, env: str, console: int) -> None:
    logger = get_logger(name, settings(tmp_path, env))
    levels = {type(h).__name__: h.level for h in logger.handlers}
    assert logger.level == logging.INFO and levels == {"StreamHandler": console, "_LogFile": logging.NOTSET}


def test_the_file_keeps_info_the_console_shows_warnings(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = get_logger(name, settings(tmp_path, "PROD"))
    logger.info("info line")
    logger.warning("warning line")
    logger.info("already printed", extra=FILE_ONLY)
    logger.error("error already printed", extra=FILE_ONLY)
    flush(logger)
    text, console = log_file(tmp_path).read_text(), capsys.readouterr().err
    assert all(line in text for line in ("info line", "warning line", "already printed", "error already printed"))
    assert "warning line" in console and "info line" not in console and "already printed" not in console


def test_a_failed_run_leaves_its_failure_in_the_log_file(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18, item 14a: the file stayed empty (level WARNING, and `pipeline run` printed its report) even when a
    run failed. A keymap whose only dataset has a path FMP does not know fails its Bronze step (HTTP 404)."""
    doc = yaml.safe_load((PROJECT_ROOT / "dataset_keymap.yaml").read_text())
    doc["datasets"] = [d for d in doc["datasets"] if d["dataset"] == "treasury-rates"]
    doc["datasets"][0]["recipe"]["path"] = "treasury-rates-that-do-not-exist"
    keymap = data_dir.parent / "keymap.yaml"
    keymap.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("PIPELINE_KEYMAP", str(keymap))
    monkeypatch.setenv("PIPELINE_AS_OF", "2025-06-27")
    monkeypatch.setenv("DAGSTER_HOME", str(data_dir / "dagster_home"))
    assert main(["run"]) == 1
    capsys.readouterr()
    text = log_file(data_dir.parent)
    lines = text.read_text().splitlines()
    assert any(" INFO pipeline.cli: pipeline run started: source bundled sample source" in line for line in lines)
    assert any(" INFO pipeline.run: ==> global datasets: bronze: 1 asset(s)" in line for line in lines)
    (failed,) = [line for line in lines if " ERROR pipeline.run: pipeline run failed: global datasets: bronze" in line]
    assert "Bronze request(s) failed after retries (http_status)" in failed and "HTTP 404" in failed
    assert lines[-1].endswith("ERROR pipeline.cli: pipeline run: exit code 1")


def test_calling_twice_adds_no_handlers(tmp_path: Path, name: str) -> None:
    s = settings(tmp_path)
    first = get_logger(name, s)
    count = len(first.handlers)
    assert count == 2
    second = get_logger(name, s)
    assert second is first and len(second.handlers) == count
    # New settings replace the handlers instead of stacking more.
    third = get_logger(name, settings(tmp_path / "other"))
    assert len(third.handlers) == count
    third.warning("one line")
    flush(third)
    assert log_file(tmp_path / "other").read_text().count("one line") == 1


def test_file_created_under_data_folder(tmp_path: Path, name: str) -> None:
    logger = get_logger(name, settings(tmp_path))
    assert log_file(tmp_path).is_file()
    logger.error("stored %s", "here")
    flush(logger)
    assert "stored here" in log_file(tmp_path).read_text()


def test_key_scrubbed_from_message_args_url_and_traceback(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = get_logger(name, settings(tmp_path))
    logger.warning("key is %s", KEY)
    logger.warning("GET https://x/stable/quote?symbol=AAPL&apikey=someOtherKey123&limit=1")
    try:
        raise RuntimeError(f"boom with {KEY}")
    except RuntimeError:
        logger.exception("failed")
    # A child logger's records propagate to the same handlers and are scrubbed too.
    logging.getLogger(f"{name}.child").warning("child %s", KEY)
    flush(logger)
    text = log_file(tmp_path).read_text()
    console = capsys.readouterr().err
    for output in (text, console):
        assert KEY not in output
        assert "someOtherKey123" not in output
        assert "apikey=***" in output
        assert "boom with ***" in output
        assert "child ***" in output
        assert "&limit=1" in output  # only the key value is replaced


def test_no_key_set_still_scrubs_apikey_param(tmp_path: Path, name: str) -> None:
    logger = get_logger(name, settings(tmp_path, key=None))
    logger.warning("url ?apikey=abc123")
    flush(logger)
    text = log_file(tmp_path).read_text()
    assert "abc123" not in text and "apikey=***" in text
