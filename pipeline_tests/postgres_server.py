"""The PostgreSQL server the tests and benchmarks use, and a fresh database per use.

One variable names the server: PIPELINE_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test,
the server the development and CI machines run). Where no server answers, tests that need it skip with the
reason; PIPELINE_REQUIRE_POSTGRES=1 (set by .ci/run) turns that skip into a failure, so CI never passes by
skipping them.

Each use gets its own database (CREATE DATABASE with a random name, dropped afterwards), so concurrent test
runs, benchmarks and leftovers of a killed run never see each other's Dagster tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
URL_VARIABLE = "PIPELINE_TEST_POSTGRES_URL"
REQUIRE_VARIABLE = "PIPELINE_REQUIRE_POSTGRES"


def server_url() -> str:
    return os.environ.get(URL_VARIABLE, "").strip() or DEFAULT_URL


def required() -> bool:
    return os.environ.get(REQUIRE_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def sqlalchemy_url(url: str) -> str:
    """The libpq URL as Dagster's `postgres_url` needs it: SQLAlchemy 2.1 maps a bare `postgresql://` to the
    psycopg 3 driver, while dagster-postgres installs psycopg2, so the driver is named in the scheme."""
    parts = urlsplit(url)
    scheme = "postgresql+psycopg2" if parts.scheme in ("postgres", "postgresql") else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def with_database(url: str, database: str) -> str:
    """`url` with its database part replaced."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def unavailable_reason(url: str | None = None) -> str | None:
    """None when the server answers; otherwise why not (no driver, no server, refused login)."""
    url = url or server_url()
    try:
        import psycopg2
    except ImportError:
        return "psycopg2 is not installed (pip install -e '.[postgres]' or '.[test]')"
    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except psycopg2.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"no PostgreSQL server answers at {_redacted(url)} ({URL_VARIABLE}): {first}"
    return None


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


@contextmanager
def fresh_database(prefix: str = "pipeline_test") -> Iterator[str]:
    """Create a database with a random name on the server and yield its URL; drop it (and its sessions) after."""
    import psycopg2

    url = server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(url, connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield with_database(url, name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def require_server() -> None:
    """Skip the calling test with the reason when no server answers; fail instead when CI requires it."""
    import pytest

    reason = unavailable_reason()
    if reason:
        if required():
            pytest.fail(f"{reason}; {REQUIRE_VARIABLE}=1 requires it")
        pytest.skip(reason)


@contextmanager
def fresh_lake(data_dir) -> Iterator[dict[str, str]]:
    """PIPELINE_WAREHOUSE / PIPELINE_WAREHOUSE_DATA_PATH of a DuckLake whose catalog is a fresh database and
    whose data files go to `data_dir`; skips (or fails, see `require_server`) without a server."""
    require_server()
    with fresh_database("pipeline_lake") as url:
        yield {"PIPELINE_WAREHOUSE": f"ducklake:postgres:{url}", "PIPELINE_WAREHOUSE_DATA_PATH": str(data_dir)}
