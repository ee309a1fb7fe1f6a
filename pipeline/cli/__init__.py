"""The command line: `pipeline demo | run | check | status | plan | replay | coverage | ui` (commands.py), the
in-process Dagster runs it launches (runner.py), and what it prints (report.py, status.py, forecast.py)."""

from pipeline.cli.commands import main

__all__ = ["main"]
