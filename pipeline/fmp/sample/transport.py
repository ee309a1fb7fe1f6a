"""`sample_transport`: plugs a `SampleSource` into httpx in place of the network."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import httpx

from pipeline.fmp.sample.companies import SAMPLE_TICKERS
from pipeline.fmp.sample.source import SampleSource


def sample_transport(as_of: dt.date, tickers: Sequence[str] = SAMPLE_TICKERS, **knobs: Any) -> httpx.MockTransport:
    """Routes any request URL whose path ends with /stable/<endpoint> (or just /<endpoint>) to SampleSource.respond.
    The apikey query parameter/header is ignored. Used by the FMP client in place of the network."""
    source = SampleSource(as_of, tickers, **knobs)

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        marker = "/stable/"
        endpoint = path[path.index(marker) + len(marker) :] if marker in path else path.lstrip("/")
        params = {k: v for k, v in request.url.params.items() if k.lower() != "apikey"}
        answer = source.respond(endpoint, params)
        return httpx.Response(answer.status_code, content=answer.body, headers=answer.headers)

    return httpx.MockTransport(handler)
