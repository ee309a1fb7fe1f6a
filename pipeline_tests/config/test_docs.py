"""The project's documents cite only files that exist: a reader who follows a path to a test or a module finds it.

The team's reference notes live outside the repository; the README names them in words, never as a path a
reader would look for in the checkout.
"""

from __future__ import annotations

import re

import pytest

from pipeline.settings import PROJECT_ROOT

DOCUMENTS = ("README.md", "deploy/README.md")
# a path into the repository, a document, or a test module named on its own (`test_crash.py`), in backticks
CITED = re.compile(r"`((?:pipeline_tests|pipeline|deploy|migrations)/[^`\s]+|[^`\s/]+\.md|test_\w+\.py)`")


def cited_paths(text: str) -> list[str]:
    """The files and folders a document cites: not patterns (`migrations/NNNN_name.sql`, `sql/<table>.sql`), nor
    names that only look like paths (the tag `pipeline/scope`: no extension, no trailing slash)."""
    return [
        p
        for p in CITED.findall(text)
        if not re.search(r"[<>*]|NNNN", p) and (p.endswith("/") or "." in p.rsplit("/", 1)[-1])
    ]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_path_a_document_cites_exists(document: str) -> None:
    text = (PROJECT_ROOT / document).read_text()
    tests = {p.name for p in (PROJECT_ROOT / "pipeline_tests").rglob("test_*.py")}
    cited = cited_paths(text)
    missing = [p for p in cited if not (PROJECT_ROOT / p).exists() and p not in tests]
    assert cited and missing == [], f"{document} cites files that are not in the repository: {missing}"
