"""The product uses Dagster's public API only: a private module (`dagster._core...`, `dagster_duckdb._...`) or a
private attribute of a Dagster object can change in any release, so `pipeline/` must never touch one.

Checked on the source (ast), so that a private import in a module no test loads is caught too."""

from __future__ import annotations

import ast

import pytest

from pipeline.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "pipeline"
DAGSTER_PACKAGES = ("dagster", "dagster_duckdb", "dagster_webserver", "dagster_graphql", "dagster_postgres")


def _private_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] in DAGSTER_PACKAGES and any(p.startswith("_") for p in parts[1:])


def private_dagster_uses(source: str, filename: str = "<source>") -> list[str]:
    """Each private Dagster module imported (`import dagster._x`, `from dagster._x import y`,
    `from dagster import _x`) and each private attribute of a name bound to Dagster (`dg._core`), as
    'line: what'."""
    tree = ast.parse(source, filename)
    found: list[str] = []
    dagster_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _private_module(alias.name):
                    found.append(f"{node.lineno}: import {alias.name}")
                elif alias.name.split(".")[0] in DAGSTER_PACKAGES:
                    dagster_names.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if _private_module(node.module):
                found.append(f"{node.lineno}: from {node.module} import ...")
            elif node.module.split(".")[0] in DAGSTER_PACKAGES:
                found += [f"{node.lineno}: from {node.module} import {a.name}" for a in node.names if a.name[0] == "_"]
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in dagster_names
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return found


def test_pipeline_imports_no_private_dagster_module() -> None:
    offenders = {
        str(path.relative_to(PROJECT_ROOT)): uses
        for path in sorted(PACKAGE.rglob("*.py"))
        if (uses := private_dagster_uses(path.read_text(), str(path)))
    }
    assert not offenders, f"private Dagster API in pipeline/: {offenders}"


def test_pipeline_writes_no_private_attribute_of_a_dagster_context() -> None:
    """What the step code once did (`step._metadata_accumulator = ...`): in a module that uses Dagster, an assignment
    to a private attribute of an object other than the module's own (`self`, `cls`)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
        names = [a.name for n in imports for a in n.names] + [
            n.module or "" for n in imports if isinstance(n, ast.ImportFrom)
        ]
        if not any(name.split(".")[0] in DAGSTER_PACKAGES for name in names):
            continue
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr.startswith("_")
                    and not target.attr.startswith("__")
                    and not (isinstance(target.value, ast.Name) and target.value.id in ("self", "cls"))
                ):
                    offenders.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}: .{target.attr}")
    assert not offenders, offenders


@pytest.mark.parametrize(
    "source",
    [
        "from dagster._core.instance.ref import InstanceRef",
        "import dagster._core.storage",
        "from dagster import _check",
        "import dagster as dg\nx = dg._core",
        "from dagster_duckdb._version import __version__",
    ],
)
def test_the_check_catches_each_form_of_private_import(source: str) -> None:
    assert private_dagster_uses(source)


def test_the_check_lets_public_imports_through() -> None:
    assert not private_dagster_uses("import dagster as dg\nfrom dagster import AssetKey\nx = dg.AssetKey(['a'])")
