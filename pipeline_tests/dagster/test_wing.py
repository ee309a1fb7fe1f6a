"""Only the orchestration wing imports Dagster: `pipeline/orchestration/` (definitions, assets, checks, sensors,
schedules, resources, partitions, pools, the instance) and `pipeline/cli/` (the commands and the in-process runs
they launch). Every other package is domain logic that tests without Dagster, so a newcomer can tell from the tree
what may import it."""

from __future__ import annotations

import ast
from pathlib import Path

import pipeline

PACKAGE = Path(pipeline.__file__).parent
WING = ("orchestration", "cli")


def dagster_imports(path: Path) -> list[str]:
    """`module:line` for every import of dagster or a dagster-* library in the file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top == "dagster" or top.startswith("dagster_"):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports {name}")
    return found


def test_only_the_wing_imports_dagster() -> None:
    outside = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.relative_to(PACKAGE).parts[0] not in WING
        for hit in dagster_imports(path)
    ]
    assert outside == [], "Dagster imported outside pipeline/orchestration and pipeline/cli:\n" + "\n".join(outside)


def test_the_check_sees_the_wing_s_own_imports() -> None:
    """The test above would pass vacuously if the walk found nothing: the wing does import Dagster."""
    assert dagster_imports(PACKAGE / "orchestration" / "definitions.py")
    assert dagster_imports(PACKAGE / "cli" / "runner.py")
