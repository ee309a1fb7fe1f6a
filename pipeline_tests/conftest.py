"""Shared fixtures. Constants and builders live in pipeline_tests/support.py."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from pipeline.fmp.sample import SAMPLE_TICKERS, SampleSource
from pipeline_tests.fakes.fmp_server import FakeFmpServer, sample_data
from pipeline_tests.fakes.s3_server import moto_server
from pipeline_tests.support import KEY


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
