"""Shared fixtures. Constants and builders live in pipeline_tests/support.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.fmp.sample import SAMPLE_TICKERS, SampleSource
from pipeline.settings import get_settings
from pipeline.warehouse import connection
from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data
from pipeline_tests.fakes.s3_server import moto_server
from pipeline_tests.support import KEY, PRODUCT_ENV_VARS


@pytest.fixture(scope="module")
def sample_server(request: pytest.FixtureRequest) -> Iterator[FakeFmpServer]:
    """The loopback fake FMP server serving the bundled sample source, as of the test module's AS_OF (a date or
    YYYY-MM-DD; default today), for its SAMPLE_TICKERS (default the sample's own), with SERVER_LATENCY_S per
    request (default 0). One per module: the sample source caches what it generated."""
    module = request.module
    as_of = getattr(module, "AS_OF", None) or dt.date.today()
    as_of = dt.date.fromisoformat(as_of) if isinstance(as_of, str) else as_of
    source = SampleSource(as_of=as_of, tickers=getattr(module, "SAMPLE_TICKERS", SAMPLE_TICKERS))
    with FakeFmpServer(
        api_key=KEY, data=sample_data(source), latency_s=getattr(module, "SERVER_LATENCY_S", 0.0)
    ) as fake:
        yield fake


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a free loopback port, for the whole module."""
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty PIPELINE_DATA_DIR for in-process `pipeline.cli.main` calls: the product's other environment
    variables unset, and the settings cache and the once-per-process migration marker cleared."""
    for name in PRODUCT_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "data"
    monkeypatch.setenv("PIPELINE_DATA_DIR", str(root))
    monkeypatch.setattr(connection, "_migrated", set())
    monkeypatch.setattr(connection, "_CURRENT", set())
    get_settings.cache_clear()
    yield root
    get_settings.cache_clear()


# The files that take minutes (a `dg dev` webserver and daemon, the Gold oracle's chain, the lake's concurrent
# runs), longest first. Under `make test` (pytest-xdist, a file's tests in one process) a file starts when a process
# is free, in collection order: started last, these made the run's tail (15:46 in all; each alone is 2-5 min).
LONG_FILES = (
    "dagster/test_webserver.py",
    "dagster/test_gold_gate_ui.py",
    "gold/test_gold_oracle.py",
    "dagster/test_daemon_recovery.py",
    "warehouse/test_ducklake.py",
    "dagster/test_dagster_checks.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Collect the long files first (in LONG_FILES order), the rest as they were."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return next((i for i, name in enumerate(LONG_FILES) if path.endswith(name)), len(LONG_FILES))

    items.sort(key=rank)
